"""Two CPU processes (DDP, gloo) score the test set exactly as one process does."""

from __future__ import annotations

import hashlib

import pytest
import torch
from support import quiet_trainer

import predlearn
from predlearn.datamodules import MovingMNISTDataModule
from predlearn.module import PredictiveModule


def small_setup(root) -> tuple[PredictiveModule, MovingMNISTDataModule]:
    torch.manual_seed(0)
    predictor = predlearn.create_model("predrnn", hidden_channels=[4], kernel_size=3,
                                       patch_size=4)
    module = PredictiveModule(predictor)
    # 7 test sequences in batches of 2: uneven over 2 ranks (4 + 3) and over the batches
    data = MovingMNISTDataModule(root=str(root), digits="bundled", num_val=4, num_test=7,
                                 batch_size=2)
    return module, data


@pytest.mark.slow
def test_ddp_test_scores_equal_a_single_process(tmp_path):
    module, data = small_setup(tmp_path)
    (single,) = quiet_trainer().test(module, datamodule=data)
    module, data = small_setup(tmp_path)
    (ddp,) = quiet_trainer(strategy="ddp_spawn", devices=2).test(module, datamodule=data)
    assert set(ddp) == set(single)
    for key, value in single.items():
        assert ddp[key] == pytest.approx(value, rel=1e-5), key


class RecordingModule(PredictiveModule):
    """Writes a digest of every training sequence it receives to ``<folder>/rank<r>.txt``."""

    def __init__(self, predictor, folder: str) -> None:
        super().__init__(predictor)
        self.folder = folder

    def training_step(self, batch, batch_idx):
        with open(f"{self.folder}/rank{self.global_rank}.txt", "a") as handle:
            handle.writelines(f"{hashlib.sha1(seq.numpy().tobytes()).hexdigest()}\n"
                              for seq in batch.cpu())
        return super().training_step(batch, batch_idx)


@pytest.mark.slow
def test_ddp_training_stream_differs_on_every_rank_and_worker(tmp_path):
    """Two gloo processes with two loader workers each: 16 sequences, none seen twice."""
    torch.manual_seed(0)
    predictor = predlearn.create_model("predrnn", hidden_channels=[2], kernel_size=3,
                                       patch_size=4)
    module = RecordingModule(predictor, str(tmp_path))
    data = MovingMNISTDataModule(root=str(tmp_path / "mnist"), digits="bundled", num_val=2,
                                 num_test=2, train_sequences_per_epoch=16, batch_size=2,
                                 num_workers=2)
    quiet_trainer(strategy="ddp_spawn", devices=2, max_epochs=1,
                  limit_val_batches=0).fit(module, datamodule=data)
    seen = {rank: (tmp_path / f"rank{rank}.txt").read_text().split() for rank in (0, 1)}
    assert [len(seen[0]), len(seen[1])] == [8, 8]  # each rank its half of the epoch
    assert len(set(seen[0]) | set(seen[1])) == 16  # distinct across ranks and workers


@pytest.mark.slow
def test_cli_ddp_two_processes_score_the_test_set_as_one(tmp_path):
    """``predlearn test --trainer.strategy=ddp --trainer.devices=2`` as a user types it.

    Lightning's DDP launcher starts the second process by re-running the command, so this runs
    the console script in a subprocess. 7 test sequences in batches of 2 split 4 + 3 over the
    ranks; the per-step curves must equal the single-process ones.
    """
    import csv
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mnist_fixtures import write_fake_mnist

    from predlearn.cli import run_cli

    mnist = write_fake_mnist(tmp_path / "mnist", n_train=30, n_test=20)
    fitted = run_cli([
        "fit", "--model=predrnn", "--model.predictor.hidden_channels=[4]",
        "--model.predictor.kernel_size=3", "--model.predictor.patch_size=4", "--data=mmnist",
        f"--data.root={mnist}", "--data.download=false", "--data.num_val=2",
        "--data.num_test=7", "--data.batch_size=2", "--trainer.max_steps=2",
        "--trainer.limit_val_batches=0", "--trainer.accelerator=cpu", "--trainer.devices=1",
        "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path / 'fit'}",
        "--trainer.enable_progress_bar=false", "--figures.enabled=false",
    ])
    checkpoint = fitted.trainer.checkpoint_callback.last_model_path

    def run_test(name: str, *trainer_args: str) -> list[dict[str, str]]:
        command = [
            str(Path(sys.executable).with_name("predlearn")), "test", f"--ckpt_path={checkpoint}",
            "--data=mmnist", f"--data.root={mnist}", "--data.download=false",
            "--data.num_val=2", "--data.num_test=7", "--data.batch_size=2",
            "--trainer.accelerator=cpu", "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={tmp_path}", f"--trainer.logger.name={name}",
            "--trainer.logger.version=0", "--trainer.enable_progress_bar=false",
            *trainer_args,
        ]
        environment = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, check=False, capture_output=True, text=True,
                              env=environment, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        if "--trainer.strategy=ddp" in trainer_args:  # really two processes, not a fallback
            assert "Starting with 2 processes" in done.stdout + done.stderr
        with (tmp_path / name / "version_0" / "test_curves.csv").open() as handle:
            return list(csv.DictReader(handle))

    single = run_test("single", "--trainer.devices=1")
    ddp = run_test("ddp", "--trainer.devices=2", "--trainer.strategy=ddp")
    assert len(single) == len(ddp) == 10
    for one, two in zip(single, ddp):
        assert one.keys() == two.keys()
        for key in one:
            assert float(two[key]) == pytest.approx(float(one[key]), rel=1e-5), key


def test_evaluation_sampler_splits_without_padding_or_repeats():
    from torch.utils.data import DistributedSampler

    from predlearn.datamodules.base import UnpaddedDistributedSampler

    dataset = list(range(7))
    shares = [list(UnpaddedDistributedSampler(dataset, num_replicas=3, rank=rank))
              for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(UnpaddedDistributedSampler(dataset, num_replicas=3, rank=rank))
            for rank in range(3)] == [3, 2, 2]
    # torch's own sampler pads rank 1 and 2 with a repeat; ours is one of its kind, which is
    # what makes Lightning keep it instead of putting a padding sampler in its place
    assert sum(len(DistributedSampler(dataset, num_replicas=3, rank=r)) for r in range(3)) == 9
    assert isinstance(UnpaddedDistributedSampler(dataset, num_replicas=3, rank=0),
                      DistributedSampler)


def torchrun_environment(monkeypatch, port: int, rank: int) -> None:
    """The environment torchrun gives worker ``rank`` of a 2-process job whose agent store is
    at ``127.0.0.1:port``."""
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "job-1")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", "0")  # one process per node


def test_under_torchrun_rank_zero_tells_its_absolute_folder_through_the_agent_store(
        tmp_path, monkeypatch):
    """Rank 0 and rank 1 in different working directories: rank 1 gets rank 0's folder, made
    absolute in rank 0's directory, once per command (a second command gets its own)."""
    from datetime import timedelta
    from pathlib import Path

    import torch.distributed as dist
    from support import free_port

    from predlearn import runs

    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=10))  # as torchrun's agent hosts it
    node0, node1 = tmp_path / "node0", tmp_path / "node1"
    node0.mkdir()
    node1.mkdir()
    monkeypatch.setattr(runs, "_commands_run", 0)
    monkeypatch.chdir(node0)
    torchrun_environment(monkeypatch, port, rank=0)
    told = [runs.agree_on_run_folder(Path("runs/predrnn-mmnist-1")),
            runs.agree_on_run_folder(Path("runs/predrnn-mmnist-2"))]
    assert told == [node0 / "runs/predrnn-mmnist-1", node0 / "runs/predrnn-mmnist-2"]
    assert store.get("predlearn/run_folder/job-1/0/1").decode() == str(told[0])
    monkeypatch.setattr(runs, "_commands_run", 0)  # rank 1: another process, the same commands
    monkeypatch.chdir(node1)
    torchrun_environment(monkeypatch, port, rank=1)
    assert [runs.agree_on_run_folder(Path("runs/predrnn-mmnist-9")) for _ in range(2)] == told


def test_a_rank_that_rank_zero_never_tells_fails_with_a_clear_error(tmp_path, monkeypatch):
    from datetime import timedelta
    from pathlib import Path

    import torch.distributed as dist
    from support import free_port

    from predlearn import runs

    port = free_port()
    store = dist.TCPStore("127.0.0.1", port, is_master=True, wait_for_workers=False,
                          timeout=timedelta(seconds=10))
    torchrun_environment(monkeypatch, port, rank=1)
    monkeypatch.setattr(runs, "RANK_ZERO_TIMEOUT", 1.0)
    with pytest.raises(RuntimeError, match="rank 1 waited 1 s for rank 0 to tell the run folder"):
        runs.agree_on_run_folder(Path("runs/mine"))
    del store


@pytest.mark.slow
def test_torchrun_two_nodes_write_into_one_run_folder(tmp_path):
    """``torchrun --nnodes=2`` on this machine (gloo): node 1 starts 2 s after node 0, in
    another working directory, with the default, relative run root. ``predict`` writes one
    HDF5 file per rank into the rank's run folder: both must be in node 0's folder."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from mnist_fixtures import write_fake_mnist
    from support import free_port

    mnist = write_fake_mnist(tmp_path / "mnist", n_train=30, n_test=20)
    port = free_port()
    bin_dir = Path(sys.executable).parent
    environment = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    environment.pop("PREDLEARN_RUN_FOLDER", None)
    nodes = []
    for rank in (0, 1):
        cwd = tmp_path / f"node{rank}"
        cwd.mkdir()
        command = [
            str(bin_dir / "torchrun"), "--nnodes=2", "--nproc_per_node=1",
            f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}",
            str(bin_dir / "predlearn"), "predict", "--model=predrnn",
            "--model.predictor.hidden_channels=[4]", "--model.predictor.kernel_size=3",
            "--model.predictor.patch_size=4", "--ckpt_path=untrained", "--data=mmnist",
            f"--data.root={mnist}", "--data.download=false", "--data.num_val=2",
            "--data.num_test=4", "--data.batch_size=2", "--predictions.image_sequences=0",
            "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=2",
            "--trainer.strategy=ddp", "--trainer.enable_progress_bar=false"]
        nodes.append(subprocess.Popen(command, cwd=cwd, env=environment, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
        time.sleep(2)
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert "Starting with 2 processes" in outputs[0][1]
    (folder,) = (tmp_path / "node0" / "runs").iterdir()
    assert folder.name.startswith("predrnn-mmnist-predict-")
    assert sorted(path.name for path in folder.glob("*.h5")) == [
        "predictions.rank0.h5", "predictions.rank1.h5"]
    assert list((tmp_path / "node1").iterdir()) == []  # nothing in node 1's own directory
    assert f"predlearn: run folder {folder}\n" in outputs[0][0]  # absolute, as rank 0 told it
