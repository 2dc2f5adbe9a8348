"""The one-command benchmark (``benchmarks/bench_paper_sizes.py``) on its tiny workload.

Timings are not asserted (benchmarks measure, tests check behaviour): these tests check the
variant grammar, the convolution census behind the efficiency column and its FLOPs
(``torch.utils.flop_counter``) against hand counts, and that one run produces every figure of the
table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    # The script imports its sibling ``bench_common``; spawned workers re-import both by name.
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_paper_sizes

    return bench_paper_sizes


def test_peak_tensor_bytes_is_the_peak_of_the_running_sum(bench):
    def run():
        first = torch.empty(1000, 1000)  # 4,000,000 bytes
        second = torch.empty(500, 1000)  # 2,000,000: the peak, 6,000,000
        del first
        third = torch.empty(250, 1000)  # 1,000,000 more, after 4,000,000 were freed
        return second, third

    assert bench.bench_common.peak_tensor_bytes(run) == 6_000_000


@pytest.mark.parametrize("preload, expected", [
    ("", "glibc malloc"),
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "LD_PRELOAD libjemalloc.so.2"),
    ("/a/libtcmalloc_minimal.so.4:/b/libfoo.so", "LD_PRELOAD libtcmalloc_minimal.so.4 libfoo.so"),
])
def test_the_machine_line_names_the_allocator(bench, monkeypatch, preload, expected):
    monkeypatch.setenv("LD_PRELOAD", preload)
    assert bench.bench_common.allocator() == expected


def test_activation_checkpointing_cuts_the_peak_tensor_memory(bench):
    """A 4-layer PredRNN over 10 -> 10 steps keeps every step's activations for the backward
    pass; with ``checkpoint_steps`` only each step's input states stay (gradients are tested
    equal in test_precision.py)."""
    import torch.nn.functional as F

    import predlearn

    frames, targets = torch.rand(2, 10, 1, 32, 32), torch.rand(2, 10, 1, 32, 32)
    peaks = {}
    for checkpoint_steps in (False, True):
        torch.manual_seed(0)
        model = predlearn.create_model("predrnn", hidden_channels=[8] * 4, kernel_size=3,
                                       frame_size=(32, 32), checkpoint_steps=checkpoint_steps)

        def step(model=model):
            F.mse_loss(model(frames, 10), targets).backward()

        peaks[checkpoint_steps] = bench.bench_common.peak_tensor_bytes(step)
    assert peaks[True] < peaks[False] / 3, peaks


def test_variant_tokens(bench):
    variant = bench.parse_variant("bf16+cl+compile")
    assert (variant.precision, variant.channels_last, variant.compile, variant.textbook,
            variant.checkpoint_steps) == ("bf16", True, True, False, False)
    assert bench.parse_variant("textbook").precision == "fp32"
    forced = bench.parse_variant("fp32", checkpoint_all=True)
    assert forced.checkpoint_steps and forced.name == "fp32+ckpt"


@pytest.mark.parametrize(("text", "message"), [
    ("fp16", "unknown token"), ("fp32+bf16", "not both"), ("textbook+compile", "no compile"),
    ("", "unknown token"),
])
def test_bad_variants_are_named(bench, text, message):
    with pytest.raises(ValueError, match=message):
        bench.parse_variant(text)


def test_convolution_census_matches_a_hand_count(bench):
    """PredRNN, 2 layers: per step 5 convolutions per ST-LSTM cell and the 1x1 head.

    10 observed + 10 predicted frames are 19 steps (the output after the last observed frame is
    the first prediction), so 19 x (2 x 5 + 1) = 209 calls. The bottom layer's input convolution
    reads 10 observed frames (no gradient) and 9 fed-back predictions (gradient needed).
    """
    workload = bench.WORKLOADS["tiny"]
    model = bench.build_model(workload, bench.parse_variant("fp32"), seed=0)
    frames = torch.rand(2, 10, 1, *workload.frame_size)
    calls = bench.record_convolutions(model, lambda: model(frames, 10))
    assert sum(calls.values()) == 19 * (2 * 5 + 1)
    bottom_x = model.cells[0].conv_x
    by_grad = {needs: count for (module, _shape, needs, _), count in calls.items()
               if module is bottom_x}
    assert by_grad == {False: 10, True: 9}
    assert all(not m._forward_hooks for m in model.modules())  # the census removes its hooks
    seconds = bench.time_convolutions(calls, torch.device("cpu"),
                                      lambda: torch.autocast("cpu", enabled=False), reps=1,
                                      sync=lambda: None)
    assert seconds > 0 and math.isfinite(seconds)


@pytest.mark.parametrize("input_grad, passes", [(False, 1), (True, 1), (False, 2), (True, 3)])
def test_flop_counter_counts_one_convolution_as_by_hand(bench, input_grad, passes):
    """FlopCounterMode on one convolution, 2 x N x C_out x H_out x W_out x C_in x k x k forward;
    the backward adds one such count for the weight gradient and one for the input gradient
    (passes: 1 = forward alone, 2 = and the weight gradient, 3 = and the input gradient)."""
    conv = torch.nn.Conv2d(3, 4, 5, stride=2, padding=1)
    x = torch.rand(2, 3, 9, 11, requires_grad=input_grad)
    h_out, w_out = (9 + 2 - 5) // 2 + 1, (11 + 2 - 5) // 2 + 1  # 4 x 5
    forward = 2 * 2 * 4 * h_out * w_out * 3 * 5 * 5

    def run():
        out = conv(x)
        if passes > 1:
            out.sum().backward()

    assert bench.counted_convolution_flops(run) == forward * passes


def test_convolution_flops_match_a_hand_count(bench):
    """Each recorded call: 2 x outputs x weights-per-output forward, once more for the weight
    gradient and once more for the input gradient where the input needs one."""
    from collections import Counter

    same = torch.nn.Conv2d(3, 4, 5, padding=2)  # 'same': 6 x 7 outputs per channel
    valid = torch.nn.Conv2d(2, 6, 3, stride=2)  # (9 - 3) // 2 + 1 = 4 rows, (11 - 3) // 2 + 1 = 5
    calls = Counter({(same, (2, 3, 6, 7), True, "nchw"): 3,
                     (valid, (1, 2, 9, 11), False, "cl"): 2})
    same_forward = 2 * 2 * 4 * (6 * 7) * (3 * 5 * 5)
    valid_forward = 2 * 1 * 6 * (4 * 5) * (2 * 3 * 3)
    expected = 3 * 3 * same_forward + 2 * 2 * valid_forward
    assert bench.convolution_flops(calls) == expected
    assert same.weight.grad is None and same.weight.device.type == "cpu"  # counted on a copy


@pytest.mark.slow
def test_one_command_prints_every_figure(bench, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main([
        "--device", "cpu", "--workloads", "tiny", "--variants", "fp32", "textbook", "bf16+cl",
        "--iters", "1", "--warmup", "0", "--infer-iters", "1", "--ceiling-reps", "1",
        "--data-batches", "3", "--threads", "1", "--json", str(out),
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| tiny | fp32 | " in printed and "| tiny | textbook | " in printed
    assert "tiny: textbook / fused time = " in printed
    summary = json.loads(out.read_text())
    rows = {row["variant"]: row for row in summary["rows"]}
    assert set(rows) == {"fp32", "textbook", "bf16+cl"}
    for name, row in rows.items():
        assert row["error"] is None, row
        for key in ("train_s_per_100", "infer_ms_per_sequence", "peak_gib", "peak_tensor_gib"):
            assert row[key] > 0 and math.isfinite(row[key]), (name, key)
    for name in ("fp32", "bf16+cl"):  # the fused variants have a ceiling; textbook has none
        assert rows[name]["conv_calls"] == 209
        assert rows[name]["efficiency"] > 0
        assert rows[name]["conv_tflop_per_step"] > 0
        # GFLOP/s of the step and of the bare convolutions are the same arithmetic over the two
        # times, so their ratio is the efficiency.
        assert rows[name]["step_conv_gflops"] / rows[name]["bare_conv_gflops"] == pytest.approx(
            rows[name]["efficiency"])
    assert "efficiency" not in rows["textbook"]
    assert rows["textbook"]["ratio_to_reference"] > 0
    assert summary["data_batches_per_s"]["tiny"] > 0


@pytest.mark.slow
def test_a_failing_variant_is_reported_and_the_others_still_run(bench, capsys):
    code = bench.main([
        "--device", "cpu", "--workloads", "tiny", "--variants", "fp32", "fp32+compile",
        "--compile-backend", "no_such_backend", "--iters", "1", "--warmup", "0",
        "--infer-iters", "1", "--ceiling-reps", "1", "--data-batches", "2", "--threads", "1",
    ])
    assert code == 0  # one variant still measured
    out = capsys.readouterr().out
    assert "| tiny | fp32 | " in out
    failed = [line for line in out.splitlines() if line.startswith("| tiny | fp32+compile |")]
    assert len(failed) == 1 and "failed:" in failed[0] and "no_such_backend" in failed[0]


def test_a_workload_without_a_loader_prints_no_data_rate_table(bench):
    args = bench.parse_args(["--device", "cpu", "--workloads", "kth-p4", "--variants", "fp32",
                             "fp32+ckpt", "--horizon", "20"])
    results = [bench.Result("kth-p4", spec, params=1, train=[2.0, 4.0], infer=[8.0],
                            memory={"peak": 3 * 2**30, "delta": 2**30, "tensors": 2**30})
               for spec in args.variant_specs]
    printed = bench.render(bench.summarize(results, {}, args), results, args)
    assert "10 -> 20 frames" in printed
    assert "| kth-p4 | fp32+ckpt | 300.0 " in printed
    assert "training loader" not in printed


@pytest.mark.parametrize("batch, compared", [(8, True), (1, False)])
def test_radar_is_set_against_table_2_only_at_its_batch_size(bench, batch, compared):
    args = bench.parse_args(["--device", "cpu", "--workloads", "radar", "--variants", "fp32",
                             "--batch-size", str(batch)])
    results = [bench.Result("radar", args.variant_specs[0], params=1, train=[2.34],
                            infer=[8.0], memory={"peak": 2**30, "delta": 2**30,
                                                 "tensors": 2**30})]
    printed = bench.render(bench.summarize(results, {"radar": 100.0}, args), results, args)
    assert ("time x2.00" in printed) is compared
    assert ("Table 2" in printed) is compared


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_a_device_is_a_clear_error(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--device", "cuda", "--workloads", "tiny"])
    assert "--device cuda: torch" in capsys.readouterr().err


def test_the_generated_radar_file_is_one_the_radar_data_module_reads(bench, tmp_path):
    """The data-rate file of the radar workloads must pass the data module's checks (it once
    lacked the value mapping and the benchmark stopped at the radar workload)."""
    from predlearn.datamodules import RadarDataModule
    from predlearn.units import ValueMapping

    path = bench.write_synthetic_radar(tmp_path / "radar.h5", 500, (12, 12))
    module = RadarDataModule(path=str(path), batch_size=2)
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch.shape == (2, 20, 1, 12, 12)
    assert 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
    assert module.value_mapping == ValueMapping(low=0.0, high=70.0, zr_a=200.0, zr_b=1.6)
