"""A user's own data (and ``procalign.data.synthetic``'s output) in one documented layout.

Reader ``folder``; the layout is documented for users in ``docs/data-folder-layout.md``::

    root/
      index.csv                 header video_id,label,split[,steps][,task]; steps joined by ';'
      features/<video_id>.npy   (T, D) float features (optional if videos/ or frames/ has it)
      videos/<video_id>.<ext>   mp4 / avi / webm / mkv (optional)
      frames/<video_id>/*.jpg|png   (optional)
      labels/<video_id>.txt     optional per-frame labels, one per line (T lines), or
      labels/<video_id>.npy     the same as a 1-D array (T,) of integers or strings
      pairs.csv                 optional: video_id_1,video_id_2,same   (same is 0 or 1)
      meta.json                 optional dataset-level information

``index.csv`` is read with the ``csv`` module (quote a field that contains a comma). Empty
``label``/``split``/``task`` cells mean None; extra columns land in ``VideoRecord.meta`` as text.
``VideoRecord.path`` is the features file if present, else the video file, else the frame
folder. Every video must have one of the three: all videos without one are reported together in
a single FileNotFoundError that lists the files looked for (``check_files=False`` skips this and
leaves ``path=None``). A features file must hold a 2-D array; its T and D go to
``meta["num_frames"]`` / ``meta["feature_dim"]``, and a labels file must then have T lines.
Labels are int64 when every line is an integer, else strings. ``pairs.csv`` becomes
``Dataset.pairs`` (a pair's ``split`` is its videos' split when they share one); verification
evaluation uses it when present. ``meta.json`` is stored as ``Dataset.meta["info"]``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath

import numpy as np

from procalign._io import npy_problem
from procalign.data.readers._common import as_int_labels, read_lines, require_file
from procalign.data.records import PairRecord, VideoRecord
from procalign.data.registry import DATASETS, Dataset

INDEX_COLUMNS = ("video_id", "label", "split")
OPTIONAL_COLUMNS = ("steps", "task")
VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv")
FRAME_EXTS = (".jpg", ".jpeg", ".png")


def _rows(path: Path, required: tuple[str, ...]):
    """(line number, row dict) of a headed CSV; ValueError naming file and line on bad rows."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}:1: header lacks {missing}; expected {','.join(required)}")
        reader.fieldnames = header
        for row in reader:
            if None in row or any(v is None for v in row.values()):
                raise ValueError(
                    f"{path}:{reader.line_num}: expected {len(header)} fields ({','.join(header)})"
                )
            if not any(v.strip() for v in row.values()):
                continue
            yield reader.line_num, {k: v.strip() for k, v in row.items()}


def _check_id(video_id: str, path: Path, lineno: int) -> None:
    parts = PurePosixPath(video_id).parts
    if not video_id or video_id.startswith("/") or ".." in parts or "\\" in video_id:
        raise ValueError(f"{path}:{lineno}: invalid video_id {video_id!r}")


def _media(root: Path, vid: str) -> tuple[Path | None, str | None]:
    """(path, None) for the video's features / video / frames, or (None, what was looked for)."""
    feat = root / "features" / f"{vid}.npy"
    if feat.is_file():
        return feat, None
    for ext in VIDEO_EXTS:
        if (root / "videos" / f"{vid}{ext}").is_file():
            return root / "videos" / f"{vid}{ext}", None
    frames = root / "frames" / vid
    if frames.is_dir():
        if any(p.suffix.lower() in FRAME_EXTS for p in frames.iterdir()):
            return frames, None
        return None, f"{frames}/ has no .jpg or .png frames"
    return None, f"none of {feat}, videos/{vid}.{{mp4,avi,webm,mkv}}, frames/{vid}/"


def _feature_shape(path: Path) -> tuple[int, int]:
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as err:
        raise ValueError(f"{path}: cannot read features: {npy_problem(path, err)}") from err
    if arr.ndim != 2:
        raise ValueError(f"{path}: features should be a (T, D) array, got shape {arr.shape}")
    return int(arr.shape[0]), int(arr.shape[1])


def _read_npy_labels(path: Path, n_frames: int | None) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as err:
        raise ValueError(f"{path}: cannot read per-frame labels: {npy_problem(path, err)}") from err
    if arr.ndim != 1:
        raise ValueError(f"{path}: per-frame labels must be a 1-D array (T,), got shape {arr.shape}")
    if n_frames is not None and len(arr) != n_frames:
        raise ValueError(f"{path}: {len(arr)} labels but the features have {n_frames} frames")
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind in "US":
        return as_int_labels([str(x) for x in arr.tolist()])
    raise ValueError(f"{path}: per-frame labels must be integers or strings, got dtype {arr.dtype}")


def _labels_of(root: Path, vid: str, n_frames: int | None) -> np.ndarray | None:
    txt, npy = root / "labels" / f"{vid}.txt", root / "labels" / f"{vid}.npy"
    if txt.is_file() and npy.is_file():
        raise ValueError(f"{root / 'labels'}: both {txt.name} and {npy.name} exist; keep one")
    if npy.is_file():
        return _read_npy_labels(npy, n_frames)
    return _read_labels(txt, n_frames) if txt.is_file() else None


def _read_labels(path: Path, n_frames: int | None) -> np.ndarray:
    lines = read_lines(path)
    while lines and not lines[-1][1]:
        lines.pop()
    for lineno, text in lines:
        if not text:
            raise ValueError(f"{path}:{lineno}: blank line inside per-frame labels")
    if n_frames is not None and len(lines) != n_frames:
        raise ValueError(f"{path}: {len(lines)} labels but the features have {n_frames} frames")
    return as_int_labels([text for _, text in lines])


@DATASETS.register("folder")
def read_folder(root: Path, check_files: bool = True) -> Dataset:
    """Videos listed in ``index.csv`` with features / videos / frames, labels, pairs, meta."""
    name = "folder"
    index = require_file(root / "index.csv", name, "index")
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    problems: list[str] = []
    bad: list[str] = []
    for lineno, row in _rows(index, INDEX_COLUMNS):
        vid = row["video_id"]
        _check_id(vid, index, lineno)
        if vid in seen:
            raise ValueError(f"{index}:{lineno}: video_id {vid!r} repeats line {seen[vid]}")
        seen[vid] = lineno
        steps = tuple(s.strip() for s in row.get("steps", "").split(";") if s.strip())
        extra = {k: v for k, v in row.items() if k not in INDEX_COLUMNS + OPTIONAL_COLUMNS}
        path, problem = _media(root, vid)
        n_frames = None
        if problem is not None and check_files:
            problems.append(f"{vid} (index.csv line {lineno}): {problem}")
        labels = None
        try:
            if path is not None and path.suffix == ".npy":
                n_frames, dim = _feature_shape(path)
                extra.update(num_frames=n_frames, feature_dim=dim)
            labels = _labels_of(root, vid, n_frames)
        except ValueError as err:  # collected: one report names every bad file
            bad.append(str(err))
        records.append(
            VideoRecord(
                video_id=vid,
                label=row["label"] or None,
                steps=steps or None,
                frame_labels=labels,
                split=row["split"] or None,
                path=path,
                task=row.get("task") or None,
                meta=extra,
            )
        )
    if bad:
        shown = "\n  ".join(bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ValueError(f"{name}: {len(bad)} unreadable or inconsistent file(s):\n  {shown}{more}")
    if problems:
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise FileNotFoundError(
            f"{name}: {len(problems)} videos of {index} have no features, video or frames:\n"
            f"  {shown}{more}"
        )

    by_id = {r.video_id: r for r in records}
    pairs = None
    pairs_path = root / "pairs.csv"
    if pairs_path.is_file():
        pairs = []
        for lineno, row in _rows(pairs_path, ("video_id_1", "video_id_2", "same")):
            v1, v2, same = row["video_id_1"], row["video_id_2"], row["same"]
            for vid in (v1, v2):
                if vid not in by_id:
                    raise ValueError(f"{pairs_path}:{lineno}: video {vid!r} is not in index.csv")
            if same not in ("0", "1"):
                raise ValueError(f"{pairs_path}:{lineno}: 'same' must be 0 or 1, got {same!r}")
            r1, r2 = by_id[v1], by_id[v2]
            split = r1.split if r1.split == r2.split else None
            pairs.append(PairRecord(v1, v2, same == "1", r1.label, r2.label, split))

    meta: dict = {}
    info_path = root / "meta.json"
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{info_path}:{err.lineno}: invalid JSON ({err.msg})") from err
        if not isinstance(info, dict):
            raise ValueError(f"{info_path}: expected a JSON object")
        meta["info"] = info
    return Dataset(name, root, records, pairs, None, meta)
