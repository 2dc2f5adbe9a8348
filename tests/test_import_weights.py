"""``predlearn import-weights``: the authors' predrnn-pytorch and OpenSTL's ConvLSTM, PredRNN and
PredRNN v2 checkpoints (fixtures made from their code by
tests/reference/weights/make_predrnn_family.py) give their predictions in predlearn; what does not
fit is refused in one line; nothing in a file runs code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from support import RunsCode

import predlearn
from predlearn.cli import main, run_cli
from predlearn.errors import CheckpointError, OptionValueError, UsageError
from predlearn.module import PredictiveModule
from predlearn.weight_import import import_weights
from predlearn.weight_import.renaming import patch_order

FIXTURES = Path(__file__).parent / "reference" / "weights"
TOLERANCE = 1e-5
#: (source, model, the source's file) of the fixtures of this family
FAMILY = [("predrnn-pytorch", "predrnn", "predrnn.ckpt-1"),
          ("predrnn-pytorch", "predrnn_v2", "predrnn_v2.ckpt-1"),
          ("openstl", "convlstm", "convlstm.ckpt"),
          ("openstl", "predrnn", "predrnn.ckpt"),
          ("openstl", "predrnn_v2", "predrnn_v2.ckpt")]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PREDLEARN_CACHE", str(tmp_path / "cache"))


def expected(source: str, model: str) -> dict:
    return torch.load(FIXTURES / source / f"{model}.expected.pt", weights_only=True)


def predicted(imported, frames: torch.Tensor, horizon: int) -> torch.Tensor:
    with torch.no_grad():
        return imported.predictor(frames, horizon)


@pytest.mark.parametrize(("source", "model", "file"), FAMILY,
                         ids=[f"{s}-{m}" for s, m, _ in FAMILY])
def test_imported_weights_predict_what_the_source_code_predicted(source, model, file):
    fixture = expected(source, model)
    imported = import_weights(FIXTURES / source / file, source, model, fixture["options"])
    ours = predicted(imported, fixture["frames"], fixture["horizon"])
    assert ours.shape == fixture["outputs"].shape
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE
    assert fixture["outputs"].abs().max() > 0.5  # outputs of order 1: the tolerance is tight


def test_the_comparison_sees_a_wrong_forget_bias():
    """The authors' ST-LSTM adds 1.0 inside both forget gates: without it the predictions
    differ far beyond the tolerance (so the check above can fail)."""
    fixture = expected("predrnn-pytorch", "predrnn_v2")
    imported = import_weights(FIXTURES / "predrnn-pytorch" / "predrnn_v2.ckpt-1",
                              "predrnn-pytorch", "predrnn_v2",
                              {**fixture["options"], "cell_options": {"forget_bias": 0.0}})
    ours = predicted(imported, fixture["frames"], fixture["horizon"])
    assert (ours - fixture["outputs"]).abs().max().item() > 1e-2


def test_options_come_from_the_file_and_the_command_line_wins():
    path = FIXTURES / "openstl" / "predrnn.ckpt"
    imported = import_weights(path, "openstl", "PredRNN")  # OpenSTL's method name
    args = imported.predictor.config["init_args"]
    # from OpenSTL's hyper-parameters: num_hidden "4,4", filter_size 3, patch_size 2, in_shape
    assert (args["hidden_channels"], args["kernel_size"], args["patch_size"]) == ([4, 4], 3, 2)
    assert (args["frame_size"], imported.context_frames, imported.horizon) == ([16, 16], 3, 2)
    assert args["cell_options"] == {"forget_bias": 1.0}
    larger = import_weights(path, "openstl", "predrnn", {"frame_size": [32, 32]}, horizon=5)
    assert larger.predictor.config["init_args"]["frame_size"] == [32, 32]
    assert larger.horizon == 5
    frames = torch.rand(1, 3, 1, 32, 32)  # convolutions: the same weights run on larger frames
    assert predicted(larger, frames, 5).shape == (1, 5, 1, 32, 32)


def test_the_authors_files_options_come_from_the_weights_shapes():
    imported = import_weights(FIXTURES / "predrnn-pytorch" / "predrnn.ckpt-1", "predrnn-pytorch",
                              "predrnn", {"frame_channels": 3})
    args = imported.predictor.config["init_args"]
    assert (args["hidden_channels"], args["kernel_size"], args["patch_size"]) == ([4, 4], 3, 2)
    # no setting in the file shows the frame size, but its LayerNorms over (C, H/p, W/p) do
    assert args["frame_size"] == [16, 16]
    assert args["cell_options"] == {"forget_bias": 1.0, "layer_norm": True}
    assert (imported.context_frames, imported.horizon) == (10, 10)  # the authors' scripts


def test_the_patch_channel_order_is_the_sources_reshape():
    assert patch_order(2, 3) == [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11]
    frame = torch.rand(2, 3, 8, 8)
    ours = F.pixel_unshuffle(frame, 2)  # (B, C*4, 4, 4): channel-major
    # the authors' reshape_patch: (H/p, p, W/p, p, C) -> (H/p, W/p, p, p, C), patch-major
    theirs = frame.permute(0, 2, 3, 1).reshape(2, 4, 2, 4, 2, 3).transpose(2, 3).reshape(
        2, 4, 4, 12)
    for channel, index in enumerate(patch_order(2, 3)):
        assert torch.equal(ours[:, channel], theirs[..., index])


def test_a_plain_state_dict_imports_with_the_options_given(tmp_path):
    """OpenSTL's .pth: a network's state_dict alone (or the Lightning dictionary without the
    optimizer); the settings then come from the weights and the command line."""
    fixture = expected("openstl", "predrnn")
    checkpoint = torch.load(FIXTURES / "openstl" / "predrnn.ckpt", weights_only=True)
    plain = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()}
    torch.save(plain, tmp_path / "plain.pth")
    torch.save({"state_dict": checkpoint["state_dict"]}, tmp_path / "published.pth")
    for name in ("plain.pth", "published.pth"):
        imported = import_weights(tmp_path / name, "openstl", "predrnn",
                                  {"frame_size": [16, 16]}, context_frames=3, horizon=2)
        ours = predicted(imported, fixture["frames"], fixture["horizon"])
        assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


def test_weights_of_another_configuration_name_the_key_and_the_option_that_fits():
    path = FIXTURES / "predrnn-pytorch" / "predrnn_v2.ckpt-1"
    with pytest.raises(CheckpointError) as error:
        import_weights(path, "predrnn-pytorch", "predrnn_v2", {"hidden_channels": [8, 8]})
    message = str(error.value)
    assert "\n" not in message and "predrnn_v2.ckpt-1" in message
    assert "'adapter.weight' is [4, 4, 1, 1] in the weights, [8, 8, 1, 1] in the model" in message
    assert "--model.predictor.hidden_channels=[4,4]" in message


@pytest.mark.parametrize(("source", "model", "file", "match"), [
    ("predrnn-pytorch", "predrnn", "openstl/predrnn.ckpt",
     "no 'net_param' entry, so not a predrnn-pytorch checkpoint .* --from=openstl"),
    ("openstl", "predrnn", "predrnn-pytorch/predrnn.ckpt-1",
     "a predrnn-pytorch checkpoint .* --from=predrnn-pytorch"),
    ("openstl", "convlstm", "openstl/predrnn.ckpt",
     "'cell_list.0.conv_m.0.weight' is not a weight of openstl's convlstm; is --model=convlstm"),
])
def test_a_file_of_another_source_or_model_is_named(source, model, file, match):
    with pytest.raises(CheckpointError, match=match):
        import_weights(FIXTURES / file, source, model)


def test_models_a_source_does_not_have_are_refused_with_those_it_has():
    with pytest.raises(OptionValueError, match="predrnn-pytorch weights convert to predrnn, "
                                               "predrnn_v2"):
        import_weights(FIXTURES / "openstl" / "predrnn.ckpt", "predrnn-pytorch", "simvp")


def test_a_file_that_would_run_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"net_param": {"conv_last.weight": torch.zeros(1)}, "evil": RunsCode(marker)},
               tmp_path / "model.ckpt-1")
    with pytest.raises(CheckpointError, match="model.ckpt-1: holds pickled Python objects"):
        import_weights(tmp_path / "model.ckpt-1", "predrnn-pytorch", "predrnn")
    assert not marker.exists()


def test_lightnings_attribute_dict_reads_as_a_plain_dict(tmp_path):
    """Older Lightning pickles hyper_parameters as its AttributeDict: read without its code."""
    from lightning.fabric.utilities.data import AttributeDict

    checkpoint = torch.load(FIXTURES / "openstl" / "predrnn.ckpt", weights_only=True)
    checkpoint["hyper_parameters"] = AttributeDict(checkpoint["hyper_parameters"])
    torch.save(checkpoint, tmp_path / "best.ckpt")
    imported = import_weights(tmp_path / "best.ckpt", "openstl", "predrnn")
    assert imported.predictor.config["init_args"]["hidden_channels"] == [4, 4]


def test_the_command_writes_a_folder_and_a_checkpoint_that_predict_the_same(tmp_path, capsys):
    fixture = expected("openstl", "predrnn_v2")
    main(["import-weights", str(FIXTURES / "openstl" / "predrnn_v2.ckpt"), "--from=openstl",
          "--model=PredRNNv2", f"--output={tmp_path / 'v2'}"])
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'v2'}/ (config.json, model.safetensors, README.md) and " \
           f"{tmp_path / 'v2.ckpt'}" in out
    assert "as predrnn_v2" in out and "3 -> 2 frames" in out
    folder = predlearn.from_pretrained(tmp_path / "v2")
    module = PredictiveModule.load_from_checkpoint(tmp_path / "v2.ckpt").eval()
    with torch.no_grad():
        for predictor in (folder, module.predictor):
            ours = predictor(fixture["frames"], fixture["horizon"])
            assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE
    assert module.hparams["context_frames"] == 3 and module.hparams["horizon"] == 2
    assert module.predictor.decouple_beta == 0.1  # OpenSTL's decouple_beta, from the file
    card = (tmp_path / "v2" / "README.md").read_text()
    assert "imported from openstl's `predrnn_v2.ckpt`" in card


def test_the_command_takes_predictor_options_as_yaml_values(tmp_path, capsys):
    main(["import-weights", str(FIXTURES / "predrnn-pytorch" / "predrnn.ckpt-1"),
          "--from=predrnn-pytorch", "--model=predrnn", "--model.predictor.frame_channels", "3",
          "--model.predictor.frame_size=[16,16]", "--context_frames=3", "--horizon=2",
          f"--output={tmp_path / 'authors'}", "--checkpoint=none"])
    assert "wrote" in capsys.readouterr().out and not (tmp_path / "authors.ckpt").exists()
    fixture = expected("predrnn-pytorch", "predrnn")
    with torch.no_grad():
        ours = predlearn.from_pretrained(tmp_path / "authors")(fixture["frames"], 2)
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(("argv", "match"), [
    (["--model.predictor.frame_size"], "--model.predictor.frame_size: give a value"),
    (["--trainer.max_steps=3"], "unrecognized arguments: --trainer.max_steps=3"),
    (["--model.predictor.frame_size=[16,"], "is not a value"),
    (["--from=tensorflow"], "invalid choice: 'tensorflow'"),
])
def test_command_line_mistakes_are_one_line(argv, match):
    base = [str(FIXTURES / "openstl" / "predrnn.ckpt"), "--model=predrnn"]
    base += [] if any(a.startswith("--from") for a in argv) else ["--from=openstl"]
    from predlearn.weight_import.command import main as command

    with pytest.raises(UsageError, match=match):
        command(base + argv)


@pytest.mark.slow
def test_an_imported_checkpoint_is_tested_like_any_other(tmp_path):
    """The imported checkpoint through ``predlearn test`` on own data of the model's size."""
    main(["import-weights", str(FIXTURES / "openstl" / "predrnn.ckpt"), "--from=openstl",
          "--model=predrnn", f"--output={tmp_path / 'm'}"])
    rng = np.random.default_rng(0)
    np.save(tmp_path / "series.npy", rng.random((40, 1, 16, 16), dtype=np.float32))
    cli = run_cli(["test", f"--ckpt_path={tmp_path / 'm.ckpt'}", "--data=frames",
          f"--data.path={tmp_path / 'series.npy'}", "--data.layout=TCHW",
          "--data.normalize=none", "--data.batch_size=4", "--data.context_frames=3",
          "--data.horizon=2", "--data.test_fraction=0.5", "--trainer.logger=false",
          f"--trainer.default_root_dir={tmp_path / 'runs'}", "--trainer.accelerator=cpu"])
    metrics = cli.trainer.callback_metrics
    assert cli.model.predictor.config["init_args"]["hidden_channels"] == [4, 4]
    assert 0 < float(metrics["test/mse_per_frame"]) < float("inf")
