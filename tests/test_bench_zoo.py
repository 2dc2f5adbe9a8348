"""``benchmarks/bench_zoo.py``: every model of configs/mmnist-small under one wall-clock budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mnist_fixtures import write_fake_mnist

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_zoo

    return bench_zoo


def test_predictors_are_the_configs_own(bench):
    assert {"predrnn", "simvp", "simvp_gsta", "tau", "e3d_lstm", "dfn"} <= set(bench.zoo())
    gsta = bench.build_predictor("simvp_gsta", context=10)
    assert type(gsta).__name__ == "SimVP" and gsta.translator_name == "gsta"
    predrnn = bench.build_predictor("predrnn", context=10)
    assert list(predrnn.hidden_channels) == [32, 32] and predrnn.patch_size == 4


def run(name, parameters, seed, points):
    return {"parameters": parameters, "steps": points[-1][0], "seconds": points[-1][1],
            "curve": [{"step": step, "seconds": seconds, "mse": mse, "ssim": ssim,
                       "mse_per_step": [mse]} for step, seconds, mse, ssim in points]}, seed


def result(seed, **runs):
    return {"seed": seed, "reference": {"all_black": 190.0, "repeat_last": 300.0},
            "runs": dict(runs)}


def test_table_averages_seeds_and_puts_the_best_first(bench):
    a = result(0, predrnn=run("predrnn", 268_000, 0, [(0, 0, 200, 0), (100, 50.0, 120, 0.5)])[0],
               dfn=run("dfn", 20_000, 0, [(0, 0, 200, 0), (400, 40.0, 150, 0.4)])[0])
    b = result(1, predrnn=run("predrnn", 268_000, 1, [(0, 0, 200, 0), (80, 40.0, 110, 0.7)])[0])
    lines = bench.table([a, b]).splitlines()
    assert lines[2].startswith("| `predrnn` | 115.0 | 120.0 / 110.0 | 0.600 | 268 k | 0.50 | 90 |")
    assert lines[3].startswith("| `dfn` | 150.0 |  | 0.400 | 20 k | 0.10 | 400 |")


@pytest.mark.slow
def test_runs_to_its_budget_writes_json_and_resumes(bench, tmp_path):
    mnist = write_fake_mnist(tmp_path / "mnist", n_train=10, n_test=40)
    common = ["--models", "dfn", "convlstm", "--test-sequences", "4", "--mnist-root", str(mnist),
              "--json", str(tmp_path / "out.json"), "--state", str(tmp_path / "state.pt"),
              "--precision", "fp32", "--threads", "1"]
    assert bench.main(["--seconds", "0.4", "--eval-every", "0.2", *common]) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    for name in ("dfn", "convlstm"):
        curve = first["runs"][name]["curve"]
        assert curve[0]["step"] == 0 and curve[-1]["seconds"] >= 0.4
        assert first["runs"][name]["steps"] == curve[-1]["step"] > 0
    # a larger budget resumes each model where it stopped (a first step can overrun the budget)
    budget = max(run["seconds"] for run in first["runs"].values()) + 0.3
    assert bench.main(["--seconds", str(budget), "--eval-every", "0.3", *common]) == 0
    second = json.loads((tmp_path / "out.json").read_text())
    curve = second["runs"]["dfn"]["curve"]
    assert curve[:len(first["runs"]["dfn"]["curve"])] == first["runs"]["dfn"]["curve"]
    assert curve[-1]["seconds"] >= budget and curve[-1]["step"] > first["runs"]["dfn"]["steps"]
    assert len(curve[-1]["mse_per_step"]) == 10
    # the table and the plot from the saved results alone
    assert bench.main(["--table", str(tmp_path / "out.json"), "--plot",
                       str(tmp_path / "out.png")]) == 0
    assert (tmp_path / "out.png").stat().st_size > 5000


def test_unknown_models_are_named(bench):
    with pytest.raises(SystemExit, match="no config for predrn in .*known: .*predrnn"):
        bench.main(["--models", "predrn"])
