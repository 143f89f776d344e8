"""The one record type every dataset reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class VideoRecord:
    """One video of a dataset, in whatever benchmark it came from.

    Attributes:
        video_id: unique id inside the dataset (file stem for most benchmarks).
        label: procedure / action / task label as a string (e.g. SVIP's ``"1.1"``), or None.
        steps: ordered step names of the procedure the video shows, when the dataset has them.
        frame_labels: per-frame labels, shape (T,), when known (ints or strings).
        split: ``"train"``, ``"test"``, ``"val"`` or None.
        path: the video file, frame folder or feature file, when one exists.
        task: coarser grouping (task of a procedure, action class), when the dataset has one.
        meta: anything else the reader knows (joints, bbox, scores...), keyed by name.
    """

    video_id: str
    label: str | None = None
    steps: tuple[str, ...] | None = None
    frame_labels: np.ndarray | None = None
    split: str | None = None
    path: Path | None = None
    task: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PairRecord:
    """Two videos and whether they show the same procedure (official pair lists).

    ``split`` names the pair list the pair came from (``"train"``, ``"val"``, ``"test"``),
    when known.
    """

    video_id_1: str
    video_id_2: str
    same: bool
    label_1: str | None = None
    label_2: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class MatchingQuery:
    """One text-to-video matching question (CSV-Matching of WeakSVR).

    Attributes:
        label: the procedure label that describes the query text (its steps are in the label bank).
        candidates: video ids offered as answers, in file order.
        answer: index into ``candidates`` of the video showing ``label``; None when the file
            does not determine it (no candidate, or more than one, carries the query's label).
    """

    label: str
    candidates: tuple[str, ...]
    answer: int | None = None
