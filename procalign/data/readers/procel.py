"""ProceL (Elhamifar & Naing, ICCV 2019): 12 tasks, about 60 YouTube videos each, key-step times.

Reader ``procel``. ``root`` is the release's dataset folder: one folder per task, each holding
``data.mat`` and ``readme.txt``::

    <task>/data.mat       the task's annotations (below); the task name is the folder name
    <task>/readme.txt     one line per video: "<YouTube url> <trim start> <trim end>" (seconds;
                          data.mat indexes the trimmed videos)
    partition.csv         optional, see below

``data.mat`` holds (as top-level variables or as fields of one struct, both accepted):
``grammar`` a K-cell of the task's key-step names; ``key_steps_frame`` an N-cell (one per video)
of K-cells, cell k an (n, 2) matrix of 1-based inclusive ``[first last]`` frame intervals where
key-step k happens (empty when it does not); ``superframe_frame`` and ``segment_frame`` N-cells of
(S, 2) frame intervals covering the video, whose last end gives its frame count. Other fields
(``*_time`` twins, captions) are ignored. This is how the authors' own loaders index it
(``key_steps_frame{v}{k}``, frame count from the last superframe).

Records: id ``<task>_<NN>`` (video NN, 1-based, two digits, the numbering of the file names in
the authors' code), ``label`` and ``task`` the task name, ``frame_labels`` (T,) int64 with 0 for
background and k for key-step k (grammar order, 1-based; a later-starting interval wins where
two overlap), ``steps`` the key-step names of its runs (repeats kept, background left out),
``meta`` ``url`` and ``trim`` from ``readme.txt`` when present. ``Dataset.meta["grammar"]`` maps
each task to its K names.

ProceL ships no train/test split (procedure-learning papers use all videos of a task). A
partition CSV, ``partition.csv`` in root or the file given as ``partition=``, assigns one: a
header with columns ``video_id`` and ``split`` (others ignored), one row per video. Videos it
does not list get ``split=None``; an id it lists that does not exist is a ValueError. ``path`` is
the first existing of ``root/features/<id>.npy``, ``root/<task>/videos/<id>.<ext>``,
``root/<task>/<id>.<ext>``.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from procalign.data.readers._common import (
    DatasetWarning,
    collapse_runs,
    first_existing,
    read_lines,
    require_file,
    video_candidates,
)
from procalign.data.records import VideoRecord
from procalign.data.registry import DATASETS, Dataset


def _cells(value) -> list:
    """The cells of a MATLAB cell array loaded without squeezing, in column-major order."""
    arr = np.asarray(value)
    if arr.dtype != object:
        raise ValueError("expected a cell array")
    return list(arr.ravel(order="F"))


def _text(cell) -> str:
    arr = np.asarray(cell).ravel()
    return "" if arr.size == 0 else str(arr[0])


def _intervals(cell, path: Path, what: str) -> np.ndarray:
    arr = np.asarray(cell, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{path}: {what} should be an (n, 2) interval matrix, got {arr.shape}")
    return arr.astype(np.int64)


def _fields(mat: dict, path: Path) -> dict:
    if "key_steps_frame" in mat:
        return mat
    for key, struct in mat.items():
        if key.startswith("__") or getattr(struct, "dtype", None) is None or not struct.dtype.names:
            continue
        if "key_steps_frame" in struct.dtype.names:
            return {name: struct[name].ravel()[0] for name in struct.dtype.names}
    raise ValueError(f"{path}: no 'key_steps_frame' variable (nor a struct holding one)")


def read_task(path: Path) -> tuple[tuple[str, ...], list[list[np.ndarray]], list[int]]:
    """(grammar, per-video per-step intervals, per-video frame counts) of one ``data.mat``."""
    from scipy.io import loadmat

    try:
        mat = _fields(loadmat(str(path)), path)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"{path}: cannot read MATLAB file ({err})") from err
    if "grammar" not in mat:
        raise ValueError(f"{path}: no 'grammar' variable")
    try:
        grammar = tuple(_text(c) for c in _cells(mat["grammar"]))
        per_video = [_cells(v) for v in _cells(mat["key_steps_frame"])]
    except ValueError as err:
        raise ValueError(f"{path}: 'grammar' and 'key_steps_frame' must be cell arrays") from err
    intervals = []
    for v, steps in enumerate(per_video, start=1):
        if len(steps) != len(grammar):
            raise ValueError(
                f"{path}: video {v} has {len(steps)} key-step cells, grammar has {len(grammar)}"
            )
        intervals.append([_intervals(c, path, f"key_steps_frame{{{v}}}") for c in steps])
    lengths = []
    cover_key = next((k for k in ("superframe_frame", "segment_frame") if k in mat), None)
    covers = [_intervals(c, path, cover_key) for c in _cells(mat[cover_key])] if cover_key else []
    for v, steps in enumerate(intervals):
        ends = [int(s[:, 1].max()) for s in steps if len(s)]
        if v < len(covers) and len(covers[v]):
            ends.append(int(covers[v][:, 1].max()))
        lengths.append(max(ends, default=0))
    return grammar, intervals, lengths


def _frame_labels(steps: list[np.ndarray], n_frames: int) -> np.ndarray:
    rows = sorted((int(a), int(b), k) for k, iv in enumerate(steps, start=1) for a, b in iv)
    labels = np.zeros(n_frames, dtype=np.int64)
    for first, last, k in rows:  # 1-based inclusive frames; a later start overwrites
        labels[max(first - 1, 0) : last] = k
    return labels


def _read_readme(path: Path) -> list[tuple[str, tuple[float, float] | None]]:
    rows = []
    for _, line in read_lines(path):
        if not line:
            continue
        parts = line.split()
        trim = None
        if len(parts) >= 3:
            try:
                trim = (float(parts[1]), float(parts[2]))
            except ValueError:
                trim = None
        rows.append((parts[0], trim))
    return rows


def _read_partition(path: Path, known: set[str]) -> dict[str, str]:
    require_file(path, "procel", "partition CSV")
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if not {"video_id", "split"} <= cols:
            raise ValueError(f"{path}:1: header needs 'video_id' and 'split', got {sorted(cols)}")
        out = {}
        for row in reader:
            vid, split = (row["video_id"] or "").strip(), (row["split"] or "").strip()
            if vid not in known:
                raise ValueError(f"{path}:{reader.line_num}: unknown video id {vid!r}")
            out[vid] = split or None
    return out


@DATASETS.register("procel")
def read_procel(root: Path, partition: str | Path | None = None) -> Dataset:
    """ProceL tasks with per-frame key-step labels; optional partition CSV for splits."""
    name = "procel"
    task_dirs = sorted(d for d in root.iterdir() if d.is_dir() and (d / "data.mat").is_file())
    if not task_dirs:
        raise FileNotFoundError(f"{name}: no <task>/data.mat under {root}")
    records, grammars, short_readme = [], {}, []
    for task_dir in task_dirs:
        task = task_dir.name
        grammar, intervals, lengths = read_task(task_dir / "data.mat")
        grammars[task] = grammar
        readme = task_dir / "readme.txt"
        info = _read_readme(readme) if readme.is_file() else []
        if readme.is_file() and len(info) != len(intervals):
            short_readme.append(f"{readme} ({len(info)} lines, {len(intervals)} videos)")
        for v, (steps, n_frames) in enumerate(zip(intervals, lengths), start=1):
            vid = f"{task}_{v:02d}"
            labels = _frame_labels(steps, n_frames)
            meta: dict = {"num_frames": n_frames}
            if v <= len(info):
                meta["url"], meta["trim"] = info[v - 1]
            path = first_existing(
                [root / "features" / f"{vid}.npy"]
                + video_candidates(task_dir / "videos", vid)
                + video_candidates(task_dir, vid)
            )
            records.append(
                VideoRecord(
                    video_id=vid,
                    label=task,
                    steps=tuple(grammar[k - 1] for k in collapse_runs(labels.tolist(), (0,))),
                    frame_labels=labels,
                    path=path,
                    task=task,
                    meta=meta,
                )
            )
    if short_readme:
        warnings.warn(
            f"{name}: readme.txt line count differs from data.mat video count in "
            f"{len(short_readme)} tasks: {short_readme}",
            DatasetWarning,
            stacklevel=3,
        )
    part_path = Path(partition) if partition is not None else root / "partition.csv"
    if partition is not None or part_path.is_file():
        splits = _read_partition(part_path, {r.video_id for r in records})
        for rec in records:
            rec.split = splits.get(rec.video_id)
    meta = {"grammar": grammars, "partition": str(part_path) if part_path.is_file() else None}
    return Dataset(name, root, records, None, None, meta)
