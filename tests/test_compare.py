"""``predlearn compare`` on two real tiny runs (PredRNN and ConvLSTM on fake MNIST files)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from mnist_fixtures import write_fake_mnist
from support import tiny_run

from predlearn.cli import main as predlearn_main
from predlearn.cli import run_cli
from predlearn.compare import main
from predlearn.compare_runs import CompareError, load_runs

# the tests marked slow read the two runs that the ``runs`` fixture fits through the command line


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two fitted-and-tested CSV-logger runs: model name -> its version folder."""
    root = tmp_path_factory.mktemp("compare")
    mnist = write_fake_mnist(root / "mnist", n_train=60, n_test=30)
    folders = {}
    for model in ("predrnn", "convlstm"):
        args = [f"--model={model}" if a.startswith("--model=") else a
                for a in tiny_run(mnist, root / model, "--trainer.max_steps=2",
                                  "--trainer.val_check_interval=2", "--test_after_fit=true",
                                  "--data.num_test=4")
                if model == "predrnn" or "patch_size" not in a]
        cli = run_cli(["fit", *args])
        folders[model] = Path(cli.trainer.logger.log_dir)
    return folders


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def curve_means(curves_csv: Path) -> dict[str, float]:
    rows = read_rows(curves_csv)
    return {key: sum(float(r[key]) for r in rows) / len(rows) for key in rows[0] if key != "step"}


def logged(metrics_csv: Path, key: str) -> float:
    return float([r[key] for r in read_rows(metrics_csv) if r.get(key)][-1])


@pytest.mark.slow
def test_compare_two_runs_writes_plots_and_tables(runs, tmp_path, capsys):
    out = tmp_path / "out"
    # one run by its version folder, the other by the folder that holds its version folders
    main([str(runs["predrnn"]), str(runs["convlstm"].parent.parent), f"--out={out}", "--paper"])
    printed = capsys.readouterr().out
    for metric in ("mse_per_frame", "bce_per_frame", "psnr", "ssim"):
        plot = out / f"compare_{metric}.png"
        assert plot.stat().st_size > 1000 and str(plot) in printed
    assert str(out / "table.md") in printed and str(out / "table.csv") in printed

    rows = read_rows(out / "table.csv")
    assert [r["model"] for r in rows] == ["predrnn", "convlstm"]
    assert [r["label"] for r in rows] == ["predrnn (run/version_0)", "convlstm (run/version_0)"]
    for row, folder in zip(rows, (runs["predrnn"], runs["convlstm"])):
        means = curve_means(folder / "test_curves.csv")
        last = read_rows(folder / "test_curves.csv")[-1]
        for metric in ("mse_per_frame", "bce_per_frame", "psnr", "ssim"):
            assert float(row[f"{metric}_mean"]) == pytest.approx(means[metric], rel=1e-9)
            assert float(row[f"{metric}_step_10"]) == float(last[metric])
        # the curves CSV keeps 6 significant digits of what the logger wrote
        assert float(row["mse_per_frame_mean"]) == pytest.approx(
            logged(folder / "metrics.csv", "test/mse_per_frame"), rel=1e-5)
    table = (out / "table.md").read_text()
    assert "| predrnn (run/version_0) | predrnn |" in table and "mse_per_frame mean" in table


@pytest.mark.slow
def test_labels_and_the_validation_stage(runs, tmp_path):
    out = tmp_path / "out"
    main([str(runs["predrnn"]), str(runs["convlstm"]), "--stage=val", f"--out={out}",
          "--labels=mine,theirs"])
    rows = read_rows(out / "table.csv")
    assert [r["label"] for r in rows] == ["mine", "theirs"]
    means = curve_means(runs["predrnn"] / "val_curves.csv")
    assert float(rows[0]["mse_per_frame_mean"]) == pytest.approx(means["mse_per_frame"])
    with pytest.raises(CompareError, match="--labels gives 2 labels for 1 runs"):
        main([str(runs["predrnn"]), f"--out={out}", "--labels=a,b"])


@pytest.mark.slow
def test_a_folder_that_is_not_a_run(runs, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing here")
    with pytest.raises(SystemExit) as exit_info:
        predlearn_main(["compare", str(runs["predrnn"]), str(empty), f"--out={tmp_path / 'out'}"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"predlearn: error: no test_curves.csv in {empty}: give a predlearn run "
                   "folder (or one above runs) (--debug shows where)")
    with pytest.raises(CompareError, match="no such run folder"):
        load_runs([tmp_path / "missing"])


@pytest.mark.slow
def test_runs_with_different_horizons(runs, tmp_path, capsys):
    long = tmp_path / "long"
    long.mkdir()
    with (long / "test_curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "mse_per_frame"])
        writer.writerows([step, 100.0 + step] for step in range(1, 21))
    with pytest.raises(SystemExit):
        predlearn_main(["compare", str(runs["predrnn"]), str(long), f"--out={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert ("runs have different numbers of predicted steps: predrnn (run/version_0) has 10, "
            "? (long) has 20") in err


# --- runs on different data: small run folders written here -------------------------------------


def write_run(folder: Path, model: str, data: str | None, source: str | None,
              mse: list[float]) -> Path:
    """A run folder as the figures callback leaves it: ``test_curves.csv`` and
    ``predlearn_run.json`` (``data``, ``data_source``: None leaves them out)."""
    folder.mkdir(parents=True)
    with (folder / "test_curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "mse_per_frame"])
        writer.writerows([step, value] for step, value in enumerate(mse, start=1))
    info = {"model": model, "data": data, "data_source": source}
    (folder / "predlearn_run.json").write_text(json.dumps(
        {key: value for key, value in info.items() if value is not None}))
    return folder


def test_runs_on_different_data_are_rows_of_their_own(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs / "a-mmnist", "predrnn", "mmnist", "mmnist", [10.0, 20.0])
    write_run(runs / "b-frames", "predrnn", "frames", "frames:sst.h5", [1.0, 3.0])
    write_run(runs / "c-frames", "predrnn", "frames", "frames:sla.h5", [5.0, 7.0])
    write_run(runs / "d-mmnist", "predrnn", "mmnist", None, [30.0, 40.0])  # before data_source
    out = tmp_path / "out"
    main([str(runs), f"--out={out}"])
    printed = capsys.readouterr().out
    assert ("predlearn compare: these runs are on 3 data sets (mmnist, frames:sst.h5, "
            "frames:sla.h5); each row is one run, grouped by data set (column data)\n") in printed
    rows = read_rows(out / "table.csv")
    # one row per run, never a mean over runs; the rows of one data set together
    assert [(r["label"], r["data"], float(r["mse_per_frame_mean"])) for r in rows] == [
        ("predrnn (a-mmnist)", "mmnist", 15.0), ("predrnn (d-mmnist)", "mmnist", 35.0),
        ("predrnn (b-frames)", "frames:sst.h5", 2.0), ("predrnn (c-frames)", "frames:sla.h5", 6.0)]
    table = (out / "table.md").read_text()
    assert "| Run | Model | Data |" in table
    assert "| predrnn (b-frames) | predrnn | frames:sst.h5 | 2 \\| 3 |" in table


def test_runs_on_one_data_set_say_nothing_of_it(tmp_path, capsys):
    write_run(tmp_path / "a", "predrnn", "mmnist", "mmnist", [10.0, 20.0])
    write_run(tmp_path / "b", "convlstm", "mmnist", "mmnist", [11.0, 21.0])
    (tmp_path / "c").mkdir()  # a run with curves only: its data is not known
    (tmp_path / "c" / "test_curves.csv").write_text("step,mse_per_frame\n1,1\n2,2\n")
    main([str(tmp_path), f"--out={tmp_path / 'out'}"])
    assert "data sets" not in capsys.readouterr().out
    rows = read_rows(tmp_path / "out" / "table.csv")
    assert [(r["label"], r["data"]) for r in rows] == [
        ("predrnn (a)", "mmnist"), ("convlstm (b)", "mmnist"), ("? (c)", "")]
    assert [run.data for run in load_runs([tmp_path])] == ["mmnist", "mmnist", ""]


def test_the_run_info_names_the_file_of_your_own_data():
    from predlearn.prediction_figures import data_source
    from predlearn.registry import DATAMODULES

    def without_setup(name: str, **attributes) -> object:
        cls = DATAMODULES.get(name)
        module = cls.__new__(cls)  # what data_source reads, no file opened
        module.__dict__.update(attributes)
        return module

    frames = DATAMODULES.get("frames")
    assert data_source(without_setup("frames", path="/data/own/sst.h5", dataset=None)) == (
        "frames:sst.h5")
    assert data_source(without_setup("frames", path="sst.h5", dataset="anomaly")) == (
        "frames:sst.h5[anomaly]")
    assert data_source(without_setup("mmnist", path="elsewhere/x.npy")) == "mmnist"
    assert data_source(None) is None and frames is not None
