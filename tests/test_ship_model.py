"""``scripts/ship_model.py``: a trained run becomes a shipped model with its card and log."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from mnist_fixtures import write_fake_mnist
from support import load_module_from, tiny_run

import predlearn
from predlearn import pretrained_folder
from predlearn.cli import run_cli

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "ship_model.py"


def load_script():
    return load_module_from(SCRIPT, "ship_model")


@pytest.mark.slow
def test_a_run_becomes_a_shipped_model_with_card_and_log(tmp_path, monkeypatch):
    mnist = write_fake_mnist(tmp_path / "mnist", n_train=60, n_test=30)
    config = tmp_path / "config.yaml"
    config.write_text("seed_everything: 3\n")
    cli = run_cli(["fit", *tiny_run(mnist, tmp_path, "--trainer.max_steps=4",
                                    "--trainer.val_check_interval=2", "--test_after_fit=true")])
    best = cli.trainer.checkpoint_callback.best_model_path
    weights, results = tmp_path / "weights", tmp_path / "results"
    load_script().main([str(tmp_path / "run"), "--name", "tiny", "--checkpoint", best,
                        "--config", str(config), "--wall-time", "1 min",
                        "--machine", "test machine", "--weights-dir", str(weights),
                        "--results-dir", str(results)])

    monkeypatch.setattr(pretrained_folder, "SHIPPED_DIR", weights)
    module = predlearn.load_pretrained("tiny")
    reference = torch.load(best, weights_only=False)
    for name, value in reference["state_dict"].items():
        torch.testing.assert_close(module.state_dict()[name], value)
    shipped = json.loads((weights / "tiny" / "config.json").read_text())["training"]
    test_curves = next((tmp_path / "run").glob("**/test_curves.csv"))
    with test_curves.open() as handle:
        rows = list(csv.DictReader(handle))
    mse = sum(float(row["mse_per_frame"]) for row in rows) / len(rows)
    assert abs(shipped["test_scores"]["mse_per_frame"] - mse) < 1e-9
    assert not list(weights.glob("*.ckpt"))  # a folder only: weights without pickle

    card = (weights / "tiny" / "README.md").read_text()
    assert card.startswith("# tiny") and "seed\n  3" in card and "1 min on test machine" in card
    table = [line for line in card.splitlines() if line.startswith("| step ")]
    assert len(table) == 10  # one row per predicted step
    assert f"**{mse:.3f}**" in card
    with (results / "tiny_metrics.csv").open() as handle:
        logged = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in logged] == sorted(int(row["step"]) for row in logged)
    assert any(row.get("train/loss") for row in logged)
    assert (results / "tiny_test_predictions.png").stat().st_size > 1000


def test_shipping_again_keeps_the_earlier_sessions_rows_and_replaces_the_test(tmp_path):
    ship_model = load_script()
    earlier = tmp_path / "earlier.csv"
    earlier.write_text("epoch,step,train/loss,val/loss,test/mse_per_frame\n"
                       "0,49,0.5,,\n0,499,,0.3,\n0,0,,,90.0\n")
    run = tmp_path / "run"
    (run / "version_0").mkdir(parents=True)
    (run / "version_0" / "metrics.csv").write_text(
        "epoch,step,train/loss,val/loss,test/mse_per_frame\n0,499,,0.3,\n0,549,0.4,,\n")
    (run / "version_1").mkdir()
    (run / "version_1" / "metrics.csv").write_text("epoch,step,test/mse_per_frame\n0,0,85.0\n")

    rows = ship_model.merged_metrics(run, earlier_log=earlier)

    assert [(row["step"], row.get("train/loss"), row.get("val/loss"),
             row.get("test/mse_per_frame")) for row in rows] == [
        ("0", None, None, "85.0"), ("49", "0.5", "", ""), ("499", "", "0.3", ""),
        ("549", "0.4", "", "")]
