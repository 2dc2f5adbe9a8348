"""The reader of KNMI's HDF5 precipitation (and reflectivity) products."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np

from predlearn.datamodules.radar_frame import (
    RadarFormatError,
    RadarFrame,
    attr_number,
    attr_text,
    open_h5,
    read_dataset,
    stamp_from_name,
    utc_seconds,
)

__all__ = ["read_knmi_h5"]

_FORMULA = re.compile(
    r"^\s*GEO\s*=\s*([-+0-9.eE]+)\s*\*\s*PV\s*(?:([-+])\s*([0-9.eE]+))?\s*$", re.IGNORECASE
)


def _knmi_time(h5: h5py.File) -> int | None:
    for group, key in (("image1", "image_datetime_valid"), ("overview", "product_datetime_end")):
        if group in h5 and key in h5[group].attrs:
            text = attr_text(h5[group].attrs[key])
            try:
                return utc_seconds(text[:20], "%d-%b-%Y;%H:%M:%S")
            except ValueError:
                continue
    return None


def _knmi_interval_minutes(h5: h5py.File) -> float:
    """Accumulation length from ``overview`` start/end times; 5 minutes if absent."""
    attrs = h5["overview"].attrs if "overview" in h5 else {}
    try:
        start = utc_seconds(attr_text(attrs["product_datetime_start"])[:20], "%d-%b-%Y;%H:%M:%S")
        end = utc_seconds(attr_text(attrs["product_datetime_end"])[:20], "%d-%b-%Y;%H:%M:%S")
    except (KeyError, ValueError):
        return 5.0
    return (end - start) / 60.0 if end > start else 5.0


def read_knmi_h5(path: str | os.PathLike) -> RadarFrame:
    """A KNMI precipitation product: ``image1/image_data`` through ``calibration_formulas``.

    ``GEO = a * PV + b`` gives mm accumulated over the product interval (5 minutes); it is
    returned as a rate in mm/h (mm * 60 / interval). ``calibration_missing_data`` and
    ``calibration_out_of_image`` (65535) are no data. Reflectivity products
    (``image_geo_parameter`` containing DBZ) are returned in dBZ. The time is
    ``image1/image_datetime_valid`` or ``overview/product_datetime_end``, else the file name.
    """
    with open_h5(path) as h5:
        if "image1/image_data" not in h5:
            raise RadarFormatError(f"{path}: KNMI HDF5 without the dataset 'image1/image_data'")
        raw = read_dataset(h5, "image1/image_data", path)
        if "image1/calibration" not in h5:
            raise RadarFormatError(f"{path}: KNMI HDF5 without the group 'image1/calibration'")
        calibration = h5["image1/calibration"].attrs
        if "calibration_formulas" not in calibration:
            raise RadarFormatError(
                f"{path}: KNMI HDF5 without the attribute 'image1/calibration/calibration_formulas'"
            )
        formula = attr_text(calibration["calibration_formulas"])
        match = _FORMULA.match(formula)
        if match is None:
            raise RadarFormatError(
                f"{path}: cannot parse calibration_formulas {formula!r} (expected 'GEO=a*PV+b')"
            )
        gain = float(match.group(1))
        offset = float(match.group(3) or 0.0) * (-1.0 if match.group(2) == "-" else 1.0)
        missing = {
            int(attr_number(calibration[key]))
            for key in ("calibration_missing_data", "calibration_out_of_image")
            if key in calibration
        } or {65535}
        parameter = attr_text(h5["image1"].attrs.get("image_geo_parameter", "")).upper()
        minutes = _knmi_interval_minutes(h5)
        stamp = _knmi_time(h5)
    if raw.ndim != 2:
        raise RadarFormatError(f"{path}: 'image1/image_data' has shape {raw.shape}, expected 2-D")
    stamp = stamp if stamp is not None else stamp_from_name(path)
    if stamp is None:
        raise RadarFormatError(
            f"{path}: no time (no 'overview/product_datetime_end', no YYYYMMDDHHMM in the name)"
        )
    values = gain * raw.astype(np.float64) + offset
    values[np.isin(raw, list(missing))] = np.nan
    if "DBZ" in parameter:
        return RadarFrame(values, "dBZ", stamp, "knmi_h5", str(path), parameter)
    if "PRECIP" not in parameter and parameter:
        raise RadarFormatError(
            f"{path}: unsupported KNMI image_geo_parameter {parameter!r} "
            "(expected accumulated precipitation [MM] or reflectivity [DBZ])"
        )
    return RadarFrame(values * 60.0 / minutes, "mm/h", stamp, "knmi_h5", str(path),
                      parameter or "PRECIPITATION")

