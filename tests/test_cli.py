"""The ``predlearn`` command end to end, offline: fit, test from a checkpoint, resume, help."""

from __future__ import annotations

import csv
import inspect
import json
from pathlib import Path

import h5py
import pytest
import torch
from support import tiny_run

import predlearn
from predlearn.cli import main, run_cli

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def train_losses(run_dir: Path) -> dict[int, float]:
    """train/loss by global step (1-based) from the CSV logger's metrics files."""
    losses: dict[int, float] = {}
    for path in sorted(run_dir.glob("run/version_*/metrics.csv")):
        with path.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss"):
                    losses[int(row["step"]) + 1] = float(row["train/loss"])
    return losses


@pytest.mark.slow
def test_fit_then_test_from_the_best_checkpoint(mnist_root, tmp_path):
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=4",
                                    "--trainer.val_check_interval=2")])
    checkpoint = cli.trainer.checkpoint_callback
    assert checkpoint.monitor == "val/loss"  # chosen on the validation split
    best, last = Path(checkpoint.best_model_path), Path(checkpoint.last_model_path)
    assert best.is_file() and last.is_file() and best != last
    assert (Path(cli.trainer.logger.log_dir) / "val_predictions.png").stat().st_size > 1000

    tested = run_cli(["test", *tiny_run(mnist_root, tmp_path), f"--ckpt_path={best}"])
    scores = tested.trainer.callback_metrics
    for key in ("test/mse_per_frame", "test/mse_per_frame/step_01", "test/mse_per_frame/step_10",
                "test/bce_per_frame", "test/psnr", "test/ssim/step_03"):
        assert key in scores, key
    # every one of the 7 test sequences was scored (batches of 4 and 3)
    assert tested.model.test_metrics.metrics["mse"].count.sum().item() == 0  # reset after logging
    run_dir = Path(tested.trainer.logger.log_dir)
    assert (run_dir / "test_predictions.png").is_file()
    from PIL import Image

    with Image.open(run_dir / "test_predictions.gif") as animation:
        assert animation.n_frames == 20  # 10 observed + 10 predicted
        # 4 sequences of 64 rows (2-pixel gaps), truth | prediction | error of 64 columns
        assert animation.size == (3 * 64 + 4, 4 * 64 + 6)
    with (run_dir / "test_curves.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 10 and float(rows[0]["mse_per_frame"]) == pytest.approx(
        scores["test/mse_per_frame/step_01"].item(), rel=1e-4)

    output = tmp_path / "predictions.h5"
    run_cli(["predict", *tiny_run(mnist_root, tmp_path), f"--ckpt_path={best}",
             f"--predictions.output_path={output}"])
    with h5py.File(output) as handle:
        predictions = handle["predictions"][:]
    assert predictions.shape == (7, 10, 1, 64, 64)  # every test sequence, 10 predicted frames
    assert predictions.min() >= 0.0 and predictions.max() <= 1.0


@pytest.mark.slow
def test_resume_gives_the_same_next_losses_as_an_uninterrupted_run(mnist_root, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    no_val = ["--trainer.limit_val_batches=0", "--figures.enabled=false"]
    run_cli(["fit", *tiny_run(mnist_root, straight, "--trainer.max_steps=7", *no_val)])
    # stop at step 3, in the middle of the first epoch (5 batches), with a checkpoint there
    first = run_cli(["fit", *tiny_run(mnist_root, interrupted, "--trainer.max_steps=3",
                                      "--checkpoint.every_n_train_steps=1",
                                      "--checkpoint.monitor=null", *no_val)])
    last = first.trainer.checkpoint_callback.last_model_path
    run_cli(["fit", *tiny_run(mnist_root, interrupted, "--trainer.max_steps=7", *no_val),
             f"--ckpt_path={last}"])

    expected, resumed = train_losses(straight), train_losses(interrupted)
    assert sorted(expected) == list(range(1, 8))
    for step in range(1, 8):  # steps 4-7 come from the resumed run, across an epoch boundary
        assert resumed[step] == pytest.approx(expected[step], rel=1e-6), step


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model=predrnn", "--data=mmnist", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option, default in (("--model.learning_rate", "0.001"), ("--model.loss", "l1+l2"),
                            ("--model.predictor.hidden_channels", "(128, 128, 128, 128)"),
                            ("--model.predictor.patch_size", "1"), ("--data.num_test", "5000"),
                            ("--data.batch_size", "8"), ("--trainer.max_steps", "80000")):
        assert option in out, option
        described = " ".join(out[out.rindex(f"{option} "):].split())  # the description, unwrapped
        assert f"default: {default}" in described[:500], option


def test_fit_help_leads_with_the_models_and_the_datas_options(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--model=predrnn", "--data=mmnist", "--help"])
    out = capsys.readouterr().out
    model, data = out.index("--model.predictor.hidden_channels"), out.index("--data.digits")
    assert model < data < out.index("--trainer.max_steps")
    with pytest.raises(SystemExit):
        main(["fit", "--help"])  # nothing chosen: say how to choose, with the names
    out = capsys.readouterr().out
    assert out.startswith("Choose a model and a data set by name")
    assert "predrnn" in out[:400] and "mmnist" in out[:400]


def test_unknown_model_name_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model=predrn"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'predrn'" in err and "predrnn_m" in err and "convlstm" in err


def test_list_prints_the_registries(capsys):
    main(["list"])
    out = capsys.readouterr().out
    assert "predrnn" in out and "st_lstm" in out and "mmnist" in out


@pytest.mark.parametrize("config", sorted(p.name for p in (CONFIGS / "mmnist").glob("*.yaml")))
def test_paper_configs_parse_with_the_paper_settings(config, capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--config={CONFIGS / 'mmnist' / config}", "--print_config"])
    printed = capsys.readouterr().out
    for setting in ("learning_rate: 0.001", "loss: l1+l2", "max_steps: 80000", "batch_size: 8",
                    "num_test: 5000", "context_frames: 10", "horizon: 10"):
        assert setting in printed, setting
    if config.startswith(("predrnn", "convlstm")):  # Table 1's "128 x 4", no patches
        assert "patch_size: 1" in printed
        assert "hidden_channels:\n      - 128\n      - 128\n      - 128\n      - 128" in printed


@pytest.mark.slow
def test_quickstart_runs_on_the_bundled_digits_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)  # runs/ and the data cache go here
    cli = run_cli(["fit", f"--config={CONFIGS / 'quickstart.yaml'}", "--trainer.max_steps=2",
                   "--trainer.val_check_interval=2", "--data.num_val=8", "--data.num_test=8",
                   "--trainer.enable_progress_bar=false", "--data.root=data/mnist"])
    assert cli.datamodule.digits == "bundled"
    # the recipe of docs/getting-started.md: MSE over every next-frame prediction, scheduled
    # sampling down to 0 at step 625, Adam 1e-3
    model = cli.model
    assert (model.loss_name, model.loss_frames, model.learning_rate) == ("l2", "all", 1e-3)
    assert model.sampling.probability(0) == 1.0 and model.sampling.probability(625) == 0.0
    assert model.sampling.probability(300) == pytest.approx(1 - 300 * 0.0016)
    assert model.predictor.config["init_args"]["cell_options"] == {"forget_bias": 1.0}
    run = cli.trainer.logger.experiment  # grouped by data set, tagged by model
    assert run.group == "mmnist" and run.tags == ("predrnn",)
    folder = Path(cli.trainer.log_dir).resolve()  # one run, one folder, named after the run
    assert folder.parent == (tmp_path / "runs").resolve()
    assert folder.name.startswith("predrnn-mmnist-") and run.name == folder.name
    files = Path(run.dir).resolve()  # the offline run's files folder, inside the run folder
    assert files.is_relative_to(folder / "wandb") and files.parent.name.startswith("offline-run-")
    for name in ("config.yaml", "val_predictions.png", "test_predictions.png", "test_curves.png",
                 "test_curves.csv", "checkpoints/last.ckpt",
                 "test_predictions_predrnn-mmnist2.png"):  # the shipped model, same sequences
        assert (folder / name).is_file(), name
    # the per-step table went to W&B too (offline: as a media file of the run)
    (table,) = (files / "media" / "table" / "test").glob("per_step_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["step", "mse_per_frame", "bce_per_frame", "psnr", "ssim"]
    assert [row[0] for row in logged["data"]] == list(range(1, 11))
    assert not (tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


@pytest.mark.slow
def test_checkpoint_rebuilds_the_model_outside_the_cli(mnist_root, tmp_path):
    from predlearn.module import PredictiveModule

    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=1",
                                    "--trainer.limit_val_batches=0", "--figures.enabled=false")])
    path = cli.trainer.checkpoint_callback.last_model_path
    module = PredictiveModule.load_from_checkpoint(path)
    assert type(module.predictor).__name__ == "PredRNN"
    for name, value in cli.model.state_dict().items():
        torch.testing.assert_close(module.state_dict()[name], value)


def test_missing_data_files_end_with_the_message_not_a_traceback(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model=predrnn", "--data=mmnist", f"--data.root={tmp_path}",
              "--data.download=false", "--trainer.logger=false"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("predlearn: error:") and "Traceback" not in err
    assert str(tmp_path) in err and "t10k-images-idx3-ubyte.gz" in err
    assert "--data.digits=bundled" in err


@pytest.mark.parametrize("config", sorted(p.name for p in (CONFIGS / "radar").glob("*.yaml")))
def test_radar_configs_build_their_models_and_leave_the_frame_size_to_the_data(config):
    from importlib import import_module

    from omegaconf import OmegaConf

    predictor = OmegaConf.to_container(OmegaConf.load(CONFIGS / "radar" / config))["model"][
        "predictor"]
    module_name, _, class_name = predictor["class_path"].rpartition(".")
    with torch.device("meta"):  # paper sizes, no memory
        model = getattr(import_module(module_name), class_name)(**predictor.get("init_args", {}))
    if not model.trainable:  # a baseline (persistence, extrapolation): any frame size
        assert config in ("persistence.yaml", "extrapolation.yaml")
        return
    # the radar data module's file sets it (its frame_shape(); tests/test_datamodules.py)
    assert "frame_size" not in predictor.get("init_args", {})
    if config == "predrnn.yaml":  # paper §4.3: 2 x 128, 3 x 3
        assert model.hidden_channels == [128, 128] and model.cells[0].kernel_size == 3


@pytest.mark.parametrize("config", sorted(str(p.relative_to(CONFIGS)) for folder in ("kth", "radar")
                                          for p in (CONFIGS / folder).glob("*.yaml")))
def test_kth_and_radar_configs_parse_with_the_paper_settings(config, capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--config={CONFIGS / config}", "--print_config"])
    printed = capsys.readouterr().out
    for setting in ("learning_rate: 0.001", "loss: l1+l2", "batch_size: 8", "context_frames: 10",
                    "horizon: 10"):
        assert setting in printed, setting
    if config.startswith("kth"):  # paper §4.2: 128 x 128 frames, tested 10 -> 20
        assert "test_horizon: 20" in printed and "- 128\n      - 128" in printed


SMALL = sorted(p.name for p in (CONFIGS / "mmnist-small").glob("*.yaml"))


def test_the_small_folder_has_every_model_of_the_zoo():
    from predlearn.paper import TABLE1

    # Table 1, PredRNN v2 and the modern zoo (both SimVP translators); the nowcasting baselines
    # and the generic stack have nothing to train
    learnt = set(predlearn.list_models()) - {"persistence", "extrapolation", "steps", "stack"}
    assert set(TABLE1) <= learnt
    assert [name.removesuffix(".yaml") for name in SMALL] == sorted({*learnt, "simvp_gsta"})


@pytest.mark.parametrize("config", SMALL)
def test_small_configs_build_their_models_with_one_recipe(config, capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--config={CONFIGS / 'mmnist-small' / config}", "--print_config"])
    printed = capsys.readouterr().out
    for setting in ("max_steps: 2000", "batch_size: 8", "digits: mnist_test", "num_test: 2000",
                    "loss: l2", "auto_bf16: true"):
        assert setting in printed, setting
    from omegaconf import OmegaConf

    predictor = OmegaConf.to_container(OmegaConf.load(CONFIGS / "mmnist-small" / config))[
        "model"]["predictor"]
    module_name, _, class_name = predictor["class_path"].rpartition(".")
    from importlib import import_module

    cls = getattr(import_module(module_name), class_name)
    options = dict(predictor["init_args"])
    if "context_frames" in inspect.signature(cls).parameters:
        options["context_frames"] = 10  # linked from the data by the CLI
    model = cls(**options)
    # scheduled sampling wherever there are frames to feed back; none for one-call predictors
    sampling = "class_path: predlearn.sampling.ScheduledSampling" in printed
    assert sampling == model.feeds_back_frames
    assert ("stop: 1250" in printed) == model.feeds_back_frames
    with torch.no_grad():
        assert model(torch.rand(1, 10, 1, 64, 64), 10).shape == (1, 10, 1, 64, 64)


@pytest.mark.slow
def test_lr_scheduler_and_optimizer_from_the_command_line(mnist_root, tmp_path):
    no_val = ["--trainer.max_steps=2", "--trainer.limit_val_batches=0", "--figures.enabled=false"]
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path / "a", *no_val,
                                    "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1",
                                    "--lr_scheduler.gamma=0.5")])
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.Adam)  # the paper's optimiser is kept
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5**2)  # stepped per step
    assert cli.model.hparams["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"

    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path / "b", *no_val, "--optimizer=SGD",
                                    "--optimizer.lr=0.05")])
    optimizer = cli.trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.05
    assert not cli.trainer.lr_scheduler_configs


@pytest.mark.slow
def test_default_root_dir_holds_the_whole_run(mnist_root, tmp_path, monkeypatch):
    import wandb

    wandb.finish()  # a run left open by an earlier test would be reused
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.chdir(tmp_path)  # runs/ would appear here if the folder were ignored
    root = tmp_path / "elsewhere"
    args = [a for a in tiny_run(mnist_root, root) if not a.startswith("--trainer.logger")]
    cli = run_cli(["fit", *args, "--trainer.max_steps=1", "--trainer.limit_val_batches=0",
                   "--figures.enabled=false"])  # the default logger: W&B, offline
    folder = Path(cli.trainer.logger.save_dir)
    assert folder.parent == root  # the run's own folder in it
    files = Path(cli.trainer.logger.experiment.dir).resolve()
    assert files.is_relative_to((folder / "wandb").resolve())
    assert Path(cli.trainer.checkpoint_callback.last_model_path).resolve().is_relative_to(
        root.resolve())
    assert not (tmp_path / "runs").exists()
    wandb.finish()


OPENSTL = sorted(p.name for p in (CONFIGS / "mmnist-openstl").glob("*.yaml"))


def test_the_openstl_folder_has_the_modern_zoo_and_ours():
    assert {name.removesuffix(".yaml") for name in OPENSTL} >= {
        "predrnn_pp", "mim", "e3d_lstm", "mau", "phydnet", "simvp", "tau", "predrnn", "convlstm",
        "predrnn_v2"}


@pytest.mark.parametrize("config", OPENSTL)
def test_openstl_configs_parse_and_build_their_models(config, capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--config={CONFIGS / 'mmnist-openstl' / config}", "--print_config"])
    assert "OneCycleLR" in capsys.readouterr().out
    from omegaconf import OmegaConf

    predictor = OmegaConf.to_container(OmegaConf.load(CONFIGS / "mmnist-openstl" / config))[
        "model"]["predictor"]
    module_name, _, class_name = predictor["class_path"].rpartition(".")
    from importlib import import_module

    model = getattr(import_module(module_name), class_name)(**predictor["init_args"])
    assert sum(p.numel() for p in model.parameters()) > 1_000_000  # the benchmark's sizes
