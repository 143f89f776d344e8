"""Plumbing shared by the readers: file checks, line reading, junk accounting, path lookup."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".MP4", ".AVI", ".MOV")


class DatasetWarning(UserWarning):
    """Something in a dataset's files was skipped or is incomplete; the message counts it."""


def require_file(path: Path, dataset: str, what: str = "file") -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: {what} not found: {path}")
    return path


def require_dir(path: Path, dataset: str, what: str = "folder") -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: {what} not found: {path}")
    return path


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) for every line; tolerates CRLF and a UTF-8 BOM."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err})") from err
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1)]


class Skipped:
    """Counts the junk a reader skipped, so it can say so in one warning at the end."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.counts: Counter[str] = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def warn(self, stacklevel: int = 3) -> None:
        if not self.counts:
            return
        parts = "; ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        warnings.warn(
            f"{self.dataset}: skipped {self.total} entries ({parts})",
            DatasetWarning,
            stacklevel=stacklevel,
        )


def split_fields(
    lines: list[tuple[int, str]],
    path: Path,
    n_fields: int,
    skipped: Skipped,
    is_junk=None,
) -> list[tuple[int, list[str]]]:
    """Whitespace-split lines that must have ``n_fields`` fields.

    Blank lines and lines ``is_junk`` recognises are skipped and counted. A malformed line is
    tolerated (skipped, counted) only when no well-formed line follows it: a truncated or garbled
    tail. A malformed line in the middle of the file is a ValueError naming file and line.
    """
    rows: list[tuple[int, list[str]]] = []
    bad: list[tuple[int, str]] = []
    for lineno, line in lines:
        if not line:
            skipped.add(f"blank lines in {path.name}")
            continue
        fields = line.split()
        if is_junk is not None and is_junk(fields):
            skipped.add(f"macOS '._' entries in {path.name}")
            continue
        if len(fields) != n_fields:
            bad.append((lineno, line))
            continue
        if bad:
            lineno0, line0 = bad[0]
            raise ValueError(
                f"{path}:{lineno0}: expected {n_fields} fields, got {len(line0.split())}: {line0!r}"
            )
        rows.append((lineno, fields))
    if bad:
        skipped.add(f"malformed trailing lines in {path.name}", len(bad))
    return rows


def first_existing(candidates: Iterable[Path]) -> Path | None:
    for path in candidates:
        if path.exists():
            return path
    return None


def video_candidates(folder: Path, stem: str) -> list[Path]:
    return [folder / f"{stem}{ext}" for ext in VIDEO_EXTS]


def collapse_runs(labels: Iterable, drop: Iterable = ()) -> tuple:
    """The sequence of distinct consecutive values, without those in ``drop`` (a transcript)."""
    out: list = []
    dropped = set(drop)
    prev = object()
    for value in labels:
        if value != prev and value not in dropped:
            out.append(value)
        prev = value
    return tuple(out)


def as_int_labels(values: list[str]) -> np.ndarray:
    """int64 array when every value is an integer, else an array of strings."""
    try:
        return np.asarray([int(v) for v in values], dtype=np.int64)
    except ValueError:
        return np.asarray(values, dtype=str)
