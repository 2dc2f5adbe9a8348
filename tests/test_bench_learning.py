"""``benchmarks/bench_learning.py``: recipes side by side, scored on one fixed test set, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mnist_fixtures import write_fake_mnist

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_learning

    return bench_learning


def test_schedules_are_the_authors_scaled_to_the_run(bench):
    model, options = bench.recipe("reverse-sampling", 2000)  # 1/40 of 80,000
    assert model == "predrnn"
    schedule = options["sampling"]
    assert (schedule.start, schedule.end, schedule.alpha) == (625, 1250, 62.5)
    _, options = bench.recipe("scheduled-sampling", 2000)
    assert options["sampling"].stop == 1250 and options["sampling"].decay == 1 / 1250
    assert bench.recipe("predrnn_v2", 2000)[0] == "predrnn_v2"
    assert bench.recipe("paper", 2000) == ("predrnn", {"loss": "l1+l2"})
    with pytest.raises(SystemExit, match="unknown recipe 'adam'"):
        bench.recipe("adam", 2000)


def test_baselines_against_a_hand_computation(bench):
    args = type("Args", (), {"context": 1, "horizon": 2})()
    test = torch.zeros(1, 3, 1, 2, 2)
    test[0, 0] = 1.0  # observed frame: all ones
    test[0, 1, 0, 0, 0] = 0.5  # targets: one pixel at 0.5, then zeros
    reference = bench.baselines(test, args)
    assert reference["all_black"] == pytest.approx(0.25 / 2)  # per frame: (0.25 + 0) / 2
    assert reference["repeat_last"] == pytest.approx((0.25 + 3 + 4) / 2)


@pytest.mark.slow
def test_runs_round_robin_writes_json_and_resumes(bench, tmp_path):
    mnist = write_fake_mnist(tmp_path / "mnist", n_train=10, n_test=40)
    common = ["--recipes", "paper", "reverse-sampling", "--eval-every", "2",
              "--test-sequences", "4", "--hidden", "4", "--mnist-root", str(mnist),
              "--json", str(tmp_path / "out.json"), "--plot", str(tmp_path / "out.png"),
              "--state", str(tmp_path / "state.pt"), "--precision", "fp32"]
    assert bench.main(["--steps", "2", *common]) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    assert [p["step"] for p in first["runs"]["paper"]["curve"]] == [0, 2]
    # both recipes start from the same weights: the same score before training
    assert first["runs"]["paper"]["curve"][0]["mse"] == pytest.approx(
        first["runs"]["reverse-sampling"]["curve"][0]["mse"])
    assert first["reference"]["all_black"] > 0
    # a longer run resumes from the saved state instead of starting again
    assert bench.main(["--steps", "4", *common]) == 0
    second = json.loads((tmp_path / "out.json").read_text())
    curve = second["runs"]["reverse-sampling"]["curve"]
    assert [p["step"] for p in curve] == [0, 2, 4]
    assert curve[1] == first["runs"]["reverse-sampling"]["curve"][1]
    assert curve[2]["seconds"] > curve[1]["seconds"] > 0
    assert len(curve[2]["mse_per_step"]) == 10
    assert (tmp_path / "out.png").stat().st_size > 5000
