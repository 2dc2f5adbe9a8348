"""A folder of PNG frames as one series, read a frame at a time: gray or RGB, 8 or 16 bits.

The frames keep their integer values here (0..255 or 0..65535); the frames data module scales
them by that range, the one the file format itself declares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from predlearn.errors import BadFileError, DataNotFoundError

IMAGE_SUFFIXES = (".png",)
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")  # how Pillow opens 16-bit gray PNG


def _mode_shape(path: Path) -> tuple[str, tuple[int, int, int]]:
    """An image's mode and (C, H, W), from its header only."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mode, (width, height) = image.mode, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadFileError(f"{path}: cannot read as a PNG image ({error}); it is damaged or "
                           "truncated") from error
    # as read_png converts them: RGB, and modes with alpha or a palette, give 3 channels
    colour = mode == "RGB" or (mode not in ("L", *_SIXTEEN_BIT_MODES)
                               and ("A" in mode or mode == "P"))
    return mode, (3 if colour else 1, height, width)


def read_png(path: Path) -> np.ndarray:
    """One PNG image as (C, H, W), uint8 or (16-bit) uint16 values as stored."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            image: Image.Image = opened
            image.load()
            if image.mode in _SIXTEEN_BIT_MODES:
                pixels = np.asarray(image)
                if pixels.max(initial=0) > 65535:  # mode "I" holding more than 16 bits
                    raise BadFileError(f"{path}: integer image with values above 65535; give "
                                       "8- or 16-bit PNG frames")
                return pixels.astype(np.uint16)[None]
            if image.mode not in ("L", "RGB"):
                image = image.convert("RGB" if "A" in image.mode or image.mode == "P" else "L")
            pixels = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadFileError(f"{path}: cannot read as a PNG image ({error}); it is damaged or "
                           "truncated") from error
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


class PngSeries:
    """The PNG frames of a folder, in file-name order, as one series (a frame source: see
    ``own_arrays.ArraySeries``). Every frame must have one size and bit depth (checked from
    the headers when the folder is opened)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.names = sorted(p for p in self.folder.iterdir()
                            if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.names:
            raise DataNotFoundError(f"{self.folder}: no PNG frames in this folder")
        first_mode, first_shape = _mode_shape(self.names[0])
        for name in self.names[1:]:
            mode, shape = _mode_shape(name)
            if shape != first_shape or (mode in _SIXTEEN_BIT_MODES) != (
                    first_mode in _SIXTEEN_BIT_MODES):
                raise BadFileError(
                    f"{name}: frame of shape {shape} ({mode}), but {self.names[0].name} is "
                    f"{first_shape} ({first_mode}); every frame must have one size and depth")
        self.sixteen_bit = first_mode in _SIXTEEN_BIT_MODES
        self.sequences, self.frames = 1, len(self.names)
        self.frame_shape = first_shape
        self.dtype = np.dtype(np.uint16 if self.sixteen_bit else np.uint8)
        self.channel_names = (("gray",) if first_shape[0] == 1 else ("red", "green", "blue"))
        self.times: np.ndarray | None = None

    @property
    def value_range(self) -> tuple[float, float]:
        """The range the format declares: 0..255, or 0..65535 for 16-bit frames."""
        return (0.0, 65535.0 if self.sixteen_bit else 255.0)

    def describe(self) -> str:
        return f"{self.folder} ({self.frames} PNG frames)"

    def window(self, sequence: int, start: int, length: int) -> np.ndarray:
        """Frames ``start .. start + length`` as (length, C, H, W)."""
        frames = [read_png(name) for name in self.names[start:start + length]]
        for name, frame in zip(self.names[start:start + length], frames, strict=True):
            if frame.shape != self.frame_shape:
                raise BadFileError(f"{name}: frame of shape {frame.shape}, but "
                                   f"{self.names[0].name} is {self.frame_shape}")
        return np.stack(frames)
