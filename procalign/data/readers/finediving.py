"""FineDiving (Xu et al., CVPR 2022): 3000 dives with sub-action steps and judges' scores.

Reader ``finediving``. ``root`` is the dataset folder; the pickles are looked up in ``root``,
``root/Annotations`` and ``root/train_test_split``::

    FineDiving_fine-grained_annotation.pkl   required
    FineDiving_coarse_annotation.pkl         optional (start/end frames and judge scores)
    train_split.pkl, test_split.pkl          required
    Sub_action_Types_Table.pkl               optional: {sub-action id: name}
    FINADiving_MTL_256s/<event>/<n>/*.jpg    optional trimmed frames (also FineDiving/,
                                             Trimmed_Video_Frames/, frames/)

Both annotation pickles are dicts keyed by ``(event, n)``: the untrimmed competition video's name
and the index of the dive in it. Fine-grained values are dicts with ``action_type`` (dive code,
e.g. ``'107B'``), ``dive_score``, ``difficulty``, ``judge_scores``, ``frames_labels`` (T,) the
sub-action id of every frame of the trimmed dive, ``steps_transit_frames`` (frame indices of the
step changes), ``sub-action_types`` ({id: name}) and ``start_frame`` / ``end_frame``. The split
pickles are lists of those ``(event, n)`` keys.

Records: id ``<event>/<n>`` (the frame folder's relative path), ``label`` the action type,
``frame_labels`` int64, ``steps`` the sub-action names of the runs of ``frames_labels`` (ids kept
as text where no name is known), ``split`` train / test, ``meta`` the scores, difficulty and
frame numbers. A split key with no annotation is a ValueError naming the split file.

Pickles can run code when loaded: read only the files from the official release.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from procalign.data.readers._common import collapse_runs, first_existing
from procalign.data.records import VideoRecord
from procalign.data.registry import DATASETS, Dataset

FINE = "FineDiving_fine-grained_annotation.pkl"
COARSE = "FineDiving_coarse_annotation.pkl"
SUBACTIONS = "Sub_action_Types_Table.pkl"
_SUBDIRS = (".", "Annotations", "train_test_split")
_FRAME_DIRS = ("FINADiving_MTL_256s", "FineDiving", "Trimmed_Video_Frames", "frames")


def _find(root: Path, filename: str, required: bool) -> Path | None:
    path = first_existing(root / d / filename for d in _SUBDIRS)
    if path is None and required:
        raise FileNotFoundError(
            f"finediving: {filename} not found in {root}, {root / 'Annotations'} "
            f"or {root / 'train_test_split'}"
        )
    return path


def _unpickle(path: Path):
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except Exception as err:
        raise ValueError(f"{path}: cannot unpickle ({type(err).__name__}: {err})") from err


def _key(item, path: Path) -> tuple[str, int]:
    try:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            return str(item[0]), int(item[1])
    except (TypeError, ValueError):
        pass
    raise ValueError(f"{path}: entries must be (event, index) pairs, got {item!r}")


@DATASETS.register("finediving")
def read_finediving(root: Path) -> Dataset:
    """FineDiving dives with per-frame sub-action labels and the official train/test split."""
    fine_path = _find(root, FINE, True)
    fine = _unpickle(fine_path)
    if not isinstance(fine, dict):
        raise ValueError(f"{fine_path}: expected a dict keyed by (event, index)")
    coarse_path = _find(root, COARSE, False)
    coarse = _unpickle(coarse_path) if coarse_path else {}
    table_path = _find(root, SUBACTIONS, False)
    table = _unpickle(table_path) if table_path else {}
    if not isinstance(table, dict):
        table = {}

    split_of: dict[tuple[str, int], str] = {}
    for split in ("train", "test"):
        path = _find(root, f"{split}_split.pkl", True)
        items = _unpickle(path)
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"{path}: expected a list of (event, index) pairs")
        for item in items:
            key = _key(item, path)
            if key not in fine and (key[0], str(key[1])) not in fine:
                raise ValueError(f"{path}: {key} has no entry in {fine_path.name}")
            split_of[key] = split

    frames_root = first_existing(root / d for d in _FRAME_DIRS)
    records = []
    for raw_key in sorted(fine, key=lambda k: (str(k[0]), int(k[1]))):
        key = _key(raw_key, fine_path)
        ann = fine[raw_key]
        if not isinstance(ann, dict) or "frames_labels" not in ann:
            raise ValueError(f"{fine_path}: entry {key} has no 'frames_labels'")
        labels = np.asarray(ann["frames_labels"]).astype(np.int64).ravel()
        names = {**table, **ann.get("sub-action_types", {})}
        run_ids = collapse_runs(labels.tolist())
        extra = coarse.get(raw_key, {}) if isinstance(coarse, dict) else {}
        meta = {
            k: ann.get(k, extra.get(k))
            for k in ("dive_score", "difficulty", "judge_scores", "start_frame", "end_frame")
        }
        meta["steps_transit_frames"] = np.asarray(ann.get("steps_transit_frames", []))
        vid = f"{key[0]}/{key[1]}"
        folder = frames_root / key[0] / str(key[1]) if frames_root is not None else None
        records.append(
            VideoRecord(
                video_id=vid,
                label=str(ann.get("action_type", extra.get("action_type"))),
                steps=tuple(str(names.get(i, i)) for i in run_ids),
                frame_labels=labels,
                split=split_of.get(key),
                path=folder if folder is not None and folder.is_dir() else None,
                task="diving",
                meta=meta,
            )
        )
    meta = {"sub_action_types": {int(k): str(v) for k, v in table.items()} if table else {}}
    return Dataset("finediving", root, records, None, None, meta)
