"""Pretrained folders: config.json + model.safetensors + README.md, saved and loaded without
pickle; the shipped model as one; ``--ckpt_path`` of a folder; refusals of untrusted files."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from support import RunsCode, tiny_options

import predlearn
from predlearn.checkpoint_files import MODULE_CLASS_PATH, read_checkpoint
from predlearn.cli import run_cli
from predlearn.cli_arguments import resolve_registry_names
from predlearn.errors import CheckpointError, ChecksumError
from predlearn.files import sha256_of
from predlearn.module import PredictiveModule
from predlearn.pretrained import WEIGHTS_DIR
from predlearn.pretrained_folder import checkpoint_of, load_module

J, K = 4, 3
ROUND_TRIP_MODELS = ("predrnn", "convlstm", "simvp", "tau", "mau")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """predlearn's cache (checkpoints of folders) in the test's own folder."""
    monkeypatch.setenv("PREDLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny(name: str = "predrnn", **options) -> predlearn.predictor.Predictor:
    torch.manual_seed(0)
    return predlearn.create_model(name, **{**tiny_options(name, J), **options}).eval()


def frames_for(predictor, batch: int = 2) -> torch.Tensor:
    size = getattr(predictor, "frame_size", (64, 64))
    return torch.rand(batch, J, predictor.frame_channels, *size,
                      generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ROUND_TRIP_MODELS)
def test_round_trip_gives_identical_predictions(name, tmp_path):
    predictor = tiny(name)
    folder = predlearn.save_pretrained(predictor, tmp_path / name, context_frames=J, horizon=K)
    loaded = predlearn.from_pretrained(folder)
    assert type(loaded) is type(predictor) and not loaded.training
    assert loaded.config == predictor.config
    frames = frames_for(predictor)
    with torch.no_grad():
        assert torch.equal(loaded(frames, K), predictor(frames, K))
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == name and config["frames"]["context_frames"] == J
    assert config["predlearn"] == predlearn.__version__


def test_the_files_are_what_they_claim(tmp_path):
    predictor = tiny()
    folder = predlearn.save_pretrained(predictor, tmp_path / "tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                        "model.safetensors"]
    raw = (folder / "model.safetensors").read_bytes()
    length = struct.unpack("<Q", raw[:8])[0]  # safetensors: u64 header size, then JSON
    header = json.loads(raw[8:8 + length])
    metadata = header.pop("__metadata__")
    assert metadata["predlearn"] == predlearn.__version__
    state = predictor.state_dict()
    assert set(header) == set(state)
    for key, entry in header.items():
        assert entry["dtype"] == "F32" and entry["shape"] == list(state[key].shape)
    assert not raw.startswith((b"PK", b"\x80"))  # no zip (torch.save), no pickle
    card = (folder / "README.md").read_text()
    assert card.startswith("# tiny\n") and "predlearn.zoo.predrnn.PredRNN" in card


def test_a_module_and_its_data_scale_round_trip_through_a_checkpoint(tmp_path):
    """A checkpoint with own data's scale -> folder (the scale, scores and command in
    config.json and the card) -> the checkpoint Lightning reads for --ckpt_path."""
    module = PredictiveModule(predictor=tiny(), context_frames=J, horizon=K, loss="l2")
    scale = {"offset": [2.0], "scale": [10.0], "unit_interval": True}
    torch.save({"state_dict": module.state_dict(),
                "hyper_parameters": {**module.hparams, "_class_path": MODULE_CLASS_PATH},
                "FramesDataModule": {"value_scale": scale, "channel_names": ["rain"]},
                "predlearn": {"test_scores": {"mse_per_frame": 12.5}, "step": 40,
                              "optimizer": "not kept"}}, tmp_path / "run.ckpt")
    folder = predlearn.save_pretrained(tmp_path / "run.ckpt", tmp_path / "own",
                                       test_command="predlearn test --ckpt_path=run.ckpt")
    config = json.loads((folder / "config.json").read_text())
    assert config["data"] == {"datamodule": "FramesDataModule", "value_scale": scale,
                              "channel_names": ["rain"]}
    assert config["training"] == {"step": 40, "test_scores": {"mse_per_frame": 12.5},
                                  "test_command": "predlearn test --ckpt_path=run.ckpt"}
    assert config["module"]["loss"] == "l2"
    card = (folder / "README.md").read_text()
    assert "mse_per_frame 12.5, measured by `predlearn test --ckpt_path=run.ckpt`" in card
    assert "rain" in card and "step 40" in card

    checkpoint = read_checkpoint(checkpoint_of(folder))  # weights_only: tensors, plain values
    assert checkpoint["FramesDataModule"]["value_scale"] == scale
    assert checkpoint["hyper_parameters"]["context_frames"] == J
    loaded = load_module(folder)
    assert (loaded.context_frames, loaded.horizon, loaded.loss_name) == (J, K, "l2")
    frames = frames_for(module.predictor)
    with torch.no_grad():
        assert torch.equal(loaded(frames, K), module.eval()(frames, K))


def test_the_shipped_model_is_a_folder_with_its_checksum_and_scores():
    name = "predrnn-mmnist2"
    assert (WEIGHTS_DIR / name / "config.json").is_file() and predlearn.list_pretrained() == [name]
    assert not list(WEIGHTS_DIR.glob("*.ckpt"))  # one format for shipped models
    config = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
    assert config["weights_sha256"] == sha256_of(WEIGHTS_DIR / name / "model.safetensors")
    module = predlearn.load_pretrained(name)
    predictor = predlearn.from_pretrained(name)
    frames = torch.rand(2, 10, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(predictor(frames, 10), module(frames, 10))
    assert config["training"]["test_scores"]["mse_per_frame"] == pytest.approx(77.88223)
    assert "from_pretrained" in predlearn.pretrained.model_card(name)


def test_ckpt_path_takes_a_folder_as_a_checkpoint_written_once(tmp_path, cache):
    folder = predlearn.save_pretrained(tiny(), tmp_path / "tiny")
    resolved = resolve_registry_names(["predict", f"--ckpt_path={folder}"])
    path = Path(resolved[1].split("=", 1)[1])
    assert path.parent == cache / "pretrained" and path.name.startswith("tiny-")
    stamp = path.stat().st_mtime_ns
    assert checkpoint_of(folder) == path and path.stat().st_mtime_ns == stamp  # not rewritten
    clip = np.random.default_rng(0).random((2, 10, 1, 64, 64), dtype=np.float32)
    with h5py.File(tmp_path / "clip.h5", "w") as handle:
        handle["frames"] = clip
    output = tmp_path / "predictions.h5"
    run_cli(["predict", f"--ckpt_path={folder}", "--data=frames",
             f"--data.path={tmp_path / 'clip.h5'}", f"--predictions.output_path={output}",
             "--trainer.logger=false", "--trainer.enable_progress_bar=false",
             f"--trainer.default_root_dir={tmp_path}"])
    with h5py.File(output) as handle:
        predictions = handle["predictions"][:]
    with torch.no_grad():
        expected = predlearn.from_pretrained(folder)(torch.from_numpy(clip), 10).clamp(0, 1)
    np.testing.assert_allclose(predictions, expected.numpy(), atol=1e-6)


def test_a_pickle_that_would_run_code_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "hyper_parameters": {"predictor": RunsCode(marker)}},
               tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="evil.ckpt: holds pickled Python objects"):
        predlearn.save_pretrained(tmp_path / "evil.ckpt", tmp_path / "out")
    with pytest.raises(CheckpointError, match="evil.ckpt is a file, not a pretrained folder"):
        predlearn.from_pretrained(tmp_path / "evil.ckpt")
    folder = predlearn.save_pretrained(tiny(), tmp_path / "swapped")
    (tmp_path / "evil.ckpt").replace(folder / "model.safetensors")  # a pickle in disguise
    with pytest.raises(ChecksumError, match="model.safetensors: SHA-256 .* but config.json "
                                            "records .*: the weights were changed or damaged"):
        predlearn.from_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    del config["weights_sha256"]  # a folder without a checksum: safetensors itself refuses it
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        predlearn.from_pretrained(folder)
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_config_naming_other_code_is_refused_without_importing_it(tmp_path, monkeypatch):
    (tmp_path / "side_effect.py").write_text(
        f"open({str(tmp_path / 'imported')!r}, 'w')\nclass Model: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    folder = predlearn.save_pretrained(tiny(), tmp_path / "tiny")
    config = json.loads((folder / "config.json").read_text())
    config["predictor"]["class_path"] = "side_effect.Model"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'side_effect.Model' is neither a registered "
                                              "model nor a predlearn class") as error:
        predlearn.from_pretrained(folder)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "imported").exists() and "side_effect" not in sys.modules


@pytest.mark.parametrize(("option", "wrong", "message"), [
    ("hidden_channels", [4, 4, 4], "missing key 'cells.2."),
    ("hidden_channels", [8, 8], "'cells.0.conv_1x1.weight' is [4, 8, 1, 1] in the weights, [8, 16, 1, 1] in the model"),
    ("kernel_size", 5, "'cells.0.conv_h.weight' is [16, 4, 3, 3] in the weights, [16, 4, 5, 5] in the model"),
])
def test_weights_that_do_not_fit_the_config_name_the_key_and_the_option(
        tmp_path, option, wrong, message):
    predictor = tiny(hidden_channels=[4, 4], kernel_size=3)
    folder = predlearn.save_pretrained(predictor, tmp_path / "tiny")
    config = json.loads((folder / "config.json").read_text())
    right = config["predictor"]["init_args"][option]
    config["predictor"]["init_args"][option] = wrong
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as error:
        predlearn.from_pretrained(folder)
    text = str(error.value)
    assert "\n" not in text and message in text, text
    assert text.endswith(f"the weights fit --model.predictor.{option}="
                         f"{json.dumps(right, separators=(',', ':'))}"), text
