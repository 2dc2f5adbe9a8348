"""Draw a forecast of ``predlearn predict --data=frames`` beside what happened, in mm/h:
one row of observations, one of the forecast, at a few lead times (docs/own-data.md).

    python examples/own-data/plot_forecast.py forecast.nc knmi.nc forecast.png [index]

``forecast.nc`` must come from ``--data.predict_windows=test`` (forecasts of windows whose
future is in the file); ``index`` picks the forecast (default: the one of most rain).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm


def main(forecast_path: str, series_path: str, output: str, index: int | None = None) -> None:
    forecast = xr.open_dataset(forecast_path, engine="h5netcdf")
    series = xr.open_dataset(series_path, engine="h5netcdf")
    name = next(iter(forecast.data_vars))
    if index is None:  # the forecast issued when most rain was falling
        rain = forecast[name].mean(dim=[d for d in forecast[name].dims if d != "forecast"])
        index = int(np.argmax(rain.values))
    issued = forecast["issue_time"].values[index]
    leads = forecast["lead_time"].values
    shown = sorted({0, len(leads) // 2, len(leads) - 1})
    fig, axes = plt.subplots(2, len(shown) + 1, figsize=(3 * (len(shown) + 1), 6.2),
                             squeeze=False, constrained_layout=True)
    norm = LogNorm(vmin=0.1, vmax=10)
    for column, lead in enumerate(shown, start=1):
        minutes = int(leads[lead] / np.timedelta64(1, "m"))
        truth = series[name].sel(time=issued + leads[lead]).values
        axes[0, column].imshow(np.where(truth > 0.1, truth, np.nan), norm=norm, cmap="viridis")
        axes[0, column].set_title(f"observed, +{minutes} min", fontsize=9)
        guess = forecast[name].values[index, lead]
        shown_guess = np.where((guess > 0.1) & ~np.isnan(truth), guess, np.nan)  # radar reach
        image = axes[1, column].imshow(shown_guess, norm=norm, cmap="viridis")
        axes[1, column].set_title(f"forecast, +{minutes} min", fontsize=9)
    frame = series[name].sel(time=issued).values
    axes[0, 0].imshow(np.where(frame > 0.1, frame, np.nan), norm=norm, cmap="viridis")
    axes[0, 0].set_title("observed, issue time", fontsize=9)
    axes[1, 0].axis("off")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.6, label="rain rate (mm/h)")
    fig.suptitle(f"{Path(series_path).name}: forecast issued {str(issued)[:16]} UTC "
                 "(white: below 0.1 mm/h or outside the radars' reach)")
    fig.savefig(output, dpi=90)
    print(f"wrote {output}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else None)
