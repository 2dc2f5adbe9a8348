"""``predict``'s forecast of your own data, in your units and the input's format family:
``.npy`` (with a JSON of what its axes and rows are), HDF5, or NetCDF / zarr (with the input's
coordinates and the forecast's lead times, by ``own_forecast_xarray``).

The forecast's axes follow the input's layout, its N axis the forecasts and its T axis the lead
times: a ``THW`` series gives an (N, K, H, W) forecast, ``NTCHW`` sequences (N, K, C, H, W).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from predlearn.errors import OptionValueError
from predlearn.files import written_atomically

SUFFIXES = (".npy", ".h5", ".hdf5", ".nc", ".zarr")


def default_suffix(source: Any) -> str:
    """The format family of the input: .npy for .npy arrays, .nc / .zarr for xarray data,
    HDF5 otherwise (HDF5 arrays and PNG frames)."""
    path = getattr(source, "path", None)
    if path is not None and Path(path).suffix in (".nc", ".nc4", ".zarr"):
        return ".zarr" if Path(path).suffix == ".zarr" else ".nc"
    files = getattr(source, "files", None)
    if files and files[0].path.suffix == ".npy":
        return ".npy"
    return ".h5"


def forecast_layout(source: Any) -> str:
    """The forecast's axes: N, then the input's layout without N (NTCHW for PNG frames)."""
    layout = getattr(source, "layout", "TCHW")
    return "N" + layout.replace("N", "")


def _in_layout(forecast: np.ndarray, layout: str) -> np.ndarray:
    """(N, K, C, H, W) -> the axes of ``layout`` (C dropped where the layout has none)."""
    if "C" not in layout:
        forecast, order = forecast[:, :, 0], "NTHW"
    else:
        order = "NTCHW"
    return np.transpose(forecast, [order.index(axis) for axis in layout])


def frame_step(source: Any) -> np.timedelta64 | None:
    """The nominal time between frames (the median step of the time coordinate), or None."""
    times = getattr(source, "times", None)
    if times is None:
        return None
    known = times[~np.isnat(times)]
    if len(known) < 2:
        return None
    return np.median(np.diff(known).astype("timedelta64[ns]").astype(np.int64)).astype(
        "timedelta64[ns]")


def write_forecast(source: Any, forecast: np.ndarray, origins: Sequence[tuple[int, int]],
                   path: str | Path | None, folder: Path,
                   channel_names: Sequence[str] | None = None) -> Path:
    """Write the (N, K, C, H, W) ``forecast`` (in the file's units) to ``path`` (its suffix
    picks the format) or ``folder/forecast<input's suffix>``; ``origins``: (sequence, last
    observed frame) of each forecast; ``channel_names``: default the source's."""
    target = Path(path) if path else folder / f"forecast{default_suffix(source)}"
    if target.suffix not in SUFFIXES:
        raise OptionValueError("--predictions.forecast_path", f"must end in "
                               f"{', '.join(SUFFIXES)}; got {target}", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    forecast = forecast.astype(np.float32)
    if target.suffix in (".nc", ".zarr"):
        from predlearn.datamodules.own_forecast_xarray import write_forecast_xarray

        return write_forecast_xarray(target, forecast, source, origins, frame_step(source))
    layout = forecast_layout(source)
    array = _in_layout(forecast, layout)
    described = {"layout": layout, "source": source.describe(),
                 "channels": list(channel_names or source.channel_names),
                 "origins": [{"sequence": n, "last_observed_frame": t} for n, t in origins],
                 "lead_frames": int(forecast.shape[1])}
    if target.suffix == ".npy":
        with written_atomically(target) as partial, open(partial, "wb") as handle:
            np.save(handle, array)
        sidecar = target.with_suffix(".json")
        with written_atomically(sidecar) as partial:
            Path(partial).write_text(json.dumps(described, indent=2) + "\n")
        return target
    name = getattr(source, "files", [None])[0]
    dataset = name.dataset if name is not None and name.path.suffix != ".npy" else "forecast"
    with written_atomically(target) as partial, h5py.File(partial, "w") as handle:
        handle.create_dataset(dataset, data=array, compression="gzip",
                              chunks=(1, *array.shape[1:]))
        handle.create_dataset("origins", data=np.asarray(origins, np.int64).reshape(-1, 2))
        for key in ("layout", "source", "lead_frames"):
            handle[dataset].attrs[key] = described[key]
        handle[dataset].attrs["channels"] = described["channels"]
        handle["origins"].attrs["columns"] = ["sequence", "last_observed_frame"]
    return target
