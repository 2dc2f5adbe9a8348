"""Tiny radar files in the layouts of the real products (FMI PGM, KNMI HDF5, OPERA ODIM_H5)."""

from __future__ import annotations

import calendar
import gzip
import time
from pathlib import Path

import h5py
import numpy as np

from predlearn.datamodules.sealed import crc32, seal

FMI_COMMENTS = [
    "composite_area FIN",
    "projection_name SUOMI1",
    "radar KOR 1 21.6460 60.1280",
    "radar VAN 1 24.8730 60.2710",
    "obstime {obstime}",
    "producttype CAPPI",
    "productname LOWEST",
    "param CorrectedReflectivity",
    "metersperpixel_x 999.674053",
    "metersperpixel_y 999.62859",
    "projection radar {{",
    "type stereographic",
    "centrallongitude 25",
    "centrallatitude 90",
    "truelatitude 60",
    "bottomleft 18.600000 57.930000",
    "topright 34.903000 69.005000",
]


def epoch(stamp: str) -> int:
    """``YYYYMMDDHHMM`` (UTC) as seconds since the epoch."""
    return int(calendar.timegm(time.strptime(stamp, "%Y%m%d%H%M")))


def stamp_at(start: str, minutes: float) -> str:
    """``YYYYMMDDHHMM`` of ``start`` plus ``minutes``."""
    return time.strftime("%Y%m%d%H%M", time.gmtime(epoch(start) + int(minutes * 60)))


def fmi_name(stamp: str, gz: bool = True) -> str:
    return f"{stamp}_fmi.radar.composite.lowest_FIN_SUOMI1.pgm" + (".gz" if gz else "")


def write_fmi_pgm(
    folder: Path, pixels: np.ndarray, stamp: str, gz: bool = True, obstime: bool = True,
    name: str | None = None, header: bytes | None = None,
) -> Path:
    """An FMI-style binary PGM: P5, '# key value' comments as in the real files, maxval 255."""
    pixels = np.asarray(pixels, dtype=np.uint8)
    rows, cols = pixels.shape
    comments = [c.format(obstime=stamp) for c in FMI_COMMENTS if obstime or "obstime" not in c]
    if header is None:
        header = (
            "P5\n" + "".join(f"# {c}\n" for c in comments) + f"{cols} {rows}\n255\n"
        ).encode()
    data = header + pixels.tobytes()
    path = Path(folder) / (name or fmi_name(stamp, gz))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def knmi_time(stamp: str) -> bytes:
    """KNMI's ``26-AUG-2010;00:00:00.000`` form of ``YYYYMMDDHHMM``."""
    return time.strftime("%d-%b-%Y;%H:%M:%S.000", time.gmtime(epoch(stamp))).upper().encode()


def write_knmi_h5(
    folder: Path, raw: np.ndarray, stamp: str, formula: str = "GEO=0.01*PV+0.0",
    with_data: bool = True, name: str | None = None,
) -> Path:
    """A KNMI RAD_NL25 layout: image1/image_data uint16, calibration and overview attributes."""
    path = Path(folder) / (name or f"RAD_NL25_RAP_5min_{stamp}.h5")
    raw = np.asarray(raw, dtype=np.uint16)
    with h5py.File(path, "w") as h5:
        image = h5.create_group("image1")
        image.attrs["image_geo_parameter"] = np.bytes_(b"ACCUMULATED_PRECIPITATION_[MM]")
        image.attrs["image_product_name"] = np.bytes_(b"RAD_NL25_RAU_H1.5_5mi")
        if with_data:
            image.create_dataset("image_data", data=raw)
        calibration = image.create_group("calibration")
        calibration.attrs["calibration_flag"] = np.bytes_(b"Y")
        calibration.attrs["calibration_formulas"] = np.bytes_(formula.encode())
        calibration.attrs["calibration_missing_data"] = np.array([65535], np.int32)
        calibration.attrs["calibration_out_of_image"] = np.array([65535], np.int32)
        overview = h5.create_group("overview")
        overview.attrs["product_datetime_start"] = np.array(
            [knmi_time(stamp_at(stamp, -5))], dtype="S25")
        overview.attrs["product_datetime_end"] = np.array([knmi_time(stamp)], dtype="S25")
        overview.attrs["product_group_name"] = np.bytes_(b"RAD_NL25_RAU_5mi")
        geographic = h5.create_group("geographic")
        geographic.attrs["geo_number_columns"] = np.array([raw.shape[1]], np.int32)
        geographic.attrs["geo_number_rows"] = np.array([raw.shape[0]], np.int32)
    return path


NODATA, UNDETECT = -9999000.0, -8888000.0


def write_odim_h5(
    folder: Path, data: np.ndarray, stamp: str, quantity: str = "RATE", gain: float = 1.0,
    offset: float = 0.0, with_data: bool = True, name: str | None = None,
) -> Path:
    """An OPERA ODIM_H5 v2.0 composite: dataset1/data1/data float64, what groups with times."""
    path = Path(folder) / (name or f"T_PAAH21_C_EUOC_{stamp}00.hdf")
    start, end = stamp_at(stamp, -10), stamp_at(stamp, 5)
    with h5py.File(path, "w") as h5:
        h5.attrs["Conventions"] = np.bytes_(b"ODIM_H5/V2_0")
        what = h5.create_group("what")
        what.attrs["date"] = np.bytes_(stamp[:8].encode())
        what.attrs["time"] = np.bytes_((stamp[8:] + "00").encode())
        what.attrs["object"] = np.bytes_(b"COMP")
        what.attrs["version"] = np.bytes_(b"H5rad 2.0")
        for index, q in ((1, quantity), (2, "QIND")):
            group = h5.create_group(f"dataset{index}")
            group.create_group("data1")
            if with_data:
                group["data1"].create_dataset("data", data=np.asarray(data, np.float64))
            dw = group.create_group("what")
            for key, value in (("startdate", start[:8]), ("starttime", start[8:] + "00"),
                               ("enddate", end[:8]), ("endtime", end[8:] + "00"),
                               ("product", "COMP"), ("quantity", q)):
                dw.attrs[key] = np.bytes_(value.encode())
            dw.attrs["gain"] = np.float64(gain)
            dw.attrs["offset"] = np.float64(offset)
            dw.attrs["nodata"] = np.float64(NODATA)
            dw.attrs["undetect"] = np.float64(UNDETECT)
    return path


def write_fmi_series(
    folder: Path, count: int, start: str = "201609281445", shape: tuple[int, int] = (30, 40),
    step_minutes: float = 5, gap_after: int | None = None, gap_minutes: float = 60, seed: int = 0,
) -> list[Path]:
    """``count`` FMI files every ``step_minutes``; with ``gap_after`` a gap after that frame."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths, minutes = [], 0.0
    for index in range(count):
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        paths.append(write_fmi_pgm(folder, pixels, stamp_at(start, minutes)))
        minutes += step_minutes + (gap_minutes if gap_after is not None and index + 1 == gap_after
                                   else 0)
    return paths


def write_prepared(path: Path, timestamps: np.ndarray, size: int = 8, sealed: bool = True,
                   frames: np.ndarray | None = None) -> Path:
    """A prepared radar file (layout of ``predlearn prepare radar``) whose frame i is all i % 256
    (or ``frames``), with the completeness marker written last unless ``sealed`` is false."""
    stamps = np.asarray(timestamps, dtype=np.int64)
    if frames is None:
        values = (np.arange(len(stamps)) % 256).astype(np.uint8)[:, None, None]
        frames = np.broadcast_to(values, (len(stamps), size, size))
    with h5py.File(path, "w") as h5:
        h5["frames"] = frames
        h5["timestamps"] = stamps
        h5["valid_fraction"] = np.ones(len(stamps), np.float32)
        # the value mapping `prepare radar` records (its defaults: 0..70 dBZ, Marshall-Palmer)
        h5.attrs.update({"dbz_min": 0.0, "dbz_max": 70.0, "zr_a": 200.0, "zr_b": 1.6})
        if sealed:
            seal(h5, {"frames": crc32(frames), "timestamps": crc32(stamps)})
    return path
