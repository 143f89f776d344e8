"""CrossTask (Zhukov et al., CVPR 2019): instructional videos of 18 primary tasks with step times.

Reader ``crosstask``. ``root`` is ``crosstask_release/`` or the folder that contains it (and
optionally ``crosstask_features/``). Files of the official release::

    tasks_primary.txt     task cards, 6 lines each: task id, title, WikiHow url, number of
                          steps K, the K step names separated by commas, a blank line
    tasks_related.txt     the same for the 65 related tasks (read with include_related=True)
    videos.csv            "<task id>,<YouTube id>,<url>" per line, no header
    videos_val.csv        the official validation videos, same format (optional)
    annotations/<task>_<vid>.csv   "<step>,<start>,<end>" per line: step number 1..K, times
                                    in seconds (only primary tasks are annotated)
    ../crosstask_features/<vid>.npy   optional: the released features, one row per second

Records, one per video of a read task: id ``<vid>``, ``label`` and ``task`` the task id,
``split`` ``"val"`` for videos in ``videos_val.csv`` and ``"train"`` for the others (the paper's
test sets are random per-task draws from the non-validation videos, not a file).
``steps`` are the annotated step names in order of start time and ``meta["segments"]`` the
``(step, start, end)`` rows. ``frame_labels`` need a length: when the features file exists
(``crosstask_features/<vid>.npy`` beside the release, or ``features/<vid>.npy`` inside ``root``)
they are given at ``fps`` per second (default 1.0, the features' rate) over its T rows, 0 for
background and k for step k (a later-starting step wins where two overlap); otherwise
``frame_labels`` is None. ``path`` is that features file when present. A primary video without
an annotation file gets ``steps=None`` and is counted in one warning. ``meta["task_steps"]``
maps each task id to its K step names.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from procalign.data.readers._common import DatasetWarning, read_lines, require_file
from procalign.data.records import VideoRecord
from procalign.data.registry import DATASETS, Dataset


def read_task_cards(path: Path) -> dict[str, dict]:
    """``tasks_primary.txt`` / ``tasks_related.txt`` as {task id: {title, url, steps}}."""
    require_file(path, "crosstask", "task list")
    lines = read_lines(path)
    tasks: dict[str, dict] = {}
    i = 0
    while i < len(lines):
        if not lines[i][1]:
            i += 1
            continue
        block = lines[i : i + 5]
        if len(block) < 5:
            raise ValueError(f"{path}:{lines[i][0]}: truncated task card (needs 5 lines)")
        (lineno, task), _, _, (n_line, n_text), (_, steps_text) = block
        if not n_text.isdigit():
            raise ValueError(f"{path}:{n_line}: number of steps is not an integer: {n_text!r}")
        steps = [s.strip() for s in steps_text.split(",")]
        if len(steps) != int(n_text):
            raise ValueError(
                f"{path}:{n_line + 1}: task {task} declares {n_text} steps but lists {len(steps)}"
            )
        if task in tasks:
            raise ValueError(f"{path}:{lineno}: task {task} is listed twice")
        tasks[task] = {"title": block[1][1], "url": block[2][1], "steps": tuple(steps)}
        i += 5
    return tasks


def read_video_list(path: Path) -> list[tuple[str, str, str]]:
    """``videos.csv``: (task id, video id, url) rows."""
    rows = []
    for lineno, line in read_lines(path):
        if not line:
            continue
        parts = line.split(",", 2)
        if len(parts) < 2:
            raise ValueError(f"{path}:{lineno}: expected '<task>,<video>,<url>', got {line!r}")
        url = parts[2].strip() if len(parts) > 2 else ""
        rows.append((parts[0].strip(), parts[1].strip(), url))
    return rows


def read_annotation(path: Path, n_steps: int) -> list[tuple[int, float, float]]:
    """One ``annotations/<task>_<vid>.csv``: (step 1..K, start s, end s) sorted by start."""
    segments = []
    for lineno, line in read_lines(path):
        if not line:
            continue
        parts = line.split(",")
        try:
            step, start, end = int(parts[0]), float(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            raise ValueError(
                f"{path}:{lineno}: expected '<step>,<start>,<end>', got {line!r}"
            ) from None
        if len(parts) != 3 or not 1 <= step <= n_steps or end < start:
            raise ValueError(
                f"{path}:{lineno}: bad segment {line!r} (steps are 1..{n_steps}, end >= start)"
            )
        segments.append((step, start, end))
    return sorted(segments, key=lambda s: (s[1], s[2]))


def segments_to_frames(segments, n_frames: int, fps: float) -> np.ndarray:
    """Per-frame step ids (0 = background) of time segments, sampled at ``fps``."""
    labels = np.zeros(n_frames, dtype=np.int64)
    for step, start, end in segments:
        lo = max(0, int(math.floor(start * fps)))
        hi = min(n_frames, int(math.ceil(end * fps)))
        labels[lo:hi] = step
    return labels


def _feature_rows(path: Path) -> int:
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as err:
        raise ValueError(f"{path}: cannot read features ({err})") from err
    if arr.ndim != 2:
        raise ValueError(f"{path}: features should be (T, D), got shape {arr.shape}")
    return int(arr.shape[0])


@DATASETS.register("crosstask")
def read_crosstask(root: Path, include_related: bool = False, fps: float = 1.0) -> Dataset:
    """CrossTask videos with task, step segments and (given features) per-frame step ids."""
    name = "crosstask"
    if not (root / "tasks_primary.txt").is_file() and (root / "crosstask_release").is_dir():
        root = root / "crosstask_release"
    tasks = read_task_cards(root / "tasks_primary.txt")
    primary = set(tasks)
    if include_related:
        for task, card in read_task_cards(root / "tasks_related.txt").items():
            tasks.setdefault(task, card)
    videos = read_video_list(require_file(root / "videos.csv", name, "video list"))
    val_path = root / "videos_val.csv"
    val_rows = read_video_list(val_path) if val_path.is_file() else []
    val = {(t, v) for t, v, _ in val_rows}
    listed = {(t, v) for t, v, _ in videos}
    videos += [row for row in val_rows if (row[0], row[1]) not in listed]
    feature_dirs = [
        d for d in (root.parent / "crosstask_features", root / "features") if d.is_dir()
    ]

    records, unannotated, seen, clashes = [], [], {}, []
    for task, vid, url in videos:
        if task not in tasks:
            continue
        if vid in seen:  # the same YouTube video filed under a second task: keep the first
            if seen[vid] != task:
                clashes.append(vid)
            continue
        seen[vid] = task
        card = tasks[task]
        ann = root / "annotations" / f"{task}_{vid}.csv"
        segments = read_annotation(ann, len(card["steps"])) if ann.is_file() else None
        if segments is None and task in primary:
            unannotated.append(vid)
        feat = next((d / f"{vid}.npy" for d in feature_dirs if (d / f"{vid}.npy").is_file()), None)
        frame_labels = None
        if segments is not None and feat is not None:
            frame_labels = segments_to_frames(segments, _feature_rows(feat), fps)
        meta = {"url": url, "title": card["title"], "primary": task in primary}
        if segments is not None:
            meta["segments"] = segments
        records.append(
            VideoRecord(
                video_id=vid,
                label=task,
                steps=None
                if segments is None
                else tuple(card["steps"][s - 1] for s, _, _ in segments),
                frame_labels=frame_labels,
                split="val" if (task, vid) in val else "train",
                path=feat,
                task=task,
                meta=meta,
            )
        )
    if clashes:
        warnings.warn(
            f"{name}: {len(clashes)} videos are listed under two tasks in videos.csv; only the "
            f"first listing is kept (e.g. {clashes[:3]})",
            DatasetWarning,
            stacklevel=3,
        )
    if unannotated:
        warnings.warn(
            f"{name}: {len(unannotated)} primary-task videos have no file in "
            f"{root / 'annotations'}; their steps are None (e.g. {unannotated[:3]})",
            DatasetWarning,
            stacklevel=3,
        )
    meta = {
        "task_steps": {t: card["steps"] for t, card in tasks.items()},
        "task_titles": {t: card["title"] for t, card in tasks.items()},
        "fps": fps,
        "unannotated": unannotated,
    }
    return Dataset(name, root, records, None, None, meta)

