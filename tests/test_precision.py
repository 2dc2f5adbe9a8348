"""bf16 mixed precision for every model on CPU, torch.compile, and activation checkpointing."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from support import TINY_MODELS, quiet_trainer, tiny_options, trainable_models
from torch.utils.data import DataLoader, TensorDataset

import predlearn
from predlearn.module import PredictiveModule


def tiny_module(name: str, **kwargs) -> PredictiveModule:
    torch.manual_seed(0)
    predictor = predlearn.create_model(name, frame_size=(16, 16), **tiny_options(name, 3))
    return PredictiveModule(predictor, context_frames=3, horizon=2, **kwargs)


def sequences(count: int = 4) -> DataLoader:
    data = torch.rand(count, 5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    return DataLoader(TensorDataset(data), batch_size=2)


def outputs_and_gradients(model, frames, targets, parameters_of=None) -> tuple:
    """Predictions and parameter gradients of one training forward and backward (MSE loss).

    ``parameters_of``: the module owning the parameters (the eager module behind a compiled one).
    """
    owner = parameters_of or model
    owner.zero_grad(set_to_none=True)
    predictions = model(frames, targets.shape[1])
    (predictions - targets).square().mean().backward()
    return predictions.detach(), {n: p.grad for n, p in owner.named_parameters()}


def assert_same_outputs_and_gradients(actual: tuple, expected: tuple) -> None:
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-5, atol=1e-6)
    assert actual[1].keys() == expected[1].keys()
    for key, grad in expected[1].items():
        torch.testing.assert_close(actual[1][key], grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", trainable_models())
def test_bf16_mixed_training_step_and_float32_metrics(name):
    module = tiny_module(name)
    trainer = quiet_trainer(max_steps=1, precision="bf16-mixed", limit_val_batches=0)
    trainer.fit(module, sequences())
    loss = trainer.callback_metrics["train/loss"]
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    (scores,) = quiet_trainer(precision="bf16-mixed").test(module, sequences())
    assert all(math.isfinite(v) for v in scores.values())
    assert module.test_metrics.metrics["mse"].total.dtype == torch.float64  # sums stay exact


def test_compiled_predictor_gives_the_eager_outputs():
    eager = tiny_module("predrnn")
    compiled = tiny_module("predrnn", compile=True, compile_backend="aot_eager")
    compiled.load_state_dict(eager.state_dict())  # same keys: compiling adds no submodule
    frames = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(frames, 2), eager(frames, 2))
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(compiled, sequences())  # trains through the compiled predictor
    assert math.isfinite(trainer.callback_metrics["train/loss"].item())


@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="the inductor backend needs a C++ compiler on CPU; none found")
def test_inductor_compiled_predrnn_matches_eager_outputs_and_gradients():
    """The real backend (generated C++ kernels), not only graph capture: one training forward
    and backward through ``torch.compile`` against eager mode, same weights."""
    torch.manual_seed(0)
    eager = predlearn.create_model("predrnn", frame_size=(16, 16), hidden_channels=[4, 4],
                                   kernel_size=3)
    frames, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    compiled = torch.compile(eager, backend="inductor")
    actual = outputs_and_gradients(compiled, frames, targets, parameters_of=eager)
    assert_same_outputs_and_gradients(actual, outputs_and_gradients(eager, frames, targets))


@pytest.mark.parametrize("name", ["convlstm", "predrnn_m", "predrnn"])
def test_activation_checkpointing_gives_the_same_gradients(name):
    frames, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    gradients = []
    for checkpoint_steps in (False, True):
        torch.manual_seed(0)
        model = predlearn.create_model(name, frame_size=(16, 16), checkpoint_steps=checkpoint_steps,
                                       **TINY_MODELS[name])
        model.train()
        (model(frames, 4) - targets).square().mean().backward()
        gradients.append({n: p.grad for n, p in model.named_parameters()})
    assert gradients[0].keys() == gradients[1].keys()
    for key in gradients[0]:
        torch.testing.assert_close(gradients[1][key], gradients[0][key])


@pytest.mark.parametrize("name", ["convlstm", "predrnn_m", "predrnn"])
def test_channels_last_is_a_layout_only(name):
    """Same state dict, same predictions and gradients; the weights and states are NHWC."""
    frames, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    torch.manual_seed(0)
    default = predlearn.create_model(name, frame_size=(16, 16), patch_size=2,
                                     **TINY_MODELS[name])
    nhwc = predlearn.create_model(name, frame_size=(16, 16), patch_size=2, channels_last=True,
                                  **TINY_MODELS[name])
    nhwc.load_state_dict(default.state_dict())
    convolutions = [m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions
    )
    states = nhwc.init_states(2, frames)
    assert states["h"][0].is_contiguous(memory_format=torch.channels_last)
    assert not states["h"][0].is_contiguous()  # really NHWC, not a 1x1 corner case
    assert_same_outputs_and_gradients(outputs_and_gradients(nhwc, frames, targets),
                                      outputs_and_gradients(default, frames, targets))
