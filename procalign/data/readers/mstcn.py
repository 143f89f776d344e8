"""Action-segmentation datasets in the MS-TCN layout: Breakfast, 50Salads, GTEA, ...

Readers ``breakfast`` and ``mstcn`` (the same code; ``breakfast`` also derives each video's
activity from its name). ``root`` is one dataset folder of MS-TCN's ``data/``::

    groundTruth/<video>.txt       one class name per line, one line per frame
    mapping.txt                   "<id> <name>" per line (Breakfast: 48 classes, "0 SIL")
    splits/<split>.split<k>.bundle   the videos of fold k's train / test set
    features/<video>.npy          optional: I3D features stored (D, T), channels first

Bundle lines are either the original Breakfast style (a ``#bundle`` header, then
``./data/groundTruth/<video>.txt``) or MS-TCN's plain ``<video>.txt``; both are accepted, and
only the file name's stem is used. ``fold`` (default 1) picks the bundles; without a ``splits``
folder every ``groundTruth`` file is read with ``split=None``.

Records: id ``<video>``; ``frame_labels`` int64 class ids from ``mapping.txt`` (names in
``Dataset.meta["classes"]``, index = id); ``steps`` the transcript (run-collapsed class names
without background ``SIL`` / ``background``); ``path`` the features file when present (note
its (D, T) layout, recorded in ``meta["features_layout"]``). For ``breakfast`` the ``label`` is the
activity, the last ``_`` field of the name (``P03_cam01_P03_cereals`` -> ``cereals``); ``mstcn``
leaves it None unless ``label_from_name=True``.

A bundle video whose ``groundTruth`` file is absent (the shared copy of Breakfast has the 1460
split-1 train labels but not the 252 test ones) is kept by default with ``frame_labels=None``
and ``steps=None``, and one warning counts them: the video exists and a user may have features
for it. ``missing="drop"`` leaves such videos out, ``missing="error"`` raises FileNotFoundError.
A class name absent from ``mapping.txt`` is a ValueError naming file and line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from procalign.data.readers._common import (
    DatasetWarning,
    collapse_runs,
    read_lines,
    require_dir,
    require_file,
)
from procalign.data.records import VideoRecord
from procalign.data.registry import DATASETS, Dataset

BACKGROUND = ("SIL", "background")


def read_mapping(path: Path, dataset: str) -> list[str]:
    """``mapping.txt`` as a list of names indexed by class id (ids must be 0..C-1)."""
    require_file(path, dataset, "class mapping")
    names: dict[int, str] = {}
    for lineno, line in read_lines(path):
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].lstrip("-").isdigit():
            raise ValueError(f"{path}:{lineno}: expected '<id> <name>', got {line!r}")
        idx, name = int(parts[0]), parts[1].strip()
        if idx in names or name in names.values():
            raise ValueError(f"{path}:{lineno}: duplicate class {line!r}")
        names[idx] = name
    if sorted(names) != list(range(len(names))):
        raise ValueError(f"{path}: class ids must be 0..{len(names) - 1}, got {sorted(names)}")
    return [names[i] for i in range(len(names))]


def read_bundle(path: Path) -> list[str]:
    """Video names of a ``.bundle`` file (header and blank lines skipped)."""
    videos = []
    for _, line in read_lines(path):
        if not line or line.startswith("#"):
            continue
        name = line.replace("\\", "/").rsplit("/", 1)[-1]
        videos.append(name[:-4] if name.endswith(".txt") else name)
    return videos


def read_ground_truth(path: Path, class_ids: dict[str, int]) -> np.ndarray:
    """Per-frame class ids of one ``groundTruth`` file."""
    text = path.read_text(encoding="utf-8-sig")
    if any(" " in name for name in class_ids):
        lines = [line.strip() for line in text.splitlines()]
        while lines and not lines[-1]:
            lines.pop()
    else:  # one token per frame: split() is much faster, and a blank line can only trail
        lines = text.split()
        if len(lines) != len(text.strip().splitlines()):
            blank = next(i for i, ln in enumerate(text.splitlines(), 1) if len(ln.split()) != 1)
            raise ValueError(f"{path}:{blank}: expected one class name per line")
    try:
        return np.fromiter(map(class_ids.__getitem__, lines), dtype=np.int64, count=len(lines))
    except KeyError as err:
        name = err.args[0]
        raise ValueError(
            f"{path}:{lines.index(name) + 1}: class {name!r} is not in mapping.txt"
        ) from None


def transcript(frame_labels: np.ndarray, classes: list[str], background=BACKGROUND) -> tuple:
    """Class names of the runs of ``frame_labels``, background classes left out."""
    if len(frame_labels) == 0:
        return ()
    starts = np.flatnonzero(np.diff(frame_labels)) + 1
    runs = frame_labels[np.concatenate([[0], starts])]
    return collapse_runs((classes[i] for i in runs), drop=background)


def _read_mstcn(
    root: Path,
    name: str,
    fold: int,
    missing: str,
    label_from_name: bool,
    background: tuple[str, ...],
) -> Dataset:
    if missing not in ("keep", "drop", "error"):
        raise ValueError(f"{name}: missing must be 'keep', 'drop' or 'error', got {missing!r}")
    gt_dir = require_dir(root / "groundTruth", name, "groundTruth folder")
    classes = read_mapping(root / "mapping.txt", name)
    class_ids = {c: i for i, c in enumerate(classes)}

    splits_dir = root / "splits"
    plan: list[tuple[str, str | None]] = []  # (video, split)
    if splits_dir.is_dir():
        bundles = {
            split: splits_dir / f"{split}.split{fold}.bundle"
            for split in ("train", "val", "test")
            if (splits_dir / f"{split}.split{fold}.bundle").is_file()
        }
        if not bundles:
            raise FileNotFoundError(
                f"{name}: no <split>.split{fold}.bundle in {splits_dir} (fold={fold})"
            )
        for split, path in bundles.items():
            plan += [(video, split) for video in read_bundle(path)]
    else:
        plan = [(p.stem, None) for p in sorted(gt_dir.glob("*.txt")) if not p.name.startswith("._")]

    features = root / "features"
    has_features = features.is_dir()
    records, absent = [], []
    seen: set[str] = set()
    for video, split in plan:
        if video in seen:
            raise ValueError(f"{name}: video {video!r} is listed twice in the fold-{fold} bundles")
        seen.add(video)
        gt = gt_dir / f"{video}.txt"
        if gt.is_file():
            frame_labels = read_ground_truth(gt, class_ids)
            steps = transcript(frame_labels, classes, background)
        else:
            absent.append(video)
            if missing == "error":
                raise FileNotFoundError(f"{name}: ground truth not found: {gt}")
            if missing == "drop":
                continue
            frame_labels, steps = None, None
        feat = features / f"{video}.npy" if has_features else None
        records.append(
            VideoRecord(
                video_id=video,
                label=video.rsplit("_", 1)[-1] if label_from_name else None,
                steps=steps,
                frame_labels=frame_labels,
                split=split,
                path=feat if feat is not None and feat.is_file() else None,
            )
        )
    if absent:
        what = "left out" if missing == "drop" else "kept with frame_labels=None"
        warnings.warn(
            f"{name}: {len(absent)} videos listed in the fold-{fold} bundles have no file in "
            f"{gt_dir} ({what}), e.g. {absent[:3]}",
            DatasetWarning,
            stacklevel=4,
        )
    meta = {
        "classes": classes,
        "background": [c for c in background if c in class_ids],
        "fold": fold if splits_dir.is_dir() else None,
        "missing_ground_truth": absent,
        "features_layout": "(D, T)",
    }
    return Dataset(name, root, records, None, None, meta)


@DATASETS.register("breakfast")
def read_breakfast(root: Path, fold: int = 1, missing: str = "keep") -> Dataset:
    """Breakfast Actions in the MS-TCN layout; ``label`` is the activity (``cereals``, ...)."""
    return _read_mstcn(root, "breakfast", fold, missing, True, BACKGROUND)


@DATASETS.register("mstcn")
def read_mstcn(
    root: Path,
    fold: int = 1,
    missing: str = "keep",
    label_from_name: bool = False,
    background: tuple[str, ...] = BACKGROUND,
) -> Dataset:
    """Any dataset in the MS-TCN layout (50Salads, GTEA, ...)."""
    return _read_mstcn(root, "mstcn", fold, missing, label_from_name, tuple(background))
