"""The result tables of ``compare`` and ``sweep``: the rows as CSV and as a Markdown table."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def cell(value: Any, digits: int | None = None) -> str:
    """A Markdown cell: ``-`` for a missing or undefined (NaN) value, a number with ``digits``
    decimals (None: 4 significant digits), text with its ``|`` escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4g}" if digits is None else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|")


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """``path``: the header, then the rows, a missing value (None) as an empty field."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([["" if value is None else value for value in row] for row in rows])
    return path


def write_markdown(path: Path, note: str, header: Sequence[str],
                   rows: Iterable[Sequence[str]]) -> Path:
    """``path``: ``note``, then the Markdown table of ``header`` and ``rows`` (their cells
    written already, ``cell``)."""
    lines = [note, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
