"""Pictures of your own data: every channel drawn and named, each in its own value range; gray
frames in [0, 1] look as before."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from predlearn.prediction_figures import channel_names_of
from predlearn.visualize import (
    LABEL_HEIGHT,
    channel_views,
    prediction_figure,
    save_prediction_figure,
    save_prediction_gif,
)

SEQUENCES, SIZE = 2, 16


def frames(channels: int, steps: int, seed: int = 0) -> torch.Tensor:
    """(SEQUENCES, steps, channels, SIZE, SIZE) in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(SEQUENCES, steps, channels, SIZE, SIZE, generator=generator)


def own(channels: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, truth and predictions of z-scored data: channel 2 is around 280 (kelvin, say)."""
    inputs, targets = frames(channels, 4) * 4 - 2, frames(channels, 3, seed=1) * 4 - 2
    inputs[:, :, 1] += 280
    targets[:, :, 1] += 280
    return inputs, targets, targets + 0.1


def labels(figure) -> list[str]:
    return [ax.get_ylabel() for ax in figure.axes]


def test_every_channel_has_its_rows_labelled_and_its_own_range():
    inputs, targets, predictions = own()
    figure = prediction_figure(inputs, targets, predictions, channel_names=["ir108", "sst"])
    names = labels(figure)
    assert len(names) == SEQUENCES * 2 * 3  # per sequence, per channel: input, truth, prediction
    assert names[:6] == ["input\nir108", "truth\nir108", "prediction\nir108",
                         "input\nsst", "truth\nsst", "prediction\nsst"]
    observed = torch.cat([inputs, targets], dim=1)
    for ax, channel in zip(figure.axes, [0, 0, 0, 1, 1, 1]):
        low, high = ax.images[0].get_clim()
        assert low == pytest.approx(float(observed[:, :, channel].min()))
        assert high == pytest.approx(float(observed[:, :, channel].max()))
    unnamed = labels(prediction_figure(inputs, targets, predictions))
    assert unnamed[:4] == ["input\nchannel 1", "truth\nchannel 1", "prediction\nchannel 1",
                           "input\nchannel 2"]


def test_the_animation_has_a_block_per_channel(tmp_path):
    inputs, targets, predictions = own()
    path = save_prediction_gif(inputs, targets, predictions, tmp_path / "own.gif",
                               channel_names=["ir108", "sst"])
    with Image.open(path) as gif:
        width, height = gif.size
        assert gif.n_frames == 7
    rows = SEQUENCES * 2  # a named row per sequence and channel, 2 pixels between rows
    assert (width, height) == (3 * SIZE + 4, rows * (LABEL_HEIGHT + SIZE) + 2 * (rows - 1))


def test_gray_frames_in_the_unit_range_look_as_before(tmp_path):
    inputs, targets = frames(1, 4), frames(1, 3, seed=1)
    predictions = targets * 1.2 - 0.1  # a little outside [0, 1]: clipped as before
    figure = prediction_figure(inputs, targets, predictions)
    assert labels(figure) == ["input", "truth", "prediction"] * SEQUENCES
    assert all(ax.images[0].get_clim() == (0.0, 1.0) for ax in figure.axes)
    picture = save_prediction_figure(inputs, targets, predictions, tmp_path / "one.png", "t")
    with Image.open(picture) as image:  # 4 frames wide: 3.6 x (6 x 0.9 + 0.6) inches at 100 dpi
        assert image.size == (360, 600)
    gif = save_prediction_gif(inputs, targets, predictions, tmp_path / "one.gif")
    with Image.open(gif) as animation:  # no label: rows of truth | prediction | error
        assert animation.size == (3 * SIZE + 4, SEQUENCES * SIZE + 2 * (SEQUENCES - 1))
        animation.seek(4)  # the first prediction
        first = np.asarray(animation.convert("L"), dtype=np.float32) / 255
    np.testing.assert_allclose(first[:SIZE, :SIZE], targets[0, 0, 0].numpy(), atol=1 / 255)


def test_a_single_channel_outside_the_unit_range_is_stretched():
    inputs, targets, _ = own()
    (view,) = channel_views(torch.cat([inputs, targets], dim=1)[:, :, 1:])
    assert view.name is None and 278 < view.vmin < view.vmax < 282


def test_colour_channels_are_one_colour_picture_and_others_gray():
    inputs, targets = frames(3, 4), frames(3, 3, seed=1)
    for names in (None, ["red", "green", "blue"]):  # colour video, colour PNG frames
        colour = prediction_figure(inputs, targets, targets, channel_names=names)
        assert labels(colour) == ["input", "truth", "prediction"] * SEQUENCES
        assert colour.axes[0].images[0].get_array().shape == (SIZE, 4 * SIZE, 3)
    gray = prediction_figure(inputs, targets, targets, channel_names=["a", "b", "c"])
    assert len(gray.axes) == SEQUENCES * 3 * 3 and gray.axes[-1].get_ylabel() == "prediction\nc"


def test_one_channel_is_never_labelled():
    inputs, targets = frames(1, 4), frames(1, 3, seed=1)
    figure = prediction_figure(inputs, targets, targets, channel_names=["gray"])
    assert labels(figure) == ["input", "truth", "prediction"] * SEQUENCES


def test_the_figures_take_the_names_of_the_data_channels():
    named = SimpleNamespace(datamodule=SimpleNamespace(channel_names=("ir108", "sst")))
    assert channel_names_of(named) == ["ir108", "sst"]
    assert channel_names_of(SimpleNamespace(datamodule=SimpleNamespace())) is None
    assert channel_names_of(SimpleNamespace()) is None


def test_per_channel_curves_share_their_metrics_panel(tmp_path):
    from predlearn.visualize import curve_panels, save_curves_figure

    keys = ["mse_per_frame", "mse_per_frame[ir]", "mse_per_frame[wv]", "psnr", "csi_20dBZ",
            "csi_30dBZ"]
    assert curve_panels(keys) == {"mse_per_frame": keys[:3], "psnr": ["psnr"],
                                  "csi": ["csi_20dBZ", "csi_30dBZ"]}
    curves = {key: torch.arange(3, dtype=torch.float32) for key in keys[:4]}
    assert save_curves_figure(curves, tmp_path / "c.png").is_file()


def test_pictures_of_a_loaded_checkpoint_name_the_step_of_its_weights():
    from types import SimpleNamespace

    from predlearn.prediction_figures import weights_step

    loaded = SimpleNamespace(trained_steps=900)
    assert weights_step(SimpleNamespace(global_step=0), loaded) == "step 900"  # test, predict
    assert weights_step(SimpleNamespace(global_step=40), loaded) == "step 40"  # a resumed fit
    assert weights_step(SimpleNamespace(global_step=0), SimpleNamespace()) == "step 0"
