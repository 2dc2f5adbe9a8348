"""What scoring the user's own data needs: masks of missing values, value bounds, channels.

A mask is a boolean tensor of the frames' shape, True where the pixel was observed. The data
replaces a missing value by a fill value (0.0) for the model; the mask keeps the scores and the
loss off those pixels (docs/metrics.md, "Missing values (masked pixels)"). A mask that is all
True is the same as none: ``checked_valid`` returns None for it, so that the unmasked code runs
and gives exactly the numbers of data without missing values.

Also here: the ``Bounds`` predictions are clamped to before scoring (None for z-scored data, which
rules out the metrics that read values as in [0, 1]) and the logged keys of per-channel curves,
``<key>[<channel>]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from predlearn.errors import OptionValueError

#: the range predictions are clamped to before scoring, or None for no clamp (z-scored data)
Bounds = tuple[float, float] | None
#: frames stored in [0, 1] (every data module without ``value_bounds``)
UNIT_BOUNDS: tuple[float, float] = (0.0, 1.0)


def valid_of(batch: Tensor | Sequence[Tensor]) -> Tensor | None:
    """A batch's mask of observed pixels: the second item of a (frames, valid) batch where it is
    boolean (data with missing values); None for any other batch (every pixel observed)."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        valid = batch[1]
        if isinstance(valid, Tensor) and valid.dtype == torch.bool:
            return valid
    return None


def checked_valid(valid: Tensor | None, frames: Tensor, who: str) -> Tensor | None:
    """``valid`` as a mask of ``frames``' pixels, or None where every pixel is valid (or no mask
    is given). Refuses (``ValueError``, naming ``who``) a mask that is not boolean or not of the
    frames' shape."""
    if valid is None:
        return None
    if valid.dtype != torch.bool or valid.shape != frames.shape:
        raise ValueError(
            f"{who} needs a boolean mask of valid pixels of the frames' shape "
            f"{tuple(frames.shape)}; got {valid.dtype} of shape {tuple(valid.shape)}")
    valid = valid.detach()
    return None if bool(valid.all()) else valid


def as_bounds(bounds: Sequence[float] | None) -> Bounds:
    """A data module's ``value_bounds`` as a (low, high) pair of floats (a config's list too), or
    None; refuses (``ValueError``) anything but two numbers with low < high."""
    if bounds is None:
        return None
    low, high = (float(value) for value in bounds)
    if not low < high:
        raise ValueError(f"value_bounds must be (low, high) with low < high; got {bounds}")
    return low, high


def clamped(frames: Tensor, bounds: Bounds) -> Tensor:
    """``frames`` clamped to ``bounds`` (low, high); unchanged for None."""
    return frames if bounds is None else frames.clamp(bounds[0], bounds[1])


def masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """The mean of ``values`` over the valid elements: a scalar, 0 (with a zero gradient) when
    none is valid. Masked values (fill values, even NaN) do not count."""
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / valid.sum().clamp(min=1).to(total.dtype)


def masked_loss(predictions: Tensor, targets: Tensor, valid: Tensor, name: str) -> Tensor:
    """``predlearn.module.sequence_loss`` over the valid elements: mean L1 + mean squared error
    (``name`` "l1+l2"), or one of them ("l1", "l2"); 0 with a zero gradient where none is valid."""
    # masked before abs and square: a NaN or inf there must not reach the gradient (0 * nan)
    error = torch.where(valid, predictions - targets, torch.zeros_like(predictions))
    l1, l2 = masked_mean(error.abs(), valid), masked_mean(error.square(), valid)
    return l2 if name == "l2" else l1 if name == "l1" else l1 + l2


def valid_per_frame(valid: Tensor) -> Tensor:
    """(B, K, C, H, W) mask -> (B, K) number of valid pixels of each frame."""
    return valid.flatten(2).sum(-1)


def frame_has_valid(valid: Tensor) -> Tensor:
    """(B, K, C, H, W) mask -> (B, K) whether a frame has any valid pixel (only those count)."""
    return valid.flatten(2).any(-1)


def frame_is_whole(valid: Tensor) -> Tensor:
    """(B, K, C, H, W) mask -> (B, K) whether every pixel of a frame is valid."""
    return valid.flatten(2).all(-1)


def masked_frame_mean(values: Tensor, valid: Tensor) -> Tensor:
    """(B, K, C, H, W) values -> (B, K) means over each frame's valid pixels (0 for a frame
    without any: ``frame_has_valid`` leaves it out of the scores)."""
    kept = torch.where(valid, values, torch.zeros_like(values)).flatten(2).sum(-1)
    return kept / valid_per_frame(valid).clamp(min=1).to(kept.dtype)


def masked_frame_score(values: Tensor, valid: Tensor, per: str = "frame") -> Tensor:
    """(B, K, C, H, W) per-pixel values -> (B, K) scores of each frame: the mean over its valid
    pixels (``per="pixel"``), or that times the frame's C * H * W pixels (``per="frame"``), on
    the scale of the sum over a whole frame (a masked pixel counts as the frame's mean)."""
    mean = masked_frame_mean(values, valid)
    return mean * values[0, 0].numel() if per == "frame" else mean


def masked_psnr(preds: Tensor, target: Tensor, valid: Tensor, data_range: float) -> Tensor:
    """(B, K) PSNR of each frame from the MSE over its valid pixels (torchmetrics' formula)."""
    mse = masked_frame_mean((preds - target).square(), valid)
    return (2 * math.log(data_range) - torch.log(mse)) * (10 / math.log(10))


def masked_ssim(preds: Tensor, target: Tensor, valid: Tensor, data_range: float,
                **window: Any) -> Tensor:
    """(B, K) SSIM of each frame: torchmetrics' SSIM map (its frame score is the map's mean),
    ``window`` its settings, averaged over the valid pixels."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, image = structural_similarity_index_measure(
        preds.flatten(0, 1), target.flatten(0, 1), data_range=data_range, reduction="none",
        return_full_image=True, **window)
    return masked_frame_mean(image.view(preds.shape), valid)


def channel(frames: Tensor, index: int) -> Tensor:
    """Channel ``index`` of (B, K, C, H, W) frames or of their mask, kept 5-d."""
    return frames[:, :, index:index + 1]


def reads_unit_range(bounds: Bounds) -> bool:
    """Whether data clamped to ``bounds`` lies in [0, 1] (which ``unit_range`` metrics need)."""
    return bounds is not None and 0.0 <= bounds[0] and bounds[1] <= 1.0


def scorable(names: Iterable[str], bounds: Bounds) -> list[str]:
    """The registered metrics ``names`` without those that read values as in [0, 1]
    (``unit_range``: ``bce``) where ``bounds`` are not in it (z-scored data: None)."""
    from predlearn.registry import METRICS

    return [name for name in names if reads_unit_range(bounds)
            or not getattr(METRICS.get(name), "unit_range", False)]


def check_unit_range(names: Iterable[str], bounds: Bounds, owner: str | None = None) -> None:
    """Refuse (``OptionValueError`` of ``metrics``, under ``owner``) metrics that need values in
    [0, 1] for data with other ``bounds``."""
    names = list(names)
    refused = sorted(set(names) - set(scorable(names, bounds)))
    if refused:
        raise OptionValueError(
            "metrics", f"{', '.join(map(repr, refused))} reads values as Bernoulli means in "
            f"[0, 1]; data with value_bounds {bounds} (z-scored data: None) has no Bernoulli "
            "reading: leave it out", names, owner=owner)


def metric_names(asked: Sequence[str] | None, defaults: Iterable[str],
                 bounds: Bounds) -> list[str]:
    """The metrics to score: those ``asked`` for (refused where ``bounds`` rule one out:
    ``check_unit_range``), else the ``defaults`` that ``bounds`` allow (``scorable``)."""
    if asked:
        check_unit_range(asked, bounds, owner="model")
        return list(asked)
    return scorable(defaults, bounds)


def curve_channels(names: Sequence[str] | None) -> tuple[str, ...]:
    """The channels that get curves of their own: ``names`` where more than one, else none."""
    names = tuple(names or ())
    check_channel_names(names)
    return names if len(names) > 1 else ()


_CHANNEL_KEY = re.compile(r"^(?P<base>.+)\[(?P<channel>[^\[\]/]+)\]$")


def channel_key(key: str, channel_name: str | None) -> str:
    """The logged key of one channel's curve: ``mse_per_frame[ir108]``; ``key`` itself for
    None (the curve of all channels)."""
    return key if channel_name is None else f"{key}[{channel_name}]"


def split_channel_key(key: str) -> tuple[str, str | None]:
    """``mse_per_frame[ir108]`` -> ``("mse_per_frame", "ir108")``; ``(key, None)`` for a key of
    all channels."""
    match = _CHANNEL_KEY.match(key)
    return (key, None) if match is None else (match["base"], match["channel"])


def check_channel_names(names: Sequence[str]) -> None:
    """Refuse channel names that would break a logged key (``/``, brackets) or repeat."""
    bad = [name for name in names if not name or any(c in name for c in "/[]")]
    if bad or len(set(names)) != len(names):
        raise ValueError(
            f"channel names name logged keys (mse_per_frame[name]): each must be distinct, "
            f"non-empty, without '/', '[' or ']'; got {list(names)}")


def update_masked(metric: nn.Module, preds: Tensor, target: Tensor, valid: Tensor | None) -> None:
    """``metric.update``, given ``valid`` only where a pixel is missing (so a plugin metric
    without masks keeps working on data without missing values)."""
    if valid is None:
        metric.update(preds, target)  # type: ignore[operator]
    else:
        metric.update(preds, target, valid=valid)  # type: ignore[operator]
