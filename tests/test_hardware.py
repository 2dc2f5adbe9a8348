"""Native bf16 detection and ``--auto_bf16`` (the quickstart's automatic precision)."""

from __future__ import annotations

import pytest
from support import tiny_run

import predlearn.lightning_cli
from predlearn.cli import run_cli
from predlearn.hardware import cpu_flags, cpu_has_native_bf16

INTEL_AMX = "processor\t: 0\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile avx512_bf16\n"
AMD_ZEN4 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n"
OLD_XEON = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\nprocessor\t: 1\nflags : amx_bf16\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16\n"


@pytest.mark.parametrize(("cpuinfo", "native"), [
    (INTEL_AMX, True), (AMD_ZEN4, True), (OLD_XEON, False), (ARM, False),
])
def test_native_bf16_from_the_cpu_flags(tmp_path, cpuinfo, native):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert cpu_has_native_bf16(path) is native


def test_flags_of_the_first_cpu_and_no_file(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(OLD_XEON)
    assert cpu_flags(path) == {"fpu", "sse", "avx2", "avx512f"}  # the first CPU only
    assert cpu_flags(tmp_path / "missing") == set()
    assert not cpu_has_native_bf16(tmp_path / "missing")


@pytest.mark.slow
@pytest.mark.parametrize(("native", "auto", "expected"), [
    (True, "true", "bf16-mixed"), (False, "true", "32-true"), (True, "false", "32-true"),
])
def test_auto_bf16_picks_the_precision(mnist_root, tmp_path, monkeypatch,
                                       native, auto, expected):
    monkeypatch.setattr(predlearn.lightning_cli, "cpu_has_native_bf16", lambda: native)
    cli = run_cli(["fit", *tiny_run(mnist_root, tmp_path, "--trainer.max_steps=1",
                                    "--trainer.limit_val_batches=0", "--figures.enabled=false",
                                    f"--auto_bf16={auto}")])
    assert cli.trainer.precision == expected
