"""Moving MNIST frames (paper §4.1; the bouncing-digits generator of Srivastava et al. 2015).

Each sequence shows ``num_digits`` MNIST digits (28 x 28) moving in a 64 x 64 frame. A digit
starts at a uniformly random position fully inside the frame, moves with a direction uniform on
the unit circle and a speed uniform in [3, 5) pixels per frame, and bounces off the edges (the
position is reflected and the velocity component reversed), so it never leaves the frame. Positions
are floats; each frame pastes the digits at the rounded positions. Where digits overlap the frame
takes the pixel-wise maximum, as Srivastava et al.'s generator does: that is how digits occlude
each other here (``overlap="occlude"`` instead pastes later digits' strokes over earlier ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "DIGIT_SIZE",
    "FRAME_SIZE",
    "SPEED_RANGE",
    "Overlap",
    "Trajectories",
    "generate_moving_mnist",
    "render_frames",
    "sample_trajectories",
    "to_tensor",
]

Overlap = Literal["max", "occlude"]
DIGIT_SIZE = 28
FRAME_SIZE = 64  # paper §4.1: 64 x 64 frames
SPEED_RANGE = (3.0, 5.0)  # paper §4.1 (Srivastava et al.): speed uniform in [3, 5) px/frame


@dataclass(frozen=True)
class Trajectories:
    """Where the digits of ``N`` sequences are: arrays over (sequence, frame, digit, row/col).

    Attributes:
        positions: (N, T, D, 2) float top-left corner (row, column) of each digit in each frame.
        velocities: (N, T, D, 2) velocity that carries frame t to frame t + 1 (after any bounce
            at frame t), in pixels per frame.
        digit_indices: (N, D) index of each digit in the pool it was drawn from.
    """

    positions: np.ndarray
    velocities: np.ndarray
    digit_indices: np.ndarray

    @property
    def pixel_positions(self) -> np.ndarray:
        """(N, T, D, 2) int64 positions at which the digits are drawn (the rounded floats)."""
        return np.rint(self.positions).astype(np.int64)


def _check_geometry(frame_size: int, digit_size: int, speed_range: tuple[float, float]) -> int:
    limit = frame_size - digit_size
    if limit < 1:
        raise ValueError(f"frame_size {frame_size} must exceed the digit size {digit_size}")
    low, high = speed_range
    if not 0 <= low <= high <= limit:
        raise ValueError(
            f"speed_range {speed_range} must satisfy 0 <= low <= high <= {limit} (the free space), "
            "so that one reflection per step keeps a digit inside the frame"
        )
    return limit


def sample_trajectories(
    rng: np.random.Generator,
    num_sequences: int,
    num_digits: int = 2,
    sequence_length: int = 20,
    frame_size: int = FRAME_SIZE,
    digit_size: int = DIGIT_SIZE,
    speed_range: tuple[float, float] = SPEED_RANGE,
    pool_size: int | None = None,
) -> Trajectories:
    """Draw bouncing trajectories (and, with ``pool_size``, which digits) for ``num_sequences``.

    Random numbers are drawn in a fixed order (digit indices, start positions, directions,
    speeds), so a generator in a given state always gives the same trajectories.
    """
    limit = _check_geometry(frame_size, digit_size, speed_range)
    shape = (num_sequences, num_digits)
    indices = (
        rng.integers(0, pool_size, size=shape)
        if pool_size is not None
        else np.zeros(shape, dtype=np.int64)
    )
    position = rng.uniform(0.0, limit, size=(*shape, 2))
    angle = rng.uniform(0.0, 2.0 * math.pi, size=shape)
    speed = rng.uniform(speed_range[0], speed_range[1], size=shape)
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=-1) * speed[..., None]
    positions = np.empty((num_sequences, sequence_length, num_digits, 2))
    velocities = np.empty_like(positions)
    for t in range(sequence_length):
        if t > 0:
            position = position + velocity
            low, high = position < 0.0, position > limit
            position = np.where(low, -position, np.where(high, 2.0 * limit - position, position))
            velocity = np.where(low | high, -velocity, velocity)
        positions[:, t] = position
        velocities[:, t] = velocity
    return Trajectories(positions, velocities, indices)


def render_frames(
    digits: np.ndarray,
    pixel_positions: np.ndarray,
    frame_size: int = FRAME_SIZE,
    overlap: Overlap = "max",
) -> np.ndarray:
    """Paste digits (N, D, S, S) uint8 at integer top-left positions (N, T, D, 2) into frames.

    Returns uint8 frames (N, T, frame_size, frame_size). Overlapping digits combine by the
    pixel-wise maximum (``"max"``) or the later digit's nonzero pixels replace the earlier
    ones (``"occlude"``). Positions must keep every digit fully inside the frame.
    """
    if overlap not in ("max", "occlude"):
        raise ValueError(f"overlap must be 'max' or 'occlude', got {overlap!r}")
    digits = np.asarray(digits, dtype=np.uint8)
    num_sequences, num_digits, size = digits.shape[0], digits.shape[1], digits.shape[2]
    sequence_length = pixel_positions.shape[1]
    if pixel_positions.min(initial=0) < 0 or pixel_positions.max(initial=0) > frame_size - size:
        raise ValueError("a digit position lies outside the frame")
    frames = np.zeros((num_sequences, sequence_length, frame_size, frame_size), dtype=np.uint8)
    rows = np.arange(num_sequences)
    free = frame_size - size + 1
    for t in range(sequence_length):
        frame = frames[:, t]
        # A writeable view of every size x size window of every frame: windows[n, r, c] is the
        # patch whose top-left corner is (r, c) in frame n. Each sequence writes its own frame, so
        # the fancy-indexed writes below never collide.
        s0, s1, s2 = frame.strides
        windows = as_strided(
            frame, (num_sequences, free, free, size, size), (s0, s1, s2, s1, s2), writeable=True
        )
        for d in range(num_digits):
            r, c = pixel_positions[:, t, d, 0], pixel_positions[:, t, d, 1]
            patch = windows[rows, r, c]
            digit = digits[:, d]
            if overlap == "max":
                windows[rows, r, c] = np.maximum(patch, digit)
            else:
                windows[rows, r, c] = np.where(digit > 0, digit, patch)
    return frames


@overload
def generate_moving_mnist(
    digits: np.ndarray, num_sequences: int, rng: np.random.Generator, num_digits: int = ...,
    sequence_length: int = ..., frame_size: int = ..., speed_range: tuple[float, float] = ...,
    overlap: Overlap = ..., return_trajectories: Literal[False] = ...,
) -> np.ndarray: ...


@overload
def generate_moving_mnist(
    digits: np.ndarray, num_sequences: int, rng: np.random.Generator, num_digits: int = ...,
    sequence_length: int = ..., frame_size: int = ..., speed_range: tuple[float, float] = ...,
    overlap: Overlap = ..., *, return_trajectories: Literal[True],
) -> tuple[np.ndarray, Trajectories]: ...


@overload
def generate_moving_mnist(
    digits: np.ndarray, num_sequences: int, rng: np.random.Generator, num_digits: int = ...,
    sequence_length: int = ..., frame_size: int = ..., speed_range: tuple[float, float] = ...,
    overlap: Overlap = ..., return_trajectories: bool = ...,
) -> np.ndarray | tuple[np.ndarray, Trajectories]: ...


def generate_moving_mnist(
    digits: np.ndarray,
    num_sequences: int,
    rng: np.random.Generator,
    num_digits: int = 2,
    sequence_length: int = 20,
    frame_size: int = FRAME_SIZE,
    speed_range: tuple[float, float] = SPEED_RANGE,
    overlap: Overlap = "max",
    return_trajectories: bool = False,
) -> np.ndarray | tuple[np.ndarray, Trajectories]:
    """Generate Moving MNIST sequences from a pool of digits (M, 28, 28) uint8.

    Returns uint8 frames (num_sequences, sequence_length, frame_size, frame_size), and with
    ``return_trajectories`` also the ``Trajectories`` (positions, velocities, digit indices).
    Digits are drawn uniformly with replacement from the pool.
    """
    digits = np.asarray(digits)
    if digits.ndim != 3 or digits.shape[1] != digits.shape[2] or len(digits) == 0:
        raise ValueError(f"digits must be a non-empty (M, S, S) array, got shape {digits.shape}")
    if num_digits < 1 or sequence_length < 1 or num_sequences < 0:
        raise ValueError(
            f"need num_digits >= 1, sequence_length >= 1 and num_sequences >= 0; got "
            f"{num_digits}, {sequence_length}, {num_sequences}"
        )
    trajectories = sample_trajectories(
        rng, num_sequences, num_digits, sequence_length, frame_size, digits.shape[1],
        speed_range, pool_size=len(digits),
    )
    frames = render_frames(
        digits[trajectories.digit_indices], trajectories.pixel_positions, frame_size, overlap
    )
    return (frames, trajectories) if return_trajectories else frames


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., T, H, W) -> float32 (..., T, 1, H, W) in [0, 1].

    Converted in numpy: a torch element-wise op on such small tensors can cost milliseconds in
    thread-pool start-up when several intra-op threads are enabled.
    """
    scaled = np.divide(frames[..., None, :, :], np.float32(255.0), dtype=np.float32)
    return torch.from_numpy(scaled)
