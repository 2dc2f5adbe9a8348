"""``predlearn prepare radar``: one HDF5 file of 100 x 100 frames in [0, 1] from radar products.

Every product is brought to reflectivity (dBZ): FMI PGM and ODIM reflectivity are dBZ already;
rain rates (KNMI accumulations as mm/h, ODIM RATE) go through Marshall-Palmer Z = 200 R^1.6,
dBZ = 10 log10(Z). Reflectivity maps linearly to [0, 1] over ``[dbz_min, dbz_max]`` (default
0..70 dBZ; values outside clip; no rain / undetect is 0). Pixels without data take
``nodata_value`` (default 0, "no echo"); each frame's ``valid_fraction`` is stored. The crop box
(default: the whole image) is cut to its centre square and averaged down to ``size`` x ``size``
with ``torch.nn.functional.interpolate(mode="area")``. See docs/data.md, radar.

Nothing is lost: an output that is one of the sources (the same file, once paths are resolved)
is refused before anything is read (``OutputError``), and a previous output found in a source
folder is skipped; the file is written to a temporary name and renamed, with the completeness
marker (``predlearn.datamodules.sealed``, the CRC-32 of ``frames`` and ``timestamps``) written
last, so the radar data module can tell a complete file from a damaged one. Nothing is mixed:
one format, one grid and one product (ODIM ``RATE`` and ``DBZH`` are refused together, naming
both files); ODIM polar volumes are refused by the reader.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from predlearn.datamodules import sealed
from predlearn.datamodules.files import progress as progress_bar
from predlearn.datamodules.files import remove_stale_parts
from predlearn.datamodules.radar_formats import detect_format, read_frame
from predlearn.datamodules.radar_frame import RadarFormatError, RadarFrame
from predlearn.errors import BadFileError, DataNotFoundError, OptionValueError, require
from predlearn.files import refuse_overwriting, written_atomically

__all__ = [
    "FORMAT_VERSION",
    "RADAR_SUFFIXES",
    "collect_files",
    "crop_and_resize",
    "main",
    "prepare_radar",
    "rain_rate_to_dbz",
    "to_unit",
]

FORMAT_VERSION = 2  # 2: completeness marker with CRC-32s, Fletcher-32 chunks
DBZ_RANGE = (0.0, 70.0)
ZR_A, ZR_B = 200.0, 1.6  # Marshall-Palmer Z = a R^b (R in mm/h, Z in mm^6/m^3)
RADAR_SUFFIXES = (".pgm", ".pgm.gz", ".h5", ".hdf", ".hdf5")
RESIZE_METHOD = "area mean: torch.nn.functional.interpolate(mode='area') of the centre square"
ENCODING = "uint8 = round(255 * x), x in [0, 1]"


def rain_rate_to_dbz(rate: np.ndarray, a: float = ZR_A, b: float = ZR_B) -> np.ndarray:
    """Rain rate (mm/h) to reflectivity (dBZ) by Z = a R^b; R <= 0 gives -inf, NaN stays NaN."""
    rate = np.asarray(rate, dtype=np.float64)
    out = np.full(rate.shape, -np.inf)
    out[np.isnan(rate)] = np.nan
    wet = rate > 0
    out[wet] = 10.0 * np.log10(a) + 10.0 * b * np.log10(rate[wet])
    return out


def to_unit(
    frame: RadarFrame,
    dbz_range: tuple[float, float] = DBZ_RANGE,
    zr: tuple[float, float] = (ZR_A, ZR_B),
) -> np.ndarray:
    """A frame's values mapped to [0, 1] through dBZ over ``dbz_range``; NaN (no data) stays."""
    low, high = dbz_range
    require(high > low, "--dbz-min/--dbz-max",
            f"the dBZ range must be increasing; got {low:g} .. {high:g}", dbz_range)
    dbz = frame.values if frame.quantity == "dBZ" else rain_rate_to_dbz(frame.values, *zr)
    with np.errstate(invalid="ignore"):
        unit = (dbz - low) / (high - low)
    return np.clip(unit, 0.0, 1.0)  # -inf -> 0, NaN stays NaN


def _square(shape: tuple[int, int], crop: Sequence[int] | None) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the centre square of ``crop`` (default: the whole image)."""
    height, width = shape
    top, left, bottom, right = crop if crop is not None else (0, 0, height, width)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise OptionValueError(
            "--crop", f"{tuple(crop or ())} (top, left, bottom, right) is not inside the "
            f"{height} x {width} image", crop
        )
    side = min(bottom - top, right - left)
    top += (bottom - top - side) // 2
    left += (right - left - side) // 2
    return top, left, top + side, left + side


def crop_and_resize(
    unit: np.ndarray,
    size: int = 100,
    crop: Sequence[int] | None = None,
    nodata_value: float = 0.0,
) -> tuple[np.ndarray, float]:
    """Crop, cut the centre square, fill no data and area-average to (size, size).

    Returns the float32 image and the fraction of valid (non-NaN) source pixels in the square.
    """
    top, left, bottom, right = _square(unit.shape, crop)
    square = unit[top:bottom, left:right]
    valid = ~np.isnan(square)
    filled = np.where(valid, square, nodata_value)
    tensor = torch.from_numpy(np.ascontiguousarray(filled, dtype=np.float64))[None, None]
    resized = F.interpolate(tensor, size=(size, size), mode="area")[0, 0].numpy()
    return resized.astype(np.float32), float(valid.mean())


def collect_files(sources: Iterable[str | os.PathLike],
                  skip: str | os.PathLike | None = None) -> list[Path]:
    """The files named, and in folders (recursively) those ending in ``RADAR_SUFFIXES``.

    ``skip`` (the output file) is left out of what the folders hold, so that running the
    command again does not take its previous output for a source; named explicitly, it stays
    (and ``prepare_radar`` refuses it).
    """
    skipped = Path(skip).expanduser().resolve() if skip is not None else None
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and not p.name.startswith(".")
                and p.name.lower().endswith(RADAR_SUFFIXES) and p.resolve() != skipped
            )
            if not found:
                raise DataNotFoundError(
                    f"{path}: no radar files (names ending in {', '.join(RADAR_SUFFIXES)})"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataNotFoundError(f"{path}: no such file or folder")
    return files


def _is_prepared(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file written by ``prepare_radar`` (frames and timestamps)."""
    try:
        with h5py.File(path, "r") as h5:
            return "frames" in h5 and "timestamps" in h5
    except (OSError, ValueError):
        return False


def prepare_radar(
    sources: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    size: int = 100,
    crop: Sequence[int] | None = None,
    dbz_range: tuple[float, float] = DBZ_RANGE,
    nodata_value: float = 0.0,
    zr: tuple[float, float] = (ZR_A, ZR_B),
    progress: bool = True,
) -> Path:
    """Read radar files, map to [0, 1], crop and resize, and write the HDF5 file ``out``.

    All files must be of one format, one grid and one product (``RadarFormatError`` naming the
    first file that differs and the first file); times must be distinct (duplicates are
    rejected naming both files). ``out`` must not be one of the sources (``OutputError``,
    before anything is read). Frames are written in time order. Returns ``out``.
    """
    require(isinstance(size, int) and size >= 1, "--size",
            f"must be a positive whole number; got {size!r}", size)
    require(crop is None or len(crop) == 4, "--crop",
            f"takes 4 numbers (top, left, bottom, right); got {crop}", crop)
    require(0.0 <= nodata_value <= 1.0, "--nodata-value",
            f"must be in [0, 1]; got {nodata_value}", nodata_value)
    require(dbz_range[1] > dbz_range[0], "--dbz-min/--dbz-max",
            f"the dBZ range must be increasing; got {dbz_range[0]:g} .. {dbz_range[1]:g}",
            dbz_range)
    sources = list(sources)
    refuse_overwriting(out, [s for s in sources if Path(s).is_file()], "output (--out)")
    # a previous output in a source folder is skipped; any other file there is a source
    files = collect_files(sources, skip=out if _is_prepared(out) else None)
    if not files:
        raise DataNotFoundError("no radar files given")
    refuse_overwriting(out, files, "output (--out)")
    first_format, first_file = detect_format(files[0]), files[0]
    source_shape: tuple[int, ...] | None = None
    quantity = product = ""
    records: list[tuple[int, str, np.ndarray, float]] = []
    bar = progress_bar(len(files), "radar files", unit="file", disable=not progress)
    try:
        for path in files:
            source_format = detect_format(path)
            if source_format != first_format:
                raise RadarFormatError(
                    f"{path}: format {source_format}, but {first_file} is {first_format}; "
                    "prepare one format per file"
                )
            frame = read_frame(path, source_format)
            if source_shape is None:
                source_shape, quantity, product = frame.values.shape, frame.quantity, frame.product
            elif frame.values.shape != source_shape:
                raise RadarFormatError(
                    f"{path}: grid {frame.values.shape}, but {first_file} has {source_shape}"
                )
            elif frame.product != product:
                raise RadarFormatError(
                    f"{path}: product {frame.product} ({frame.quantity}), but {first_file} is "
                    f"{product} ({quantity}); prepare one product per file, e.g. RATE and DBZH "
                    "separately"
                )
            image, valid = crop_and_resize(to_unit(frame, dbz_range, zr), size, crop, nodata_value)
            encoded = np.rint(image * 255.0).clip(0, 255).astype(np.uint8)
            records.append((frame.timestamp, str(path), encoded, valid))
            bar.update(1)
    finally:
        bar.close()
    records.sort(key=lambda record: record[0])
    for before, after in pairwise(records):
        if before[0] == after[0]:
            raise BadFileError(
                f"duplicate time {_iso(before[0])}: {before[1]} and {after[1]}"
            )
    assert source_shape is not None
    square = _square(source_shape, crop)  # type: ignore[arg-type]
    out = Path(out)
    count = len(records)
    frames = np.stack([r[2] for r in records])
    stamps = np.array([r[0] for r in records], np.int64)
    valid_fraction = np.array([r[3] for r in records], np.float32)
    remove_stale_parts(out)
    with written_atomically(out) as temp, h5py.File(temp, "w") as h5:
        h5.create_dataset(
            "frames", data=frames, chunks=(min(count, 64), size, size), compression="gzip",
            compression_opts=4, fletcher32=True,
        )
        h5.create_dataset("timestamps", data=stamps)
        h5.create_dataset("valid_fraction", data=valid_fraction)
        h5.create_dataset("source_files", data=[r[1] for r in records],
                          dtype=h5py.string_dtype())
        attrs = {
            "format_version": FORMAT_VERSION,
            "source_format": first_format,
            "source_quantity": quantity,
            "source_product": product,
            "source_shape": list(source_shape),
            "mapping": (
                "x = clip((dBZ - dbz_min) / (dbz_max - dbz_min), 0, 1); rain rate R (mm/h) "
                "to dBZ by Z = zr_a * R**zr_b; no rain / undetect -> 0"
            ),
            "dbz_min": dbz_range[0],
            "dbz_max": dbz_range[1],
            "zr_a": zr[0],
            "zr_b": zr[1],
            "nodata_value": nodata_value,
            "crop": list(crop) if crop is not None else [0, 0, *source_shape],
            "square": list(square),
            "size": size,
            "resize_method": RESIZE_METHOD,
            "encoding": ENCODING,
            "timestamps_unit": "seconds since 1970-01-01 UTC",
            "source_files": "see the dataset 'source_files' (one name per frame)",
        }
        for key, value in attrs.items():
            h5.attrs[key] = value
        sealed.seal(h5, {"frames": sealed.crc32(frames), "timestamps": sealed.crc32(stamps),
                         "valid_fraction": sealed.crc32(valid_fraction)})
    return out


def _iso(stamp: int) -> str:
    return np.datetime64(int(stamp), "s").astype(str) + "Z"


def main(argv: list[str]) -> None:
    """``predlearn prepare radar SOURCE... --out radar.h5 [options]``."""
    from predlearn.errors import ArgumentParser  # its refusals are one-line UsageErrors

    parser = ArgumentParser(
        prog="predlearn prepare radar",
        description=(
            "Build one HDF5 file of radar frames in [0, 1] (uint8 = round(255 x)) from FMI PGM, "
            "KNMI HDF5 or ODIM_H5 files (format detected from the content)."
        ),
    )
    parser.add_argument("sources", nargs="+", help="radar files or folders (searched recursively)")
    parser.add_argument("--out", default="data/radar/radar.h5", help="output HDF5 file")
    parser.add_argument("--size", type=int, default=100, help="output side in pixels (paper: 100)")
    parser.add_argument(
        "--crop", type=int, nargs=4, metavar=("TOP", "LEFT", "BOTTOM", "RIGHT"), default=None,
        help="box in source pixels (rows TOP..BOTTOM-1, columns LEFT..RIGHT-1); default: the "
        "whole image; its centre square is used",
    )
    parser.add_argument("--dbz-min", type=float, default=DBZ_RANGE[0], help="dBZ mapped to 0")
    parser.add_argument("--dbz-max", type=float, default=DBZ_RANGE[1], help="dBZ mapped to 1")
    parser.add_argument(
        "--nodata-value", type=float, default=0.0,
        help="value in [0, 1] for pixels without data (default 0: no echo)",
    )
    parser.add_argument("--zr-a", type=float, default=ZR_A, help="Z = a R^b: a (Marshall-Palmer)")
    parser.add_argument("--zr-b", type=float, default=ZR_B, help="Z = a R^b: b (Marshall-Palmer)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    # refusals are predlearn errors: the console script prints them as one line
    out = prepare_radar(
        args.sources, args.out, args.size, args.crop, (args.dbz_min, args.dbz_max),
        args.nodata_value, (args.zr_a, args.zr_b), progress=not args.no_progress,
    )
    with h5py.File(out, "r") as h5:
        stamps = h5["timestamps"][()]
        print(
            f"wrote {out}: {len(stamps)} frames {h5['frames'].shape[1:]} "
            f"({h5.attrs['source_format']}), {_iso(stamps[0])} .. {_iso(stamps[-1])}"
        )
