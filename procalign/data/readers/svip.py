"""Sequence-verification benchmarks of the SVIP lab: CSV, COIN-SV, Diving48-SV, and CSV-Matching.

Readers ``svip-csv``, ``svip-coin``, ``svip-diving`` read the folder the SVIP / WeakSVR
repositories ship as ``Datasets/<CSV|COIN-SV|DIVING48-SV>/`` (``root`` may be that folder or its
parent). Files, all whitespace-separated text:

``<split>_split.txt`` (split in train / val / test; CSV has no val)
    ``<video> <label>`` per line. CSV names carry the file extension (``chenyijun.MP4 1.2``) and
    are unique only within a label, so a CSV video id is ``<label>/<stem>`` (``1.2/chenyijun``),
    exactly as the pair lists write it. COIN-SV (YouTube ids) and Diving48-SV (``<yt>_<n>``) use
    the first field as the id.
``<split>_pairs.txt``
    ``<id1> <label1> <id2> <label2>``; a pair is *same* when the two labels are equal. Every id
    must be in that split's ``_split.txt`` with the same label (ValueError naming file:line).
``label_bank.json``
    ``{label: [step, step, ...]}``: the ordered steps of each procedure, which become
    ``VideoRecord.steps``. Labels absent from the bank get ``steps=None`` and one warning (all 37
    COIN-SV *train* labels, e.g. ``122.0``, are absent from the official bank).

Labels of CSV and COIN-SV read ``A.B``: task ``A``, procedure ``B`` of that task, so
``VideoRecord.task`` is ``A``. Known junk in the official files (macOS ``._name`` entries: two in
CSV train, one in CSV test; blank lines; malformed lines at the end of a file) is skipped with
one :class:`DatasetWarning` that counts it. A malformed line followed by good lines is an error.

Video path: the official loaders read JPEG frames ``1.jpg, 2.jpg, ...`` from a folder named by
the id under the data root (the README says to "complete the split files with your local data
path"). ``VideoRecord.path`` is the first that exists of ``root/<id>/``, ``root/frames/<id>/``,
``root/videos/<id>.<ext>``; None when none does (the annotation-only release).

``csv-matching`` reads WeakSVR's CSV-Matching split, ``weaksvr_splits/text_matching.txt`` (or
``splits/text_matching.txt`` as in the WeakSVR repository, or ``text_matching.txt`` in root):
``<label> <v1> <v2> <v3> <v4> <v5>`` per line, CRLF line ends; each ``v`` is ``<label>/<name>``.
Records are the candidate videos (split ``test``); ``Dataset.queries`` holds one
:class:`MatchingQuery` per line whose ``answer`` is the index of the only candidate carrying the
query's label (in the official file exactly one does, at positions spread evenly over 0-4). Two
official lines offer a macOS ``._liandongze`` entry as a candidate; those queries are skipped and
counted in the warning. Option ``file="text_retrieval.txt"`` reads the retrieval list instead.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from procalign.data.readers._common import (
    VIDEO_EXTS,
    DatasetWarning,
    Skipped,
    read_lines,
    require_file,
    split_fields,
    video_candidates,
)
from procalign.data.records import MatchingQuery, PairRecord, VideoRecord
from procalign.data.registry import DATASETS, Dataset

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class _Variant:
    name: str
    folders: tuple[str, ...]  # names of the dataset folder, to accept its parent as root
    id_with_label: bool  # CSV: id = "<label>/<stem>"
    task_from_label: bool  # label "A.B" -> task "A"


_VARIANTS = {
    "svip-csv": _Variant("svip-csv", ("CSV",), True, True),
    "svip-coin": _Variant("svip-coin", ("COIN-SV", "COIN"), False, True),
    "svip-diving": _Variant(
        "svip-diving", ("DIVING48-SV", "Diving48-SV", "DIVING48"), False, False
    ),
}


def _is_junk(fields: list[str]) -> bool:
    """A field naming a macOS resource fork: ``._name`` or ``<label>/._name``."""
    joined = " " + " ".join(fields)
    return " ._" in joined or "/._" in joined


def _resolve_root(root: Path, variant: _Variant) -> Path:
    if (root / "label_bank.json").exists() or any(root.glob("*_split.txt")):
        return root
    for folder in variant.folders:
        if (root / folder).is_dir():
            return root / folder
    raise FileNotFoundError(
        f"{variant.name}: no *_split.txt or label_bank.json in {root} "
        f"(nor in a subfolder named {' or '.join(variant.folders)})"
    )


def read_label_bank(path: Path, dataset: str) -> dict[str, tuple[str, ...]]:
    """``label_bank.json`` as {label: steps}; ValueError naming the file when it is malformed."""
    require_file(path, dataset, "label bank")
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from err
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: expected a JSON object {{label: [steps]}}, got {type(raw).__name__}"
        )
    bank: dict[str, tuple[str, ...]] = {}
    for label, steps in raw.items():
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ValueError(f"{path}: entry {label!r} must be a list of step strings")
        bank[str(label)] = tuple(steps)
    return bank


def _frame_path(root: Path, video_id: str, has_frames: bool, has_videos: bool) -> Path | None:
    direct = root / video_id
    if direct.is_dir():
        return direct
    if has_frames and (root / "frames" / video_id).is_dir():
        return root / "frames" / video_id
    if has_videos:
        for cand in video_candidates(root / "videos", video_id):
            if cand.is_file():
                return cand
    return None


def _video_id(name: str, label: str, variant: _Variant) -> str:
    if not variant.id_with_label:
        return name
    stem = name
    for ext in VIDEO_EXTS:
        if name.endswith(ext):
            stem = name[: -len(ext)]
            break
    return f"{label}/{stem}"


def _read_svip(root: Path, variant: _Variant) -> Dataset:
    root = _resolve_root(root, variant)
    bank = read_label_bank(root / "label_bank.json", variant.name)
    skipped = Skipped(variant.name)
    present = [s for s in SPLITS if (root / f"{s}_split.txt").is_file()]
    if not present:
        raise FileNotFoundError(f"{variant.name}: no <split>_split.txt file in {root}")
    has_frames, has_videos = (root / "frames").is_dir(), (root / "videos").is_dir()

    records: list[VideoRecord] = []
    pairs: list[PairRecord] = []
    for split in present:
        path = root / f"{split}_split.txt"
        labels_here: dict[str, str] = {}
        for _, (name, label) in split_fields(read_lines(path), path, 2, skipped, _is_junk):
            vid = _video_id(name, label, variant)
            labels_here[vid] = label
            records.append(
                VideoRecord(
                    video_id=vid,
                    label=label,
                    steps=bank.get(label),
                    split=split,
                    path=_frame_path(root, vid, has_frames, has_videos),
                    task=label.split(".")[0] if variant.task_from_label else None,
                    meta={"file": name} if name != vid else {},
                )
            )
        pair_path = root / f"{split}_pairs.txt"
        if not pair_path.is_file():
            continue
        for lineno, (v1, l1, v2, l2) in split_fields(
            read_lines(pair_path), pair_path, 4, skipped, _is_junk
        ):
            for vid, label in ((v1, l1), (v2, l2)):
                if vid not in labels_here:
                    raise ValueError(f"{pair_path}:{lineno}: video {vid!r} is not in {path.name}")
                if labels_here[vid] != label:
                    raise ValueError(
                        f"{pair_path}:{lineno}: video {vid!r} has label {label!r} here but "
                        f"{labels_here[vid]!r} in {path.name}"
                    )
            pairs.append(PairRecord(v1, v2, l1 == l2, l1, l2, split))

    skipped.warn(stacklevel=4)
    missing = sorted({r.label for r in records if r.steps is None})
    if missing:
        n_videos = sum(r.steps is None for r in records)
        warnings.warn(
            f"{variant.name}: {len(missing)} labels ({n_videos} videos) have no entry in "
            f"{root / 'label_bank.json'}; their steps are None (e.g. {missing[:3]})",
            DatasetWarning,
            stacklevel=3,
        )
    meta = {"label_bank": bank, "skipped": skipped.as_dict(), "labels_without_steps": missing}
    return Dataset(variant.name, root, records, pairs, None, meta)


@DATASETS.register("svip-csv")
def read_svip_csv(root: Path) -> Dataset:
    """CSV (Chemical Sequence Verification): 45 train / 25 test procedures, train and test pairs."""
    return _read_svip(root, _VARIANTS["svip-csv"])


@DATASETS.register("svip-coin")
def read_svip_coin(root: Path) -> Dataset:
    """COIN-SV: train / val / test splits and pairs."""
    return _read_svip(root, _VARIANTS["svip-coin"])


@DATASETS.register("svip-diving")
def read_svip_diving(root: Path) -> Dataset:
    """Diving48-SV: train / val / test splits and pairs; steps are the dive's 4 attributes."""
    return _read_svip(root, _VARIANTS["svip-diving"])


_MATCHING_DIRS = ("weaksvr_splits", "splits", ".")


@DATASETS.register("csv-matching")
def read_csv_matching(root: Path, file: str = "text_matching.txt") -> Dataset:
    """CSV-Matching (WeakSVR): text-to-video matching queries over CSV test videos."""
    name = "csv-matching"
    if not any((root / d / file).is_file() for d in _MATCHING_DIRS) and (root / "CSV").is_dir():
        root = root / "CSV"
    path = next((root / d / file for d in _MATCHING_DIRS if (root / d / file).is_file()), None)
    if path is None:
        raise FileNotFoundError(
            f"{name}: {file} not found in {root}/weaksvr_splits, {root}/splits or {root}"
        )
    bank_path = root / "label_bank.json"
    bank = read_label_bank(bank_path, name) if bank_path.is_file() else {}
    skipped = Skipped(name)
    has_frames, has_videos = (root / "frames").is_dir(), (root / "videos").is_dir()

    records: dict[str, VideoRecord] = {}
    queries: list[MatchingQuery] = []
    for lineno, fields in split_fields(read_lines(path), path, 6, skipped):
        label, candidates = fields[0], tuple(fields[1:])
        if _is_junk(list(candidates)):
            skipped.add(f"queries offering a macOS '._' entry in {path.name}")
            continue
        cand_labels = []
        for vid in candidates:
            if "/" not in vid:
                raise ValueError(f"{path}:{lineno}: candidate {vid!r} is not '<label>/<name>'")
            cand_labels.append(vid.split("/", 1)[0])
            if vid not in records:
                records[vid] = VideoRecord(
                    video_id=vid,
                    label=cand_labels[-1],
                    steps=bank.get(cand_labels[-1]),
                    split="test",
                    path=_frame_path(root, vid, has_frames, has_videos),
                    task=cand_labels[-1].split(".")[0],
                )
        hits = [i for i, lab in enumerate(cand_labels) if lab == label]
        queries.append(MatchingQuery(label, candidates, hits[0] if len(hits) == 1 else None))
    skipped.warn(stacklevel=4)
    meta = {"label_bank": bank, "skipped": skipped.as_dict(), "file": str(path)}
    return Dataset(name, root, list(records.values()), None, queries, meta)
