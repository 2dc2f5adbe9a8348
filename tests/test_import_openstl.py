"""OpenSTL checkpoints of PredRNN++, MIM, E3D-LSTM, MAU, PhyDNet, SimVP (IncepU, gSTA) and TAU
imported as predlearn models predict what OpenSTL's own networks predicted.

The fixtures (``tests/reference/weights/openstl/``, made by ``make_openstl.py`` beside them from
OpenSTL's code at commit c74deb5): each network at a small size with random weights, saved as
OpenSTL's Lightning checkpoint (``<name>.ckpt``: the network under ``model.``, the run config as
``hyper_parameters``), and OpenSTL's closed-loop predictions of fixed frames
(``<name>.expected.pt``). The same weights as a plain ``.pth`` state dict (no settings) must
import from their shapes and the options a user gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from predlearn.errors import CheckpointError
from predlearn.weight_import import import_weights
from predlearn.weight_import.openstl_options import hidden_list

FIXTURES = Path(__file__).parent / "reference" / "weights" / "openstl"
TOLERANCE = 1e-5

#: what a plain state dict needs beyond its weights: what no weight shows (frame sizes the
#: network has no LayerNorm over, MAU's attention window) and the channels a patched input holds
PLAIN_NEEDS: dict[str, dict[str, Any]] = {
    "predrnn_pp": {"frame_channels": 2, "frame_size": [16, 16]},
    "mim": {"frame_channels": 2}, "e3d_lstm": {}, "mau": {"tau": 2},
    "phydnet": {"frame_size": [16, 16]}, "simvp_incepu": {"frame_size": [16, 16]},
    "simvp_gsta": {"frame_size": [16, 16]}, "tau": {"frame_size": [16, 16]},
}
#: the fixtures of these models (the folder also holds those of tests/test_import_weights.py)
NAMES = sorted(name for name in (path.name.split(".")[0]
                                 for path in FIXTURES.glob("*.expected.pt"))
               if name in PLAIN_NEEDS)


def expected(name: str) -> dict[str, Any]:
    return torch.load(FIXTURES / f"{name}.expected.pt", weights_only=True)


def checkpoint(name: str) -> dict[str, Any]:
    return torch.load(FIXTURES / f"{name}.ckpt", weights_only=True)


def predicted(path: Path, model: str, options: dict[str, Any], frames: torch.Tensor,
              horizon: int) -> torch.Tensor:
    imported = import_weights(path, "openstl", model, options=options)
    assert not imported.predictor.training
    with torch.no_grad():
        return imported.predictor(frames, horizon)


def read_off_config(model: str, hp: dict[str, Any]) -> dict[str, Any]:
    """The predictor options a user reads off OpenSTL's run config (configs/mmnist-openstl/*.yaml
    say which setting is which option)."""
    _, channels, height, width = hp["in_shape"]
    options: dict[str, Any] = {"frame_channels": channels, "frame_size": [height, width]}
    if model in ("predrnn_pp", "mim", "e3d_lstm", "mau"):
        options.update(hidden_channels=hidden_list(hp["num_hidden"]),
                       patch_size=hp["patch_size"])
        options["kernel_size"] = hp["filter_size"]  # E3D-LSTM: its fixed 5 x 5, as its config
    if model in ("predrnn_pp", "mim", "e3d_lstm"):
        options["layer_norm"] = bool(hp["layer_norm"])
    if model == "e3d_lstm":
        options.update(temporal_kernel_size=2, window_length=2, variant="openstl")
    if model == "mau":
        options.update(sr_size=hp["sr_size"], tau=hp["tau"], cell_mode=hp["cell_mode"],
                       model_mode=hp["model_mode"])
    if model == "phydnet":
        options["patch_size"] = hp["patch_size"]
    if model in ("simvp", "tau"):
        options.update(context_frames=hp["in_shape"][0], spatial_channels=hp["hid_S"],
                       temporal_channels=hp["hid_T"], spatial_layers=hp["N_S"],
                       temporal_layers=hp["N_T"], encoder_kernel_size=hp["spatio_kernel_enc"],
                       decoder_kernel_size=hp["spatio_kernel_dec"])
    if model == "simvp":
        options["translator"] = str(hp["model_type"]).lower()
    return options


def test_every_model_has_a_fixture() -> None:
    assert NAMES == sorted(PLAIN_NEEDS)
    assert all((FIXTURES / f"{name}.ckpt").is_file() for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_predicts_what_openstl_did(name: str) -> None:
    fixture = expected(name)
    frames, horizon, outputs = fixture["frames"], fixture["horizon"], fixture["outputs"]
    assert outputs.abs().max() > 0.5  # order 1: 1e-5 is a tight tolerance
    imported = import_weights(FIXTURES / f"{name}.ckpt", "openstl", fixture["model"],
                              options=fixture["options"])
    hp = checkpoint(name)["hyper_parameters"]
    assert (imported.context_frames, imported.horizon) == (hp["pre_seq_length"],
                                                           hp["aft_seq_length"])
    with torch.no_grad():
        ours = imported.predictor(frames, horizon)
    assert ours.shape == outputs.shape
    assert (ours - outputs).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("prefix", ["model.", ""])
@pytest.mark.parametrize("name", NAMES)
def test_plain_state_dict_with_options_given(name: str, prefix: str, tmp_path: Path) -> None:
    fixture, contents = expected(name), checkpoint(name)
    state = {prefix + key.removeprefix("model."): value
             for key, value in contents["state_dict"].items()}
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    options = {**read_off_config(fixture["model"], contents["hyper_parameters"]),
               **fixture["options"]}
    ours = predicted(path, fixture["model"], options, fixture["frames"], fixture["horizon"])
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name", NAMES)
def test_plain_state_dict_options_from_its_shapes(name: str, tmp_path: Path) -> None:
    fixture, contents = expected(name), checkpoint(name)
    path = tmp_path / f"{name}.pth"
    torch.save(contents["state_dict"], path)
    options = {**PLAIN_NEEDS[name], **fixture["options"]}
    ours = predicted(path, fixture["model"], options, fixture["frames"], fixture["horizon"])
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize(("name", "options", "message"), [
    ("predrnn_pp", {"hidden_channels": [8, 8, 8]},
     (r"'cells\.0\.conv_1x1\.weight' is \[4, 8, 1, 1\] in the weights, \[8, 16, 1, 1\] in the "
      r"model; the weights fit --model\.predictor\.hidden_channels=\[4,4,4\]$")),
    ("simvp_gsta", {"spatial_channels": 8},
     (r"is \[16\] in the weights, \[32\] in the model; the weights fit "
      r"--model\.predictor\.spatial_channels=4$")),
    ("mau", {"hidden_channels": [4, 4]},
     (r"unexpected key 'cells\.2\..*'.*the weights fit --model\.predictor\.hidden_channels="
      r"\[4,4,4\]$")),
])
def test_a_mismatch_names_the_key_and_the_option(name: str, options: dict, message: str) -> None:
    model = expected(name)["model"]
    with pytest.raises(CheckpointError, match=message) as error:
        import_weights(FIXTURES / f"{name}.ckpt", "openstl", model, options=options)
    assert "\n" not in str(error.value)


def test_phydnet_groups_no_file_records_are_asked_for() -> None:
    with pytest.raises(CheckpointError, match=r"not multiples of OpenSTL's 16 GroupNorm groups"
                       r".*give --model\.predictor\.norm_groups$"):
        import_weights(FIXTURES / "phydnet.ckpt", "openstl", "phydnet")


def modified(name: str, tmp_path: Path, **settings: Any) -> Path:
    """The fixture's checkpoint with some of its settings changed."""
    contents = checkpoint(name)
    contents["hyper_parameters"].update(settings)
    path = tmp_path / f"{name}.ckpt"
    torch.save(contents, path)
    return path


@pytest.mark.parametrize(("name", "model", "settings", "message"), [
    ("predrnn_pp", "predrnn_pp", {"layer_norm": 1},
     r"trained with layer_norm=1, which OpenSTL's PredRNN\+\+ cannot run"),
    ("mim", "mim", {"stride": 2}, r"trained with stride=2; .* stride 1"),
    ("simvp_gsta", "simvp", {"model_type": "ConvNeXt"},
     r"model_type='convnext'; predlearn converts model_type 'IncepU' and 'gSTA'"),
    ("tau", "simvp", {}, r"model_type='tau', which is predlearn's tau: --model=tau$"),
    ("simvp_incepu", "tau", {}, (r"model_type='incepu', which is predlearn's simvp: "
                                 r"--model=simvp$")),
])
def test_an_unsupported_setting_is_refused(name: str, model: str, settings: dict, message: str,
                                           tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=message):
        import_weights(modified(name, tmp_path, **settings), "openstl", model)


def test_another_models_weights_are_refused_by_name() -> None:
    with pytest.raises(CheckpointError, match=r"'gradient_highway\.z_concat\.0\.weight' is not a "
                                              r"weight of openstl's mim; is --model=mim"):
        import_weights(FIXTURES / "predrnn_pp.ckpt", "openstl", "mim")


def test_openstl_method_names_are_accepted() -> None:
    fixture = expected("e3d_lstm")
    ours = predicted(FIXTURES / "e3d_lstm.ckpt", "E3DLSTM", {}, fixture["frames"],
                     fixture["horizon"])
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


@pytest.mark.parametrize("name", ["mim", "tau"])
def test_the_written_folder_predicts_the_same(name: str, tmp_path: Path) -> None:
    from predlearn import from_pretrained
    from predlearn.weight_import.importer import write_outputs

    fixture = expected(name)
    imported = import_weights(FIXTURES / f"{name}.ckpt", "openstl", fixture["model"])
    folder, written = write_outputs(imported, tmp_path / name, tmp_path / f"{name}.ckpt")
    assert written is not None and written.is_file()
    with torch.no_grad():
        ours = from_pretrained(folder)(fixture["frames"], fixture["horizon"])
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


def test_e3d_lstm_filters_come_from_the_weights(tmp_path: Path) -> None:
    """OpenSTL's E3D-LSTM fixes its (2, 5, 5) filters and does not read filter_size."""
    fixture = expected("e3d_lstm")
    path = modified("e3d_lstm", tmp_path, filter_size=3)
    ours = predicted(path, "e3d_lstm", {}, fixture["frames"], fixture["horizon"])
    assert (ours - fixture["outputs"]).abs().max().item() <= TOLERANCE


def test_a_file_without_the_models_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    torch.save({"conv_last.weight": torch.zeros(1, 1, 1, 1)}, path)
    for model in ("predrnn_pp", "mim", "e3d_lstm", "mau", "phydnet", "simvp", "tau"):
        with pytest.raises(CheckpointError, match=r"(no '|is not a weight of).*--model"):
            import_weights(path, "openstl", model)
