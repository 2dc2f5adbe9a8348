"""``PredictionWriter``: the files of ``predlearn predict``, an HDF5 array, PNG frames and GIFs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from predlearn.errors import OptionValueError, OutputError, names_options_under
from predlearn.run_folder import run_directory
from predlearn.visualize import write_gif


class PredictionWriter(BasePredictionWriter):
    """``predlearn predict`` writes its predictions: an HDF5 array, PNG frames and GIFs.

    ``predictions.h5`` holds ``predictions``, float32 (N, K, C, H, W) in [0, 1], in the order of
    the predict loader (gzip-compressed); an ensemble's are (N, M, K, C, H, W), with the
    attribute ``members`` = M, and the pictures and the forecast in the data's units show their
    mean. For the first ``image_sequences`` sequences it also
    writes ``predictions/seq_NNNN/step_KK.png`` and an animated ``predictions/seq_NNNN.gif``.

    Args:
        output_path: the HDF5 file; default ``predictions.h5`` in the run's folder. The images go
            to a ``predictions/`` folder beside it.
        image_sequences: how many sequences to write as PNG frames and GIFs (0: none).
        forecast_path: your own data (``--data=frames``) only: the forecast in the file's
            units, its suffix the format (.npy, .h5, .nc, .zarr); default ``forecast`` with the
            input's suffix beside ``output_path``.
    """

    def __init__(self, output_path: str | None = None, image_sequences: int = 16,
                 forecast_path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        if image_sequences < 0:
            raise OptionValueError("image_sequences", f"must be >= 0; got {image_sequences}",
                                   image_sequences)
        self.output_path = output_path
        self.image_sequences = image_sequences
        self.forecast_path = forecast_path

    def output_file(self, trainer: L.Trainer) -> Path:
        """The HDF5 file this rank writes."""
        path = Path(self.output_path) if self.output_path else (
            run_directory(trainer) / "predictions.h5")
        if trainer.world_size > 1:  # each rank writes the sequences it predicted
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        return path

    def check_output(self, trainer: L.Trainer) -> Path:
        """The output file, after making sure that neither it nor the ``predictions/`` picture
        folder beside it is, or holds, one of the data module's inputs (``OutputError``)."""
        path = self.output_file(trainer)
        inputs = input_paths(getattr(trainer, "datamodule", None))
        if trainer.ckpt_path and Path(trainer.ckpt_path).exists():
            inputs.append(Path(trainer.ckpt_path))  # the checkpoint is read too
        from predlearn.files import refuse_overwriting

        refuse_overwriting(path, inputs, what="predictions file (--predictions.output_path)")
        if self.forecast_path:
            refuse_overwriting(Path(self.forecast_path), inputs,
                               what="forecast file (--predictions.forecast_path)")
        if self.image_sequences:
            images = (path.parent / "predictions").resolve()
            for source in inputs:
                if Path(source).resolve().is_relative_to(images):
                    raise OutputError(
                        f"the predicted pictures go to {images}, which holds the input {source}; "
                        "writing them could overwrite it: choose another "
                        "--predictions.output_path (the pictures go beside it) or "
                        "--predictions.image_sequences=0")
        return path

    __init__ = names_options_under("predictions", __init__)  # type: ignore[assignment]

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Refuse an output that would overwrite an input before anything is predicted (here,
        once the checkpoint is known)."""
        self.check_output(trainer)

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        if not predictions:
            return
        batches = predictions[0] if isinstance(predictions[0], list) else predictions
        stacked = torch.cat([torch.as_tensor(b).float().cpu() for b in batches]).numpy()
        path = self.check_output(trainer)
        from predlearn.files import written_atomically

        # closed, then renamed: never a half-written predictions file
        with written_atomically(path) as partial, h5py.File(partial, "w") as handle:
            dataset = handle.create_dataset("predictions", data=stacked, compression="gzip",
                                            chunks=(1, *stacked.shape[1:]))
            if stacked.ndim == 6:
                dataset.attrs["members"] = stacked.shape[1]
                dataset.attrs["dims"] = "sequence, member, step, channel, y, x"
        members = stacked.shape[1] if stacked.ndim == 6 else 0
        if members:  # the pictures and the forecast file: the ensemble mean
            stacked = stacked.mean(axis=1)
        datamodule = getattr(trainer, "datamodule", None)
        images = write_prediction_images(stacked[: self.image_sequences],
                                         path.parent / "predictions",
                                         getattr(datamodule, "channel_names", None),
                                         getattr(datamodule, "value_bounds", (0.0, 1.0)))
        where = f" and {images} sequences as PNG frames and GIFs in {path.parent / 'predictions'}"
        what = f" of {members} members each (the pictures: their mean)" if members else ""
        rank_zero_info(f"predlearn: wrote {len(stacked)} predicted sequences{what} to {path}"
                       + (where if images else ""))
        write_forecast = getattr(datamodule, "write_forecast", None)
        if write_forecast is not None and trainer.world_size == 1:
            forecast = write_forecast(stacked, self.forecast_path, path.parent)
            mean = ", the ensemble mean" if members else ""
            rank_zero_info(f"predlearn: wrote the forecast in the data's units{mean} to "
                           f"{forecast}")


def input_paths(datamodule: Any) -> list[Path]:
    """The files and folders a data module reads: its attributes that are paths (``path``,
    ``root``...) and exist. An output must be none of them."""
    if datamodule is None:
        return []
    found = []
    for value in vars(datamodule).values():
        if isinstance(value, (str, os.PathLike)) and str(value):
            path = Path(value).expanduser()
            if path.exists():
                found.append(path)
    return found


def write_prediction_images(sequences, folder: Path, channel_names: Any = None,
                            bounds: tuple[float, float] | None = (0.0, 1.0)) -> int:
    """PNG frames and a GIF per sequence of an (N, K, C, H, W) array: gray frames, or (several
    channels) one file per channel named by it (``step_01_ir108.png``, ``seq_0000_ir108.gif``).
    Values in ``bounds`` map to black..white; unbounded values (None) by each sequence's own
    range per channel."""
    from PIL import Image

    for index, sequence in enumerate(sequences):
        channels = sequence.shape[1]
        names = list(channel_names) if channel_names and len(channel_names) == channels else [
            f"channel{c + 1}" for c in range(channels)]
        target = folder / f"seq_{index:04d}"
        target.mkdir(parents=True, exist_ok=True)
        if channels == 3 and names in (["channel1", "channel2", "channel3"],
                                       ["red", "green", "blue"]) and bounds == (0.0, 1.0):
            _write_colour(sequence, target, folder / f"seq_{index:04d}.gif")
            continue
        for channel in range(channels):
            values = sequence[:, channel]
            low, high = bounds if bounds is not None else (float(values.min()),
                                                           float(values.max()))
            scaled = (values - low) / (high - low if high > low else 1.0)
            pixels = (scaled.clip(0, 1) * 255).round().astype("uint8")  # (K, H, W)
            tag = "" if channels == 1 else f"_{_file_tag(names[channel])}"
            for step, frame in enumerate(pixels, start=1):
                Image.fromarray(frame).save(target / f"step_{step:02d}{tag}.png")
            write_gif([frame.astype(np.float32) / 255 for frame in pixels],
                      folder / f"seq_{index:04d}{tag}.gif")
    return len(sequences)


def _write_colour(sequence: np.ndarray, target: Path, gif: Path) -> None:
    """A colour sequence (K, 3, H, W) in [0, 1] as RGB PNG frames and a GIF."""
    from PIL import Image

    pixels = (sequence.clip(0, 1) * 255).round().astype("uint8").transpose(0, 2, 3, 1)
    for step, frame in enumerate(pixels, start=1):
        Image.fromarray(frame).save(target / f"step_{step:02d}.png")
    write_gif([frame.astype(np.float32) / 255 for frame in pixels], gif)


def _file_tag(name: str) -> str:
    """A channel name as part of a file name."""
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in str(name))
