"""Pretrained folders from the Hugging Face Hub (``hf://owner/name``), with huggingface-hub's
download replaced by a local copy: nothing reaches the network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import LocalEntryNotFoundError
from support import tiny_options

import predlearn
from predlearn import pretrained_hub
from predlearn.cli_arguments import resolve_registry_names
from predlearn.errors import CheckpointError, ChecksumError, UsageError


@pytest.fixture
def hub(tmp_path, monkeypatch) -> dict:
    """A fake Hub: ``owner/name`` -> a local folder; records every call's arguments."""
    monkeypatch.setenv("PREDLEARN_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
    predictor = predlearn.create_model("convlstm", **tiny_options("convlstm", 3)).eval()
    repos = {"me/tiny": predlearn.save_pretrained(predictor, tmp_path / "hub" / "tiny",
                                                  context_frames=3, horizon=2)}
    calls: list[dict] = []

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append({"repo": repo_id, "revision": revision, "allow": allow_patterns, **kwargs})
        if repo_id not in repos:
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache "
                                          "and outgoing traffic has been disabled.")
        local = tmp_path / "hf-cache" / repo_id.replace("/", "--")
        if not local.exists():
            shutil.copytree(repos[repo_id], local)
        return str(local)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return {"repos": repos, "calls": calls, "predictor": predictor, "root": tmp_path}


def test_a_hub_model_loads_like_a_folder(hub):
    predictor = hub["predictor"]
    frames = torch.rand(2, 3, predictor.frame_channels, *predictor.frame_size)
    loaded = predlearn.from_pretrained("hf://me/tiny@v1")
    with torch.no_grad():
        assert torch.equal(loaded(frames, 2), hub["predictor"](frames, 2))
    call = hub["calls"][-1]
    assert (call["repo"], call["revision"]) == ("me/tiny", "v1")
    assert sorted(call["allow"]) == ["README.md", "config.json", "model.safetensors"]
    assert call["library_name"] == "predlearn"
    bare = predlearn.from_pretrained("me/tiny")  # no such local path: a Hub name
    assert type(bare) is type(loaded) and hub["calls"][-1]["revision"] is None


def test_ckpt_path_takes_a_hub_model(hub):
    resolved = resolve_registry_names(["predict", "--ckpt_path=hf://me/tiny"])
    path = Path(resolved[1].split("=", 1)[1])
    assert path.is_file() and path.parent == hub["root"] / "cache" / "pretrained"
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["hyper_parameters"]["horizon"] == 2
    # a relative path that does not exist stays a path on the command line (Lightning reports it)
    assert resolve_registry_names(["--ckpt_path=runs/typo"]) == ["--ckpt_path=runs/typo"]


def test_offline_without_the_model_in_the_cache_is_one_line(hub):
    with pytest.raises(CheckpointError) as error:
        predlearn.from_pretrained("hf://me/other")
    message = str(error.value)
    assert message.startswith("hf://me/other: not in the local Hugging Face cache, and the Hub "
                              "cannot be reached (Cannot find the requested files")
    assert "unset HF_HUB_OFFLINE" in message and "\n" not in message


def test_damaged_downloaded_weights_fail_their_checksum(hub):
    local = Path(pretrained_hub.hub_folder("hf://me/tiny"))
    config = json.loads((local / "config.json").read_text())
    config["weights_sha256"] = "0" * 64
    (local / "config.json").write_text(json.dumps(config))
    with pytest.raises(ChecksumError, match="model.safetensors: SHA-256 .* records 0000"):
        predlearn.from_pretrained("hf://me/tiny")


def test_a_hub_repository_that_is_no_pretrained_folder_is_named(hub, tmp_path):
    (hub["repos"]["me/tiny"] / "config.json").unlink()
    with pytest.raises(CheckpointError, match="hf://me/tiny: the Hub model has no config.json"):
        predlearn.from_pretrained("hf://me/tiny")


def test_without_the_extra_the_message_names_it(hub, monkeypatch):
    monkeypatch.setattr(pretrained_hub, "HUB", False)
    with pytest.raises(UsageError, match=r"needs the `hub` extra: pip install 'predlearn\[hub\]'"):
        predlearn.from_pretrained("hf://me/tiny")
    with pytest.raises(UsageError, match="a Hub model is named hf://owner/name"):
        pretrained_hub.hub_folder("hf://not a name")
