"""DFN (De Brabandere et al. 2016, the paper's ref. [3], a baseline of Table 1 in §4.1; see
docs/models.md#dfn-dynamic-filter-network-de-brabandere-et-al-2016-zoodfnpy): dynamic local
filtering, normalised filters, shapes, gradients and odd frame sizes. The closed loop and the
teacher mask are tested for every registered model in tests/test_models.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from predlearn import create_model
from predlearn.zoo.dfn import DFN, apply_dynamic_filters

TINY = {"encoder_channels": (3, 4, 3, 4), "hidden_channels": 5,
        "decoder_channels": (4, 3, 4, 3), "head_channels": 4}


def build(frame=(1, 16, 16), seed: int = 0, **kwargs) -> DFN:
    torch.manual_seed(seed)
    options = {**TINY, **kwargs}
    model = create_model("dfn", frame_channels=frame[0], frame_size=frame[1:], **options)
    return model.double().eval()


def clip(batch: int = 2, length: int = 3, frame=(1, 16, 16), seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, length, *frame, generator=generator, dtype=torch.float64)


def tap_filters(batch: int, size: int, tap: tuple[int, int], height: int, width: int) -> Tensor:
    """Filters with a single 1 at ``tap`` (row, column of the k x k filter) at every pixel."""
    filters = torch.zeros(batch, size * size, height, width, dtype=torch.float64)
    filters[:, tap[0] * size + tap[1]] = 1.0
    return filters


# ---------------------------------------------------------------------------------------------
# apply_dynamic_filters


@pytest.mark.parametrize("size", [3, 5, 9])
def test_delta_filter_returns_the_frame(size):
    frame = clip(2, 1, (3, 6, 7))[:, 0]
    out = apply_dynamic_filters(frame, tap_filters(2, size, (size // 2, size // 2), 6, 7))
    assert torch.equal(out, frame)


def test_off_centre_tap_shifts_the_image_with_a_zero_border():
    frame = torch.arange(1.0, 10.0, dtype=torch.float64).view(1, 1, 3, 3)
    # Tap (0, 1): out[y, x] = frame[y - 1, x], the content moves down; the top row reads outside.
    down = apply_dynamic_filters(frame, tap_filters(1, 3, (0, 1), 3, 3))
    assert torch.equal(down[0, 0], torch.tensor([[0.0, 0.0, 0.0],
                                                 [1.0, 2.0, 3.0],
                                                 [4.0, 5.0, 6.0]], dtype=torch.float64))
    # Tap (1, 2): out[y, x] = frame[y, x + 1], the content moves left.
    left = apply_dynamic_filters(frame, tap_filters(1, 3, (1, 2), 3, 3))
    assert torch.equal(left[0, 0], torch.tensor([[2.0, 3.0, 0.0],
                                                 [5.0, 6.0, 0.0],
                                                 [8.0, 9.0, 0.0]], dtype=torch.float64))
    # A 5x5 filter, tap (4, 0): out[y, x] = frame[y + 2, x - 2].
    far = apply_dynamic_filters(frame, tap_filters(1, 5, (4, 0), 3, 3))
    assert torch.equal(far[0, 0], torch.tensor([[0.0, 0.0, 7.0],
                                                [0.0, 0.0, 0.0],
                                                [0.0, 0.0, 0.0]], dtype=torch.float64))


def test_uniform_filter_is_a_zero_padded_box_blur():
    frame = clip(2, 1, (3, 8, 9))[:, 0]
    size = 5
    filters = torch.full((2, size * size, 8, 9), 1.0 / size**2, dtype=torch.float64)
    box = torch.full((3, 1, size, size), 1.0 / size**2, dtype=torch.float64)
    expected = F.conv2d(frame, box, padding=size // 2, groups=3)
    torch.testing.assert_close(apply_dynamic_filters(frame, filters), expected)


def test_filters_are_per_pixel_per_sample_and_shared_over_channels():
    frame = clip(2, 1, (2, 4, 6))[:, 0]
    filters = tap_filters(2, 3, (1, 1), 4, 6)  # identity everywhere ...
    filters[1, :, :, 3:] = tap_filters(1, 3, (1, 2), 4, 3)[0]  # ... but sample 1, right half
    out = apply_dynamic_filters(frame, filters)
    assert torch.equal(out[0], frame[0])
    assert torch.equal(out[1, :, :, :3], frame[1, :, :, :3])
    assert torch.equal(out[1, :, :, 3:5], frame[1, :, :, 4:6])  # reads one pixel to the right
    assert torch.equal(out[1, :, :, 5], torch.zeros(2, 4, dtype=torch.float64))


def test_apply_dynamic_filters_rejects_a_non_square_tap_count():
    with pytest.raises(ValueError, match="k odd"):
        apply_dynamic_filters(torch.zeros(1, 1, 4, 4), torch.zeros(1, 8, 4, 4))


# ---------------------------------------------------------------------------------------------
# The model's filters


def test_model_filters_are_normalised_at_every_pixel():
    model = build()
    frames = clip()
    hidden = model.init_state(2, frames)
    for t in range(frames.shape[1]):  # later steps have a non-zero hidden state
        with torch.no_grad():
            filters, hidden = model.generate_filters(frames[:, t], hidden)
        assert filters.shape == (2, 81, 16, 16)
        assert (filters >= 0).all()
        torch.testing.assert_close(filters.sum(1), torch.ones(2, 16, 16, dtype=torch.float64))
    assert hidden.abs().sum() > 0


def test_step_applies_the_generated_filters_to_the_frame():
    model = build(filter_size=5)
    frames = clip()
    hidden = model.init_state(2, frames)
    with torch.no_grad():
        filters, _ = model.generate_filters(frames[:, 0], hidden)
        prediction, _ = model.step(frames[:, 0], hidden)
    assert filters.shape[1] == 25
    torch.testing.assert_close(prediction, apply_dynamic_filters(frames[:, 0], filters))
    assert prediction.min() >= 0 and prediction.max() <= 1  # convex: stays in the frame's range


def test_default_size_matches_the_released_moving_mnist_model():
    # Hand count of the 13 convolutions of the authors' model (3x3 unless noted), 9x9 filters:
    # 1->32, 32->32 (stride 2), 32->64, 64->64, 64->128, 128->128 twice (recurrence),
    # 128->64, 64->64, 64->64, 64->64, 64->128 (1x1), 128->81 (1x1): 637,361 ("0.6M").
    convs = [(1, 32, 9), (32, 32, 9), (32, 64, 9), (64, 64, 9), (64, 128, 9), (128, 128, 9),
             (128, 128, 9), (128, 64, 9), (64, 64, 9), (64, 64, 9), (64, 64, 9), (64, 128, 1),
             (128, 81, 1)]
    expected = sum(i * o * k + o for i, o, k in convs)
    assert expected == 637_361
    assert sum(p.numel() for p in DFN().parameters()) == expected


# ---------------------------------------------------------------------------------------------
# Shapes, gradients, sizes


@pytest.mark.parametrize("frame", [(1, 64, 64), (3, 128, 128)])
def test_shapes_and_gradients_reach_every_parameter(frame):
    model = build(frame, filter_size=5).train()
    out = model(clip(2, 2, frame), 2)
    assert out.shape == (2, 2, *frame)
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@pytest.mark.parametrize("frame", [(1, 100, 100), (2, 33, 35)])
def test_other_frame_sizes_including_odd_ones(frame):
    model = build(frame)
    assert model.init_state(1, clip(frame=frame)).shape[2:] == tuple(-(-s // 2) for s in frame[1:])
    with torch.no_grad():
        out = model(clip(1, 2, frame), 2)
    assert out.shape == (1, 2, *frame)
    assert torch.isfinite(out).all()


def test_wrong_frame_shape_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(C, H, W\) = \(1, 16, 16\); got \(3, 16, 16\)"):
        build()(clip(frame=(3, 16, 16)), 2)
