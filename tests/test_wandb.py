"""What W&B gets of a run: two tiny runs logged offline, what they sent recorded on the way.

Each per-step curve is defined by its exact name against its own "predicted step" axis, its
points have x = 1..K, the runs table's summaries carry their direction, the validation curve is
the best checkpoint's, and ``predlearn compare`` finds the runs by their CSV curves, with the
numbers W&B got (pictures on or off).
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
from predlearn.compare import compare
from predlearn.compare_runs import load_runs
from predlearn.wandb_runs import curves_from_history

MODELS = ("predrnn", "convlstm")
METRICS = {"mse_per_frame": "min", "bce_per_frame": "min", "psnr": "max", "ssim": "max"}
HORIZON = 10


def tiny_fit(model: str, mnist: Path, root: Path) -> list[str]:
    """A tiny ``model`` on fake MNIST, logged to W&B (the default logger), validated at steps 2,
    4 and 6. After step 4 the learning rate is multiplied by 1,000, so training blows up and
    the best checkpoint is step 4's, not the last validation's. ConvLSTM draws no pictures."""
    return [f"--model={model}", "--model.predictor.hidden_channels=[4]",
            "--model.predictor.kernel_size=3",
            *(["--model.predictor.patch_size=4"] if model == "predrnn" else
              ["--figures.enabled=false"]),
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


def record_what_is_sent(patch: pytest.MonkeyPatch) -> dict[str, SimpleNamespace]:
    """What each W&B run is sent through W&B's public API (``define_metric``, ``log``,
    ``summary.update``) and its name, group, tags and config when it finishes, by run id."""
    import wandb
    from wandb.sdk.wandb_run import Run
    from wandb.sdk.wandb_summary import SummaryDict

    sent: dict[str, SimpleNamespace] = {}

    def of(run_id: str) -> SimpleNamespace:
        return sent.setdefault(run_id, SimpleNamespace(defined={}, rows=[], summary={}))

    real_define, real_log = Run.define_metric, Run.log
    real_update, real_finish = SummaryDict.update, Run.finish

    def define_metric(self, name, *args, **options):
        of(self.id).defined[name] = {**options, "at_row": len(of(self.id).rows)}
        return real_define(self, name, *args, **options)

    def log(self, data, *args, **kwargs):
        of(self.id).rows.append(dict(data))
        return real_log(self, data, *args, **kwargs)

    def update(self, values):
        if wandb.run is not None:
            of(wandb.run.id).summary.update(values)
        return real_update(self, values)

    def finish(self, *args, **kwargs):
        of(self.id).__dict__.setdefault("info", SimpleNamespace(
            name=self.name, group=self.group, tags=tuple(self.tags),
            config=dict(self.config.as_dict())))
        return real_finish(self, *args, **kwargs)

    patch.setattr(Run, "define_metric", define_metric)
    patch.setattr(Run, "log", log)
    patch.setattr(SummaryDict, "update", update)
    patch.setattr(Run, "finish", finish)
    return sent


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two fitted-and-tested runs logged offline: model -> what the test needs of each."""
    import wandb

    wandb.finish()  # a run left open by an earlier test would be reused
    patch = pytest.MonkeyPatch()
    patch.setenv("WANDB_MODE", "offline")
    sent = record_what_is_sent(patch)
    root = tmp_path_factory.mktemp("wandb_runs")
    mnist = write_fake_mnist(root / "mnist", n_train=60, n_test=30)
    found = {}
    try:
        for model in MODELS:
            cli = run_cli(["fit", *tiny_fit(model, mnist, root / "runs")])
            checkpoint = cli.trainer.checkpoint_callback
            found[model] = SimpleNamespace(
                folder=Path(cli.trainer.log_dir), sent=sent[cli.trainer.logger.experiment.id],
                best=checkpoint.best_model_path, best_score=float(checkpoint.best_model_score),
                last_val=cli.model.curve_steps["val"],
                last_val_curves={k: v.tolist() for k, v in cli.model.curves["val"].items()},
                test={key: float(cli.trainer.callback_metrics[f"test/{key}"]) for key in METRICS},
                mnist=mnist)
    finally:
        patch.undo()
    return found


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_each_curve_is_one_chart_against_the_predicted_step(runs, model):
    sent = runs[model].sent
    for stage in ("val", "test"):
        axis = f"{stage}_curve/predicted_step"
        assert sent.defined[axis] == {"hidden": True, "summary": "none", "at_row": 0}
        for key in METRICS:
            # defined before anything was logged
            assert sent.defined[f"{stage}_curve/{key}"] == {"step_metric": axis,
                                                            "summary": "none", "at_row": 0}
        # every curve point has its x, 1..K, each once
        xs = [row[axis] for row in sent.rows if axis in row]
        assert xs == list(range(1, HORIZON + 1))
        for row in sent.rows:
            if axis in row:
                assert set(METRICS) == {k.split("/", 1)[1] for k in row if k.startswith(
                    f"{stage}_curve/") and k != axis}
    # the only glob is Lightning's "*" -> trainer/global_step, which exact names override
    assert [name for name in sent.defined if "*" in name] == ["*"]
    assert sent.defined["*"]["step_metric"] == "trainer/global_step"
    # the per-step scalars of the CSV logger are not sent
    assert not [key for row in sent.rows for key in row if re.search(r"/step_\d+$", key)]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_summaries_sort_with_their_direction(runs, model):
    found = runs[model]
    sent = found.sent
    # the runs table's val/loss.min: the lowest validation loss logged, the best checkpoint's
    assert sent.defined["val/loss"]["summary"] == "min"
    assert min(row["val/loss"] for row in sent.rows if "val/loss" in row) == pytest.approx(
        found.best_score, rel=1e-6)
    for key, direction in METRICS.items():
        assert sent.defined[f"test/{key}"]["summary"] == direction
        (logged,) = [row[f"test/{key}"] for row in sent.rows if f"test/{key}" in row]
        assert logged == pytest.approx(found.test[key], rel=1e-6)
    # grouped by data set, tagged by model, named after the run folder (model and data)
    info = sent.info
    assert info.group == "mmnist" and info.tags == (model,)
    assert info.name == found.folder.name and info.name.startswith(f"{model}-mmnist-")
    assert info.config["model"] == model and info.config["data"] == "mmnist"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_validation_curve_is_the_best_checkpoints(runs, model, tmp_path):
    found = runs[model]
    assert Path(found.best).name == "best-step000004.ckpt" and found.last_val == 6  # blew up
    sent = curves_from_history(found.sent.rows, "val")
    # validate the best checkpoint again: its curves are the ones W&B got
    cli = run_cli(["validate", f"--ckpt_path={found.best}", "--data=mmnist",
                   f"--data.root={found.mnist}", "--data.download=false", "--data.num_val=6",
                   "--data.num_test=7", "--data.batch_size=4", "--trainer.accelerator=cpu",
                   "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
                   "--trainer.enable_progress_bar=false"])
    fresh = cli.model.curves["val"]
    for key in METRICS:
        assert sent[key] == pytest.approx(fresh[key].tolist(), rel=1e-5), key
        assert found.sent.summary[f"val/{key}"] == pytest.approx(fresh[key].mean().item(),
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


@pytest.mark.slow
def test_compare_finds_the_wandb_runs_by_their_curves_csv(runs, tmp_path):
    folders = [runs[model].folder for model in MODELS]
    # ConvLSTM drew no pictures: its curves and model are written all the same
    assert (folders[0] / "test_predictions.png").is_file()
    assert not (folders[1] / "test_predictions.png").exists()
    loaded = load_runs(folders)
    assert [run.model for run in loaded] == list(MODELS)
    assert [run.label for run in loaded] == [f"{model} ({runs[model].folder.name})"
                                             for model in MODELS]
    for run, model in zip(loaded, MODELS):
        assert run.source == str(runs[model].folder / "test_curves.csv")
        sent = curves_from_history(runs[model].sent.rows, "test")  # what W&B got
        assert list(run.curves) == list(sent) == list(METRICS)
        for key in METRICS:
            # the folder's <stage>_curves.csv keeps 6 significant digits
            assert run.curves[key] == pytest.approx(sent[key], rel=5e-6)
            assert run.mean(key) == pytest.approx(runs[model].test[key], rel=1e-5)
    # the whole folder of runs: each run once (its own W&B files are not a second run)
    root = folders[0].parent
    assert sorted(run.folder for run in load_runs([root])) == sorted(folders)
    compare([root], tmp_path / "out")
    with (tmp_path / "out" / "table.csv").open() as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    for model in MODELS:
        assert float(rows[model]["psnr_mean"]) == pytest.approx(runs[model].test["psnr"],
                                                                rel=1e-5)


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
