"""KTH action: clip names, the annotation file and the protocol's windows (no file reading).

The test protocol of Villegas et al. 2017 (paper §4.2; docs/data.md#kth-action-kth): persons
1-16 train, 17-25 test.
Training windows have 20 frames (10 -> 10) at stride 1; test windows 30 frames (10 -> 20) at
stride 3 for running and jogging, 20 for the other actions. Running, jogging and walking clips
are cut into the sub-clips of the published annotation file ``00sequences.txt`` (the person is
in view); boxing, hand waving and hand clapping use whole clips. A window never crosses a
sub-clip boundary.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from predlearn.errors import BadFileError, DataNotFoundError

__all__ = [
    "ACTIONS",
    "ANNOTATION_FILE",
    "FAST_ACTIONS",
    "TRIMMED_ACTIONS",
    "default_test_strides",
    "is_clip_name",
    "parse_clip_name",
    "parse_sequence_annotations",
    "stride_of",
    "sub_clips",
    "window_counts",
    "window_starts",
]

ACTIONS = ("walking", "jogging", "running", "boxing", "handwaving", "handclapping")
# paper §4.2 / Villegas et al.: these actions are cut to the annotated sub-clips.
TRIMMED_ACTIONS = ("walking", "jogging", "running")
FAST_ACTIONS = ("running", "jogging")  # test stride 3; the others 20
ANNOTATION_FILE = "00sequences.txt"

_CLIP_NAME = re.compile(r"^person(\d+)_([a-z]+)_d(\d+)$")
_ANNOTATION_LINE = re.compile(r"^(person\d+_[a-z]+_d\d+)\s+frames\s+(.*)$", re.IGNORECASE)
_MISSING_LINE = re.compile(r"^person\d+_[a-z]+_d\d+\s+\*?missing\*?$", re.IGNORECASE)
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def is_clip_name(name: str) -> bool:
    """Whether ``name`` looks like ``personXX_action_dY`` (lower case)."""
    return _CLIP_NAME.match(name) is not None


def parse_clip_name(name: str) -> tuple[int, str, int]:
    """``personXX_action_dY`` -> (person, action, scenario)."""
    match = _CLIP_NAME.match(name)
    if match is None:
        raise ValueError(f"not a KTH clip name: {name!r} (expected personXX_<action>_dY)")
    return int(match[1]), match[2], int(match[3])


def parse_sequence_annotations(path: str | os.PathLike) -> dict[str, list[tuple[int, int]]]:
    """Read ``00sequences.txt``: clip name -> sorted 1-based inclusive frame ranges.

    Tolerates CRLF line ends, the free-text header, tabs and stray spaces, any number of ranges
    and ranges out of order. Ranges may touch (the real file has ``232-338, 338-432``); each
    stays its own sub-clip. A clip marked ``*missing*`` is left out. A line that starts with
    ``person`` but is not ``personXX_action_dY frames a-b, c-d, ...`` (or has a reversed or
    0-based range, or repeats a clip), or a file without any such line, raises ``BadFileError``
    (a ``ValueError``) naming the file and line number; a missing file ``DataNotFoundError``.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("latin-1")
    except FileNotFoundError as error:
        raise DataNotFoundError(
            f"{path}: the KTH annotation file is missing; put {ANNOTATION_FILE} of the KTH "
            "distribution there (or let predlearn download it: --data.download=true)"
        ) from error
    except OSError as error:
        raise BadFileError(f"{path}: cannot read ({error.strerror or error})") from error
    result: dict[str, list[tuple[int, int]]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line.lower().startswith("person") or not line[6:7].isdigit():
            continue  # header text (or blank line)

        def fail(reason: str, line: str = line, number: int = number) -> BadFileError:
            return BadFileError(f"{path}, line {number}: {reason}: {line!r}")

        if _MISSING_LINE.match(line):
            continue  # the real file marks its one absent clip 'personXX_action_dY *missing*'
        match = _ANNOTATION_LINE.match(line)
        if match is None:
            raise fail("expected 'personXX_<action>_dY  frames  a-b, c-d, ...'")
        name, spec = match[1].lower(), match[2]
        if name in result:
            raise fail(f"clip {name} is listed twice")
        ranges = []
        for part in spec.split(","):
            bounds = _RANGE.match(part.strip())
            if bounds is None:
                raise fail(f"bad frame range {part.strip()!r}")
            first, last = int(bounds[1]), int(bounds[2])
            if not 1 <= first <= last:
                raise fail(f"frame range {first}-{last} is empty or not 1-based")
            ranges.append((first, last))
        result[name] = sorted(ranges)
    if not result:
        raise BadFileError(
            f"{path}: no line 'personXX_<action>_dY  frames  a-b, ...': this is not the KTH "
            f"annotation file {ANNOTATION_FILE}; put the original there"
        )
    return result


def sub_clips(
    clip_lengths: Mapping[str, int],
    annotations: Mapping[str, Sequence[tuple[int, int]]],
    actions: Iterable[str] = ACTIONS,
    persons: Iterable[int] | None = None,
    trimmed_actions: Iterable[str] = TRIMMED_ACTIONS,
) -> list[tuple[str, int, int]]:
    """Sub-clips (clip, first, stop) as 0-based half-open frame ranges, sorted by clip.

    A clip of a trimmed action gives one sub-clip per annotated range (clipped to its length
    when the length is known; a clip without annotation is left out). A clip of another action
    is one whole sub-clip and counts only when its length is given.
    """
    actions, trimmed = set(actions), set(trimmed_actions)
    wanted = None if persons is None else set(persons)
    names = set(clip_lengths) | {n for n in annotations if parse_clip_name(n)[1] in trimmed}
    result = []
    for name in sorted(names):
        person, action, _ = parse_clip_name(name)
        if action not in actions or (wanted is not None and person not in wanted):
            continue
        length = clip_lengths.get(name)
        if action in trimmed:
            for first, last in annotations.get(name, ()):
                stop = last if length is None else min(last, length)
                if stop > first - 1:
                    result.append((name, first - 1, stop))
        elif length is not None and length > 0:
            result.append((name, 0, int(length)))
    return result


def window_starts(first: int, stop: int, length: int, stride: int) -> range:
    """Start frames of the windows of ``length`` frames at ``stride`` inside [first, stop)."""
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be positive; got {length}, {stride}")
    return range(first, max(first, stop - length + 1), stride)


def stride_of(strides: int | Mapping[str, int], action: str) -> int:
    """The stride of ``action``: ``strides`` itself when one int, else its entry."""
    return strides if isinstance(strides, int) else strides[action]


def window_counts(
    clip_lengths: Mapping[str, int],
    annotations: Mapping[str, Sequence[tuple[int, int]]],
    persons: Iterable[int],
    length: int,
    strides: int | Mapping[str, int],
    actions: Iterable[str] = ACTIONS,
    trimmed_actions: Iterable[str] = TRIMMED_ACTIONS,
) -> dict[str, int]:
    """Windows per action of ``length`` frames at ``strides`` (one int or per action).

    The protocol's counts: ``window_counts(lengths, annotations, range(1, 17), 20, 1)`` for
    training and ``window_counts(lengths, annotations, range(17, 26), 30, default_test_strides())``
    for test. Trimmed actions need only the annotations (lengths just clip the ranges).
    """
    actions = tuple(actions)
    counts = dict.fromkeys(actions, 0)
    for name, first, stop in sub_clips(clip_lengths, annotations, actions, persons,
                                       trimmed_actions):
        action = parse_clip_name(name)[1]
        counts[action] += len(window_starts(first, stop, length, stride_of(strides, action)))
    return counts


def default_test_strides(fast: int = 3, other: int = 20) -> dict[str, int]:
    """Test strides per action: ``fast`` for running and jogging, ``other`` for the rest."""
    return {action: fast if action in FAST_ACTIONS else other for action in ACTIONS}
