"""CDNA (Finn et al. 2016, the paper's ref. [6], a baseline of Table 1 in §4.1; see
docs/models.md#cdna-cdna-finn-et-al-2016-zoocdnapy): the compositing function, the normalisation
of kernels and masks, shapes, gradients and odd frame sizes. The closed loop and the teacher mask
are tested for every registered model in tests/test_models.py."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from predlearn import create_model
from predlearn.zoo.cdna import CDNA, apply_cdna

TINY = {"widths": (2, 3, 2, 3, 4, 2, 3)}


def build(frame=(1, 16, 16), seed: int = 0, **kwargs) -> CDNA:
    torch.manual_seed(seed)
    options = {**TINY, **kwargs}
    model = create_model("cdna", frame_channels=frame[0], frame_size=frame[1:], **options)
    return model.double().eval()


def clip(batch: int = 2, length: int = 3, frame=(1, 16, 16), seed: int = 1) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, length, *frame, generator=generator, dtype=torch.float64)


def one_hot_masks(batch: int, channels: int, index: int, size=(4, 5)) -> Tensor:
    masks = torch.zeros(batch, channels, *size, dtype=torch.float64)
    masks[:, index] = 1.0
    return masks


def random_kernels(batch: int, num: int, size: int = 3, seed: int = 2) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    kernels = torch.rand(batch, num, size * size, generator=generator, dtype=torch.float64)
    return (kernels / kernels.sum(-1, keepdim=True)).view(batch, num, size, size)


# ---------------------------------------------------------------------------------------------
# apply_cdna


def test_identity_kernel_with_all_mask_weight_returns_the_previous_frame():
    previous, background = clip(2, 2, (3, 4, 5)).unbind(1)
    kernels = random_kernels(2, 4)
    kernels[:, 2] = 0.0
    kernels[:, 2, 1, 1] = 1.0  # identity: 1 at the centre
    out = apply_cdna(previous, kernels, one_hot_masks(2, 5, index=2), background)
    assert torch.equal(out, previous)


def test_all_mask_weight_on_the_background_returns_the_background():
    previous, background = clip(2, 2, (3, 4, 5)).unbind(1)
    out = apply_cdna(previous, random_kernels(2, 4), one_hot_masks(2, 5, index=4), background)
    assert torch.equal(out, background)


def test_shift_kernel_moves_the_image_by_one_pixel():
    previous = torch.arange(1.0, 13.0, dtype=torch.float64).view(1, 1, 3, 4)
    kernels = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    kernels[0, 0, 1, 2] = 1.0  # out[y, x] = previous[y, x + 1]: the content moves left
    out = apply_cdna(previous, kernels, one_hot_masks(1, 2, 0, (3, 4)), torch.zeros_like(previous))
    expected = torch.tensor([[2.0, 3.0, 4.0, 0.0],
                             [6.0, 7.0, 8.0, 0.0],
                             [10.0, 11.0, 12.0, 0.0]], dtype=torch.float64)
    assert torch.equal(out[0, 0], expected)


def test_kernels_are_per_sample_and_shared_over_channels():
    previous = torch.arange(1.0, 25.0, dtype=torch.float64).view(2, 1, 3, 4).repeat(1, 2, 1, 1)
    previous[:, 1] *= -1  # a second channel with different values
    kernels = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    kernels[0, 0, 1, 1] = 1.0  # sample 0: identity
    kernels[1, 0, 0, 1] = 1.0  # sample 1: out[y, x] = previous[y - 1, x], the content moves down
    out = apply_cdna(previous, kernels, one_hot_masks(2, 2, 0, (3, 4)), torch.zeros_like(previous))
    assert torch.equal(out[0], previous[0])
    for channel in range(2):
        assert torch.equal(out[1, channel, 0], torch.zeros(4, dtype=torch.float64))
        assert torch.equal(out[1, channel, 1:], previous[1, channel, :2])


def test_masks_blend_the_moved_images_and_the_background_pixel_by_pixel():
    previous, background = clip(1, 2, (2, 4, 5)).unbind(1)
    kernels = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    kernels[0, 0, 1, 1] = 1.0
    weight = torch.rand(1, 1, 4, 5, dtype=torch.float64)
    masks = torch.cat([weight, 1 - weight], dim=1)
    out = apply_cdna(previous, kernels, masks, background)
    torch.testing.assert_close(out, weight * previous + (1 - weight) * background)


def test_apply_cdna_rejects_mismatched_masks():
    previous = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="masks must be"):
        apply_cdna(previous, torch.ones(1, 2, 3, 3) / 9, torch.ones(1, 2, 4, 4), previous)


# ---------------------------------------------------------------------------------------------
# The model's kernels and masks


@pytest.mark.parametrize("kernel_norm", ["softmax", "relu"])
def test_model_kernels_and_masks_are_normalised(kernel_norm):
    model = build(kernel_norm=kernel_norm)
    frames = clip()
    states = model.init_states(2, frames)
    for t in range(frames.shape[1]):  # later steps have non-zero recurrent states
        with torch.no_grad():
            kernels, masks, states = model.transform_parameters(frames[:, t], states)
        assert kernels.shape == (2, 10, 5, 5)
        assert masks.shape == (2, 11, 16, 16)
        assert (kernels >= 0).all() and (masks >= 0).all()
        torch.testing.assert_close(kernels.sum((-2, -1)), torch.ones(2, 10, dtype=torch.float64))
        torch.testing.assert_close(masks.sum(1), torch.ones(2, 16, 16, dtype=torch.float64))


def test_prediction_is_a_convex_combination_of_frame_pixels():
    frames = clip()
    with torch.no_grad():
        out = build()(frames, 4)
    assert out.min() >= 0 and out.max() <= 1
    assert out.std() > 0


def test_step_composites_the_first_frame_as_background_by_default():
    model = build()
    frames = clip()
    states = model.init_states(2, frames)
    with torch.no_grad():
        kernels, masks, _ = model.transform_parameters(frames[:, 0], states)
        direct = apply_cdna(frames[:, 0], kernels, masks, frames[:, 0])
        out = model(frames[:, :1], 1)[:, 0]
    torch.testing.assert_close(out, direct)  # one observed frame: first == previous
    with torch.no_grad():
        first = build()(frames, 1)
        previous = build(background="previous")(frames, 1)
    assert not torch.allclose(first, previous)


# ---------------------------------------------------------------------------------------------
# Shapes, gradients, sizes


@pytest.mark.parametrize("frame", [(1, 64, 64), (3, 128, 128)])
def test_shapes_and_gradients_reach_every_parameter(frame):
    model = build(frame).train()
    frames = clip(2, 2, frame)
    out = model(frames, 2)
    assert out.shape == (2, 2, *frame)
    out.square().mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_frame_size_not_divisible_by_eight_is_padded_and_cropped():
    model = build((1, 100, 100))
    assert model.padded_size == (104, 104)
    with torch.no_grad():
        out = model(clip(1, 2, (1, 100, 100)), 2)
    assert out.shape == (1, 2, 1, 100, 100)
    assert torch.isfinite(out).all()


def test_wrong_frame_shape_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(C, H, W\) = \(1, 16, 16\); got \(1, 8, 16\)"):
        build()(clip(frame=(1, 8, 16)), 2)


def test_widths_must_name_seven_layers():
    with pytest.raises(ValueError, match="seven"):
        CDNA(widths=(4, 4))


def test_default_size_follows_the_released_code():
    model = CDNA()
    assert [cell.hidden_channels for cell in model.cells] == [32, 32, 64, 64, 128, 64, 32]
    # The kernel layer reads the flattened 8x8x128 bottleneck and emits 10 kernels of 5x5.
    assert model.kernel_head.in_features == 128 * 8 * 8
    assert model.kernel_head.out_features == 10 * 25
    assert model.mask_head.out_channels == 11
