"""The own-data benchmark (``benchmarks/bench_own_data.py``) at a tiny size.

Timings and memory are not asserted against the claims: these tests check that the archives it
writes are what it says (size, frames that move, a time coordinate, holes when sparse) and that
one run gives every figure for both sizes and formats and leaves no archive behind.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench_own_data

    return bench_own_data


def test_the_npy_archive_has_its_size_and_moving_frames(bench, tmp_path):
    frames = bench.frame_count(0.002)  # 2 MB
    path = tmp_path / "a.npy"
    bench.write_npy(path, frames, chunk=100)
    apparent, _ = bench.disk_sizes(path)
    assert apparent == pytest.approx(2e6, rel=0.1)
    array = np.load(path, mmap_mode="r")
    assert array.shape == (frames, 64, 64) and array.dtype == np.uint8
    assert array[-1].any() and not np.array_equal(array[0], array[1])
    assert (array[:50] == 255).any()  # the moving square


def test_a_sparse_npy_leaves_holes(bench, tmp_path):
    path = tmp_path / "a.npy"
    bench.write_npy(path, 2000, chunk=250, sparse=4)  # chunks 0 and 4 of 8 written
    array = np.load(path, mmap_mode="r")
    assert array[:250].any() and not array[250:1000].any() and array[1000:1250].any()


def test_the_zarr_archive_reads_as_frames_with_a_time_coordinate(bench, tmp_path):
    pytest.importorskip("zarr")
    xarray = pytest.importorskip("xarray")
    path = tmp_path / "a.zarr"
    bench.write_zarr(path, 300, chunk=100, zarr_chunk=64)  # appends of 128 frames
    data = xarray.open_zarr(path, chunks=None, consolidated=False)
    assert dict(data["frames"].sizes) == {"time": 300, "y": 64, "x": 64}
    steps = np.diff(data["time"].values)
    assert (steps == np.timedelta64(5, "m")).all()
    expected = np.concatenate([block for _, block in bench.blocks(300, 300)])
    np.testing.assert_array_equal(data["frames"].values, expected)
    apparent, _ = bench.disk_sizes(path)
    assert apparent >= 300 * 64 * 64  # uncompressed


def test_the_scratch_folder_must_be_outside_the_repository(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--scratch", str(BENCHMARKS / "scratch")])
    assert "inside the repository" in capsys.readouterr().err


@pytest.mark.slow
def test_one_run_gives_every_figure_and_deletes_its_archives(bench, tmp_path):
    pytest.importorskip("zarr")
    scratch = tmp_path / "scratch"
    argv = ["--sizes-gb", "0.002", "0.004", "--hidden", "4", "--fit-steps", "2",
            "--batches", "3", "--warmup", "1", "--steps", "2", "--step-warmup", "1",
            "--chunk-mb", "1", "--scratch", str(scratch), "--output", str(tmp_path / "out.md")]
    args = bench.parse_args(argv)
    rows = bench.run(args)
    assert [(r["format"], r["size_gb"]) for r in rows] == [
        ("npy", 0.002), ("zarr", 0.002), ("npy", 0.004), ("zarr", 0.004)]
    for row in rows:
        assert row["bytes"] == pytest.approx(row["size_gb"] * 1e9, rel=0.1)
        assert row["rss_mib"] > 0 and row["anon_mib"] > 0 and row["state_mib"] > 0
        assert row["step_s"] > 0 and all(row["loader_s"][w] > 0 for w in (0, 2))
        assert row["deleted"]
    assert list(scratch.glob("frames-*")) == []  # every archive deleted after measuring
    table = bench.render(rows, args, argv)
    lines = [line for line in table.splitlines() if line.startswith(("| npy", "| zarr"))]
    assert len(lines) == 4 and all(line.count("|") == 10 for line in lines)
    cells = [[cell.strip() for cell in line.split("|")[1:3]] for line in lines]
    assert [(fmt, round(float(size.split()[0]), 3)) for fmt, size in cells] == [
        ("npy", 0.002), ("zarr", 0.002), ("npy", 0.004), ("zarr", 0.004)]
    assert "- command: `python benchmarks/bench_own_data.py --sizes-gb 0.002" in table
    assert "--scratch SCRATCH" in table and str(tmp_path / "scratch") not in table
    assert "peak RSS under 2 GiB at each size" in table
