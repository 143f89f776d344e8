"""One record of per-frame inputs for every method, and one way to get it from a config.

``load_featureset(cfg)`` turns a :class:`DataConfig` (a dataset name or a folder, plus optional
cached features) into a :class:`FeatureSet`: the videos' (L, D) per-frame inputs with what is
known about them (label, split, task, step list, per-frame phases, score), the dataset's own
evaluation pairs, and a description of where it all came from. Each dataset name maps to one
source function in :data:`FEATURE_SOURCES`; a name without its own source is read with
:func:`procalign.data.load` and takes its features from ``features_dir``.

Every problem of the inputs (unreadable file, wrong rank, a D that differs from the others,
NaN/inf frames, videos too short for the method, per-frame labels of the wrong length) is found
before training starts by :meth:`FeatureSet.validate`, which names each file and frame and lists
all of them in one :class:`DataError`.

>>> fs = load_featureset(DataConfig(synthetic={"num_tasks": 1, "videos_per_procedure": 2}))
>>> fs.in_dim, len(fs.videos) > 0, fs.videos[0].features.ndim
(64, True, 2)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from procalign._registry import Registry
from procalign.data.records import PairRecord

__all__ = [
    "FEATURE_SOURCES",
    "DataConfig",
    "DataError",
    "FeatureSet",
    "FeatureVideo",
    "expand_path",
    "load_featureset",
    "natural_key",
]


class DataError(ValueError):
    """Bad inputs, with every problem found listed (file, frame, what is wrong)."""

    def __init__(self, problems: Sequence[str], where: str = "the data") -> None:
        self.problems = list(problems)
        shown = "\n  ".join(self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} problem(s) in {where}:\n  {shown}{more}")


@dataclass
class DataConfig:
    """Where the videos come from (the ``data`` section shared by every method).

    Attributes:
        dataset: ``"synthetic"`` (built-in generator), ``"folder"`` (a user's dataset, see
            docs/data-folder-layout.md), an SVIP benchmark (``svip-csv``, ``svip-coin``,
            ``svip-diving``), ``pennaction`` (2-D joints), or any reader of
            :func:`procalign.data.load` together with ``features_dir``.
        root: dataset folder (``${PROCALIGN_DATA}`` and ``~`` are expanded); SVIP and Penn
            Action default to their folder under ``$PROCALIGN_DATA``.
        features_dir: cached features ``<features_dir>/<video_id>.npy`` (T, D), e.g. the output
            folder of ``procalign extract`` (or its ``features/``). For SVIP without it, frames
            are *simulated* for the real scripts, splits and official test pairs.
        synthetic: settings of :class:`procalign.data.synthetic.SynthConfig` (synthetic data and
            simulated SVIP frames).
        train_split, test_split: split names.
        max_videos: keep the first N videos of each split (quick runs).
        skip_failed: leave out videos that ``procalign extract`` recorded as failed (their
            features are missing) instead of stopping; the number left out is reported.
        video_encoder, video_encoder_args, video_size: frame encoder (registry) that turns video
            files into features, for ``folder`` videos without features and for ``verify`` on
            video files; it must be the encoder that made the cached features.
        joints_norm, visibility: Penn Action joints: normalisation (``hips``, ``bbox``,
            ``video``; :func:`procalign.data.joints.normalize_joints`) and whether the 13
            visibility flags are appended to the 26 coordinates.
    """

    dataset: str = "synthetic"
    root: str | None = None
    features_dir: str | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    test_split: str = "test"
    max_videos: int | None = None
    skip_failed: bool = False
    video_encoder: str = "efficientnet_lite0"
    video_encoder_args: dict[str, Any] = field(default_factory=dict)
    video_size: int = 32
    joints_norm: str = "hips"
    visibility: bool = True


@dataclass
class FeatureVideo:
    """One video's per-frame inputs and what is known about it.

    ``features`` is an (L, D) float array; for cached features it is opened lazily from
    ``path`` on each access (memory-mapped), so thousands of videos never hold thousands of open
    files.

    Attributes:
        phases: (L,) int64 ordered phase labels (alignment metrics), or None.
        step_index: (L,) script position of each frame, -1 on background (synthetic data).
        score: quality score (quality assessment).
    """

    video_id: str
    label: str | None = None
    split: str | None = None
    task: str | None = None
    steps: tuple[str, ...] | None = None
    phases: np.ndarray | None = None
    step_index: np.ndarray | None = None
    score: float | None = None
    path: Path | None = None
    array: np.ndarray | None = None

    @property
    def features(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        if self.path is None:
            raise ValueError(f"video {self.video_id!r} has neither features nor a features file")
        return np.load(self.path, mmap_mode="r")

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else f"video {self.video_id!r}"


@dataclass
class FeatureSet:
    """The videos of a run, the dataset's own evaluation pairs, and where they came from.

    Attributes:
        pairs: the dataset's own verification pairs (official SVIP lists, ``pairs.csv``, the
            generator's list); empty when it has none.
        pair_source: what ``pairs`` is, in words.
        simulated: frames were simulated (SVIP scripts without features).
        kind: ``"features"`` or ``"joints"`` (the first 2 x ``num_joints`` inputs are x, y).
        num_phases: {label: number of ordered phases} where phase labels are ordered.
        skipped: ids left out (``skip_failed``).
    """

    videos: list[FeatureVideo]
    description: str
    pairs: list[PairRecord] = field(default_factory=list)
    pair_source: str = "none"
    simulated: bool = False
    kind: str = "features"
    num_joints: int = 0
    num_phases: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.index = {v.video_id: i for i, v in enumerate(self.videos)}
        if len(self.index) != len(self.videos):
            raise ValueError(f"duplicate video ids in {self.description}")

    @property
    def in_dim(self) -> int:
        if not self.videos:
            raise ValueError(f"no videos in {self.description}")
        return int(self.videos[0].features.shape[1])

    def split(self, name: str, label: str | None = None) -> list[FeatureVideo]:
        return [v for v in self.videos if v.split == name and (label is None or v.label == label)]

    def hold_out(
        self, fraction: float, seed: int, train_split: str = "train", test_split: str = "test",
        name: str = "val",
    ) -> FeatureSet:
        """A copy whose split ``name`` holds ``fraction`` of the ``train_split`` videos, held out
        the way the test split is (whole procedures when no test label is a training label,
        else videos of every label; :func:`procalign.eval.fullres.validation_split`)."""
        from dataclasses import replace

        from procalign.eval.fullres import split_rule, validation_split

        train = self.split(train_split)
        _, held = validation_split(train, fraction, split_rule(train, self.split(test_split)),
                                   seed)
        ids = {v.video_id for v in held}
        if len(ids) < 2:
            raise ValueError(
                f"train.val_fraction={fraction} holds out {len(ids)} of {len(train)} training "
                "videos; a validation split needs at least 2 (raise it or set it to 0)"
            )
        videos = [replace(v, split=name) if v.video_id in ids else v for v in self.videos]
        return replace(self, videos=videos,
                       description=f"{self.description}, {len(ids)} training videos held out "
                       f"as {name!r}")

    def get(self, video_id: str) -> FeatureVideo:
        if video_id not in self.index:
            raise KeyError(f"no video {video_id!r} in {self.description}")
        return self.videos[self.index[video_id]]

    def labels(self, split: str | None = None) -> list[str]:
        """Sorted labels (natural order: ``1.2`` before ``1.10``) of a split or of all videos."""
        found = {v.label for v in self.videos if v.label is not None and split in (None, v.split)}
        return sorted(found, key=natural_key)

    def info(self) -> dict[str, Any]:
        """What a run records about its data in ``meta.json``."""
        return {
            "in_dim": self.in_dim,
            "data": self.description,
            "simulated": self.simulated,
            "kind": self.kind,
            "num_joints": self.num_joints,
            "num_videos": len(self.videos),
            "num_test_pairs": len(self.pairs),
            "pair_source": self.pair_source,
            "skipped": len(self.skipped),
            "shortest_video": min(len(v.features) for v in self.videos),
        }

    def validate(self, min_frames: int = 1, what: str = "") -> None:
        """Check every video; raise one :class:`DataError` listing all problems.

        Checks: features readable, 2-D, one D for all (the majority D is taken as right),
        finite (first bad frame named), at least ``min_frames`` frames (``what`` says why, e.g.
        "K=6 steps"), phase labels of the video's length.
        """
        problems: list[str] = []
        dims: dict[int, int] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        for v in self.videos:
            try:
                x = v.features
            except Exception as exc:  # noqa: BLE001 - any read error is reported by file
                problems.append(f"{v.where}: cannot read features ({type(exc).__name__}: {exc})")
                continue
            shapes[v.video_id] = tuple(x.shape)
            if x.ndim != 2:
                problems.append(f"{v.where}: features must be (L, D), got shape {x.shape}")
                continue
            dims[x.shape[1]] = dims.get(x.shape[1], 0) + 1
            if len(x) < min_frames:
                need = f" ({what})" if what else ""
                problems.append(f"{v.where}: {len(x)} frame(s), fewer than {min_frames}{need}")
            bad = ~np.isfinite(np.asarray(x, dtype=np.float64)).all(axis=1)
            if bad.any():
                frames = np.flatnonzero(bad)
                problems.append(
                    f"{v.where}: {len(frames)} frame(s) with NaN or infinite values, first at "
                    f"frame {int(frames[0])}"
                )
            if v.phases is not None and len(v.phases) != len(x):
                problems.append(
                    f"{v.where}: {len(v.phases)} per-frame labels but {len(x)} frames"
                )
        if dims:
            common = max(dims, key=lambda d: dims[d])
            for v in self.videos:
                s = shapes.get(v.video_id)
                if s is not None and len(s) == 2 and s[1] != common:
                    problems.append(f"{v.where}: D={s[1]}, but the other videos have D={common}")
        if not self.videos:
            problems.append("no videos")
        if problems:
            raise DataError(problems, self.description)


def natural_key(text: str) -> list[tuple[int, int, str]]:
    """Sort key that orders ``"1.2"`` before ``"1.10"`` and mixes numbers with names safely."""
    return [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in str(text).split(".")]


def expand_path(path: str | None) -> str | None:
    """``~`` and ``$VARS`` expanded; a ``$PROCALIGN_DATA`` that is unset is a clear error."""
    if path is None:
        return None
    if "$PROCALIGN_DATA" in path.replace("{", "") and not os.environ.get("PROCALIGN_DATA"):
        raise FileNotFoundError(
            f"{path!r} uses $PROCALIGN_DATA, which is not set; point it at the shared data "
            "folder (e.g. export PROCALIGN_DATA=../shared/data) or give data.root explicitly"
        )
    return os.path.expanduser(os.path.expandvars(path))


def _default_root(cfg: DataConfig, sub: str) -> Path:
    root = expand_path(cfg.root) or expand_path(f"${{PROCALIGN_DATA}}/{sub}")
    path = Path(str(root))
    if not path.is_dir():
        raise FileNotFoundError(f"data.root {path} does not exist (data.dataset={cfg.dataset})")
    return path


# =============================================================================================
# Sources: one function per dataset family
# =============================================================================================

Source = Callable[[DataConfig, "Path | None", bool], FeatureSet]
FEATURE_SOURCES: Registry[FeatureSet] = Registry("feature source")
_SVIP_FOLDERS = {"svip-csv": "CSV", "svip-diving": "DIVING48-SV", "svip-coin": "COIN-SV"}


def load_featureset(
    cfg: DataConfig, cache_dir: str | Path | None = None, progress: bool = False
) -> FeatureSet:
    """The :class:`FeatureSet` that ``cfg`` describes (see :class:`DataConfig`).

    ``cache_dir`` receives features that must be computed (folder videos without features).

    Raises:
        FileNotFoundError: a dataset folder, features folder or feature file is missing.
        ValueError: inconsistent settings (unknown keys, no split column, ...).
    """
    if cfg.dataset in FEATURE_SOURCES:
        source = FEATURE_SOURCES.get(cfg.dataset)
    else:
        from procalign.data.registry import DATASETS

        if cfg.dataset not in DATASETS:
            known = sorted(set(FEATURE_SOURCES.names()) | set(DATASETS.names()))
            raise ValueError(f"data.dataset {cfg.dataset!r} is unknown; known: {known}")
        source = _reader_with_features
    fs = source(cfg, None if cache_dir is None else Path(cache_dir), progress)
    if not fs.videos:
        raise ValueError(f"no videos in {fs.description}")
    return fs


def synth_config(settings: dict[str, Any]):
    from procalign.data.synthetic import SynthConfig

    if not isinstance(settings, dict):
        raise ValueError(f"data.synthetic must be a mapping, got {settings!r}")
    from procalign.data.synthetic import preset_settings

    known = set(SynthConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - known - {"preset"})
    if unknown:
        raise ValueError(f"unknown data.synthetic key(s) {unknown}; known: {sorted(known)}")
    return SynthConfig(**preset_settings(settings))


def _from_generated(ds, description: str, simulated: bool, pair_source: str) -> FeatureSet:
    from procalign.data.joints import event_phases

    videos = [
        FeatureVideo(
            v.video_id,
            v.record.label,
            v.record.split,
            v.record.task,
            tuple(v.record.steps or ()) or None,
            phases=event_phases(v.phases),
            step_index=v.phases,
            array=v.features,
        )
        for v in ds.videos
    ]
    num_phases = {str(v.record.label): len(v.record.steps or ()) + 1 for v in ds.videos}
    return FeatureSet(
        videos,
        description,
        list(ds.pairs),
        pair_source,
        simulated,
        num_phases=num_phases,
    )


@FEATURE_SOURCES.register("synthetic")
def _synthetic(cfg: DataConfig, cache_dir: Path | None, progress: bool) -> FeatureSet:
    from procalign.data.synthetic import make_dataset

    sc = synth_config(cfg.synthetic)
    ds = make_dataset(sc, progress=progress)
    return _cap(
        _from_generated(ds, f"synthetic procedures (seed {sc.seed})", False, "generator's list"),
        cfg,
    )


def _svip(cfg: DataConfig, cache_dir: Path | None, progress: bool) -> FeatureSet:
    from procalign.data.synthetic_io import from_svip

    root = _default_root(cfg, f"svip/{_SVIP_FOLDERS[cfg.dataset]}")
    if cfg.features_dir is not None:
        return _reader_with_features(cfg, cache_dir, progress, root)
    ds = from_svip(
        root,
        synth_config(cfg.synthetic),
        splits=(cfg.train_split, cfg.test_split),
        max_videos=cfg.max_videos,
        progress=progress,
    )
    return _from_generated(
        ds,
        f"{cfg.dataset} scripts, splits and official pairs from {root} with SIMULATED frames "
        "(no features_dir)",
        True,
        "official SVIP list",
    )


for _name in _SVIP_FOLDERS:
    FEATURE_SOURCES.register(_name)(_svip)


def _features_root(cfg: DataConfig) -> tuple[Path, set[str]]:
    """(folder of <id>.npy files, ids that extraction recorded as failed)."""
    base = Path(str(expand_path(cfg.features_dir)))
    if not base.is_dir():
        raise FileNotFoundError(f"data.features_dir {base} does not exist")
    feats = base / "features" if (base / "features").is_dir() else base
    failed: set[str] = set()
    for folder in {base, feats.parent}:
        for manifest in sorted(folder.glob("manifest*.json")):
            import json

            try:
                failed |= set(json.loads(manifest.read_text()).get("failures", {}))
            except (OSError, ValueError):
                continue
    return feats, failed


def _attach_features(records: list, cfg: DataConfig, where: str) -> tuple[list, list[str]]:
    """Records with a ``features/<id>.npy`` path from ``features_dir``; failed ones skipped."""
    feats, failed = _features_root(cfg)
    kept, skipped, missing = [], [], []
    for r in records:
        path = feats / f"{r.video_id}.npy"
        if path.is_file():
            kept.append((r, path))
        elif cfg.skip_failed and r.video_id in failed:
            skipped.append(r.video_id)
        else:
            missing.append((r.video_id, r.video_id in failed))
    if missing:
        n_failed = sum(f for _, f in missing)
        hint = (
            f"; {n_failed} of them failed in `procalign extract` (data.skip_failed=true leaves "
            "those out)"
            if n_failed
            else "; extract them with `procalign extract` or unset data.features_dir"
        )
        raise FileNotFoundError(
            f"{len(missing)} of {len(records)} feature files of {where} are missing in {feats}, "
            f"e.g. {[m for m, _ in missing[:3]]}{hint}"
        )
    if skipped:
        warnings.warn(
            f"data.skip_failed: {len(skipped)} video(s) that extraction recorded as failed are "
            f"left out, e.g. {skipped[:3]}",
            stacklevel=3,
        )
    return kept, skipped


def _reader_with_features(
    cfg: DataConfig, cache_dir: Path | None, progress: bool, root: Path | None = None
) -> FeatureSet:
    from procalign.data import load

    if cfg.features_dir is None:
        raise ValueError(f"data.dataset={cfg.dataset!r} needs data.features_dir (cached features)")
    if root is None:
        if cfg.root is None:
            raise ValueError(f"data.dataset={cfg.dataset!r} needs data.root (its folder)")
        root = Path(str(expand_path(cfg.root)))
    data = load(cfg.dataset, root)
    records = [r for r in data.records if r.split in (cfg.train_split, cfg.test_split)]
    if cfg.max_videos is not None:
        records = [
            r
            for s in (cfg.train_split, cfg.test_split)
            for r in [x for x in records if x.split == s][: cfg.max_videos]
        ]
    kept, skipped = _attach_features(records, cfg, f"{cfg.dataset} at {root}")
    videos = [_video(r, path=p) for r, p in kept]
    ids = {v.video_id for v in videos}
    pairs = [
        p
        for p in (data.pairs or [])
        if p.video_id_1 in ids and p.video_id_2 in ids and p.split in (None, cfg.test_split)
    ]
    fs = FeatureSet(
        videos,
        f"{cfg.dataset} at {root} with features from {cfg.features_dir}",
        pairs,
        f"the dataset's own list ({cfg.dataset})" if pairs else "none",
        skipped=skipped,
    )
    _phases_from_labels(fs)
    return fs


def _video(r, path: Path | None = None, array: np.ndarray | None = None) -> FeatureVideo:
    return FeatureVideo(
        r.video_id,
        None if r.label is None else str(r.label),
        r.split,
        r.task,
        tuple(r.steps) if r.steps else None,
        phases=None if r.frame_labels is None else np.asarray(r.frame_labels),
        path=path,
        array=array,
    )


@FEATURE_SOURCES.register("folder")
def _folder(cfg: DataConfig, cache_dir: Path | None, progress: bool) -> FeatureSet:
    from procalign.data import load

    if cfg.root is None:
        raise ValueError("data.dataset=folder needs data.root (the dataset folder)")
    root = Path(str(expand_path(cfg.root)))
    data = load("folder", root, check_files=cfg.features_dir is None)
    if not data.records:
        raise ValueError(
            f"folder dataset {root}: index.csv lists no videos (add one row per video: "
            "video_id,label,split)"
        )
    if not data.splits:
        raise ValueError(
            f"folder dataset {root}: no video of index.csv has a split; fill its split column "
            "(train / test)"
        )
    for s in (cfg.train_split, cfg.test_split):
        if s not in data.splits:
            raise ValueError(f"folder dataset {root} has no {s!r} videos; splits: {data.splits}")
    records = [r for r in data.records if r.split in (cfg.train_split, cfg.test_split)]
    skipped: list[str] = []
    if cfg.features_dir is not None:
        kept, skipped = _attach_features(records, cfg, f"folder dataset {root}")
        videos = [_video(r, path=p) for r, p in kept]
    else:
        videos, to_encode = [], []
        for r in records:
            if r.path is not None and Path(r.path).suffix == ".npy":
                videos.append(_video(r, path=Path(r.path)))
            else:
                to_encode.append(r)
        if to_encode:
            videos += _encode_records(to_encode, cfg, cache_dir, progress)
            order = {r.video_id: i for i, r in enumerate(records)}
            videos.sort(key=lambda v: order[v.video_id])
    ids = {v.video_id for v in videos if v.split == cfg.test_split}
    pairs = [p for p in (data.pairs or []) if p.video_id_1 in ids and p.video_id_2 in ids]
    fs = FeatureSet(
        videos,
        f"folder dataset {root}",
        pairs,
        f"the folder's pairs.csv ({len(pairs)} test pairs)" if pairs else "none",
        skipped=skipped,
    )
    _phases_from_labels(fs)
    return fs


def _encode_records(records: list, cfg: DataConfig, cache_dir: Path | None, progress: bool):
    """Videos without features: encoded once with ``data.video_encoder``, cached."""
    from procalign.data.features import Source as MediaSource
    from procalign.data.extraction import extract_features
    from procalign.models.encoders import build_encoder

    if cache_dir is None:
        raise ValueError(
            f"{len(records)} videos have no features; encoding them needs a cache folder (the "
            "run folder), or extract them first with `procalign extract`"
        )
    enc = build_encoder(cfg.video_encoder, **dict(cfg.video_encoder_args))
    if getattr(enc, "input_kind", "frames") != "frames":
        raise ValueError(f"data.video_encoder {cfg.video_encoder!r} does not take frames")
    sources = []
    for r in records:
        if r.path is None:
            raise FileNotFoundError(f"video {r.video_id!r} has no features, video or frames")
        kind = "frames" if Path(r.path).is_dir() else "video"
        sources.append(MediaSource(r.video_id, Path(r.path), kind))
    report = extract_features(sources, cache_dir, enc.eval(), extractor=cfg.video_encoder,
                              progress=progress)
    failed = set(report.failed)
    if failed and not cfg.skip_failed:
        raise ValueError(
            f"{len(failed)} videos could not be decoded: {sorted(failed)[:5]} (see "
            f"{cache_dir}/manifest.json; data.skip_failed=true leaves them out)"
        )
    return [
        _video(r, path=Path(cache_dir) / "features" / f"{r.video_id}.npy")
        for r in records
        if r.video_id not in failed
    ]


def _phases_from_labels(fs: FeatureSet) -> None:
    """Per-frame labels -> int64 phases per label group; ordered ints give ``num_phases``."""
    by_label: dict[str, list[FeatureVideo]] = {}
    for v in fs.videos:
        if v.phases is not None:
            by_label.setdefault(str(v.label), []).append(v)
    for label, members in by_label.items():
        raw = [np.asarray(v.phases) for v in members]
        if all(np.issubdtype(x.dtype, np.integer) for x in raw):
            for v, x in zip(members, raw):
                v.phases = x.astype(np.int64)
            if min(int(x.min()) for x in raw if x.size) >= 0:
                fs.num_phases[label] = max(int(x.max()) for x in raw if x.size) + 1
            continue
        vocab = sorted({str(s) for x in raw for s in x.tolist()})
        index = {s: i for i, s in enumerate(vocab)}
        for v, x in zip(members, raw):
            v.phases = np.array([index[str(s)] for s in x.tolist()], dtype=np.int64)


@FEATURE_SOURCES.register("pennaction")
def _pennaction(cfg: DataConfig, cache_dir: Path | None, progress: bool) -> FeatureSet:
    from procalign.data import load
    from procalign.data.joints import JOINT_NORMS, normalize_joints

    if cfg.joints_norm not in JOINT_NORMS:
        raise ValueError(f"data.joints_norm must be one of {JOINT_NORMS}, got {cfg.joints_norm!r}")
    root = _default_root(cfg, "pennaction")
    videos, num_joints = [], 0
    for r in load("pennaction", root):
        j = normalize_joints(r.meta["joints"], cfg.joints_norm, r.meta.get("bbox"))
        num_joints = j.shape[1]
        x = j.reshape(j.shape[0], -1)
        if cfg.visibility:
            x = np.concatenate([x, r.meta["visibility"].astype(np.float32)], axis=1)
        videos.append(
            FeatureVideo(r.video_id, str(r.label), r.split, r.task, array=x.astype(np.float32))
        )
    return FeatureSet(
        videos, f"Penn Action joints at {root} ({cfg.joints_norm})", kind="joints",
        num_joints=num_joints,
    )


def _cap(fs: FeatureSet, cfg: DataConfig) -> FeatureSet:
    if cfg.max_videos is None:
        return fs
    keep = [
        v for s in (cfg.train_split, cfg.test_split) for v in fs.split(s)[: cfg.max_videos]
    ]
    ids = {v.video_id for v in keep}
    fs.videos = keep
    fs.index = {v.video_id: i for i, v in enumerate(keep)}
    fs.pairs = [p for p in fs.pairs if p.video_id_1 in ids and p.video_id_2 in ids]
    return fs


def with_quality_scores(fs: FeatureSet, strength: float, seed: int) -> FeatureSet:
    """Synthetic quality assessment on top of synthetic videos (a new FeatureSet).

    Each video gets a per-step execution quality ``q_k ~ U(0, 1)``; frames of step k move by
    ``strength * (q_k - 1/2) * a_s`` along a fixed random direction ``a_s`` of the step's name,
    and the video's score is ``100 * mean_k q_k``. Score differences are thus visible only step
    by step, which is what exemplar-based regression over aligned steps must exploit.
    """
    from dataclasses import replace

    from procalign.data.synthetic import _rng

    dirs: dict[str, np.ndarray] = {}
    out = []
    for v in fs.videos:
        if v.step_index is None or v.steps is None:
            raise ValueError("quality simulation needs synthetic videos with per-frame steps")
        q = _rng(seed, "quality", v.video_id).uniform(0, 1, size=len(v.steps))
        feats = np.array(v.features, dtype=np.float32, copy=True)
        for k, name in enumerate(v.steps):
            if name not in dirs:
                a = _rng(seed, "quality-dir", name).normal(size=feats.shape[1])
                dirs[name] = a / np.linalg.norm(a)
            feats[v.step_index == k] += strength * (q[k] - 0.5) * dirs[name]
        out.append(replace(v, array=feats, path=None, score=float(100 * q.mean())))
    return FeatureSet(
        out, fs.description + " + simulated quality scores", fs.pairs, fs.pair_source,
        fs.simulated, fs.kind, fs.num_joints, dict(fs.num_phases), list(fs.skipped),
    )


def encode_video(path: str | Path, encoder: Any, size: int = 32) -> np.ndarray:
    """Every frame of a video file / frame folder, resized to ``size`` x ``size`` and encoded
    with a frames encoder -> (L, D) float32 (what ``procalign verify`` does with a video), through
    the streaming pipeline of :func:`procalign.data.extraction.encode_video`."""
    from procalign.data.extraction import encode_video as stream
    from procalign.data.video import ResizePolicy

    if getattr(encoder, "input_kind", "frames") != "frames":
        raise ValueError(f"the encoder {type(encoder).__name__} does not take frames")
    features, _ = stream(path, encoder, resize=ResizePolicy("fixed", size, None))
    return features
