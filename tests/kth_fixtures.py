"""A tiny fake KTH data set: lossless AVI (ffv1, gray) and PNG files named like the originals.

Every frame is two flat halves: the top half's value is ``4 * frame index`` (0-based) and the
bottom half's value identifies the clip, so a decoded (and resized) window says which frames of
which clip it holds.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import numpy as np

HEIGHT, WIDTH = 120, 160  # the originals' frame size
PERSONS = (1, 2, 3, 17)
ACTIONS = ("walking", "running", "boxing")

# Clip lengths in frames.
LENGTHS = {
    "person01_walking_d1": 40, "person01_running_d1": 45, "person01_boxing_d1": 30,
    "person02_walking_d1": 38, "person02_running_d1": 26, "person02_boxing_d1": 41,
    "person03_walking_d1": 24, "person03_running_d1": 24, "person03_boxing_d1": 24,
    "person17_walking_d1": 44, "person17_running_d1": 40, "person17_boxing_d1": 62,
}
CLIP_IDS = {name: 10 * (k + 1) for k, name in enumerate(LENGTHS)}

# The annotation file, with the real file's quirks: CRLF, a free-text header, tabs and stray
# spaces, a clip with three ranges, ranges out of order, a range past the clip's end, an absent
# clip marked '*missing*'.
ANNOTATION_LINES = [
    "",
    "This database contains sequences of six classes of actions performed by",
    "25 subjects in four different conditions (see below).",
    "Training:   person11, 12, 13",
    "",
    "person01_walking_d1    \t\tframes\t1-22, 25-40",
    "person01_running_d1\t\tframes\t24-45,  1-21 ",
    "person01_boxing_d1\t\tframes\t1-10, 11-30",
    "person02_walking_d1\t\tframes\t1-20,21-30, 31-38",
    "person02_running_d1\t\tframes\t2-30",
    "person02_boxing_d1\tframes\t1-41",
    "person03_walking_d1\t\tframes\t1-24",
    "person03_running_d1 frames 1-24",
    "person03_jogging_d1\t*missing*",
    "person17_walking_d1\t\tframes\t3-42",
    "person17_running_d1\t\tframes\t38-40, 1-35",
    "person17_boxing_d1\t\tframes\t1-62",
    "",
]

# Sub-clips (0-based, half-open) the protocol makes of the annotated clips.
SUB_CLIPS = {
    "person01_walking_d1": [(0, 22), (24, 40)],
    "person01_running_d1": [(0, 21), (23, 45)],
    "person02_walking_d1": [(0, 20), (20, 30), (30, 38)],
    "person02_running_d1": [(1, 26)],  # 2-30 clipped to the 26 frames there are
    "person03_walking_d1": [(0, 24)],
    "person03_running_d1": [(0, 24)],
    "person17_walking_d1": [(2, 42)],
    "person17_running_d1": [(0, 35), (37, 40)],
}


def clip_frames(name: str) -> np.ndarray:
    """The uint8 (T, 120, 160) frames of a fixture clip."""
    length = LENGTHS[name]
    frames = np.empty((length, HEIGHT, WIDTH), dtype=np.uint8)
    frames[:, : HEIGHT // 2] = (4 * np.arange(length, dtype=np.uint8))[:, None, None]
    frames[:, HEIGHT // 2 :] = CLIP_IDS[name]
    return frames


def write_avi(path: Path, frames: np.ndarray) -> Path:
    """Write gray frames losslessly (ffv1 in AVI, 25 fps)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "gray"
        for array in frames:
            frame = av.VideoFrame.from_ndarray(array, format="gray")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_pngs(folder: Path, frames: np.ndarray) -> Path:
    """Write gray frames as ``image0001.png``, ... (the pre-extracted layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, array in enumerate(frames, start=1):
        codec = av.CodecContext.create("png", "w")
        codec.width, codec.height, codec.pix_fmt = array.shape[1], array.shape[0], "gray"
        packets = codec.encode(av.VideoFrame.from_ndarray(array, format="gray"))
        (folder / f"image{index:04d}.png").write_bytes(b"".join(bytes(p) for p in packets))
    return folder


def write_annotations(path: Path) -> Path:
    """The quirky annotation file (CRLF line ends)."""
    path.write_bytes("\r\n".join(ANNOTATION_LINES).encode())
    return path


def write_fake_kth(root: Path) -> Path:
    """walking as the original ``walking.zip``, running extracted to ``running/``, boxing
    extracted (persons 1 and 17) and as PNG frames (persons 2 and 3), plus ``00sequences.txt``."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / "_staging"
    with zipfile.ZipFile(root / "walking.zip", "w") as archive:
        for name in LENGTHS:
            if "_walking_" in name:
                avi = write_avi(staging / f"{name}_uncomp.avi", clip_frames(name))
                archive.write(avi, avi.name)
                avi.unlink()
    staging.rmdir()
    for name in LENGTHS:
        action = name.split("_")[1]
        if action == "running" or name in ("person01_boxing_d1", "person17_boxing_d1"):
            write_avi(root / action / f"{name}_uncomp.avi", clip_frames(name))
        elif action == "boxing":
            write_pngs(root / action / f"{name}_uncomp", clip_frames(name))
    write_annotations(root / "00sequences.txt")
    return root
