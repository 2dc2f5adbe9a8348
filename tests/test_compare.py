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


# --- confidence intervals: small run folders with <stage>_intervals.csv, written here ----------

INTERVAL_HEADER = "metric,step,value,low,high,level,sequences,blocks,events"


def write_scored_run(folder: Path, model: str, curves: dict[str, list[float]],
                     means: dict[str, tuple[float, float]] | None,
                     events: dict[str, int] | None = None, data: str = "mmnist") -> Path:
    """A run folder with ``test_curves.csv`` and, unless ``means`` is None, a
    ``test_intervals.csv`` as ``predlearn test`` writes it: per metric the interval of its mean
    (``means``: metric -> (low, high)) and of each step (the value +- 1)."""
    folder.mkdir(parents=True)
    keys = list(curves)
    with (folder / "test_curves.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *keys])
        writer.writerows([step, *values] for step, values in enumerate(
            zip(*(curves[key] for key in keys)), start=1))
    (folder / "predlearn_run.json").write_text(json.dumps(
        {"model": model, "data": data, "data_source": data}))
    if means is not None:
        lines = [INTERVAL_HEADER]
        for key, (low, high) in means.items():
            values = curves[key]
            count = str(events[key]) if events and key in events else ""
            lines.append(f"{key},all,{sum(values) / len(values)},{low},{high},0.95,21,2,{count}")
            lines += [f"{key},{step},{value},{value - 1},{value + 1},0.95,21,2,{count}"
                      for step, value in enumerate(values, start=1)]
        (folder / "test_intervals.csv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def figures(monkeypatch) -> dict[str, object]:
    """The figures ``compare`` saves, by file name (drawn as they would be, then not saved)."""
    import predlearn.visualize

    saved: dict[str, object] = {}

    def keep(fig, path, title="", dpi=100):
        saved[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(predlearn.visualize, "save_figure", keep)
    return saved


def bands(fig) -> list:
    from matplotlib.collections import PolyCollection

    return [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]


def compare_two_overlapping_runs(tmp_path) -> Path:
    """predrnn (a) and convlstm (b), MSE intervals that overlap, compared into tmp_path/out."""
    write_scored_run(tmp_path / "runs" / "a", "predrnn", {"mse_per_frame": [20.0, 28.4]},
                     {"mse_per_frame": (21.0, 27.9)})
    write_scored_run(tmp_path / "runs" / "b", "convlstm", {"mse_per_frame": [25.0, 29.6]},
                     {"mse_per_frame": (23.9, 30.6)})
    out = tmp_path / "out"
    main([str(tmp_path / "runs"), f"--out={out}"])
    return out


def test_intervals_are_bands_and_table_cells(tmp_path, figures, capsys):
    out = compare_two_overlapping_runs(tmp_path)
    fig = figures["compare_mse_per_frame.png"]
    drawn, lines = bands(fig), fig.axes[0].get_lines()
    assert len(drawn) == 2 and "95 % interval" in fig.axes[0].get_title()
    # each band in its line's colour, translucent
    from matplotlib.colors import to_rgba
    assert [tuple(b.get_facecolor()[0][:3]) for b in drawn] == [
        to_rgba(line.get_color())[:3] for line in lines]
    assert all(b.get_alpha() == pytest.approx(0.2) for b in drawn)

    table = (out / "table.md").read_text()
    assert "| Run | Model | Data | Sequences | mse_per_frame mean [interval] \\| step 2 |" in table
    assert "| predrnn (a) | predrnn | mmnist | 21 | 24.2 [21, 27.9] \\| 28.4 |" in table
    assert "Mean over the 2 predicted steps [its 95 % bootstrap interval]" in table
    rows = read_rows(out / "table.csv")
    assert [(r["sequences"], r["mse_per_frame_low"], r["mse_per_frame_high"]) for r in rows] == [
        ("21", "21.0", "27.9"), ("21", "23.9", "30.6")]
    assert "events" not in ",".join(rows[0])


def test_overlapping_intervals_are_not_distinguishable(tmp_path, capsys):
    out = compare_two_overlapping_runs(tmp_path)
    line = ("mse_per_frame: predrnn (a) and convlstm (b) are not distinguishable at 95 % "
            "(intervals overlap: 24.2 [21, 27.9], 27.3 [23.9, 30.6])")
    printed = capsys.readouterr().out
    assert f"{line}\n" in printed and "no test_intervals.csv" not in printed
    assert str(out / "distinguishable.md") in printed
    note = (out / "distinguishable.md").read_text()
    assert f"## mse_per_frame (lower is better)\n\n- {line}\n" in note
    assert "better than" not in note


def test_separate_intervals_name_the_better_run_by_the_metric_direction(tmp_path, capsys):
    # a: lower MSE (better) but lower PSNR (worse) and CSI (worse); b: the other way round
    write_scored_run(tmp_path / "runs" / "a", "predrnn",
                     {"mse_per_frame": [10.0, 12.0], "psnr": [20.0, 19.0],
                      "csi_20dBZ": [0.3, 0.2], "spread_skill": [0.5, 0.6]},
                     {"mse_per_frame": (10.0, 12.0), "psnr": (19.0, 20.0),
                      "csi_20dBZ": (0.2, 0.3), "spread_skill": (0.5, 0.6)},
                     events={"csi_20dBZ": 1234})
    write_scored_run(tmp_path / "runs" / "b", "convlstm",
                     {"mse_per_frame": [30.0, 32.0], "psnr": [25.0, 24.0],
                      "csi_20dBZ": [0.5, 0.4], "spread_skill": [1.4, 1.5]},
                     {"mse_per_frame": (30.0, 32.0), "psnr": (24.0, 25.0),
                      "csi_20dBZ": (0.4, 0.5), "spread_skill": (1.4, 1.5)},
                     events={"csi_20dBZ": 1300})
    out = tmp_path / "out"
    main([str(tmp_path / "runs"), f"--out={out}"])
    assert "not distinguishable" not in capsys.readouterr().out
    note = (out / "distinguishable.md").read_text()
    assert ("- mse_per_frame: predrnn (a) is better than convlstm (b) at 95 % (11 [10, 12] vs "
            "31 [30, 32]; lower is better)") in note
    assert ("- psnr: convlstm (b) is better than predrnn (a) at 95 % (24.5 [24, 25] vs "
            "19.5 [19, 20]; higher is better)") in note
    assert "- csi_20dBZ: convlstm (b) is better than predrnn (a) at 95 %" in note
    assert ("## spread_skill (best at 1, not ranked)\n\n- spread_skill: predrnn (a) and convlstm "
            "(b) are distinguishable at 95 % (0.55 [0.5, 0.6] vs 1.45 [1.4, 1.5]; best at 1, not "
            "ranked)") in note
    # the events of an event score: a column and in the cell
    rows = read_rows(out / "table.csv")
    assert [r["csi_20dBZ_events"] for r in rows] == ["1234", "1300"]
    assert "psnr_events" not in rows[0]
    assert "0.25 [0.2, 0.3] \\| 0.2 (1234 events)" in (out / "table.md").read_text()


def test_runs_without_intervals_are_unchanged_but_for_one_line(tmp_path, figures, capsys):
    write_run(tmp_path / "runs" / "a", "predrnn", "mmnist", "mmnist", [10.0, 20.0])
    write_run(tmp_path / "runs" / "b", "convlstm", "mmnist", "mmnist", [11.0, 21.0])
    out = tmp_path / "out"
    main([str(tmp_path / "runs"), f"--out={out}"])
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == ("runs predrnn (a) and convlstm (b) have no "
                                       "test_intervals.csv: rerun predlearn test to get intervals")
    assert "distinguishable" not in printed and not (out / "distinguishable.md").exists()
    assert (out / "table.csv").read_text().splitlines() == [
        "label,model,data,mse_per_frame_mean,mse_per_frame_step_02",
        "predrnn (a),predrnn,mmnist,15.0,20.0", "convlstm (b),convlstm,mmnist,16.0,21.0"]
    table = (out / "table.md").read_text()
    assert table.startswith("Mean over the 2 predicted steps \\| value at the last step.\n")
    assert "| predrnn (a) | predrnn | mmnist | 15 \\| 20 |" in table
    fig = figures["compare_mse_per_frame.png"]
    assert bands(fig) == [] and "interval" not in fig.axes[0].get_title()


def test_a_run_without_intervals_beside_runs_with_them(tmp_path, figures, capsys):
    write_scored_run(tmp_path / "runs" / "a", "predrnn", {"mse_per_frame": [10.0, 12.0]},
                     {"mse_per_frame": (10.0, 12.0)})
    write_scored_run(tmp_path / "runs" / "b", "convlstm", {"mse_per_frame": [30.0, 32.0]},
                     {"mse_per_frame": (30.0, 32.0)})
    write_run(tmp_path / "runs" / "c", "mim", "mmnist", "mmnist", [11.0, 21.0])
    out = tmp_path / "out"
    main([str(tmp_path / "runs"), f"--out={out}"])
    line = "run mim (c) has no test_intervals.csv: rerun predlearn test to get intervals"
    assert f"{line}\n" in capsys.readouterr().out
    note = (out / "distinguishable.md").read_text()
    assert note.endswith(f"\n{line}\n") and "mim (c) is" not in note and "and mim" not in note
    assert len(bands(figures["compare_mse_per_frame.png"])) == 2
    assert "| mim (c) | mim | mmnist | - | 16 \\| 21 |" in (out / "table.md").read_text()


def test_nan_bounds_are_no_interval(tmp_path, figures, capsys):
    write_scored_run(tmp_path / "runs" / "a", "predrnn", {"csi_20dBZ": [0.3, 0.2]},
                     {"csi_20dBZ": (0.2, 0.3)})
    b = write_scored_run(tmp_path / "runs" / "b", "convlstm", {"csi_20dBZ": [0.5, 0.4]}, {})
    (b / "test_intervals.csv").write_text(  # no event at all: every bound undefined
        f"{INTERVAL_HEADER}\ncsi_20dBZ,all,0.45,nan,nan,0.95,21,2,0\n"
        "csi_20dBZ,1,0.5,nan,nan,0.95,21,2,0\ncsi_20dBZ,2,0.4,,,0.95,21,2,0\n")
    out = tmp_path / "out"
    main([str(tmp_path / "runs"), f"--out={out}"])
    assert "distinguishable" not in capsys.readouterr().out.replace("distinguishable.md", "")
    assert len(bands(figures["compare_csi_20dBZ.png"])) == 1
    rows = read_rows(out / "table.csv")
    assert [(r["csi_20dBZ_low"], r["csi_20dBZ_high"]) for r in rows] == [("0.2", "0.3"), ("", "")]
    assert "| convlstm (b) | convlstm | mmnist | 21 | 0.45 \\| 0.4 (0 events) |" in (
        out / "table.md").read_text()
    note = (out / "distinguishable.md").read_text()
    assert "- csi_20dBZ: no interval (a bound undefined, NaN) for convlstm (b)" in note
    assert "better than" not in note


def test_runs_on_other_data_are_not_compared_and_groups_overlap_pairwise(tmp_path, capsys):
    from predlearn.compare_intervals import overlapping_groups
    from predlearn.compare_runs import Interval

    # a overlaps b, b overlaps c, a and c do not: two groups, not one
    assert overlapping_groups([Interval(1, 0, 2), Interval(2, 1, 3), Interval(3, 2.5, 4)]) == [
        [0, 1], [1, 2]]
    assert overlapping_groups([Interval(1, 0, 1), Interval(3, 2, 4)]) == []
    write_scored_run(tmp_path / "runs" / "a", "predrnn", {"mse_per_frame": [10.0, 12.0]},
                     {"mse_per_frame": (10.0, 12.0)})
    write_scored_run(tmp_path / "runs" / "b", "convlstm", {"mse_per_frame": [10.5, 11.5]},
                     {"mse_per_frame": (10.0, 12.0)}, data="kth")
    main([str(tmp_path / "runs"), f"--out={tmp_path / 'out'}"])
    assert "not distinguishable" not in capsys.readouterr().out
    assert "## mse_per_frame" not in (tmp_path / "out" / "distinguishable.md").read_text()


def test_the_direction_of_each_metric():
    from predlearn.compare_intervals import higher_is_better

    assert {key: higher_is_better(key) for key in (
        "mse_per_frame", "bce_per_frame", "psnr", "ssim", "mse_per_frame[ir108]", "csi_20dBZ",
        "far_1mmh", "hss_30dBZ", "fss_20dBZ_5px", "crps", "brier_20dBZ", "spread_skill",
        "mystery")} == {
        "mse_per_frame": False, "bce_per_frame": False, "psnr": True, "ssim": True,
        "mse_per_frame[ir108]": False, "csi_20dBZ": True, "far_1mmh": False, "hss_30dBZ": True,
        "fss_20dBZ_5px": True, "crps": False, "brier_20dBZ": False, "spread_skill": None,
        "mystery": None}


def test_an_intervals_file_that_is_not_one(tmp_path):
    folder = write_run(tmp_path / "a", "predrnn", "mmnist", "mmnist", [10.0, 20.0])
    (folder / "test_intervals.csv").write_text("metric,value\nmse_per_frame,1\n")
    with pytest.raises(CompareError, match="has no column step, low, high, level"):
        load_runs([folder])
    (folder / "test_intervals.csv").write_text(f"{INTERVAL_HEADER}\nmse_per_frame,one,1,0,2,"
                                               "0.95,21,2,\n")
    with pytest.raises(CompareError, match="line 2"):
        load_runs([folder])
