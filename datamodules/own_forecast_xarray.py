"""Forecasts of your own NetCDF / zarr data written back as NetCDF (``.nc``) or zarr (``.zarr``).

The output looks like the input, so the tools that read the input read the forecast too: the
same variable(s) with their attributes (units etc.), the input's y/x coordinates (and any other
coordinate on y and x, such as 2-D lat/lon), dims ``(forecast, lead_time, [channel], y, x)``.
Each forecast carries its ``sequence``, ``origin_index`` (the last observed frame) and, when the
input has times, ``issue_time``; ``lead_time`` is a timedelta when the frame step is known.
The file appears complete or not at all: it is written beside its path, then renamed.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from predlearn.datamodules.own_xarray import XarraySeries, import_xarray
from predlearn.errors import OutputError
from predlearn.files import part_prefix, refuse_overwriting, written_atomically

__all__ = ["forecast_dataset", "write_forecast_xarray"]


def write_forecast_xarray(path: Path, forecast: np.ndarray, source: XarraySeries,
                          origins: Sequence[tuple[int, int]],
                          frame_step: np.timedelta64 | None) -> Path:
    """Write ``forecast`` (N, K, C, H, W, in the file's units) of ``source`` to ``path`` (.nc or
    .zarr); ``origins[i]`` is (sequence, index of the last observed frame) of forecast i."""
    path = Path(path)
    if path.suffix not in (".nc", ".zarr"):
        raise OutputError(f"{path}: a forecast is written as NetCDF or zarr; give a name ending "
                          "in .nc or .zarr")
    refuse_overwriting(path, [source.path], what="forecast")
    dataset = forecast_dataset(forecast, source, origins, frame_step)
    if path.suffix == ".zarr":
        _write_zarr(dataset, path)
    else:
        import_xarray("h5netcdf")
        with written_atomically(path) as part:
            dataset.to_netcdf(part, engine="h5netcdf")
    return path


def forecast_dataset(forecast: np.ndarray, source: XarraySeries,
                     origins: Sequence[tuple[int, int]], frame_step: np.timedelta64 | None) -> Any:
    """The xarray Dataset ``write_forecast_xarray`` writes."""
    xarray = import_xarray()
    forecast = np.asarray(forecast)
    if forecast.ndim != 5 or forecast.shape[2:] != source.frame_shape or (
            len(origins) != len(forecast)):
        raise ValueError(f"forecast of shape {forecast.shape} for {len(origins)} origins; "
                         f"expected (N, K, *{source.frame_shape}) with N = len(origins)")
    if not np.issubdtype(forecast.dtype, np.floating):
        forecast = forecast.astype(np.float32)
    dims, input_data = source.dims, source.dataset
    spatial = ("forecast", "lead_time", dims.y, dims.x)
    variables: dict[str, Any] = {}
    for c, name in enumerate(source.variables):
        attrs = dict(input_data[name].attrs)
        if dims.channel:
            data = xarray.Variable((*spatial[:2], dims.channel, *spatial[2:]), forecast, attrs)
        else:
            data = xarray.Variable(spatial, forecast[:, :, c], attrs)
        variables[name] = data
        mapping = attrs.get("grid_mapping")
        if isinstance(mapping, str) and mapping in input_data.variables:
            variables[mapping] = _copy(xarray, input_data[mapping].variable)
    sequences, indices = (np.array([origin[i] for origin in origins], np.int64) for i in (0, 1))
    coords: dict[str, Any] = {"sequence": ("forecast", sequences),
                              "origin_index": ("forecast", indices),
                              "lead_time": ("lead_time", _lead_times(forecast.shape[1],
                                                                     frame_step))}
    if source.times is not None:
        issued = source.times[indices]
        if np.isnat(issued).any():
            raise ValueError(f"{source.describe()}: an origin frame has no time (NaT)")
        coords["issue_time"] = ("forecast", issued)
    keep = {dims.y, dims.x} | ({dims.channel} if dims.channel else set())
    for name, coord in input_data.coords.items():
        if coord.dims and set(coord.dims) <= keep:
            coords[str(name)] = _copy(xarray, coord.variable)
    attrs = {"title": f"predlearn forecast of {source.describe()}", "source": str(source.path)}
    return xarray.Dataset(variables, coords=coords, attrs=attrs)


def _lead_times(steps: int, frame_step: np.timedelta64 | None) -> np.ndarray:
    if frame_step is None:
        return np.arange(1, steps + 1, dtype=np.int64)
    return (np.arange(1, steps + 1) * np.timedelta64(frame_step)).astype("timedelta64[ns]")


def _copy(xarray: Any, variable: Any) -> Any:
    """A coordinate's values and attrs, without the input's encoding (chunks, packing)."""
    return xarray.Variable(variable.dims, np.asarray(variable.values), dict(variable.attrs))


def _sibling(path: Path, tail: str) -> Path:
    return path.with_name(f"{part_prefix(path)}{os.getpid()}.{uuid.uuid4().hex[:8]}.{tail}")


def _write_zarr(dataset: Any, path: Path) -> None:
    """Write the store beside ``path``, then rename it over any older one."""
    import_xarray("zarr")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path} is a file; a zarr store is a folder: remove it or choose "
                          "another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    part, old = _sibling(path, "part"), _sibling(path, "old")
    try:
        with warnings.catch_warnings():  # zarr 3 and xarray read its consolidated metadata
            warnings.filterwarnings("ignore", "Consolidated metadata is currently not part")
            dataset.to_zarr(part, mode="w-", consolidated=True)
        if path.exists():
            os.replace(path, old)
        os.replace(part, path)
    finally:
        shutil.rmtree(part, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
