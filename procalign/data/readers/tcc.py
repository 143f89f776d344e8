"""Per-frame phase labels of the TCC / LAV alignment benchmarks (Pouring, Penn Action actions).

Reader ``tcc-phases``. TCC (Dwibedi et al., CVPR 2019) stored these labels inside TFRecords;
LAV (Haresh et al., CVPR 2021) released them as NumPy dictionaries, the layout read here::

    npyrecords/<action>_<split>.npy    split in train / val / test, e.g. pouring_train.npy,
                                       baseball_pitch_val.npy
    <split>/<action>/<video>/*.jpg     optional frame folders (LAV's data layout)

Each ``.npy`` file is an ``np.save``-d dict ``{video name: {"labels": (T,) int array, ...}}``
(loaded as ``np.load(path, allow_pickle=True).item()``, as LAV's evaluation does); a bare (T,)
array as value is accepted too. Phase ``p`` is an integer in ``0..K-1``; K for the published
actions is in :data:`NUM_PHASES` (pouring 5, baseball_pitch 4, ...) and a label outside it is a
ValueError naming file and video.

Records: id ``<action>/<video>``, ``label`` the action, ``split`` from the file name,
``frame_labels`` int64 (T,), ``steps`` the phase names ``"phase 0"...`` in the order the video
shows them, ``path`` its frame folder when present. Pickled dicts can run code when loaded:
read only trusted files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from procalign.data.readers._common import collapse_runs, require_dir
from procalign.data.records import VideoRecord
from procalign.data.registry import DATASETS, Dataset

#: Number of phases of each action in TCC's / LAV's evaluation (both spellings of the
#: Penn Action names).
NUM_PHASES = {
    "pouring": 5,
    "baseball_pitch": 4,
    "baseball_swing": 3,
    "bench_press": 2,
    "bowl": 3,
    "bowling": 3,
    "clean_and_jerk": 6,
    "golf_swing": 3,
    "jumping_jacks": 4,
    "pushup": 2,
    "pushups": 2,
    "pullup": 2,
    "pullups": 2,
    "situp": 2,
    "squat": 4,
    "squats": 4,
    "tennis_forehand": 3,
    "tennis_serve": 4,
}
SPLITS = ("train", "val", "test")


def _load_dict(path: Path) -> dict:
    try:
        obj = np.load(path, allow_pickle=True)
        data = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    except Exception as err:
        raise ValueError(f"{path}: cannot read ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a saved dict {{video: {{'labels': array}}}}")
    return data


@DATASETS.register("tcc-phases")
def read_tcc_phases(root: Path) -> Dataset:
    """TCC/LAV per-frame phase labels from ``npyrecords/<action>_<split>.npy``."""
    name = "tcc-phases"
    folder = root if root.name == "npyrecords" else root / "npyrecords"
    require_dir(folder, name, "npyrecords folder")
    base = folder.parent
    files = sorted(p for p in folder.glob("*.npy") if not p.name.startswith("._"))
    if not files:
        raise FileNotFoundError(f"{name}: no <action>_<split>.npy files in {folder}")
    records = []
    for path in files:
        action, _, split = path.stem.rpartition("_")
        if not action or split not in SPLITS:
            raise ValueError(f"{path}: file name should be <action>_<split>.npy, split in {SPLITS}")
        n_phases = NUM_PHASES.get(action)
        data = _load_dict(path)
        for video in sorted(data, key=str):
            value = data[video]
            labels = value.get("labels") if isinstance(value, dict) else value
            if labels is None:
                raise ValueError(f"{path}: video {video!r} has no 'labels'")
            labels = np.asarray(labels).ravel()
            if labels.size and not np.issubdtype(labels.dtype, np.integer):
                if not np.all(np.mod(labels, 1) == 0):
                    raise ValueError(f"{path}: video {video!r} has non-integer phase labels")
            labels = labels.astype(np.int64)
            top = n_phases - 1 if n_phases else None
            if labels.size and (labels.min() < 0 or (top is not None and labels.max() > top)):
                allowed = f"0..{top}" if top is not None else "non-negative"
                raise ValueError(
                    f"{path}: video {video!r} has phase labels {labels.min()}..{labels.max()}, "
                    f"expected {allowed}"
                )
            frames = base / split / action / str(video)
            records.append(
                VideoRecord(
                    video_id=f"{action}/{video}",
                    label=action,
                    steps=tuple(f"phase {p}" for p in collapse_runs(labels.tolist())),
                    frame_labels=labels,
                    split=split,
                    path=frames if frames.is_dir() else None,
                    meta={"num_phases": n_phases},
                )
            )
    return Dataset(name, base, records, None, None, {"num_phases": NUM_PHASES})
