"""The steady-state benchmark (``benchmarks/bench_steady_state.py``) on its tiny workload.

Timings are not asserted: these tests check the configuration grammar, the summary statistics
against a hand computation, the denormal census, and that one run gives every figure with the
denormal mode each configuration asked for.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # spawned workers re-import it by name
    import bench_steady_state

    return bench_steady_state


def test_configuration_grammar(bench):
    config = bench.parse_config("authors:bf16+keep")
    assert (config.implementation, config.precision, config.flush) == ("authors", "bf16", False)
    assert bench.parse_config("predlearn:flush+fp32").flush is True


@pytest.mark.parametrize("text", ["predlearn:fp32", "tf:fp32+flush", "predlearn:fp32+bf16+keep",
                                  "predlearn:fp32+flush+ckpt"])
def test_bad_configurations_are_refused_with_the_grammar(bench, text):
    with pytest.raises(ValueError, match="IMPLEMENTATION:PRECISION\\+MODE"):
        bench.parse_config(text)


def test_authors_configurations_need_a_checkout(bench, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--configs", "authors:fp32+flush", "--authors-code", str(tmp_path)])
    assert "core/models/predrnn.py does not exist" in capsys.readouterr().err


def test_summary_statistics_by_hand(bench):
    config = bench.parse_config("predlearn:fp32+keep")
    seconds = [9.0, 1.0, 2.0, 3.0, 4.0] + [5.0] * 14 + [6.0, 8.0]  # 21 steps
    result = bench.Result(config, seconds=seconds, denormals=[0] * 20 + [7])
    summary = bench.summarize(result)
    assert summary["first"] == 9.0
    assert summary["first_steps"] == 2.5  # median of steps 2-5: 1, 2, 3, 4
    assert summary["median"] == 5.0
    assert summary["last_decile"] == 7.0  # the last 21 // 10 = 2 steps: 6 and 8
    assert summary["ratio"] == pytest.approx(7.0 / 2.5)
    assert summary["max_denormals"] == 7


def test_patches_follow_the_authors_layout(bench):
    frames = torch.arange(2 * 3 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 3, 1, 4, 4)
    patches = bench.to_patches(frames, 2)
    assert patches.shape == (2, 3, 2, 2, 4)
    # patch (row 1, column 0) of frame (0, 0) holds rows 2-3, columns 0-1, row-major
    assert patches[0, 0, 1, 0].tolist() == [8.0, 9.0, 12.0, 13.0]


def test_the_census_counts_denormal_outputs_by_operation(bench):
    def step():
        exponent = torch.full((10,), -90.0)  # exp(-90) ~ 8e-40 is denormal in float32
        return torch.exp(exponent) + torch.zeros(10)

    from predlearn.denormals import set_flush_denormal

    try:
        set_flush_denormal(False)  # IEEE: both operations output ten denormals
        assert bench.denormal_census(step) == {"exp": 10, "add": 10}
        set_flush_denormal(True)
        assert bench.denormal_census(step) == {}
    finally:
        set_flush_denormal(True)


def write_stand_in_authors_code(root: Path) -> Path:
    """A tiny stand-in with the authors' ``core.models.predrnn.RNN`` interface: patched frames
    (B, T, H, W, C) and a closed-loop mask in, (next frames, MSE over T - 1 outputs) out."""
    package = root / "core" / "models"
    package.mkdir(parents=True)
    (root / "core" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "predrnn.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class RNN(nn.Module):
            def __init__(self, num_layers, num_hidden, configs):
                super().__init__()
                channels = configs.patch_size ** 2 * configs.img_channel
                self.configs = configs
                self.conv = nn.Conv2d(channels, channels, 3, padding=1)

            def forward(self, frames, mask_true):
                x = frames.permute(0, 1, 4, 2, 3)
                outputs = [self.conv(x[:, t]) for t in range(self.configs.total_length - 1)]
                next_frames = torch.stack(outputs, 1).permute(0, 1, 3, 4, 2)
                return next_frames, nn.functional.mse_loss(next_frames, frames[:, 1:])
    """))
    return root


@pytest.mark.slow
def test_one_run_gives_every_figure(bench, tmp_path, capsys):
    authors = write_stand_in_authors_code(tmp_path / "authors")
    out = tmp_path / "steady.json"
    plot = tmp_path / "steady.png"
    code = bench.main(["--workload", "tiny", "--steps", "3", "--batch-size", "2", "--census",
                       "--configs", "predlearn:fp32+flush", "predlearn:bf16+keep",
                       "authors:fp32+keep", "--authors-code", str(authors),
                       "--json", str(out), "--plot", str(plot)])
    assert code == 0
    table = capsys.readouterr().out
    for name in ("predlearn:fp32+flush", "predlearn:bf16+keep", "authors:fp32+keep"):
        assert f"| {name} |" in table
    assert "last decile / steps 2-5" in table
    record = json.loads(out.read_text())
    by_name = {r["config"]["name"]: r for r in record["results"]}
    assert all(len(r["seconds"]) == 3 and r["summary"]["steps"] == 3 for r in by_name.values())
    assert by_name["predlearn:fp32+flush"]["census"] == {}  # flushed: no denormal anywhere
    assert plot.stat().st_size > 0
    assert not out.with_name(out.name + ".part").exists()
