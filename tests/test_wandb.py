"""What W&B shows of a run: two tiny runs logged offline, their run files decoded.

Each per-step curve is defined by its exact name against its own "predicted step" axis, its
points have x = 1..K, the runs table's summaries carry their direction, the validation curve is
the best checkpoint's, and ``predlearn compare`` on the offline runs gives the same numbers.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mnist_fixtures import write_fake_mnist

from predlearn.cli import main, run_cli
from predlearn.compare import compare, load_runs
from predlearn.wandb_runs import curves_from_history, read_offline_run

MODELS = ("predrnn", "convlstm")
METRICS = {"mse_per_frame": "min", "bce_per_frame": "min", "psnr": "max", "ssim": "max"}
HORIZON = 10


def tiny_fit(model: str, mnist: Path, root: Path) -> list[str]:
    """A tiny ``model`` on fake MNIST, logged to W&B (the default logger), validated at steps 2,
    4 and 6. After step 4 the learning rate is multiplied by 1,000, so training blows up and
    the best checkpoint is step 4's, not the last validation's."""
    return [f"--model={model}", "--model.predictor.hidden_channels=[4]",
            "--model.predictor.kernel_size=3",
            *(["--model.predictor.patch_size=4"] if model == "predrnn" else []),
            "--data=mmnist", f"--data.root={mnist}", "--data.download=false",
            "--data.num_val=6", "--data.num_test=7", "--data.batch_size=4",
            "--data.train_sequences_per_epoch=20", "--seed_everything=0",
            "--trainer.accelerator=cpu", "--trainer.devices=1",
            f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.log_every_n_steps=1",
            "--trainer.max_steps=6", "--trainer.val_check_interval=2",
            "--trainer.check_val_every_n_epoch=null", "--model.learning_rate=0.01",
            "--lr_scheduler=StepLR", "--lr_scheduler.step_size=4",
            "--lr_scheduler.gamma=1000", "--test_after_fit=true"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two fitted-and-tested runs logged offline: model -> what the test needs of each."""
    import wandb

    wandb.finish()  # a run left open by an earlier test would be reused
    patch = pytest.MonkeyPatch()
    patch.setenv("WANDB_MODE", "offline")
    root = tmp_path_factory.mktemp("wandb_runs")
    mnist = write_fake_mnist(root / "mnist", n_train=60, n_test=30)
    found = {}
    try:
        for model in MODELS:
            cli = run_cli(["fit", *tiny_fit(model, mnist, root / "runs")])
            checkpoint = cli.trainer.checkpoint_callback
            folder = Path(cli.trainer.log_dir)
            (offline,) = (folder / "wandb").glob("offline-run-*")
            found[model] = SimpleNamespace(
                folder=folder, offline=offline, run=read_offline_run(offline),
                best=checkpoint.best_model_path, best_score=float(checkpoint.best_model_score),
                last_val=cli.model.curve_steps["val"],
                last_val_curves={k: v.tolist() for k, v in cli.model.curves["val"].items()},
                test={key: float(cli.trainer.callback_metrics[f"test/{key}"]) for key in METRICS},
                mnist=mnist)
    finally:
        patch.undo()
    return found


@pytest.mark.parametrize("model", MODELS)
def test_each_curve_is_one_chart_against_the_predicted_step(runs, model):
    run = runs[model].run
    exact = {m["name"]: m for m in run.metrics if m["name"]}
    for stage in ("val", "test"):
        axis = f"{stage}_curve/predicted_step"
        assert exact[axis]["hidden"] and exact[axis]["summary"] == ["none"]
        for key in METRICS:
            defined = exact[f"{stage}_curve/{key}"]
            assert defined["step_metric"] == axis and defined["summary"] == ["none"]
            assert defined["at_row"] == 0  # defined before anything was logged
        # every curve point has its x, 1..K, each once
        xs = [row[axis] for row in run.history if axis in row]
        assert xs == list(range(1, HORIZON + 1))
        for row in run.history:
            if axis in row:
                assert set(METRICS) == {k.split("/", 1)[1] for k in row if k.startswith(
                    f"{stage}_curve/") and k != axis}
    # the only glob is Lightning's "*" -> trainer/global_step, which exact names override
    assert [m["glob_name"] for m in run.metrics if m["glob_name"]] == ["*"]
    # the per-step scalars of the CSV logger are not sent
    assert not [key for row in run.history for key in row if re.search(r"/step_\d+$", key)]


@pytest.mark.parametrize("model", MODELS)
def test_summaries_sort_with_their_direction(runs, model):
    found = runs[model]
    summary = found.run.summary
    assert summary["val/loss"] == {"min": pytest.approx(found.best_score, rel=1e-6)}
    for key, direction in METRICS.items():
        assert summary[f"test/{key}"] == {direction: pytest.approx(found.test[key], rel=1e-6)}
    assert not any(key.startswith(("val_curve/", "test_curve/")) for key in summary)
    # grouped by data set, tagged by model, named after the run folder (model and data)
    assert found.run.group == "mmnist" and found.run.tags == [model]
    assert found.run.name == found.folder.name and found.run.name.startswith(f"{model}-mmnist-")
    assert found.run.config["model"] == model and found.run.config["data"] == "mmnist"


@pytest.mark.parametrize("model", MODELS)
def test_the_validation_curve_is_the_best_checkpoints(runs, model, tmp_path):
    found = runs[model]
    assert Path(found.best).name == "best-step000004.ckpt" and found.last_val == 6  # blew up
    sent = curves_from_history(found.run.history, "val")
    # validate the best checkpoint again: its curves are the ones W&B got
    cli = run_cli(["validate", f"--ckpt_path={found.best}", "--data=mmnist",
                   f"--data.root={found.mnist}", "--data.download=false", "--data.num_val=6",
                   "--data.num_test=7", "--data.batch_size=4", "--trainer.accelerator=cpu",
                   "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
                   "--trainer.enable_progress_bar=false"])
    fresh = cli.model.curves["val"]
    for key in METRICS:
        assert sent[key] == pytest.approx(fresh[key].tolist(), rel=1e-5), key
        assert found.run.summary[f"val/{key}"] == pytest.approx(fresh[key].mean().item(),
                                                                rel=1e-5)
    assert sent["mse_per_frame"] != pytest.approx(found.last_val_curves["mse_per_frame"],
                                                  rel=1e-3)  # not the last validation's
    # the CSV logger keeps the per-step scalars
    with (Path(cli.trainer.log_dir) / "metrics.csv").open() as handle:
        header = next(csv.reader(handle))
    assert {"val/psnr/step_01", "val/psnr/step_10", "val/psnr"} <= set(header)
    # the run folder's val_curves.csv is the best checkpoint's too
    folder_curves = load_runs([found.folder], stage="val")[0].curves
    assert folder_curves["ssim"] == pytest.approx(fresh["ssim"].tolist(), rel=1e-5)


def test_compare_reads_the_offline_runs_with_the_same_numbers(runs, tmp_path):
    offline = [runs[model].offline for model in MODELS]
    from_wandb = load_runs(offline)
    from_folders = load_runs([runs[model].folder for model in MODELS])
    assert [run.model for run in from_wandb] == list(MODELS)
    assert [run.label for run in from_wandb] == [
        f"{model} ({runs[model].folder.name})" for model in MODELS]
    for wandb_run, folder_run, model in zip(from_wandb, from_folders, MODELS):
        assert list(wandb_run.curves) == list(METRICS)
        for key in METRICS:
            # the folder's <stage>_curves.csv keeps 6 significant digits
            assert wandb_run.curves[key] == pytest.approx(folder_run.curves[key], rel=5e-6)
            assert wandb_run.mean(key) == pytest.approx(runs[model].test[key], rel=1e-5)
    # the whole folder of runs: each run once (its own W&B files are not a second run)
    assert len(load_runs([runs[MODELS[0]].folder.parent])) == 2
    compare(offline, tmp_path / "out")
    with (tmp_path / "out" / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    for row, model in zip(rows, MODELS):
        assert float(row["psnr_mean"]) == pytest.approx(runs[model].test["psnr"], rel=1e-5)


# --- the reader, on a run with hand-set values --------------------------------------------------


def test_the_reader_decodes_what_a_run_logged(tmp_path, monkeypatch):
    import wandb

    wandb.finish()
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = wandb.init(project="reader", dir=str(tmp_path), name="hand-set", group="g",
                     tags=["a", "b"], config={"size": 3, "text": "x" * 70_000})  # > 2 blocks
    run.define_metric("axis", hidden=True)
    run.define_metric("curve", step_metric="axis", summary="max")
    for x, y in ((1, 0.5), (2, 2.5), (3, 1.5)):
        run.log({"axis": x, "curve": y})
    run.summary["plain"] = 7
    run.finish()
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    decoded = read_offline_run(folder)
    assert (decoded.name, decoded.group, decoded.tags) == ("hand-set", "g", ["a", "b"])
    assert decoded.config["size"] == 3 and decoded.config["text"] == "x" * 70_000
    assert [(row["axis"], row["curve"]) for row in decoded.history] == [(1, 0.5), (2, 2.5),
                                                                        (3, 1.5)]
    assert decoded.summary["curve"] == {"max": 2.5} and decoded.summary["plain"] == 7
    curve = next(m for m in decoded.metrics if m["name"] == "curve")
    assert (curve["step_metric"], curve["summary"], curve["at_row"]) == ("axis", ["max"], 0)


def test_a_file_that_is_not_a_wandb_run_is_refused(tmp_path):
    from predlearn.errors import BadFileError

    (tmp_path / "run-abc.wandb").write_bytes(b"not a run file at all")
    with pytest.raises(BadFileError, match="not a W&B run file"):
        read_offline_run(tmp_path)


# --- online: checkpoints as artifacts, compare --wandb (fake W&B objects, no network) ----------


class FakeRun:
    """What ``WandbLogger`` uses of a W&B run: it records the artifacts logged."""

    id = "fake01"

    def __init__(self) -> None:
        self.artifacts: list[tuple[object, list[str]]] = []
        self.config = SimpleNamespace(update=lambda *args, **kwargs: None)

    def log(self, *args, **kwargs) -> None:
        pass

    def log_artifact(self, artifact, aliases) -> None:
        self.artifacts.append((artifact, list(aliases)))


def checkpoint_callback(tmp_path: Path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    callback = ModelCheckpoint(dirpath=tmp_path, monitor="val/loss", save_last=True)
    best, last = tmp_path / "best-step000004.ckpt", tmp_path / "last.ckpt"
    best.write_bytes(b"best weights")
    last.write_bytes(b"last weights")
    callback.best_model_path, callback.last_model_path = str(best), str(last)
    callback.best_model_score = torch.tensor(0.25)
    callback.best_k_models = {str(best): torch.tensor(0.25)}
    return callback


@pytest.mark.parametrize(("offline", "log_checkpoints", "logged"),
                         [(False, True, True), (False, False, False), (True, True, False)])
def test_checkpoints_are_artifacts_online_unless_turned_off(tmp_path, monkeypatch, offline,
                                                            log_checkpoints, logged):
    from predlearn.loggers import AutoWandbLogger

    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))  # artifact staging
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    fake = FakeRun()
    logger = AutoWandbLogger(save_dir=str(tmp_path / "run"), offline=offline, experiment=fake,
                             log_checkpoints=log_checkpoints)
    callback = checkpoint_callback(tmp_path)
    logger.after_save_checkpoint(callback)
    logger.finalize("success")  # fitting ended
    if not logged:
        assert fake.artifacts == []
        return
    files = {artifact.metadata["original_filename"]: (artifact.type, aliases)
             for artifact, aliases in fake.artifacts}
    assert files == {"best-step000004.ckpt": ("model", ["latest", "best"]),
                     "last.ckpt": ("model", ["latest"])}


class FakeApiRun:
    def __init__(self, name: str, model: str, psnr: list[float]) -> None:
        self.name, self.path = name, ["me", "proj", name]
        self.config, self.tags = {"model": model}, [model]
        self.rows = [{"test_curve/predicted_step": step, "test_curve/psnr": value}
                     for step, value in enumerate(psnr, start=1)]

    def scan_history(self, keys):
        return [{key: row[key] for key in keys} for row in self.rows
                if all(key in row for key in keys)]


class FakeApi:
    def __init__(self, runs) -> None:
        self.runs_given, self.asked = runs, []

    def runs(self, path, filters=None, order=None):
        self.asked.append((path, filters))
        return self.runs_given


def test_compare_fetches_a_projects_runs_through_the_api(tmp_path):
    api = FakeApi([FakeApiRun("predrnn-mmnist-1", "predrnn", [20.0, 18.0, 16.0]),
                   FakeApiRun("convlstm-mmnist-1", "convlstm", [19.0, 17.0, 15.0])])
    written = compare([], tmp_path, wandb_project="me/proj", wandb_group="mmnist", api=api)
    assert api.asked == [("me/proj", {"group": "mmnist"})]
    assert tmp_path / "compare_psnr.png" in written
    with (tmp_path / "table.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["label"], r["model"], float(r["psnr_mean"]), float(r["psnr_step_03"]))
            for r in rows] == [("predrnn (predrnn-mmnist-1)", "predrnn", 18.0, 16.0),
                               ("convlstm (convlstm-mmnist-1)", "convlstm", 17.0, 15.0)]


def test_compare_needs_runs_or_a_project(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["compare"])
    assert stop.value.code == 2
    assert "name at least one RUN_DIR, or a W&B project with --wandb" in capsys.readouterr().err
