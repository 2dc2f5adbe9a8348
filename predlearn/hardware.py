"""What the machine computes fast: used to pick bf16 automatically on CPUs that have it."""

from __future__ import annotations

from pathlib import Path

#: /proc/cpuinfo flags of x86 CPUs with bf16 arithmetic in hardware (Intel AMX, AVX512-BF16 on
#: Intel Cooper Lake and later, AMD Zen 4 and later)
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The feature flags of the first CPU in ``cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bf16 natively, so that bf16-mixed training is faster than fp32
    (about 2x for PredRNN on a 2-core AMD EPYC with avx512_bf16; docs/benchmarks.md). Without it
    bf16 is emulated and slower: False on CPUs without these flags, and off Linux."""
    return bool(cpu_flags(cpuinfo) & set(NATIVE_BF16_FLAGS))


__all__ = ["NATIVE_BF16_FLAGS", "cpu_flags", "cpu_has_native_bf16"]
