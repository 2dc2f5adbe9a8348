"""Turn KNMI 5-minute radar files (HDF5, ``RAD_NL25_RAP_5min_*.h5``) into one NetCDF series
of rain rate, the kind of file ``predlearn fit --data=frames`` reads (docs/own-data.md).

    python examples/own-data/knmi_to_netcdf.py ../shared/data/radar/knmi knmi.nc

Each file holds ``image1/image_data``, uint16 pixel values of the 5-minute accumulation in
units of 0.01 mm (``GEO=0.01*PV``), 65535 where there is no data; 1 km pixels. This keeps a
384 x 384 km square over the Netherlands, averages it to 3 km pixels (128 x 128) and stores
the rain rate in mm/h, NaN where no radar saw. Needs ``pip install "predlearn[xarray]"``.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import xarray as xr

ROWS, COLUMNS, BLOCK = slice(240, 624), slice(176, 560), 3  # 384 x 384 km -> 128 x 128


def rain_rate(path: Path) -> np.ndarray:
    """mm/h of one file, NaN where missing, over the kept square."""
    with h5py.File(path, "r") as handle:
        values = handle["image1/image_data"][ROWS, COLUMNS].astype(np.float32)
    values[values == 65535] = np.nan
    return values * 0.01 * 12  # 0.01 mm per 5 minutes -> mm/h


def main(folder: str, output: str) -> None:
    files = sorted(Path(folder).glob("RAD_NL25_RAP_5min_*.h5"))
    times = [datetime.strptime(f.stem.rsplit("_", 1)[1], "%Y%m%d%H%M") for f in files]
    frames = np.stack([rain_rate(f) for f in files])
    t, h, w = frames.shape
    frames = frames.reshape(t, h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(axis=(2, 4))
    km = np.arange(h // BLOCK) * BLOCK + BLOCK / 2
    series = xr.Dataset(
        {"rain_rate": (("time", "y", "x"), frames, {"units": "mm/h",
                                                     "long_name": "radar rain rate"})},
        coords={"time": np.array(times, dtype="datetime64[ns]"),
                "y": ("y", km, {"units": "km"}), "x": ("x", km, {"units": "km"})},
        attrs={"source": "KNMI RAD_NL25_RAP_5min, 3 km means of the 1 km composite"})
    series.to_netcdf(output, engine="h5netcdf")
    print(f"wrote {output}: {t} frames of {h // BLOCK} x {w // BLOCK}, "
          f"{times[0]:%Y-%m-%d %H:%M} .. {times[-1]:%H:%M}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
