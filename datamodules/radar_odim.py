"""The reader of OPERA ODIM_H5 composite images (rain rate or reflectivity)."""

from __future__ import annotations

import os

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

__all__ = ["ODIM_IMAGES", "ODIM_REFLECTIVITY", "read_odim_h5"]

ODIM_REFLECTIVITY = ("DBZH", "DBZV", "TH", "TV", "DBZ")
ODIM_IMAGES = ("COMP", "IMAGE")  # what/object of a 2-D image; PVOL, SCAN, ... are not frames


def read_odim_h5(path: str | os.PathLike) -> RadarFrame:
    """An ODIM_H5 composite: ``dataset1/data1/data`` * gain + offset (from ``dataset1/what``, or
    ``dataset1/data1/what``).

    ``undetect`` means measured, no echo: 0 mm/h, or -inf dBZ (both map to 0);
    ``nodata`` means not measured: NaN. Quantities: RATE (mm/h) or reflectivity (DBZH, TH, ...).
    The time is the root ``what`` date/time, else ``dataset1/what`` enddate/endtime. Only images
    are frames: the root ``what/object`` must be ``COMP`` or ``IMAGE``; a polar volume
    (``PVOL``), a scan or a file without ``what/object`` is refused.
    """
    with open_h5(path) as h5:
        root_what = h5["what"].attrs if "what" in h5 else {}
        kind = attr_text(root_what["object"]).upper() if "object" in root_what else ""
        if kind not in ODIM_IMAGES:
            found = f"what/object {kind!r}" if kind else "no what/object attribute"
            raise RadarFormatError(
                f"{path}: ODIM_H5 with {found}; only images (object COMP or IMAGE) are radar "
                "frames: a polar volume (PVOL) or scan must first be made into a composite "
                "image (e.g. with the BALTRAD or wradlib tools)"
            )
        if "dataset1/data1/data" not in h5:
            raise RadarFormatError(f"{path}: ODIM_H5 file without the dataset 'dataset1/data1/data'")
        what: dict[str, object] = {}
        for group in ("dataset1/what", "dataset1/data1/what"):  # the innermost wins
            if group in h5:
                what.update(h5[group].attrs.items())
        if "quantity" not in what:
            raise RadarFormatError(f"{path}: ODIM_H5 without a 'quantity' in dataset1 'what'")
        quantity = attr_text(what["quantity"]).upper()
        gain = attr_number(what.get("gain", 1.0))
        offset = attr_number(what.get("offset", 0.0))
        raw = read_dataset(h5, "dataset1/data1/data", path)
        stamp = None
        for group, date, clock in (("what", "date", "time"),
                                   ("dataset1/what", "enddate", "endtime")):
            attrs = h5[group].attrs if group in h5 else {}
            if date in attrs and clock in attrs:
                try:
                    stamp = utc_seconds(attr_text(attrs[date]) + attr_text(attrs[clock])[:6], "%Y%m%d%H%M%S")
                    break
                except ValueError:
                    continue
    if raw.ndim != 2:
        raise RadarFormatError(f"{path}: 'dataset1/data1/data' has shape {raw.shape}, expected 2-D")
    stamp = stamp if stamp is not None else stamp_from_name(path)
    if stamp is None:
        raise RadarFormatError(f"{path}: no time (no root 'what' date/time attributes)")
    values = raw.astype(np.float64) * gain + offset
    if "nodata" in what:
        values[raw == attr_number(what["nodata"])] = np.nan
    undetect = raw == attr_number(what["undetect"]) if "undetect" in what else np.zeros(raw.shape, bool)
    if quantity == "RATE":
        values[undetect] = 0.0
        return RadarFrame(values, "mm/h", stamp, "odim_h5", str(path), quantity)
    if quantity in ODIM_REFLECTIVITY:
        values[undetect] = -np.inf
        return RadarFrame(values, "dBZ", stamp, "odim_h5", str(path), quantity)
    raise RadarFormatError(
        f"{path}: unsupported ODIM quantity {quantity!r} (supported: RATE, "
        f"{', '.join(ODIM_REFLECTIVITY)})"
    )

