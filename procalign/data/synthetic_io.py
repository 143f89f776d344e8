"""The synthetic generator's disk side: simulate SVIP-style benchmarks from their files
(:func:`from_svip`: real scripts, splits and test pairs, simulated frames) and write / read the
``folder`` layout (:func:`write_folder`, :func:`read_folder`; the layout is described in
:mod:`procalign.data.synthetic`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from procalign._io import atomic_save_npy, atomic_write_text
from procalign.data.records import PairRecord, VideoRecord
from procalign.data.synthetic import (
    BACKGROUND,
    GENERATOR,
    Procedure,
    SynthConfig,
    SyntheticDataset,
    SyntheticVideo,
    _make_world,
    _meta,
    _progress_bar,
    _stable_int,
    simulate_video,
)


# ----------------------------------------------------------------------------- real scripts


def _read_svip_split(path: Path) -> tuple[list[tuple[str, str]], int]:
    rows, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0].startswith("._"):
            skipped += bool(line.strip())
            continue
        name, label = parts
        stem = name.rsplit(".", 1)[0] if "." in name else name
        rows.append((f"{label}/{stem}", label))
    return rows, skipped


def from_svip(
    root: str | Path,
    config: SynthConfig | None = None,
    *,
    splits: tuple[str, ...] = ("train", "test"),
    max_videos: int | None = None,
    progress: bool = False,
    **overrides: Any,
) -> SyntheticDataset:
    """Simulate the videos of a real SVIP-style benchmark (e.g. ``svip/CSV``).

    Reads ``label_bank.json`` (label -> ordered step names), ``<split>_split.txt``
    (``name.ext label`` per line) and ``test_pairs.txt`` (``id1 label1 id2 label2``). Video ids are
    ``"<label>/<name without extension>"`` as in the official pair lists; the real splits and the
    official test pairs are kept. Task = the part of the label before the first dot. Only the
    ``num_frames``, ``dim``, nuisance and ``seed`` fields of the config are used.

    Args:
        root: folder holding the files above.
        splits: which ``<split>_split.txt`` files to read.
        max_videos: keep only the first ``max_videos`` videos of each split (for quick runs);
            pairs that lose a video are dropped.

    Raises:
        FileNotFoundError: ``root`` or one of the files is missing.
        ValueError: a split names a label absent from the label bank.
    """
    root = Path(root)
    bank_path = root / "label_bank.json"
    if not bank_path.is_file():
        raise FileNotFoundError(f"from_svip: no label_bank.json in {root}")
    bank = json.loads(bank_path.read_text(encoding="utf-8"))
    config = SynthConfig(**{**asdict(config or SynthConfig()), **overrides})
    rows: list[tuple[str, str, str]] = []
    skipped = 0
    for split in splits:
        path = root / f"{split}_split.txt"
        if not path.is_file():
            raise FileNotFoundError(f"from_svip: no {path.name} in {root}")
        split_rows, bad = _read_svip_split(path)
        skipped += bad
        if max_videos is not None:
            split_rows = split_rows[:max_videos]
        rows.extend((vid, label, split) for vid, label in split_rows)
    missing = sorted({label for _, label, _ in rows if label not in bank})
    if missing:
        raise ValueError(f"from_svip: labels {missing[:5]} of the splits are not in {bank_path}")
    used = sorted(
        {label for _, label, _ in rows},
        key=lambda s: [int(x) if x.isdigit() else x for x in s.split(".")],
    )
    procedures = [
        Procedure(label, label.split(".")[0], tuple(bank[label]), "real") for label in used
    ]
    bad_names = sorted({s for p in procedures for s in p.steps if ";" in s})
    if bad_names:
        raise ValueError(f"from_svip: step names must not contain ';': {bad_names[:3]}")
    vocabulary = [BACKGROUND] + sorted({s for p in procedures for s in p.steps})
    shortest = config.shortest_video
    longest_script = max(len(p.steps) for p in procedures)
    if shortest < longest_script:
        raise ValueError(
            f"from_svip: num_frames={config.num_frames} (jitter {config.length_jitter}) gives "
            f"videos of {shortest} frames, fewer than the longest script ({longest_script} steps)"
        )
    world = _make_world(config, vocabulary, sorted({p.task for p in procedures}))
    by_label = {p.label: p for p in procedures}
    seen: set[str] = set()
    videos: list[SyntheticVideo] = []
    with _progress_bar(len(rows), "synth", progress) as bar:
        for vid, label, split in rows:
            if vid in seen:
                skipped += 1
                bar.update(1)
                continue
            seen.add(vid)
            videos.append(simulate_video(vid, by_label[label], vocabulary, world, config, split))
            bar.update(1)
    pairs: list[PairRecord] = []
    pair_path = root / "test_pairs.txt"
    dropped = 0
    if "test" in splits and pair_path.is_file():
        for line in pair_path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) != 4:
                continue
            a, la, b, lb = parts
            if a in seen and b in seen:
                pairs.append(PairRecord(a, b, la == lb, la, lb))
            else:
                dropped += 1
    meta = _meta(config, procedures, vocabulary, source=f"svip:{root}")
    meta["skipped_lines"] = skipped
    meta["dropped_pairs"] = dropped
    return SyntheticDataset(videos, procedures, vocabulary, pairs, meta)


# ----------------------------------------------------------------------------- on disk




def write_folder(
    dataset: SyntheticDataset,
    root: str | Path,
    *,
    render_videos: bool = False,
    video_ext: str = "mp4",
    video_size: int = 32,
    fps: int = 8,
    progress: bool = False,
    on_video: Callable[[SyntheticVideo], None] | None = None,
    video_style: str = "plain",
) -> Path:
    """Write ``dataset`` in the ``folder`` layout (see the module docstring). Returns ``root``.

    Args:
        render_videos: also render ``videos/<video_id>.<video_ext>`` with
            :func:`procalign.data.render.render_video` (coloured shapes encoding the steps).
        video_ext: ``mp4``, ``avi``, ``webm`` or ``mkv``.
        video_size: rendered frame side in pixels (even).
        fps: rendered frame rate.
        video_style: ``"plain"`` or ``"cluttered"`` (per-video hue, background and lighting:
            colour no longer identifies a step), see :func:`procalign.data.render.render_frames`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = dataset.vocabulary
    if render_videos:
        from procalign.data.render import CODECS, render_video

        if f".{video_ext.lower()}" not in CODECS:
            raise ValueError(
                f"video_ext must be one of {sorted(c[1:] for c in CODECS)}, got {video_ext!r}"
            )
    with _progress_bar(len(dataset), "write", progress) as bar:
        for video in dataset.videos:
            vid = video.video_id
            atomic_save_npy(root / "features" / f"{vid}.npy", video.features.astype(np.float32))
            atomic_write_text(
                root / "labels" / f"{vid}.txt", "".join(f"{vocab[s]}\n" for s in video.step_ids)
            )
            atomic_write_text(
                root / "phases" / f"{vid}.txt",
                "".join(
                    f"{p} {g:.6f} {u:.6f}\n"
                    for p, g, u in zip(
                        video.phases.tolist(), video.progress.tolist(), video.step_progress.tolist()
                    )
                ),
            )
            if render_videos:
                render_video(
                    root / "videos" / f"{vid}.{video_ext}",
                    video.step_ids,
                    video.step_progress,
                    size=video_size,
                    fps=fps,
                    seed=_stable_int(vid),
                    style=video_style,
                )
            if on_video is not None:
                on_video(video)
            bar.update(1)
    rows = [["video_id", "label", "split", "steps", "task"]]
    for v in dataset.videos:
        r = v.record
        rows.append(
            [r.video_id, r.label or "", r.split or "", ";".join(r.steps or ()), r.task or ""]
        )
    _write_csv(root / "index.csv", rows)
    _write_csv(
        root / "pairs.csv",
        [["video_id_1", "video_id_2", "same"]]
        + [[p.video_id_1, p.video_id_2, int(p.same)] for p in dataset.pairs],
    )
    meta = dict(dataset.meta)
    meta["num_videos"] = len(dataset)
    meta["num_pairs"] = len(dataset.pairs)
    if render_videos:
        meta["videos"] = {
            "ext": video_ext,
            "size": video_size,
            "fps": fps,
            "style": video_style,
            "renderer": "procalign.data.render",
        }
    atomic_write_text(root / "meta.json", json.dumps(meta, indent=2) + "\n")
    return root


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buf.getvalue())


def read_folder(root: str | Path) -> SyntheticDataset:
    """Read back a dataset written by :func:`write_folder`, ground truth included.

    Raises:
        FileNotFoundError: ``root/index.csv`` or ``root/meta.json`` or a video's files are missing.
        ValueError: ``meta.json`` was not written by this generator, or per-frame files disagree
            with the features' length.
    """
    root = Path(root)
    for name in ("index.csv", "meta.json"):
        if not (root / name).is_file():
            raise FileNotFoundError(f"read_folder: no {name} in {root}")
    meta = json.loads((root / "meta.json").read_text(encoding="utf-8"))
    if meta.get("generator") != GENERATOR:
        raise ValueError(f"read_folder: {root}/meta.json was not written by {GENERATOR}")
    vocabulary = list(meta["vocabulary"])
    index = {name: i for i, name in enumerate(vocabulary)}
    procedures = [
        Procedure(label, p["task"], tuple(p["steps"]), p.get("edit", "base"))
        for label, p in meta["procedures"].items()
    ]
    videos = []
    with open(root / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            vid = row["video_id"]
            features = np.load(root / "features" / f"{vid}.npy")
            names = (root / "labels" / f"{vid}.txt").read_text(encoding="utf-8").splitlines()
            truth = np.loadtxt(root / "phases" / f"{vid}.txt", ndmin=2)
            if len(names) != len(features) or len(truth) != len(features):
                raise ValueError(
                    f"read_folder: video {vid!r} has {len(features)} feature rows but "
                    f"{len(names)} labels and {len(truth)} phase rows"
                )
            step_ids = np.array([index[n] for n in names], dtype=np.int64)
            record = VideoRecord(
                video_id=vid,
                label=row["label"] or None,
                steps=tuple(row["steps"].split(";")) if row.get("steps") else None,
                frame_labels=step_ids,
                split=row["split"] or None,
                path=root / "features" / f"{vid}.npy",
                task=row.get("task") or None,
            )
            videos.append(
                SyntheticVideo(
                    record,
                    features,
                    step_ids,
                    truth[:, 0].astype(np.int64),
                    truth[:, 1].astype(np.float32),
                    truth[:, 2].astype(np.float32),
                )
            )
    pairs = []
    if (root / "pairs.csv").is_file():
        with open(root / "pairs.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                pairs.append(PairRecord(row["video_id_1"], row["video_id_2"], row["same"] == "1"))
    return SyntheticDataset(videos, procedures, vocabulary, pairs, meta)
