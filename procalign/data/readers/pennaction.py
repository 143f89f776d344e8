"""Penn Action (Zhang, Zhu, Derpanis, ICCV 2013): 2326 clips of 15 actions with 2-D joints.

Reader ``pennaction``. Layout of the official release (``root`` is ``Penn_Action/`` or its
``labels/`` folder)::

    labels/<NNNN>.mat      one MATLAB file per clip
    frames/<NNNN>/<NNNNNN>.jpg   optional: the clip's frames

Variables of each ``.mat`` file: ``action`` (e.g. ``'baseball_pitch'``), ``pose`` (camera view,
e.g. ``'back'``), ``x`` and ``y`` (T, 13) joint coordinates in pixels, ``visibility`` (T, 13) 0/1,
``bbox`` (T, 4) ``x1 y1 x2 y2``, ``dimensions`` ``[H W T]``, ``train`` (1 = train, -1 = test),
``nframes`` T. Two official files (1154, 1865) have one ``bbox`` row fewer than ``nframes``; the
bbox is kept as stored.

Each clip becomes a record: id ``NNNN``, ``label`` = action, ``split`` from the train flag,
``path`` = its frame folder when present. ``meta`` holds ``joints`` (T, 13, 2) float32 ``(x, y)``,
``visibility`` (T, 13) bool, ``bbox`` float32, ``pose`` and ``dimensions``. Reading all 2326
files eagerly takes about one second, so nothing is deferred. The per-frame phase labels that
TCC/LAV use are a separate release: see ``tcc-phases``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from procalign.data.readers._common import Skipped, require_dir
from procalign.data.records import VideoRecord
from procalign.data.registry import DATASETS, Dataset

NUM_JOINTS = 13
_KEYS = ("action", "x", "y", "visibility", "bbox", "train", "nframes")


def _string(value: np.ndarray, path: Path, key: str) -> str:
    arr = np.asarray(value).ravel()
    if arr.size != 1 or not isinstance(arr[0], str):
        raise ValueError(f"{path}: variable {key!r} is not a string")
    return str(arr[0])


def _scalar(value: np.ndarray, path: Path, key: str) -> int:
    arr = np.asarray(value).ravel()
    if arr.size != 1:
        raise ValueError(f"{path}: variable {key!r} should hold one number, has {arr.size}")
    return int(arr[0])


def read_clip(path: Path) -> VideoRecord:
    """One Penn Action ``.mat`` file as a record (``path`` left None)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except Exception as err:  # scipy raises several types for damaged files
        raise ValueError(f"{path}: cannot read MATLAB file ({err})") from err
    missing = [k for k in _KEYS if k not in mat]
    if missing:
        raise ValueError(f"{path}: missing variables {missing}")
    n = _scalar(mat["nframes"], path, "nframes")
    for key in ("x", "y", "visibility"):
        if mat[key].shape != (n, NUM_JOINTS):
            raise ValueError(
                f"{path}: {key!r} has shape {mat[key].shape}, expected ({n}, {NUM_JOINTS})"
            )
    flag = _scalar(mat["train"], path, "train")
    if flag not in (1, -1):
        raise ValueError(f"{path}: 'train' flag is {flag}, expected 1 or -1")
    bbox = np.asarray(mat["bbox"], dtype=np.float32)
    if bbox.ndim != 2 or bbox.shape[1] != 4:
        raise ValueError(f"{path}: 'bbox' has shape {bbox.shape}, expected (T, 4)")
    meta = {
        "joints": np.stack([mat["x"], mat["y"]], axis=-1).astype(np.float32),
        "visibility": np.asarray(mat["visibility"]).astype(bool),
        "bbox": bbox,
        "nframes": n,
    }
    if "pose" in mat:
        meta["pose"] = _string(mat["pose"], path, "pose")
    if "dimensions" in mat:
        meta["dimensions"] = tuple(int(v) for v in np.asarray(mat["dimensions"]).ravel())
    return VideoRecord(
        video_id=path.stem,
        label=_string(mat["action"], path, "action"),
        split="train" if flag == 1 else "test",
        meta=meta,
    )


@DATASETS.register("pennaction")
def read_pennaction(root: Path) -> Dataset:
    """Penn Action clips with joints, visibility, bbox and the official train/test flag."""
    labels = root if root.name == "labels" and not (root / "labels").is_dir() else root / "labels"
    require_dir(labels, "pennaction", "labels folder")
    base = labels.parent
    files = sorted(labels.glob("*.mat"))
    if not files:
        raise FileNotFoundError(f"pennaction: no .mat files in {labels}")
    frames = base / "frames"
    has_frames = frames.is_dir()
    records = []
    skipped = Skipped("pennaction")
    for path in files:
        if path.name.startswith("._"):
            skipped.add("macOS '._' files in labels/")
            continue
        rec = read_clip(path)
        if has_frames and (frames / rec.video_id).is_dir():
            rec.path = frames / rec.video_id
        records.append(rec)
    skipped.warn(stacklevel=4)
    meta = {"num_joints": NUM_JOINTS, "skipped": skipped.as_dict()}
    return Dataset("pennaction", base, records, None, None, meta)
