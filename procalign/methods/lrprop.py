"""LRProp (Bar-Shalom, Leifman, Elad, Rivlin): weakly supervised frame representations for alignment.

The whole method, top to bottom:

1. **Inputs** (:func:`load_clips`): per-frame vectors of every video, grouped by action class:
   synthetic features (with ground-truth phases), Penn Action 2-D joints normalised by
   :func:`normalize_joints`, a ``folder`` dataset's ``features/*.npy``, or frames/videos passed
   once through a frozen encoder of :mod:`procalign.models.encoders` (cached under the run).
2. **Views** (:func:`sample_view`, :func:`augment_view`): each training video is cropped twice at
   random; each crop keeps T frames with their *original* indices; an augmentation whose
   parameters are drawn once per crop (so it is temporally consistent) is applied to it.
3. **Model** (:class:`LRPropModel`): input standardisation, then a temporal encoder of
   :mod:`procalign.models.temporal` (paper: transformer, 7 layers, hidden 256, 8 heads).
4. **Loss** (:class:`procalign.losses.lrprop.LRPropLoss`): Eq. 12, L_same + lambda1 L_prop +
   lambda2 L_sdtw, over batches of 2 videos x 2 crops; **one model per action class**.
5. **Evaluation** (:func:`evaluate_embedders`): Kendall's tau, cycle-consistency; with phase
   labels (synthetic, or a folder dataset with per-frame labels) AP@K, DTW-alignment accuracy,
   phase classification and progression; across classes, nearest-neighbour video retrieval and
   verification AUC (same vs different action, distances from the query class's model).

The recipe (``procalign train lrprop`` / ``procalign eval lrprop``) turns :class:`LRPropConfig`
into these plain objects; nothing below the recipe reads a config.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn

from procalign.losses.lrprop import SDTW_VARIANTS, LRPropLoss
from procalign.methods import METHODS

__all__ = [
    "PENN_ACTION_TCC_ACTIONS",
    "Clip",
    "ClipSet",
    "LRPropConfig",
    "LRPropModel",
    "LRPropRecipe",
    "augment_view",
    "build_loss",
    "build_model",
    "class_settings",
    "cpu_threads",
    "embed_clips",
    "evaluate_embedders",
    "event_phases",
    "load_clips",
    "make_batches",
    "normalize_joints",
    "sample_view",
    "train_class",
    "validate_config",
]

#: The 13 Penn Action classes used by TCC, LAV, CARL and LRProp (jump_rope, strum_guitar left out).
PENN_ACTION_TCC_ACTIONS = (
    "baseball_pitch",
    "baseball_swing",
    "bench_press",
    "bowl",
    "clean_and_jerk",
    "golf_swing",
    "jumping_jacks",
    "pullup",
    "pushup",
    "situp",
    "squat",
    "tennis_forehand",
    "tennis_serve",
)
#: Penn Action joint order (0-based): head, L/R shoulder, L/R elbow, L/R wrist, L/R hip, L/R knee,
#: L/R ankle.
PENN_SHOULDERS = (1, 2)
PENN_HIPS = (7, 8)
JOINT_NORMS = ("hips", "bbox", "video")
DATASETS = ("synthetic", "pennaction", "folder")
INPUTS = ("auto", "features", "joints", "encoder")
EVAL_VIEWS = ("strided", "full")
_PER_CLASS_KEYS = ("num_frames", "lambda1", "lambda2")


# =============================================================================================
# Configuration (read by the recipe only)
# =============================================================================================


@dataclass
class DataConfig:
    """Where the videos come from.

    Attributes:
        dataset: ``"synthetic"`` (generated in memory, with phase labels), ``"pennaction"`` or
            ``"folder"`` (see ``docs/data-folder-layout.md``).
        root: dataset folder. Penn Action defaults to ``$PROCALIGN_DATA/pennaction``; required for
            ``folder``; ignored for ``synthetic``.
        actions: classes (labels) to train one model each for; empty = all labels
            (Penn Action: TCC's 13 actions).
        synthetic: keyword overrides of :class:`procalign.data.synthetic.SynthConfig`.
        input: ``"auto"`` (features for synthetic/folder ``.npy``, joints for Penn Action, the
            encoder for folder videos/frames), or force ``"features"``, ``"joints"``, ``"encoder"``.
        encoder, encoder_args: frozen frame encoder of the registry for ``input=encoder``
            (features cached under ``<run>/features``).
        joints_norm: ``"hips"`` (per frame: centre on the mid-hip, scale by the video's median
            torso length), ``"bbox"`` (per frame: centre and height of the box) or ``"video"``
            (one centre and scale per video, keeping global motion).
        visibility: append the 13 joint-visibility flags to the 26 coordinates (39 inputs).
        max_train_videos, max_test_videos: keep at most this many videos per class and split
            (first in id order); None keeps all.
    """

    dataset: str = "synthetic"
    root: str | None = None
    actions: list[str] = field(default_factory=list)
    synthetic: dict[str, Any] = field(default_factory=dict)
    input: str = "auto"
    encoder: str = "tiny_cnn"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    joints_norm: str = "hips"
    visibility: bool = True
    max_train_videos: int | None = None
    max_test_videos: int | None = None


@dataclass
class ViewConfig:
    """Two random crops per video, temporally consistent augmentation.

    Attributes:
        num_frames: T, frames per crop (paper: 20-80 per Penn Action class, Table 5). A crop
            shorter than T repeats frames.
        crop_min: each crop spans a fraction in [crop_min, 1] of the video.
        augment: apply the augmentation below (parameters drawn once per crop).
        scale: joints: isotropic scale in [1 - scale, 1 + scale]; features: contrast around the
            training mean in the same range.
        rotation: joints: in-plane rotation in [-rotation, rotation] degrees.
        shift: joints: translation in [-shift, shift] (normalised units).
        jitter: joints: per-frame Gaussian noise std (normalised units).
        noise: features: per-frame Gaussian noise, in units of each dimension's training std.
        dropout: features: share of dimensions replaced by their mean (one mask per crop).
    """

    num_frames: int = 80
    crop_min: float = 0.5
    augment: bool = True
    scale: float = 0.15
    rotation: float = 10.0
    shift: float = 0.1
    jitter: float = 0.01
    noise: float = 0.1
    dropout: float = 0.1


@dataclass
class ModelConfig:
    """The temporal encoder (paper: transformer, 7 layers, hidden 256, 8 heads).

    Attributes:
        temporal: registry name in :data:`procalign.models.temporal.TEMPORAL`.
        dim, layers, heads, dropout: its size (``heads`` only for the transformer).
        positions: sinusoidal position encodings in the transformer (the paper credits them for
            the transformer's advantage; ``false`` makes frames see context but not their index).
    """

    temporal: str = "transformer"
    dim: int = 256
    layers: int = 7
    heads: int = 8
    dropout: float = 0.1
    positions: bool = True


@dataclass
class LossConfig:
    """Eq. 12 and its terms; see :class:`procalign.losses.lrprop.LRPropLoss`.

    Attributes:
        sigma2: Gaussian prior variance in frames^2 (paper 10).
        tau: softmax temperature of the cosine similarities (paper 0.1).
        lambda1, lambda2: weights of L_prop and L_sdtw (paper: per class, Table 5; ``per_class``
            of :class:`LRPropConfig` overrides them).
        use_same, use_prop, use_sdtw: ablation switches (paper Table 3).
        prop_cost: frame cost of L_prop's hard DTW (paper: l2 = ``"euclidean"``).
        sdtw_variant: ``"divergence"`` (default) or ``"idm"`` (LAV's regulariser).
        sdtw_gamma, sdtw_cost, sdtw_normalize: soft-DTW smoothing, frame cost, per-frame scaling.
        idm_weight, idm_window, idm_margin: LAV regulariser weight, neighbourhood (frames), margin.
    """

    sigma2: float = 10.0
    tau: float = 0.1
    lambda1: float = 0.01
    lambda2: float = 0.4
    use_same: bool = True
    use_prop: bool = True
    use_sdtw: bool = True
    prop_cost: str = "euclidean"
    sdtw_variant: str = "divergence"
    sdtw_gamma: float = 0.1
    sdtw_cost: str = "cosine"
    sdtw_normalize: bool = True
    idm_weight: float = 0.5
    idm_window: float = 5.0
    idm_margin: float = 1.0


@dataclass
class OptimConfig:
    """Adam with weight decay and a cosine schedule (paper: lr 1e-4, wd 1e-5, 300 epochs, 2 videos).

    Attributes:
        lr, weight_decay: Adam settings.
        epochs: passes over the class's training videos.
        batch_videos: videos per step (each cropped twice); >= 2 for L_prop / L_sdtw.
        warmup: linear warm-up epochs before the cosine decay.
        grad_clip: max gradient norm, or None.
    """

    lr: float = 1e-4
    weight_decay: float = 1e-5
    epochs: int = 300
    batch_videos: int = 2
    warmup: int = 0
    grad_clip: float | None = None


@dataclass
class EvalConfig:
    """Evaluation protocol; every reported row names its variant.

    Attributes:
        stride: frame stride of Kendall's tau, cycle-consistency and AP@K (TCC/CARL use 5 on long
            videos; 1 = every frame).
        distance: frame distance of the metrics (``"sqeuclidean"``, ``"euclidean"``, ``"cosine"``).
        normalize: L2-normalise embeddings before every metric (training uses cosine similarity).
        views: ``"strided"``: a video longer than T is embedded as ceil(F/T) interleaved
            subsequences of at most T frames, each spanning the whole video like a training crop;
            ``"full"``: the whole video in one pass.
        ks: K of AP@K (phase labels needed).
        fractions, classifiers: phase-classification label fractions and probes.
        retrieval_ks: K of video retrieval precision@K.
        max_pairs: video pairs per class for Kendall's tau, cycle-consistency and DTW accuracy
            (None: all pairs, the published protocol; a number draws that many with a fixed seed).
        max_queries: query videos per class for retrieval/verification (first in order).
        max_candidates: candidate videos per label in the retrieval/verification pool (None: all).
    """

    stride: int = 1
    distance: str = "sqeuclidean"
    normalize: bool = True
    views: str = "strided"
    ks: list[int] = field(default_factory=lambda: [5, 10, 15])
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.5, 1.0])
    classifiers: list[str] = field(default_factory=lambda: ["linear_svm"])
    retrieval_ks: list[int] = field(default_factory=lambda: [1, 5])
    max_pairs: int | None = None
    max_queries: int = 20
    max_candidates: int | None = 20


@dataclass
class LRPropConfig:
    """Everything an LRProp run needs (``configs/lrprop_*.yaml``).

    Attributes:
        per_class: ``{action: {num_frames, lambda1, lambda2}}`` overrides (the paper's Table 5).
        seed: seeds initialisation, crops and augmentation (per class: seed + class position).
        device: ``"cpu"`` or a torch device string.
        threads: CPU threads for torch and for the compiled DP kernels while training and
            evaluating (None leaves the libraries' defaults). On a small shared CPU, 1 is much
            faster: numba's OpenMP workers spin between kernel calls and starve torch's.
    """

    data: DataConfig = field(default_factory=DataConfig)
    views: ViewConfig = field(default_factory=ViewConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    per_class: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None


def validate_config(cfg: LRPropConfig) -> None:
    """Raise ValueError naming the first offending key."""

    def choice(value: str, key: str, options: Sequence[str]) -> None:
        if value not in options:
            raise ValueError(f"config key {key!r} must be one of {tuple(options)}, got {value!r}")

    def positive(value: float, key: str, allow_zero: bool = False) -> None:
        if not (value >= 0 if allow_zero else value > 0):
            raise ValueError(
                f"config key {key!r} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}"
            )

    d, v, m, lo, o, e = cfg.data, cfg.views, cfg.model, cfg.loss, cfg.optim, cfg.eval
    choice(d.dataset, "data.dataset", DATASETS)
    choice(d.input, "data.input", INPUTS)
    choice(d.joints_norm, "data.joints_norm", JOINT_NORMS)
    if d.dataset == "folder" and not d.root:
        raise ValueError("config key 'data.root' is required for data.dataset=folder")
    for key in ("max_train_videos", "max_test_videos"):
        val = getattr(d, key)
        if val is not None and val < 2:
            raise ValueError(f"config key 'data.{key}' must be None or >= 2, got {val}")
    if v.num_frames < 2:
        raise ValueError(f"config key 'views.num_frames' must be >= 2, got {v.num_frames}")
    if not 0 < v.crop_min <= 1:
        raise ValueError(f"config key 'views.crop_min' must lie in (0, 1], got {v.crop_min}")
    for key in ("scale", "rotation", "shift", "jitter", "noise"):
        positive(getattr(v, key), f"views.{key}", allow_zero=True)
    if not 0 <= v.dropout < 1 or v.scale >= 1:
        raise ValueError(
            f"config keys 'views.dropout' and 'views.scale' must lie in [0, 1), got {v.dropout}, {v.scale}"
        )
    for key in ("dim", "layers"):
        if getattr(m, key) < 1:
            raise ValueError(f"config key 'model.{key}' must be >= 1, got {getattr(m, key)}")
    if m.temporal == "transformer" and (m.heads < 1 or m.dim % m.heads):
        raise ValueError(
            f"config key 'model.dim' ({m.dim}) must be divisible by 'model.heads' ({m.heads})"
        )
    positive(lo.sigma2, "loss.sigma2")
    positive(lo.tau, "loss.tau")
    positive(lo.lambda1, "loss.lambda1", allow_zero=True)
    positive(lo.lambda2, "loss.lambda2", allow_zero=True)
    positive(lo.sdtw_gamma, "loss.sdtw_gamma")
    choice(lo.sdtw_variant, "loss.sdtw_variant", SDTW_VARIANTS)
    choice(lo.prop_cost, "loss.prop_cost", ("sqeuclidean", "euclidean", "cosine"))
    choice(lo.sdtw_cost, "loss.sdtw_cost", ("sqeuclidean", "euclidean", "cosine"))
    if not (lo.use_same or lo.use_prop or lo.use_sdtw):
        raise ValueError(
            "config keys 'loss.use_same', 'loss.use_prop', 'loss.use_sdtw' are all false"
        )
    positive(o.lr, "optim.lr")
    positive(o.weight_decay, "optim.weight_decay", allow_zero=True)
    if o.epochs < 1:
        raise ValueError(f"config key 'optim.epochs' must be >= 1, got {o.epochs}")
    if o.batch_videos < 1 or ((lo.use_prop or lo.use_sdtw) and o.batch_videos < 2):
        raise ValueError(
            f"config key 'optim.batch_videos' must be >= 2 when L_prop or L_sdtw is on "
            f"(pairs of different videos), got {o.batch_videos}"
        )
    if e.stride < 1:
        raise ValueError(f"config key 'eval.stride' must be >= 1, got {e.stride}")
    choice(e.distance, "eval.distance", ("sqeuclidean", "euclidean", "cosine"))
    choice(e.views, "eval.views", EVAL_VIEWS)
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"config key 'threads' must be None or >= 1, got {cfg.threads}")
    if e.max_queries < 1:
        raise ValueError(f"config key 'eval.max_queries' must be >= 1, got {e.max_queries}")
    for key in ("max_pairs", "max_candidates"):
        if getattr(e, key) is not None and getattr(e, key) < 1:
            raise ValueError(f"config key 'eval.{key}' must be None or >= 1, got {getattr(e, key)}")
    for label, over in cfg.per_class.items():
        if not isinstance(over, dict):
            raise ValueError(f"config key 'per_class.{label}' must be a mapping, got {over!r}")  # noqa: TRY004 - config errors are ValueErrors
        unknown = sorted(set(over) - set(_PER_CLASS_KEYS))
        if unknown:
            raise ValueError(
                f"unknown config key(s) {', '.join(f'per_class.{label}.{u}' for u in unknown)}; "
                f"known: {', '.join(_PER_CLASS_KEYS)}"
            )
        if "num_frames" in over and (
            not isinstance(over["num_frames"], int) or over["num_frames"] < 2
        ):
            raise ValueError(f"config key 'per_class.{label}.num_frames' must be an int >= 2")
        for key in ("lambda1", "lambda2"):
            if key in over and (
                isinstance(over[key], bool)
                or not isinstance(over[key], (int, float))
                or over[key] < 0
            ):
                raise ValueError(f"config key 'per_class.{label}.{key}' must be a number >= 0")


# =============================================================================================
# Inputs
# =============================================================================================


@dataclass
class Clip:
    """One video's per-frame inputs.

    Attributes:
        video_id, label, split: from the dataset record.
        x: (F, D_in) float32 per-frame inputs.
        phases: (F,) int64 phase labels, or None when the dataset has none.
    """

    video_id: str
    label: str
    split: str | None
    x: np.ndarray
    phases: np.ndarray | None = None


@dataclass
class ClipSet:
    """All clips of a dataset, with the facts the recipe needs.

    Attributes:
        clips: every clip (all labels, all splits).
        kind: ``"joints"`` or ``"features"`` (decides the augmentation).
        num_joints: J for joints (the first 2J inputs are x, y pairs), else 0.
        classes: labels to train one model each for.
        num_phases: {label: number of phases} where phase labels are ordered (progression).
    """

    clips: list[Clip]
    kind: str
    num_joints: int
    classes: list[str]
    num_phases: dict[str, int] = field(default_factory=dict)

    @property
    def in_dim(self) -> int:
        return int(self.clips[0].x.shape[1])

    def split(self, label: str | None, split: str) -> list[Clip]:
        return [c for c in self.clips if (label is None or c.label == label) and c.split == split]


def event_phases(phases: np.ndarray) -> np.ndarray:
    """Synthetic ground truth -> ordered phase labels: the number of steps started so far.

    ``phases`` (T,) is the step position (``-1`` on background). Background before the first
    step is phase 0; step k and any background after it (up to the next step) is phase k + 1.
    With K steps the labels are 0..K, ordered in time, as TCC's key-event phases.

    >>> event_phases(np.array([-1, 0, 0, -1, 1, 1, -1])).tolist()
    [0, 1, 1, 1, 2, 2, 2]
    """
    p = np.asarray(phases, dtype=np.int64)
    if p.ndim != 1:
        raise ValueError(f"phases must be (T,), got shape {p.shape}")
    return np.maximum.accumulate(p + 1)


def normalize_joints(
    joints: np.ndarray,
    mode: str = "hips",
    bbox: np.ndarray | None = None,
    hips: tuple[int, int] = PENN_HIPS,
    shoulders: tuple[int, int] = PENN_SHOULDERS,
) -> np.ndarray:
    """Translation- and scale-normalised 2-D joints (T, J, 2) -> (T, J, 2) float32.

    Modes:
        ``"hips"``: per frame, subtract the mid-hip; divide by the video's median torso length
        (mid-shoulder to mid-hip distance), robust to a few bad frames.
        ``"bbox"``: per frame, subtract the box centre and divide by the box height (``bbox``
        (T', 4) ``x1 y1 x2 y2``; a missing last row repeats the previous one).
        ``"video"``: one centre (mean mid-hip) and one scale (median torso) for the whole video,
        so global motion (jumps, walks) is kept.

    Image y points down; it is flipped so "up" is positive.

    >>> j = np.zeros((1, 13, 2), np.float32); j[0, 1:3, 1] = 0.0; j[0, 7:9, 1] = 2.0
    >>> normalize_joints(j)[0, 0].tolist()  # head at the shoulders' height, torso length 2
    [0.0, 1.0]
    """
    j = np.asarray(joints, dtype=np.float64)
    if j.ndim != 3 or j.shape[2] != 2:
        raise ValueError(f"joints must be (T, J, 2), got shape {j.shape}")
    if mode not in JOINT_NORMS:
        raise ValueError(f"mode must be one of {JOINT_NORMS}, got {mode!r}")
    T, J, _ = j.shape
    if max(*hips, *shoulders) >= J:
        raise ValueError(f"hips {hips} / shoulders {shoulders} index beyond J={J} joints")
    j = j * np.array([1.0, -1.0])
    mid_hip = j[:, list(hips)].mean(1)  # (T, 2)
    mid_sh = j[:, list(shoulders)].mean(1)
    torso = float(np.median(np.linalg.norm(mid_sh - mid_hip, axis=-1)))
    if mode == "bbox":
        if bbox is None:
            raise ValueError("mode='bbox' needs bbox (T, 4)")
        b = np.asarray(bbox, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] < 1:
            raise ValueError(f"bbox must be (T, 4), got shape {b.shape}")
        if b.shape[0] < T:
            b = np.concatenate([b, np.repeat(b[-1:], T - b.shape[0], 0)])
        b = b[:T]
        centre = np.stack([(b[:, 0] + b[:, 2]) / 2, -(b[:, 1] + b[:, 3]) / 2], -1)
        height = np.abs(b[:, 3] - b[:, 1])
        height = np.where(height > 1e-6, height, max(float(np.median(height)), 1.0))
        return ((j - centre[:, None]) / height[:, None, None]).astype(np.float32)
    scale = torso if torso > 1e-6 else max(float(j.std()), 1.0)
    centre = mid_hip[:, None] if mode == "hips" else mid_hip.mean(0)[None, None]
    return ((j - centre) / scale).astype(np.float32)


def _pennaction_root(root: str | None) -> Path:
    if root:
        return Path(root)
    base = os.environ.get("PROCALIGN_DATA")
    if not base:
        raise ValueError(
            "Penn Action needs data.root=<folder with labels/> or PROCALIGN_DATA set "
            "(the shared data folder holding pennaction/)"
        )
    return Path(base) / "pennaction"


def _labels_to_ints(labels: list[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """Per-frame labels of one class -> int64 arrays; True when they were integers already."""
    if all(np.issubdtype(np.asarray(x).dtype, np.integer) for x in labels):
        return [np.asarray(x, dtype=np.int64) for x in labels], True
    vocab = sorted({str(v) for x in labels for v in np.asarray(x).tolist()})
    index = {v: i for i, v in enumerate(vocab)}
    return [
        np.array([index[str(v)] for v in np.asarray(x).tolist()], dtype=np.int64) for x in labels
    ], False


def _limit(clips: list[Clip], cap: int | None) -> list[Clip]:
    return clips if cap is None else clips[:cap]


def load_clips(
    dataset: str = "synthetic",
    root: str | None = None,
    *,
    actions: Sequence[str] = (),
    synthetic: dict[str, Any] | None = None,
    input: str = "auto",
    encoder: str = "tiny_cnn",
    encoder_args: dict[str, Any] | None = None,
    joints_norm: str = "hips",
    visibility: bool = True,
    max_train_videos: int | None = None,
    max_test_videos: int | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> ClipSet:
    """Read a dataset into per-frame input clips (see :class:`DataConfig` for the arguments).

    Returns a :class:`ClipSet`. Every class in ``actions`` must have at least 2 training videos
    and 1 test video; clips of all labels are kept (they are the negatives of retrieval and
    verification), but ``max_*_videos`` caps every label.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if input not in INPUTS:
        raise ValueError(f"input must be one of {INPUTS}, got {input!r}")
    clips: list[Clip] = []
    num_phases: dict[str, int] = {}
    kind, num_joints = "features", 0
    if dataset == "synthetic":
        from procalign.data.synthetic import make_dataset

        if input not in ("auto", "features"):
            raise ValueError(f"synthetic data has features only; got input={input!r}")
        ds = make_dataset(progress=progress, **(synthetic or {}))
        for v in ds.videos:
            r = v.record
            clips.append(
                Clip(
                    r.video_id,
                    str(r.label),
                    r.split,
                    v.features.astype(np.float32),
                    event_phases(v.phases),
                )
            )
            num_phases[str(r.label)] = len(r.steps or ()) + 1
        default_actions: Sequence[str] = ()
    elif dataset == "pennaction":
        from procalign.data import load

        if input not in ("auto", "joints"):
            raise ValueError(
                f"Penn Action provides joints only here (no frames); got input={input!r}"
            )
        kind = "joints"
        ds = load("pennaction", _pennaction_root(root))
        for r in ds:
            j = normalize_joints(r.meta["joints"], joints_norm, r.meta.get("bbox"))
            num_joints = j.shape[1]
            x = j.reshape(j.shape[0], -1)
            if visibility:
                x = np.concatenate([x, r.meta["visibility"].astype(np.float32)], axis=1)
            clips.append(Clip(r.video_id, str(r.label), r.split, x.astype(np.float32), None))
        default_actions = PENN_ACTION_TCC_ACTIONS
    else:
        clips, num_phases = _folder_clips(
            Path(str(root)), input, encoder, encoder_args or {}, cache_dir, progress
        )
        default_actions = ()
    labels_present = sorted({c.label for c in clips})
    classes = list(actions) or [a for a in default_actions if a in labels_present] or labels_present
    unknown = [a for a in classes if a not in labels_present]
    if unknown:
        raise ValueError(
            f"data.actions {unknown} are not labels of the {dataset} data; known: {labels_present}"
        )
    # cap per label and split, keeping id order
    capped: list[Clip] = []
    for label in labels_present:
        for split, cap in (("train", max_train_videos), ("test", max_test_videos)):
            capped.extend(
                _limit(
                    sorted(
                        (c for c in clips if c.label == label and c.split == split),
                        key=lambda c: c.video_id,
                    ),
                    cap,
                )
            )
    clips = capped
    for a in classes:
        n_train = sum(c.label == a and c.split == "train" for c in clips)
        n_test = sum(c.label == a and c.split == "test" for c in clips)
        if n_train < 2 or n_test < 1:
            raise ValueError(
                f"class {a!r} has {n_train} training and {n_test} test videos; LRProp needs >= 2 "
                "training videos (pairs of different videos) and >= 1 test video"
            )
    dims = {c.x.shape[1] for c in clips}
    if len(dims) != 1:
        raise ValueError(f"videos disagree on the input size D: {sorted(dims)}")
    return ClipSet(
        clips, kind, num_joints, classes, {k: v for k, v in num_phases.items() if k in classes}
    )


def _folder_clips(
    root: Path,
    input: str,
    encoder: str,
    encoder_args: dict[str, Any],
    cache_dir: str | Path | None,
    progress: bool,
) -> tuple[list[Clip], dict[str, int]]:
    from procalign.data import load

    ds = load("folder", root)
    if not {"train", "test"} <= set(ds.splits):
        raise ValueError(
            f"folder dataset {root} needs 'train' and 'test' in its index.csv split column, has {ds.splits}"
        )
    has_npy = all(r.path is not None and r.path.suffix == ".npy" for r in ds)
    use_encoder = input == "encoder" or (input == "auto" and not has_npy)
    if input == "joints":
        raise ValueError(
            "a folder dataset provides features or frames, not joints; use data.input=features|encoder"
        )
    if input == "features" and not has_npy:
        missing = [r.video_id for r in ds if r.path is None or r.path.suffix != ".npy"][:5]
        raise ValueError(
            f"data.input=features but videos {missing} have no features/<id>.npy in {root}"
        )
    features: dict[str, np.ndarray] = {}
    if use_encoder:
        from procalign.data.features import discover_sources, extract_features, load_features
        from procalign.models.encoders import build_encoder

        if cache_dir is None:
            raise ValueError(
                "extracting features with an encoder needs a cache folder (the run folder)"
            )
        sources = [s for s in discover_sources(root) if s.kind in ("video", "frames")]
        if not sources:
            raise ValueError(f"data.input=encoder but {root} has no videos/ or frames/ to encode")
        enc = build_encoder(encoder, **encoder_args).eval()
        report = extract_features(sources, cache_dir, enc, extractor=encoder, progress=progress)
        if report.failed:
            raise ValueError(
                f"{len(report.failed)} videos could not be decoded: {sorted(report.failed)[:5]}"
            )
        for s in sources:
            features[s.video_id] = np.asarray(
                load_features(Path(cache_dir) / "features" / f"{s.video_id}.npy", mmap=False)
            )
    clips: list[Clip] = []
    by_label: dict[str, list[int]] = {}
    for r in ds:
        if r.label is None:
            raise ValueError(
                f"{root}/index.csv: video {r.video_id!r} has no label (one model per label)"
            )
        x = features[r.video_id] if use_encoder else np.load(r.path)
        if x.ndim != 2:
            raise ValueError(f"features of {r.video_id!r} must be (T, D), got {x.shape}")
        labels = None
        if r.frame_labels is not None:
            if len(r.frame_labels) != x.shape[0]:
                raise ValueError(
                    f"{r.video_id!r}: {len(r.frame_labels)} frame labels but {x.shape[0]} frames"
                )
            labels = np.asarray(r.frame_labels)
        by_label.setdefault(str(r.label), []).append(len(clips))
        clips.append(
            Clip(r.video_id, str(r.label), r.split, np.asarray(x, dtype=np.float32), labels)
        )
    num_phases: dict[str, int] = {}
    for label, members in by_label.items():
        with_labels = [i for i in members if clips[i].phases is not None]
        if not with_labels:
            continue
        ints, were_ints = _labels_to_ints([clips[i].phases for i in with_labels])
        for i, lab in zip(with_labels, ints):
            clips[i].phases = lab
        if were_ints and min(int(x.min()) for x in ints) >= 0:
            num_phases[label] = max(int(x.max()) for x in ints) + 1
    return clips, num_phases


# =============================================================================================
# Views
# =============================================================================================


def sample_view(
    num_source_frames: int, num_frames: int, crop_min: float, rng: np.random.Generator
) -> np.ndarray:
    """Original frame indices (T,) int64 of one random temporal crop, sorted.

    The crop spans ``L = round(u F)`` frames, ``u ~ U(crop_min, 1)``, at a random start; T frames
    are taken one per equal part of it at a random offset, so a crop shorter than T repeats
    frames and a longer one is subsampled with jittered spacing.

    >>> sample_view(10, 4, 1.0, np.random.default_rng(0)).tolist()
    [1, 4, 6, 8]
    """
    F, T = int(num_source_frames), int(num_frames)
    if F < 1 or T < 1:
        raise ValueError(f"num_source_frames and num_frames must be >= 1, got {F}, {T}")
    length = max(1, min(F, round(rng.uniform(crop_min, 1.0) * F)))
    start = int(rng.integers(0, F - length + 1))
    pos = start + (np.arange(T) + rng.uniform(0.0, 1.0, T)) * (length / T)
    return np.clip(np.floor(pos).astype(np.int64), start, start + length - 1)


def augment_view(
    x: np.ndarray,
    rng: np.random.Generator,
    kind: str,
    *,
    num_joints: int = 0,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    scale: float = 0.15,
    rotation: float = 10.0,
    shift: float = 0.1,
    jitter: float = 0.01,
    noise: float = 0.1,
    dropout: float = 0.1,
) -> np.ndarray:
    """Temporally consistent augmentation of one crop ``x`` (T, D) -> (T, D) float32.

    Parameters are drawn once per crop and applied to every frame. ``kind="joints"``: the first
    ``2 * num_joints`` inputs are (x, y) pairs, rotated by one angle in [-rotation, rotation]
    degrees, scaled by one factor in [1 - scale, 1 + scale], shifted by one vector in
    [-shift, shift]^2, plus per-frame Gaussian jitter; other inputs (visibility) are kept.
    ``kind="features"``: contrast ``mean + s (x - mean)`` with one s in [1 - scale, 1 + scale],
    one dropout mask (dimensions set to their mean), and per-frame noise ``noise * std``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be (T, D), got shape {x.shape}")
    out = x.copy()
    if kind == "joints":
        if num_joints < 1 or 2 * num_joints > x.shape[1]:
            raise ValueError(f"num_joints={num_joints} does not fit inputs of size D={x.shape[1]}")
        c = out[:, : 2 * num_joints].reshape(x.shape[0], num_joints, 2)
        a = math.radians(rng.uniform(-rotation, rotation))
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float32)
        s = rng.uniform(1 - scale, 1 + scale)
        t = rng.uniform(-shift, shift, size=2).astype(np.float32)
        c = s * c @ rot.T + t
        if jitter > 0:
            c = c + rng.normal(0.0, jitter, size=c.shape).astype(np.float32)
        out[:, : 2 * num_joints] = c.reshape(x.shape[0], -1)
        return out
    if kind != "features":
        raise ValueError(f"kind must be 'joints' or 'features', got {kind!r}")
    m = np.zeros(x.shape[1], np.float32) if mean is None else np.asarray(mean, np.float32)
    sd = np.ones(x.shape[1], np.float32) if std is None else np.asarray(std, np.float32)
    out = m + rng.uniform(1 - scale, 1 + scale) * (out - m)
    if dropout > 0:
        drop = rng.random(x.shape[1]) < dropout
        out[:, drop] = m[drop]
    if noise > 0:
        out = out + noise * sd * rng.normal(0.0, 1.0, size=out.shape).astype(np.float32)
    return out.astype(np.float32)


def make_batches(
    clips: Sequence[Clip],
    epoch: int,
    *,
    seed: int,
    num_frames: int,
    batch_videos: int = 2,
    crop_min: float = 0.5,
    kind: str = "features",
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> list[dict[str, Tensor]]:
    """One epoch of training batches, a pure function of ``(seed, epoch)``.

    Videos are shuffled and grouped ``batch_videos`` at a time (a last group smaller than 2 is
    merged into the previous one); each video gives 2 crops. A batch is a dict with ``x``
    (V, T, D_in) float32, ``idx`` (V, T) original frame indices (float32), ``video`` (V,) int64
    (position of the video in ``clips``) and ``num_frames`` (V,) source lengths, V = 2 x videos.
    """
    rng = np.random.default_rng([int(seed), int(epoch), 7919])
    order = rng.permutation(len(clips)).tolist()
    groups = [order[i : i + batch_videos] for i in range(0, len(order), batch_videos)]
    if len(groups) > 1 and len(groups[-1]) < 2:
        groups[-2].extend(groups.pop())
    batches = []
    for group in groups:
        xs, idxs, vids, nfs = [], [], [], []
        for v in group:
            clip = clips[v]
            for _ in range(2):
                idx = sample_view(clip.x.shape[0], num_frames, crop_min, rng)
                view = clip.x[idx]
                if augment is not None:
                    view = augment(view, rng)
                xs.append(view)
                idxs.append(idx)
                vids.append(v)
                nfs.append(clip.x.shape[0])
        batches.append(
            {
                "x": torch.from_numpy(np.stack(xs).astype(np.float32)),
                "idx": torch.from_numpy(np.stack(idxs).astype(np.float32)),
                "video": torch.tensor(vids, dtype=torch.long),
                "num_frames": torch.tensor(nfs, dtype=torch.float32),
            }
        )
    return batches


# =============================================================================================
# Model
# =============================================================================================


class LRPropModel(nn.Module):
    """Input standardisation + temporal encoder: ``forward(x (B, T, D_in), lengths (B,) | None)
    -> (B, T, D)`` frame embeddings; padded frames (``t >= lengths[b]``) are zero and never
    influence real frames.

    ``in_mean`` / ``in_std`` (D_in,) are buffers, set from the training videos of the class with
    :meth:`set_input_stats`, and saved with the weights.
    """

    def __init__(
        self,
        in_dim: int,
        temporal: str = "transformer",
        dim: int = 256,
        layers: int = 7,
        heads: int = 8,
        dropout: float = 0.1,
        positions: bool = True,
    ) -> None:
        super().__init__()
        from procalign.models.temporal import build_temporal

        if in_dim < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        kwargs: dict[str, Any] = {"dim": dim, "layers": layers, "dropout": dropout}
        if temporal == "transformer":
            kwargs.update(heads=heads, positions=positions)
        self.in_dim, self.dim = int(in_dim), int(dim)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.temporal = build_temporal(temporal, in_dim, **kwargs)

    @torch.no_grad()
    def set_input_stats(self, xs: Sequence[np.ndarray]) -> None:
        """Per-dimension mean and std over all frames of ``xs`` (each (T, D_in))."""
        allx = np.concatenate([np.asarray(x, np.float64) for x in xs])
        if allx.ndim != 2 or allx.shape[1] != self.in_dim:
            raise ValueError(f"inputs must be (T, {self.in_dim}), got {allx.shape}")
        self.in_mean.copy_(torch.from_numpy(allx.mean(0)))
        self.in_std.copy_(torch.from_numpy(np.maximum(allx.std(0), 1e-6)))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"x must be (B, T, D_in={self.in_dim}), got {tuple(x.shape)}")
        x = (x - self.in_mean) / self.in_std
        return self.temporal(x, lengths)


def _views_of(num: int, window: int, mode: str) -> list[np.ndarray]:
    if mode == "full" or num <= window:
        return [np.arange(num)]
    k = math.ceil(num / window)
    return [np.arange(o, num, k) for o in range(k)]


@torch.no_grad()
def embed_clips(
    model: nn.Module,
    xs: Sequence[np.ndarray],
    window: int,
    mode: str = "strided",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[np.ndarray]:
    """Frame embeddings of whole videos: each ``xs[b]`` (F_b, D_in) -> (F_b, D) float32.

    ``mode="strided"``: a video longer than ``window`` frames is split into ``ceil(F / window)``
    interleaved subsequences (frames o, o + k, o + 2k, ...), each spanning the whole video like a
    training crop; their embeddings are put back in frame order. ``mode="full"``: one pass.
    """
    if mode not in EVAL_VIEWS:
        raise ValueError(f"mode must be one of {EVAL_VIEWS}, got {mode!r}")
    was_training = model.training
    model.eval()
    jobs = [(b, sel) for b, x in enumerate(xs) for sel in _views_of(len(x), window, mode)]
    results: list[tuple[int, np.ndarray, np.ndarray]] = []
    jobs.sort(key=lambda j: len(j[1]))  # similar lengths together: less padding
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        T = max(len(sel) for _, sel in chunk)
        D = xs[chunk[0][0]].shape[1]
        batch = np.zeros((len(chunk), T, D), np.float32)
        lengths = []
        for i, (b, sel) in enumerate(chunk):
            batch[i, : len(sel)] = xs[b][sel]
            lengths.append(len(sel))
        z = model(torch.from_numpy(batch).to(device), torch.tensor(lengths, device=device))
        z = z.float().cpu().numpy()
        for i, (b, sel) in enumerate(chunk):
            results.append((b, sel, z[i, : len(sel)]))
    dim = results[0][2].shape[1] if results else 0
    out = [np.zeros((len(x), dim), np.float32) for x in xs]
    for b, sel, z in results:
        out[b][sel] = z
    model.train(was_training)
    return out


# =============================================================================================
# Training one class
# =============================================================================================


def class_settings(cfg: LRPropConfig, label: str) -> tuple[int, float, float]:
    """(T, lambda1, lambda2) of one class: the per_class override, else the global value."""
    over = cfg.per_class.get(label, {})
    return (
        int(over.get("num_frames", cfg.views.num_frames)),
        float(over.get("lambda1", cfg.loss.lambda1)),
        float(over.get("lambda2", cfg.loss.lambda2)),
    )


def build_model(cfg: LRPropConfig, in_dim: int, seed: int) -> LRPropModel:
    torch.manual_seed(seed)
    m = cfg.model
    return LRPropModel(in_dim, m.temporal, m.dim, m.layers, m.heads, m.dropout, m.positions)


def build_loss(cfg: LRPropConfig, lambda1: float, lambda2: float) -> LRPropLoss:
    lo = cfg.loss
    return LRPropLoss(
        lo.sigma2,
        lo.tau,
        lambda1,
        lambda2,
        lo.use_same,
        lo.use_prop,
        lo.use_sdtw,
        lo.prop_cost,
        lo.sdtw_variant,
        lo.sdtw_gamma,
        lo.sdtw_cost,
        lo.sdtw_normalize,
        lo.idm_weight,
        lo.idm_window,
        lo.idm_margin,
    )


def train_class(
    cfg: LRPropConfig,
    data: ClipSet,
    label: str,
    run_dir: str | Path,
    *,
    resume: bool = True,
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> dict[str, Any]:
    """Train the model of one class into ``run_dir`` (resumable); returns a summary dict."""
    from procalign.train import cosine_warmup, fit

    run_dir = Path(run_dir)
    train = data.split(label, "train")
    position = data.classes.index(label)
    seed = cfg.seed * 1000 + position
    T, lambda1, lambda2 = class_settings(cfg, label)
    model = build_model(cfg, data.in_dim, seed)
    model.set_input_stats([c.x for c in train])
    device = torch.device(cfg.device)
    model.to(device)
    loss_mod = build_loss(cfg, lambda1, lambda2)
    v = cfg.views
    mean, std = model.in_mean.cpu().numpy(), model.in_std.cpu().numpy()

    def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return augment_view(
            x,
            rng,
            data.kind,
            num_joints=data.num_joints,
            mean=mean,
            std=std,
            scale=v.scale,
            rotation=v.rotation,
            shift=v.shift,
            jitter=v.jitter,
            noise=v.noise,
            dropout=v.dropout,
        )

    def batches(epoch: int):
        return make_batches(
            train,
            epoch,
            seed=seed,
            num_frames=T,
            batch_videos=cfg.optim.batch_videos,
            crop_min=v.crop_min,
            kind=data.kind,
            augment=augment if v.augment else None,
        )

    def loss_fn(m: nn.Module, batch: dict[str, Tensor]):
        z = m(batch["x"].to(device))
        return loss_mod(
            z,
            batch["idx"].to(device),
            batch["video"].to(device),
            num_frames=batch["num_frames"].to(device),
        )

    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = cosine_warmup(opt, cfg.optim.epochs, cfg.optim.warmup)
    result = fit(
        model,
        loss_fn,
        batches,
        opt,
        cfg.optim.epochs,
        run_dir,
        scheduler=sched,
        resume=resume,
        seed=seed,
        grad_clip=cfg.optim.grad_clip,
        progress=progress,
        metadata={"method": "lrprop", "label": label, "in_dim": str(data.in_dim)},
        stop_after_epoch=stop_after_epoch,
    )
    last = result.history[-1] if result.history else {}
    return {
        "label": label,
        "train_videos": len(train),
        "num_frames": T,
        "lambda1": lambda1,
        "lambda2": lambda2,
        "epochs_done": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "seconds_per_epoch": float(np.mean(result.seconds_per_epoch))
        if result.seconds_per_epoch
        else None,
        "final_loss": last.get("loss"),
        "final_terms": {k: last[k] for k in ("same", "prop", "sdtw") if k in last},
    }


# =============================================================================================
# Evaluation
# =============================================================================================


def _row(metric: str, variant: str, value: float, higher: bool = True) -> dict[str, Any]:
    return {"metric": metric, "variant": variant, "value": float(value), "higher_is_better": higher}


def _l2(embs: list[np.ndarray], normalize: bool) -> list[np.ndarray]:
    if not normalize:
        return [e.astype(np.float64) for e in embs]
    return [e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12) for e in embs]


def _video_distances(query: np.ndarray, cands: list[np.ndarray], distance: str) -> np.ndarray:
    """Length-normalised DTW cost ``dtw / (N + M_b)`` (B,) between one video (N, D) and each
    candidate (M_b, D)."""
    from scipy.spatial.distance import cdist

    from procalign.dp import dtw

    lm = np.array([len(c) for c in cands])
    flat = cdist(query, np.concatenate(cands), metric=distance)  # (N, sum M_b)
    costs = np.zeros((len(cands), len(query), int(lm.max())))
    starts = np.concatenate([[0], np.cumsum(lm)[:-1]])
    for b, (s0, m) in enumerate(zip(starts, lm)):
        costs[b, :, :m] = flat[:, s0 : s0 + m]
    ln = np.full(len(cands), len(query))
    values = dtw(torch.from_numpy(costs), torch.from_numpy(ln), torch.from_numpy(lm)).values.numpy()
    return values / (ln + lm)


def _pairs(n: int, ordered: bool, cap: int | None, seed: int = 0) -> list[tuple[int, int]]:
    from itertools import combinations, permutations

    pairs = list(permutations(range(n), 2) if ordered else combinations(range(n), 2))
    if cap is not None and len(pairs) > cap:
        keep = np.random.default_rng(seed).choice(len(pairs), size=cap, replace=False)
        pairs = [pairs[i] for i in np.sort(keep)]
    return pairs


def evaluate_embedders(
    data: ClipSet,
    embedders: dict[str, Callable[[list[np.ndarray]], list[np.ndarray]]],
    *,
    stride: int = 1,
    distance: str = "sqeuclidean",
    normalize: bool = True,
    ks: Sequence[int] = (5, 10, 15),
    fractions: Sequence[float] = (0.1, 0.5, 1.0),
    classifiers: Sequence[str] = ("linear_svm",),
    retrieval_ks: Sequence[int] = (1, 5),
    max_pairs: int | None = None,
    max_queries: int = 20,
    max_candidates: int | None = 20,
    progress: bool = False,
) -> dict[str, Any]:
    """Metrics of per-class embedders on the test videos, averaged over classes.

    ``embedders[label]`` maps a list of (F_b, D_in) inputs to (F_b, D) embeddings (the class's
    model, or the identity for the raw-input baseline).

    Per class, over pairs of its test videos (all of them, or ``max_pairs`` drawn with a fixed
    seed): Kendall's tau (``tcc`` and ``tau_a`` variants, ordered pairs) and two-way
    cycle-consistency (ordered pairs); with phase labels, AP@K (``carl``, all test videos),
    DTW-alignment accuracy (unordered pairs), phase classification from the training videos'
    embeddings, and phase progression when the labels are ordered phases.

    Across classes (video level, no phase labels needed): the first ``max_queries`` test videos
    of a class are compared, through *their class's* embedder, with a candidate pool made of the
    first ``max_candidates`` test videos (id order) of *every* label of the dataset, by the
    length-normalised DTW cost ``dtw / (N + M)``. Retrieval precision@K counts candidates of the
    query's label among the K nearest; verification ROC-AUC scores all (query, candidate) pairs,
    "same label" being the positive class, per class and pooled.

    Returns ``{"metrics": rows (means over classes), "per_class": {label: {metric: value}}}``.
    """
    import procalign.eval as E

    settings = f"stride={stride},{distance},{'l2norm' if normalize else 'raw'}"
    per_class: dict[str, dict[str, float]] = {}
    pool: list[Clip] = []
    for lab in sorted({c.label for c in data.clips}):
        members = sorted(data.split(lab, "test"), key=lambda c: c.video_id)
        pool.extend(members if max_candidates is None else members[:max_candidates])
    pool_labels = np.array([c.label for c in pool])
    pool_index = {c.video_id: i for i, c in enumerate(pool)}
    distances_all: list[np.ndarray] = []
    same_all: list[np.ndarray] = []
    for label in data.classes:
        embed = embedders[label]
        t0 = time.perf_counter()
        test = data.split(label, "test")
        te = _l2(embed([c.x for c in test]), normalize)
        res: dict[str, float] = {}
        if len(te) >= 2:
            ordered = _pairs(len(te), True, max_pairs)
            for variant in ("tcc", "tau_a"):
                taus = np.array(
                    [
                        E.kendalls_tau(te[a], te[b], stride, variant=variant, distance=distance)
                        for a, b in ordered
                    ]
                )
                # tau-b is undefined (NaN) for a pair whose frames all share one neighbour
                undefined = int(np.isnan(taus).sum())
                res[f"kendalls_tau[{variant}]"] = (
                    float(np.nanmean(taus)) if undefined < len(taus) else float("nan")
                )
                if variant == "tcc":
                    res["kendalls_tau_undefined_pairs[tcc]"] = float(undefined)
            res["cycle_consistency"] = float(
                np.mean(
                    [
                        E.cycle_consistency(te[a], te[b], stride=stride, distance=distance)
                        for a, b in ordered
                    ]
                )
            )
        labels = [c.phases for c in test]
        if all(x is not None for x in labels) and len(te) >= 2:
            for k in ks:
                try:
                    res[f"ap@{k}"] = E.average_precision_at_k(
                        te, labels, k, variant="carl", stride=stride, distance=distance
                    )
                except ValueError:
                    pass  # fewer candidate frames than K: AP@K undefined, not reported
            res["dtw_alignment_accuracy"] = float(
                np.mean(
                    [
                        E.dtw_alignment_accuracy(
                            te[a], te[b], labels[a], labels[b], distance=distance
                        )
                        for a, b in _pairs(len(te), False, max_pairs)
                    ]
                )
            )
            train = data.split(label, "train")
            if all(c.phases is not None for c in train):
                tr = _l2(embed([c.x for c in train]), normalize)
                tr_l = [c.phases for c in train]
                for clf in classifiers:
                    try:
                        accs = E.phase_classification(
                            tr, tr_l, te, labels, fractions=fractions, classifier=clf
                        )
                    except ValueError:
                        continue  # a label fraction with a single phase
                    for frac, acc in accs.items():
                        res[f"phase_classification@{frac:g}[{clf}]"] = acc
                n_ph = data.num_phases.get(label)
                if n_ph is not None and n_ph >= 2:
                    res["phase_progression"] = E.phase_progression(
                        tr,
                        [E.progress_targets(x, n_ph) for x in tr_l],
                        te,
                        [E.progress_targets(x, n_ph) for x in labels],
                    )
        # video level: the class's embedder on the query videos and the whole candidate pool
        queries = test[:max_queries]
        extra = [q for q in queries if q.video_id not in pool_index]
        embs = _l2(embed([c.x for c in pool + extra]), normalize)
        where = {**pool_index, **{q.video_id: len(pool) + i for i, q in enumerate(extra)}}
        precisions: dict[int, list[float]] = {k: [] for k in retrieval_ks}
        cls_d, cls_s = [], []
        for q in queries:
            qi = where[q.video_id]
            keep = [i for i in range(len(pool)) if i != qi]
            d = _video_distances(embs[qi], [embs[i] for i in keep], distance)
            same = pool_labels[keep] == label
            order = np.argsort(d, kind="stable")
            for k in retrieval_ks:
                precisions[k].append(float(same[order[:k]].mean()))
            cls_d.append(d)
            cls_s.append(same)
        for k in retrieval_ks:
            res[f"retrieval_precision@{k}"] = float(np.mean(precisions[k]))
        d_cls, s_cls = np.concatenate(cls_d), np.concatenate(cls_s)
        if 0 < s_cls.sum() < s_cls.size:
            res["verification_auc"] = E.verification_auc(d_cls, s_cls)
        distances_all.append(d_cls)
        same_all.append(s_cls)
        res["eval_seconds"] = time.perf_counter() - t0
        per_class[label] = res
        if progress:
            print(f"  {label}: " + ", ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
    rows = []
    names = sorted({k for r in per_class.values() for k in r} - {"eval_seconds"})
    for name in names:
        vals = [r[name] for r in per_class.values() if name in r]
        metric, _, variant = name.partition("[")
        variant = variant.rstrip("]")
        if name == "kendalls_tau[tcc]":
            variant = "tcc,undefined_pairs_dropped"
        full = ",".join(x for x in (variant, _metric_variant(metric, settings)) if x)
        higher = not metric.endswith("undefined_pairs")
        rows.append(
            _row(metric, f"{full},mean_of_{len(vals)}_classes", float(np.nanmean(vals)), higher)
        )
    d, s = np.concatenate(distances_all), np.concatenate(same_all)
    if 0 < s.sum() < s.size:
        rows.append(
            _row(
                "verification_auc_pooled",
                f"video_dtw/(N+M),{distance},query_class_model",
                E.verification_auc(d, s),
            )
        )
    return {"metrics": rows, "per_class": per_class}


def _metric_variant(metric: str, settings: str) -> str:
    if metric.startswith("ap@"):
        return f"carl,{settings}"
    if metric.startswith(("retrieval", "verification")):
        dist = settings.split(",")[1:]
        return "video_dtw/(N+M)," + ",".join(dist)
    if metric.startswith("phase_classification"):
        return "first_videos"
    if metric == "phase_progression":
        return "tcc_event_completion_r2"
    if metric == "dtw_alignment_accuracy":
        return "procalign.dp.dtw," + ",".join(settings.split(",")[1:])
    return settings


# =============================================================================================
# Recipe: config -> plain objects
# =============================================================================================


class cpu_threads:
    """Set torch's and numba's thread counts inside a ``with`` block (None: leave them)."""

    def __init__(self, threads: int | None) -> None:
        self.threads = threads
        self.saved: tuple[int, int | None] | None = None

    def __enter__(self) -> Self:
        if self.threads is not None:
            import numba

            self.saved = (torch.get_num_threads(), numba.get_num_threads())
            torch.set_num_threads(self.threads)
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import numba

            torch.set_num_threads(self.saved[0])
            numba.set_num_threads(self.saved[1])


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label) or "_"


def _load_data(cfg: LRPropConfig, run_dir: Path | None, progress: bool) -> ClipSet:
    d = cfg.data
    return load_clips(
        d.dataset,
        d.root,
        actions=d.actions,
        synthetic=d.synthetic,
        input=d.input,
        encoder=d.encoder,
        encoder_args=d.encoder_args,
        joints_norm=d.joints_norm,
        visibility=d.visibility,
        max_train_videos=d.max_train_videos,
        max_test_videos=d.max_test_videos,
        cache_dir=None if run_dir is None else run_dir / "features",
        progress=progress,
    )


def _eval_kwargs(cfg: LRPropConfig) -> dict[str, Any]:
    e = cfg.eval
    return {
        "stride": e.stride,
        "distance": e.distance,
        "normalize": e.normalize,
        "ks": e.ks,
        "fractions": e.fractions,
        "classifiers": e.classifiers,
        "retrieval_ks": e.retrieval_ks,
        "max_pairs": e.max_pairs,
        "max_queries": e.max_queries,
        "max_candidates": e.max_candidates,
    }


class LRPropRecipe:
    """``procalign train lrprop`` / ``procalign eval lrprop``: one model per class under
    ``<run>/classes/<label>/`` (each a resumable :func:`procalign.train.fit` run)."""

    config_cls = LRPropConfig
    name = "lrprop"

    def train(
        self,
        config: LRPropConfig,
        run_dir: str | Path,
        resume: bool = True,
        progress: bool = True,
        stop_after_epoch: int | None = None,
    ) -> dict[str, Any]:
        from procalign.config import dump_yaml, load_config

        validate_config(config)
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        text = dump_yaml(config)
        saved = run_dir / "config.yaml"
        # compared as configs (defaults filled in), so a field added later does not block resuming
        if resume and saved.exists() and load_config(LRPropConfig, saved) != config:
            raise ValueError(
                f"{saved} holds a different config; resume with the same settings, pass "
                "--no-resume to start over, or use another --out folder"
            )
        with cpu_threads(config.threads):
            data = _load_data(config, run_dir, progress)  # bad data settings fail before writing
            saved.write_text(text)
            return self._train(config, data, run_dir, resume, progress, stop_after_epoch)

    def _train(self, config, data, run_dir, resume, progress, stop_after_epoch) -> dict[str, Any]:
        from procalign.train import write_json

        summaries = []
        for label in data.classes:
            class_dir = run_dir / "classes" / _slug(label)
            if resume and (class_dir / "model.safetensors").exists():
                summaries.append({"label": label, "status": "already trained"})
                continue
            if progress:
                print(
                    f"lrprop: training class {label!r} ({len(data.split(label, 'train'))} videos)",
                    flush=True,
                )
            summaries.append(
                train_class(
                    config,
                    data,
                    label,
                    class_dir,
                    resume=resume,
                    progress=progress,
                    stop_after_epoch=stop_after_epoch,
                )
            )
        summary = {"method": "lrprop", "run_dir": str(run_dir), "classes": summaries}
        write_json(run_dir / "summary.json", summary)
        return summary

    def load_models(
        self, run_dir: str | Path, config: LRPropConfig, data: ClipSet
    ) -> dict[str, LRPropModel]:
        from procalign.train import load_weights

        models = {}
        for label in data.classes:
            path = Path(run_dir) / "classes" / _slug(label) / "model.safetensors"
            if not path.exists():
                raise FileNotFoundError(
                    f"class {label!r} has no trained model at {path}; run `procalign train lrprop` "
                    "with this run folder first"
                )
            model = build_model(config, data.in_dim, 0)
            load_weights(model, path)
            models[label] = model.to(config.device).eval()
        return models

    def evaluate(
        self, run_dir: str | Path, overrides: Sequence[str] = (), progress: bool = True
    ) -> dict[str, Any]:
        from procalign.config import load_config
        from procalign.train import write_json

        run_dir = Path(run_dir)
        if not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"{run_dir} is not an LRProp run folder (no config.yaml)")
        config = load_config(LRPropConfig, run_dir / "config.yaml", list(overrides))
        validate_config(config)
        with cpu_threads(config.threads):
            report = self._evaluate(config, run_dir, progress)
        write_json(run_dir / "eval.json", report)
        return report

    def _evaluate(self, config: LRPropConfig, run_dir: Path, progress: bool) -> dict[str, Any]:
        data = _load_data(config, run_dir, progress=False)
        models = self.load_models(run_dir, config, data)

        def embedder(label: str):
            window = class_settings(config, label)[0]
            return lambda xs: embed_clips(
                models[label], xs, window, config.eval.views, device=config.device
            )

        report = evaluate_embedders(
            data, {c: embedder(c) for c in data.classes}, progress=progress, **_eval_kwargs(config)
        )
        report = {
            "method": "lrprop",
            "inputs": {
                "run": str(run_dir),
                "dataset": config.data.dataset,
                "classes": data.classes,
                "eval_views": config.eval.views,
                "sdtw_variant": config.loss.sdtw_variant,
                "terms": [t for t in ("same", "prop", "sdtw") if getattr(config.loss, f"use_{t}")],
            },
            **report,
        }
        return report

    def evaluate_inputs(
        self, config: LRPropConfig, progress: bool = False, data: ClipSet | None = None
    ) -> dict[str, Any]:
        """The raw-input baseline: the same protocol with the inputs (standardised with the
        class's training statistics) as embeddings; no training."""
        validate_config(config)
        data = data or _load_data(config, None, progress)

        def embedder(label: str):
            train = np.concatenate([c.x for c in data.split(label, "train")]).astype(np.float64)
            mean, std = train.mean(0), np.maximum(train.std(0), 1e-6)
            return lambda xs: [((x - mean) / std).astype(np.float32) for x in xs]

        with cpu_threads(config.threads):
            report = evaluate_embedders(
                data,
                {c: embedder(c) for c in data.classes},
                progress=progress,
                **_eval_kwargs(config),
            )
        return {
            "method": "raw_inputs",
            "inputs": {"dataset": config.data.dataset, "classes": data.classes},
            **report,
        }


@METHODS.register("lrprop")
def _recipe() -> LRPropRecipe:
    return LRPropRecipe()
