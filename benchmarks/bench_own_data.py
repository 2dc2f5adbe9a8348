"""Own data at any size (``--data=frames``): a short fit on an archive of many GB keeps a small
peak resident size whatever the file's size, and the loader outruns the training step.

Per size (``--sizes-gb``, default 2 and 20) and format (a memory-mapped ``.npy``; a zarr 3 store
written through xarray) it writes one series of 64 x 64 uint8 frames (the shipped predrnn-mmnist2's
size) chunk by chunk from a generator, then: runs ``predlearn fit`` (the shipped model's predictor
and recipe, ``--fit-steps`` steps) in a fresh process and reads its peak RSS (``wait4``), with the
peaks of RssAnon / RssFile sampled from /proc (mapped pages of the archive count in RSS); reads
what the Python heap holds for a training loader (tracemalloc: the windows' index and the shuffled
sampler's permutation, which grow with the frames); times the shuffled training loader
(``--loader-workers``); then, in the same process, the shipped model's training step on one of
its batches (ratio step / batch; claim: >= 10). Each archive is deleted once measured, and its
pages are dropped from the page cache before each measurement (``--keep-cache`` keeps them).
``--sparse K`` writes every K-th ``.npy`` chunk only (the rest are holes).

    python benchmarks/bench_own_data.py                      # 2 and 20 GB, both formats
    python benchmarks/bench_own_data.py --sizes-gb 0.1 1 --fit-steps 5 --output /tmp/own.md
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import bench_common
import numpy as np

HERE = Path(__file__).resolve().parent
SHIPPED = "predrnn-mmnist2"
FORMATS = ("npy", "zarr")
FRAME = 64  # the shipped model's frames: 64 x 64, one channel (its model card)
GB, MIB = 10**9, 2**20
CONTEXT, HORIZON = 10, 10
#: integer options (all >= 1, except the warm-ups): default, help
INTS = {"sparse": (1, ".npy: write every K-th chunk only, the rest stay holes (1: all)"),
        "chunk_mb": (64, "MB of frames generated and written at once"),
        "zarr_chunk": (64, "frames per zarr chunk"),
        "fit_steps": (20, "--trainer.max_steps of each fit"),
        "batch_size": (8, "as the shipped model's training"),
        "stride": (1, "--data.stride (frames between window starts)"),
        "batches": (50, "loader batches timed"), "warmup": (5, "loader batches before those"),
        "steps": (5, "training steps timed"), "step_warmup": (1, "training steps before those")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--sizes-gb", nargs="+", type=float, default=[2.0, 20.0])
    add("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    add("--scratch", type=Path, default=Path("/tmp/predlearn-bench-own-data"),
        help="where the archives are written (and deleted); never inside the repository")
    add("--output", type=Path, default=HERE / "results" / "own_data.md")
    for name, (default, text) in INTS.items():
        add(f"--{name.replace('_', '-')}", type=int, default=default, help=text)
    add("--loader-workers", nargs="+", type=int, default=[0, 2])
    add("--hidden", nargs="+", type=int, default=None,
        help="hidden channels instead of the shipped model's (a smoke test)")
    add("--threads", type=int, default=None, help="torch.set_num_threads (and the fit's)")
    add("--precision", choices=("fp32", "bf16"), default="fp32")
    add("--keep-cache", action="store_true", help="leave the archive's pages in the page cache")
    args = parser.parse_args(argv)
    small = [name for name in INTS if getattr(args, name) < (0 if "warmup" in name else 1)]
    if small or min(args.sizes_gb) <= 0:
        parser.error(f"too small: {', '.join(small) or '--sizes-gb'}")
    args.scratch = args.scratch.expanduser().resolve()
    if args.scratch.is_relative_to(HERE.parent):
        parser.error(f"--scratch {args.scratch} lies inside the repository; choose another")
    return args


def log(text: str) -> None:
    print(f"[own-data {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def frame_count(size_gb: float) -> int:
    return max(4 * (CONTEXT + HORIZON), round(size_gb * GB / FRAME**2))


def blocks(frames: int, chunk: int):
    """(first frame, uint8 block (n, 64, 64)) of the series, ``chunk`` frames at a time."""
    yy, xx = np.ogrid[:FRAME, :FRAME]
    base, side = ((yy + xx) * 2).astype(np.uint8), FRAME // 4
    for start in range(0, frames, chunk):
        t = np.arange(start, min(start + chunk, frames))
        block = base[None] + (t % 256).astype(np.uint8)[:, None, None]  # wraps in uint8
        x0, y0 = ((t * 3) % (FRAME - side))[:, None, None], ((t * 5) % (FRAME - side))[:, None, None]
        block[(xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)] = 255
        yield start, block


def write_npy(path: Path, frames: int, chunk: int, sparse: int = 1) -> None:
    """``open_memmap`` writes the header and sizes the file (all holes); the chunks then go in by
    ``pwrite`` (no mapping in this process), every ``sparse``-th one only, and are synced."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                      shape=(frames, FRAME, FRAME))
    offset = array.offset
    del array
    with open(path, "r+b") as handle:
        for index, (start, block) in enumerate(blocks(frames, chunk)):
            if index % sparse == 0:
                written = os.pwrite(handle.fileno(), memoryview(block).cast("B"),
                                    offset + start * FRAME**2)
                assert written == block.nbytes, (written, block.nbytes)
        os.fsync(handle.fileno())


def write_zarr(path: Path, frames: int, chunk: int, zarr_chunk: int) -> None:
    """A zarr 3 store through xarray, appended block by block: ``frames`` (time, y, x),
    uncompressed (its size on disk is the data's), a ``time`` coordinate every 5 minutes."""
    import xarray

    chunk = max(zarr_chunk, chunk // zarr_chunk * zarr_chunk)  # whole zarr chunks per append
    first, step = np.datetime64("2000-01-01T00:00", "ns"), np.timedelta64(5, "m")
    for start, block in blocks(frames, chunk):
        times = first + np.arange(start, start + len(block)) * step
        data = xarray.Dataset({"frames": (("time", "y", "x"), block)}, coords={"time": times})
        if start == 0:
            encoding = {"frames": {"chunks": (zarr_chunk, FRAME, FRAME), "compressors": None},
                        "time": {"chunks": (chunk,)}}
            data.to_zarr(path, mode="w", encoding=encoding, zarr_format=3, consolidated=False)
        else:
            data.to_zarr(path, append_dim="time", consolidated=False)
    os.sync()


def files_of(path: Path) -> list[Path]:
    return [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]


def disk_sizes(path: Path) -> tuple[int, int]:
    """(apparent bytes, bytes allocated on disk) of a file or a store."""
    stats = [p.stat() for p in files_of(path)]
    return sum(s.st_size for s in stats), sum(s.st_blocks * 512 for s in stats)


def drop_cache(path: Path) -> None:
    """Drop this archive's pages (and no others) from the page cache."""
    for file in files_of(path):
        fd = os.open(file, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def shipped_recipe(hidden: list[int] | None) -> dict:
    """The shipped model's predictor config and recipe (``hidden``: other hidden channels)."""
    import predlearn

    shipped = predlearn.load_pretrained(SHIPPED)
    predictor = dict(shipped.predictor.config["init_args"])
    predictor["hidden_channels"] = list(hidden or predictor["hidden_channels"])
    return {"predictor": predictor, "learning_rate": shipped.learning_rate,
            "loss": shipped.loss_name, "loss_frames": shipped.loss_frames,
            "sampling": None if shipped.sampling is None else shipped.sampling.config}


def fit_command(archive: Path, fmt: str, recipe: dict, args: argparse.Namespace) -> list[str]:
    p, steps, sampling = recipe["predictor"], args.fit_steps, recipe["sampling"]
    return [
        sys.executable, "-m", "predlearn.cli", "fit", "--model=predrnn",
        f"--model.predictor.hidden_channels=[{','.join(map(str, p['hidden_channels']))}]",
        f"--model.predictor.kernel_size={p['kernel_size']}",
        f"--model.predictor.patch_size={p['patch_size']}",
        f"--model.learning_rate={recipe['learning_rate']}", f"--model.loss={recipe['loss']}",
        f"--model.loss_frames={recipe['loss_frames']}",
        *([f"--model.sampling={sampling['class_path']}"] if sampling else []),
        *(f"--model.sampling.{k}={v}" for k, v in (sampling or {}).get("init_args", {}).items()),
        "--data=frames", f"--data.path={archive}", *(["--data.layout=THW"] if fmt == "npy" else []),
        f"--data.stride={args.stride}", f"--data.batch_size={args.batch_size}",
        "--data.num_workers=0", f"--trainer.max_steps={steps}",
        f"--trainer.val_check_interval={steps}", "--trainer.check_val_every_n_epoch=null",
        "--trainer.limit_val_batches=2", "--trainer.logger=false",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.accelerator=cpu", "--trainer.devices=1",
        f"--trainer.default_root_dir={args.scratch / 'runs'}",
        f"--trainer.precision={'bf16-mixed' if args.precision == 'bf16' else '32-true'}",
        "--figures.enabled=false", "--seed_everything=0"]


def measure_process(command: list[str], log_path: Path, threads: int | None) -> dict:
    """Run ``command``: its peak RSS (``wait4``) and the sampled peaks of RssAnon / RssFile, MiB."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    env.update({"OMP_NUM_THREADS": str(threads)} if threads else {})
    peaks, done = {"RssAnon": 0, "RssFile": 0}, threading.Event()
    with open(log_path, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   cwd=log_path.parent)

        def sample() -> None:
            while not done.is_set():
                try:
                    lines = Path(f"/proc/{process.pid}/status").read_text().splitlines()
                except OSError:
                    return
                for key, _, value in (line.partition(":") for line in lines):
                    if key in peaks:
                        peaks[key] = max(peaks[key], int(value.split()[0]))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(process.pid, 0)
        done.set()
        sampler.join()
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-20:])
        raise RuntimeError(f"the fit failed (exit {process.returncode}):\n{tail}")
    return {"rss_mib": usage.ru_maxrss / 1024, "anon_mib": peaks["RssAnon"] / 1024,
            "file_mib": peaks["RssFile"] / 1024}


def train_loader(archive: Path, fmt: str, workers: int, args: argparse.Namespace):
    from predlearn.datamodules.frames import FramesDataModule

    return FramesDataModule(str(archive), layout="THW" if fmt == "npy" else None,
                            stride=args.stride, batch_size=args.batch_size, num_workers=workers,
                            context_frames=CONTEXT, horizon=HORIZON).train_dataloader()


def loader_state_mib(archive: Path, fmt: str, args: argparse.Namespace) -> float:
    """MiB the Python heap holds for a training loader at its first batch (tracemalloc): the
    windows' index and the shuffled sampler's permutation, which grow with the frames."""
    tracemalloc.start()
    try:
        iterator = iter(train_loader(archive, fmt, 0, args))
        next(iterator)
        return tracemalloc.get_traced_memory()[0] / MIB
    finally:
        tracemalloc.stop()


def loader_seconds(archive: Path, fmt: str, workers: int, args: argparse.Namespace):
    """Seconds per batch of the training loader, and its last batch."""
    iterator = iter(train_loader(archive, fmt, workers, args))
    for _ in range(args.warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(args.batches):
        batch = next(iterator)
    seconds = (time.perf_counter() - start) / args.batches
    del iterator  # stops the workers
    return seconds, batch


def step_seconds(batch, recipe: dict, args: argparse.Namespace) -> float:
    """Median seconds of the shipped model's training step (forward, loss, backward, Adam)."""
    import torch

    from predlearn import create_model
    from predlearn.module import PredictiveModule

    torch.manual_seed(0)
    module = PredictiveModule(create_model("predrnn", **recipe["predictor"]),
                              learning_rate=recipe["learning_rate"], loss=recipe["loss"],
                              loss_frames=recipe["loss_frames"], sampling=recipe["sampling"],
                              metrics=("mse",))
    module.setup("fit")  # flushes denormals, as training does
    module.train()
    optimizer = torch.optim.Adam(module.parameters(), lr=recipe["learning_rate"])
    seconds = []
    for step in range(args.step_warmup + args.steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            loss, _ = module.training_loss(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[args.step_warmup:])


def measure(archive: Path, fmt: str, recipe: dict, args: argparse.Namespace) -> dict:
    """Peak RSS of a fit, loader seconds per batch and training-step seconds on ``archive``."""
    drop_cache(archive)
    log(f"{archive.name}: fit, {args.fit_steps} steps, in a fresh process")
    row = measure_process(fit_command(archive, fmt, recipe, args),
                          args.scratch / f"fit-{archive.name}.log", args.threads)
    row["state_mib"], row["loader_s"] = loader_state_mib(archive, fmt, args), {}
    for workers in args.loader_workers:
        if not args.keep_cache:
            drop_cache(archive)
        row["loader_s"][workers], batch = loader_seconds(archive, fmt, workers, args)
    log(f"{archive.name}: training steps")
    row["step_s"] = step_seconds(batch, recipe, args)
    return row


def run(args: argparse.Namespace) -> list[dict]:
    """Write, measure and delete each archive in turn; one row per archive."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads_used, args.recipe = torch.get_num_threads(), shipped_recipe(args.hidden)
    args.scratch.mkdir(parents=True, exist_ok=True)
    chunk, rows = max(1, args.chunk_mb * 10**6 // FRAME**2), []
    for size in args.sizes_gb:
        for fmt in args.formats:
            archive, frames = args.scratch / f"frames-{size:g}gb.{fmt}", frame_count(size)
            remove(archive)
            log(f"writing {archive.name}: {frames} frames ({size:g} GB)")
            start = time.perf_counter()
            try:
                if fmt == "npy":
                    write_npy(archive, frames, chunk, args.sparse)
                else:
                    write_zarr(archive, frames, chunk, args.zarr_chunk)
                row = {"format": fmt, "size_gb": size, "frames": frames,
                       "write_s": time.perf_counter() - start}
                row["bytes"], row["disk_bytes"] = disk_sizes(archive)
                row.update(measure(archive, fmt, args.recipe, args))
            finally:
                remove(archive)
            row["deleted"] = not archive.exists()
            log(f"done: {row}")
            rows.append(row)
    shutil.rmtree(args.scratch / "runs", ignore_errors=True)
    return rows


def render(rows: list[dict], args: argparse.Namespace, argv: list[str]) -> str:
    """The results as Markdown: what ran, the table, and the claims checked."""
    workers, recipe, p = args.loader_workers, args.recipe, args.recipe["predictor"]
    names = " / ".join(f"w{w}" for w in workers)
    shown = ["SCRATCH" if before == "--scratch" else
             "--scratch=SCRATCH" if value.startswith("--scratch=") else value
             for before, value in zip(["", *argv], argv)]
    npy = (f"every {args.sparse}th chunk written, the rest holes (sparse)" if args.sparse > 1
           else "written in full")
    lines = [
        "# Own data at scale: peak RSS of a short fit, loader vs training step", "",
        *(f"- {line}" for line in bench_common.describe_machine("cpu", args.threads_used)),
        f"- command: `{' '.join(['python benchmarks/bench_own_data.py', *shown])}`",
        (f"- model: {SHIPPED}'s predictor (PredRNN, hidden {p['hidden_channels']}, kernel "
         f"{p['kernel_size']}, patch {p['patch_size']}, {FRAME} x {FRAME}) and recipe (loss "
         f"{recipe['loss']} over {recipe['loss_frames']} frames, Adam), {args.precision}, batch "
         f"{args.batch_size}, {CONTEXT} -> {HORIZON} frames, --data.stride={args.stride}"),
        (f"- fit: `predlearn fit --data=frames`, {args.fit_steps} steps + 2 validation batches, "
         "0 loader workers, in a fresh process; peak RSS: wait4 ru_maxrss; anon / file: peaks "
         "of RssAnon / RssFile in /proc/<pid>/status, sampled every 0.05 s"),
        ("- loader state: the Python heap (tracemalloc) of a train_dataloader() at its first "
         "batch, in this process: the windows' index and the shuffled sampler's permutation"),
        (f"- loader: train_dataloader() (shuffled windows), {args.batches} batches timed after "
         f"{args.warmup}, per loader worker count; train step: median of {args.steps} after "
         f"{args.step_warmup}, in the same process right after"),
        (f"- archives: one series of uint8 frames, written chunk by chunk under --scratch, "
         f"deleted after measuring; .npy {npy}; zarr 3 through xarray, uncompressed, chunks of "
         f"{args.zarr_chunk} frames, a time coordinate every 5 min; page cache: "
         + ("kept" if args.keep_cache else "the archive's pages dropped before each measurement")),
        "", (f"| format | size GB (on disk) | frames | write s | fit peak RSS MiB (anon / file) "
             f"| loader state MiB | loader s/batch ({names}) | train step s "
             f"| step / batch ({names}) |"), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        loader = [r["loader_s"][w] for w in workers]
        ratios = " / ".join(f"{r['step_s'] / seconds:.0f}" for seconds in loader)
        lines.append(
            f"| {r['format']} | {r['bytes'] / GB:.4g} ({r['disk_bytes'] / GB:.4g}) | "
            f"{r['frames']} | {r['write_s']:.0f} | {r['rss_mib']:.0f} ({r['anon_mib']:.0f} / "
            f"{r['file_mib']:.0f}) | {r['state_mib']:.0f} | "
            f"{' / '.join(f'{s:.4f}' for s in loader)} | "
            f"{r['step_s']:.2f} | {ratios} |")
    lines.append("")
    for fmt in args.formats:
        mine = [r for r in rows if r["format"] == fmt]
        if len(mine) > 1:
            a, b = mine[0], mine[-1]
            slope = (b["rss_mib"] - a["rss_mib"]) / (b["size_gb"] - a["size_gb"])
            at = (f"; at this slope 2 GiB near {a['size_gb'] + (2048 - a['rss_mib']) / slope:.0f}"
                  " GB" if slope > 0 else "")
            lines.append(
                f"- {fmt}: from {a['size_gb']:g} to {b['size_gb']:g} GB, peak RSS "
                f"{b['rss_mib'] - a['rss_mib']:+.0f} MiB (anon {b['anon_mib'] - a['anon_mib']:+.0f}"
                f", file {b['file_mib'] - a['file_mib']:+.0f}; loader state "
                f"{b['state_mib'] - a['state_mib']:+.0f}): {slope:.1f} MiB per GB{at}")
    top = max(r["rss_mib"] for r in rows)
    low = min(r["step_s"] / r["loader_s"][w] for r in rows for w in workers)
    lines.append(f"- peak RSS under 2 GiB at each size: {'yes' if top < 2048 else 'NO'} "
                 f"(highest {top:.0f} MiB)")
    lines.append(f"- loader >= 10x faster than the train step: {'yes' if low >= 10 else 'NO'} "
                 f"(lowest ratio {low:.0f})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    text = render(run(args), args, argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
