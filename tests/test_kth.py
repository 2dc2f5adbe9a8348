"""KTH action: annotation parsing, decoding, the cache, the protocol's windows, end to end."""

from __future__ import annotations

import io
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from kth_fixtures import (
    ACTIONS,
    CLIP_IDS,
    LENGTHS,
    SUB_CLIPS,
    clip_frames,
    write_avi,
    write_fake_kth,
    write_pngs,
)

import predlearn
from predlearn.datamodules import kth, kth_video
from predlearn.datamodules.kth import (
    ClipSource,
    KTHDataModule,
    decode_clip,
    find_sources,
    parse_sequence_annotations,
    sub_clips,
    window_counts,
)
from predlearn.errors import OptionValueError
from predlearn.module import PredictiveModule
from predlearn.registry import DATAMODULES

SPLITS = {"train_persons": [1, 2], "val_persons": [3], "test_persons": [17]}


@pytest.fixture(scope="module")
def kth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fake_kth(tmp_path_factory.mktemp("kth"))


@pytest.fixture()
def fresh_root(kth_root: Path, tmp_path: Path) -> Path:
    """A private copy of the fake data set without any cache."""
    root = tmp_path / "kth"
    shutil.copytree(kth_root, root, ignore=shutil.ignore_patterns("cache"))
    return root


def make_module(root: Path, **kwargs) -> KTHDataModule:
    options = {**SPLITS, "actions": ACTIONS, "download": False, "batch_size": 2, **kwargs}
    return KTHDataModule(str(root), **options)


def read_window(window: torch.Tensor) -> tuple[list[int], set[int]]:
    """(frame indices, clip ids) a window holds, read from the fixture's encoded pixels."""
    pixels = (window[:, 0].numpy() * 255).round().astype(int)
    return list(pixels[:, 10, 64] // 4), set(pixels[:, 118, 64].tolist())


# --- annotations --------------------------------------------------------------------------


def test_parse_annotations_handles_the_quirks(kth_root: Path) -> None:
    annotations = parse_sequence_annotations(kth_root / "00sequences.txt")
    # Header skipped, the '*missing*' clip left out; person03_boxing_d1 is not annotated (a
    # whole-clip action does not need it).
    assert set(annotations) == set(LENGTHS) - {"person03_boxing_d1"}
    assert annotations["person01_walking_d1"] == [(1, 22), (25, 40)]  # tabs and spaces
    assert annotations["person01_running_d1"] == [(1, 21), (24, 45)]  # out of order, sorted
    assert annotations["person02_walking_d1"] == [(1, 20), (21, 30), (31, 38)]  # three ranges
    assert annotations["person03_running_d1"] == [(1, 24)]  # single spaces


@pytest.mark.parametrize(
    "bad", ["person04_walking_d1\t\tframes\t1-20, 30", "person04_walking_d1 frames 20-10",
            "person04_walking_d1 frames 0-10", "person04_walking_d1 1-10",
            "person01_walking_d1 frames 1-10"],
)
def test_parse_annotations_names_file_and_line(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "00sequences.txt"
    path.write_bytes(b"header\r\nperson01_walking_d1\tframes\t1-5\r\n" + bad.encode() + b"\r\n")
    with pytest.raises(ValueError, match=r"00sequences\.txt, line 3"):
        parse_sequence_annotations(path)


# --- decoding -----------------------------------------------------------------------------


def test_decode_and_resize(kth_root: Path) -> None:
    sources = find_sources(kth_root, ACTIONS)
    assert {s.kind for s in sources.values()} == {"zip", "avi", "png"}
    for name, source in sources.items():
        np.testing.assert_array_equal(decode_clip(source), clip_frames(name))  # lossless
    frames = decode_clip(sources["person01_walking_d1"], 128)
    assert frames.shape == (40, 128, 128) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[:, 10, 64], 4 * np.arange(40))
    assert (frames[:, 118, 64] == CLIP_IDS["person01_walking_d1"]).all()


def test_png_layout_gives_the_avi_frames(tmp_path: Path) -> None:
    frames = clip_frames("person01_boxing_d1")
    avi = write_avi(tmp_path / "a" / "boxing" / "person01_boxing_d1_uncomp.avi", frames)
    pngs = write_pngs(tmp_path / "b" / "boxing" / "person01_boxing_d1_uncomp", frames)
    from_avi = decode_clip(ClipSource("person01_boxing_d1", "avi", avi), 128)
    from_png = decode_clip(ClipSource("person01_boxing_d1", "png", pngs), 128)
    np.testing.assert_array_equal(from_png, from_avi)
    assert find_sources(tmp_path / "b", ["boxing"])["person01_boxing_d1"].kind == "png"


def test_truncated_avi_fails_naming_the_file(tmp_path: Path) -> None:
    avi = write_avi(tmp_path / "person01_boxing_d1_uncomp.avi", clip_frames("person01_boxing_d1"))
    avi.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    with pytest.raises(ValueError, match="person01_boxing_d1_uncomp.avi"):
        decode_clip(ClipSource("person01_boxing_d1", "avi", avi))


def test_missing_files_give_the_offline_message(tmp_path: Path) -> None:
    (tmp_path / "walking.zip").write_bytes(b"")  # a zip that is not one is reported as such
    with pytest.raises(ValueError, match="walking.zip"):
        make_module(tmp_path).setup()
    (tmp_path / "walking.zip").unlink()
    with pytest.raises(FileNotFoundError) as info:
        make_module(tmp_path).setup()
    message = str(info.value)
    for name in ("walking.zip", "running.zip", "boxing.zip", "00sequences.txt", str(tmp_path)):
        assert name in message
    assert "http://www.csc.kth.se/cvap/actions/walking.zip" in message
    assert "download=False" in message


def test_download_verifies_archives(
    kth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "kth"
    shutil.copytree(kth_root, root, ignore=shutil.ignore_patterns("cache", "running", "boxing"))
    served = {"running.zip": b"not a zip"}
    requested = []

    def fake_urlopen(url: str, timeout: float = 0.0) -> io.BytesIO:
        requested.append(url)
        name = url.rsplit("/", 1)[1]
        if name not in served:
            raise urllib.error.URLError("offline")
        return io.BytesIO(served[name])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(FileNotFoundError, match="not a zip archive"):
        kth.download_kth(root, ACTIONS)
    assert not (root / "running.zip").exists() and not list(root.glob(".*part"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("person01_running_d1_uncomp.avi", b"x")
    served["running.zip"] = buffer.getvalue()
    with pytest.raises(FileNotFoundError, match="boxing.zip failed"):
        kth.download_kth(root, ACTIONS)
    assert (root / "running.zip").is_file()  # verified and kept
    assert requested[-1] == "http://www.csc.kth.se/cvap/actions/boxing.zip"


# --- cache --------------------------------------------------------------------------------


def test_cache_built_once_and_keyed_by_options_and_sources(
    fresh_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    first = make_module(fresh_root)
    first.setup()
    assert "KTH: 48 training windows, 5 test windows" in capsys.readouterr().out
    path = first.cache_file
    assert path.parent == fresh_root / "cache" and path.name.startswith("kth-v1-128px-")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(kth_video, "decode_clip", no_decoding)
    second = make_module(fresh_root)
    second.setup()  # only reads the cache
    assert second.cache_file == path
    assert list(fresh_root.joinpath("cache").iterdir()) == [path]
    with pytest.raises(AssertionError, match="decoded again"):
        make_module(fresh_root, frame_size=64).setup()  # another option: another cache
    avi = fresh_root / "running" / "person01_running_d1_uncomp.avi"
    stat = avi.stat()
    os.utime(avi, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        make_module(fresh_root).setup()  # a changed source: another cache
    assert list(fresh_root.joinpath("cache").iterdir()) == [path]  # no partial files left


# --- windows ------------------------------------------------------------------------------


def expected_windows(persons: list[int], length: int, strides: dict[str, int]) -> list:
    """(clip, first frame) of every window, from the fixture's sub-clips and lengths."""
    result = []
    for name, clip_length in sorted(LENGTHS.items()):
        person, action = int(name[6:8]), name.split("_")[1]
        if person not in persons:
            continue
        for first, stop in SUB_CLIPS.get(name, [(0, clip_length)]):
            result += [(name, s) for s in range(first, stop - length + 1, strides[action])]
    return result


def test_window_counts_by_hand(kth_root: Path) -> None:
    annotations = parse_sequence_annotations(kth_root / "00sequences.txt")
    test_strides = {"walking": 20, "running": 3, "boxing": 20}
    # Training, stride 1: sum over sub-clips of max(0, L - 20 + 1).
    train = window_counts(LENGTHS, annotations, [1, 2], 20, 1, ACTIONS)
    assert train == {"walking": 3 + 1, "running": (2 + 3) + 6, "boxing": 11 + 22}
    test = window_counts(LENGTHS, annotations, [17], 30, test_strides, ACTIONS)
    assert test == {"walking": 1, "running": 2, "boxing": 2}  # starts 2 / 0, 3 / 0, 20
    assert window_counts(LENGTHS, annotations, [17], 30, 1, ACTIONS)["running"] == 6
    # Without clip lengths the trimmed actions still count (used for the real annotations).
    assert window_counts({}, annotations, [17], 30, test_strides, ("running",)) == {"running": 2}
    assert sub_clips(LENGTHS, annotations, ["running"], [2]) == [("person02_running_d1", 1, 26)]

    dm = make_module(kth_root)
    dm.setup()
    assert len(dm.train_set) == len(expected_windows([1, 2], 20, dict.fromkeys(ACTIONS, 1))) == 48
    assert len(dm.test_set) == len(expected_windows([17], 30, test_strides)) == 5
    assert len(dm.val_set) == len(expected_windows([3], 20, test_strides)) == 4


def test_windows_hold_the_right_frames(kth_root: Path) -> None:
    dm = make_module(kth_root)
    dm.setup()
    test_strides = {"walking": 20, "running": 3, "boxing": 20}
    cases = [
        (dm.train_set, expected_windows([1, 2], 20, dict.fromkeys(ACTIONS, 1)), 20),
        (dm.val_set, expected_windows([3], 20, test_strides), 20),
        (dm.test_set, expected_windows([17], 30, test_strides), 30),
    ]
    for dataset, expected, length in cases:
        got = []
        for window in dataset:
            assert window.shape == (length, 1, 128, 128) and window.dtype == torch.float32
            frames, clips = read_window(window)
            assert len(clips) == 1  # never crosses a clip
            name = {v: k for k, v in CLIP_IDS.items()}[clips.pop()]
            assert frames == list(range(frames[0], frames[0] + length))  # consecutive
            got.append((name, frames[0]))
        assert sorted(got) == sorted(expected)  # trimmed to the sub-clips, split by person
    train_clips = {name for name, _ in expected_windows([1, 2], 20, dict.fromkeys(ACTIONS, 1))}
    assert all(name.startswith(("person01", "person02")) for name in train_clips)


def test_strides_and_person_options(kth_root: Path) -> None:
    dm = make_module(kth_root, test_strides={"walking": 1, "running": 1, "boxing": 1},
                     train_stride=5, val_persons=[])
    dm.setup()
    assert len(dm.test_set) == len(expected_windows([17], 30, dict.fromkeys(ACTIONS, 1)))
    assert len(dm.train_set) == len(expected_windows([1, 2], 20, dict.fromkeys(ACTIONS, 5)))
    assert len(dm.val_set) == 0 and dm.val_dataloader() == []
    with pytest.raises(OptionValueError, match="test_persons: persons .2. are also training"):
        make_module(kth_root, test_persons=[2])
    with pytest.raises(ValueError, match="actions"):
        make_module(kth_root, actions=["dancing"])


# --- end to end ---------------------------------------------------------------------------


def test_registered_and_end_to_end(kth_root: Path, tmp_path: Path) -> None:
    assert DATAMODULES.get("kth") is KTHDataModule
    dm = make_module(kth_root)
    assert dm.test_horizon == 20 and dm.test_sequence_length == 30
    torch.manual_seed(0)
    predictor = predlearn.create_model(
        "predrnn", frame_size=(128, 128), hidden_channels=[2], kernel_size=3, patch_size=8
    )
    model = PredictiveModule(predictor, context_frames=10, horizon=10, test_horizon=20)
    trainer = L.Trainer(
        max_steps=2, limit_val_batches=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
        accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 2
    assert next(iter(dm.train_dataloader())).shape == (2, 20, 1, 128, 128)
    assert next(iter(dm.test_dataloader())).shape == (2, 30, 1, 128, 128)
    (metrics,) = trainer.test(model, datamodule=dm, verbose=False)
    assert "test/psnr/step_20" in metrics and "test/ssim/step_20" in metrics
    assert "test/psnr/step_21" not in metrics


@pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero")
def test_fit_without_validation_persons(kth_root: Path, tmp_path: Path) -> None:
    dm = make_module(kth_root, val_persons=[])
    predictor = predlearn.create_model(
        "predrnn", frame_size=(128, 128), hidden_channels=[2], kernel_size=3, patch_size=8
    )
    model = PredictiveModule(predictor, context_frames=10, horizon=10, test_horizon=20)
    trainer = L.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu",
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == 1 and len(dm.train_set) == 48


@pytest.mark.slow
def test_cli_fit_then_test_with_registry_names(kth_root: Path, tmp_path: Path) -> None:
    """`predlearn fit --model=predrnn --data=kth`: 10 -> 10 training, 10 -> 20 test curves."""
    from predlearn.cli import run_cli

    cli = run_cli([
        "fit", "--model=predrnn",  # the data decide the frame size (128 x 128)
        "--model.predictor.hidden_channels=[2]", "--model.predictor.kernel_size=3",
        "--model.predictor.patch_size=8", "--data=kth", f"--data.root={kth_root}",
        "--data.download=false", f"--data.actions=[{','.join(ACTIONS)}]",
        "--data.train_persons=[1,2]", "--data.val_persons=[3]",
        "--data.test_persons=[17]", "--data.batch_size=2", "--trainer.max_steps=2",
        "--trainer.limit_val_batches=1", "--trainer.logger=CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}", f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false", "--test_after_fit=true",
    ])
    assert cli.model.test_horizon == 20  # passed on from the data module
    assert tuple(cli.model.predictor.frame_size) == (128, 128)  # and the frames' size
    assert cli.model.curves["test"]["psnr"].shape == (20,)
    assert cli.model.curves["test"]["ssim"].shape == (20,)
    run_dir = Path(cli.trainer.logger.log_dir)
    assert (run_dir / "test_predictions.png").is_file()
    with (run_dir / "test_curves.csv").open() as handle:
        assert len(handle.read().strip().splitlines()) == 21  # header + 20 steps


def test_without_pyav_decoding_says_how_to_install_it(tmp_path, monkeypatch):
    from lightning_utilities.core.imports import RequirementCache

    from predlearn.datamodules import kth_video

    monkeypatch.setattr(kth_video, "PYAV", RequirementCache("av>=999"))
    source = kth_video.ClipSource("person01_walking_d1", "avi",
                                  tmp_path / "person01_walking_d1_uncomp.avi")
    with pytest.raises(ModuleNotFoundError, match=r"needs PyAV.*pip install 'predlearn\[kth\]'"):
        kth_video.decode_clip(source)
