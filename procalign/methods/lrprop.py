"""LRProp (Bar-Shalom, Leifman, Elad, Rivlin): weakly supervised frame representations for
alignment, as a recipe.

Top to bottom:

1. **Inputs**: per-frame vectors of every video (:func:`procalign.data.featureset.
   load_featureset`: synthetic features with phases, Penn Action normalised joints, a folder's
   features); **one model per action class** (``data.actions``, default every label; Penn
   Action: TCC's 13 actions).
2. **Views** (:mod:`procalign.data.views`): each training video cropped twice at random, each
   crop keeping T frames with their *original* indices, augmented with one set of parameters.
3. **Model** (:class:`procalign.models.lrprop.LRPropModel`): input standardisation + a temporal
   encoder (paper: transformer, 7 layers, hidden 256, 8 heads).
4. **Loss** (:class:`procalign.losses.lrprop.LRPropLoss`): Eq. 12, L_same + lambda1 L_prop +
   lambda2 L_sdtw, over batches of 2 videos x 2 crops.
5. **Evaluation**: per class, the frame-alignment protocol (:func:`procalign.eval.protocols.
   frame_alignment`: Kendall's tau, cycle consistency, AP@K, DTW accuracy, phase classification
   and progression, each next to its ``static`` / ``shuffled`` controls); across classes,
   retrieval and verification with one label-blind embedding (every video through every class
   model, concatenated); and the same protocol on the raw inputs (``model=raw_inputs`` rows).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from procalign.config import OptimConfig, TrainConfig
from procalign.data import featureset as fset
from procalign.data.joints import JOINT_NORMS
from procalign.data.views import augment_view, make_batches
from procalign.eval import protocols as P
from procalign.losses.lrprop import SDTW_VARIANTS, LRPropLoss
from procalign.masks import CLIP_NORMS
from procalign.methods import METHODS
from procalign.methods.auto import check_int_or_auto
from procalign.methods.base import Recipe, TrainSpec
from procalign.models.lrprop import EVAL_VIEWS, LRPropModel, embed_videos

#: The 13 Penn Action classes used by TCC, LAV, CARL and LRProp (jump_rope, strum_guitar left out).
PENN_ACTION_TCC_ACTIONS = (
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
    "jumping_jacks", "pullup", "pushup", "situp", "squat", "tennis_forehand", "tennis_serve",
)
_PER_CLASS_KEYS = ("num_frames", "lambda1", "lambda2")
_COSTS = ("sqeuclidean", "euclidean", "cosine")


@dataclass
class AugmentConfig:
    """Temporally consistent augmentation (parameters drawn once per crop).

    Attributes:
        scale: joints: isotropic scale in [1 - scale, 1 + scale]; features: contrast around the
            training mean in the same range.
        rotation, shift, jitter: joints: in-plane rotation (degrees), translation and per-frame
            Gaussian noise (normalised units).
        noise, dropout: features: per-frame Gaussian noise (units of each dimension's std), share
            of dimensions replaced by their mean (one mask per crop).
    """

    scale: float = 0.15
    rotation: float = 10.0
    shift: float = 0.1
    jitter: float = 0.01
    noise: float = 0.1
    dropout: float = 0.1


@dataclass
class DataConfig(fset.DataConfig):
    """Shared data settings plus LRProp's classes and views.

    Attributes:
        actions: classes to train one model each for; empty = every label (Penn Action: TCC's 13).
        max_train_videos, max_test_videos: at most this many videos per class and split.
        num_frames: T frames per crop (paper: 20-80 per Penn Action class; ``train.per_class``).
        crop_min: each crop spans a fraction in [crop_min, 1] of the video.
        augment: apply ``augmentation`` to each crop.
    """

    actions: list[str] = field(default_factory=list)
    max_train_videos: int | None = None
    max_test_videos: int | None = None
    num_frames: int | str = 80
    crop_min: float = 0.5
    augment: bool = True
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ModelConfig:
    """The temporal encoder (paper: transformer, 7 layers, hidden 256, 8 heads).

    ``positions``: sinusoidal position encodings (the paper credits them for the transformer's
    advantage; ``false`` makes frames see context but not their index).

    ``class_agnostic``: one model over every training class (the paper trains one per class),
    evaluated on the test videos of any label, seen in training or not: the mode for data whose
    test labels are new (``configs/lrprop_folder.yaml``). Each batch still holds videos of one
    class (LRProp's losses align videos of the same action).

    ``input_norm``: ``none``, ``center`` or ``standardize`` each clip by its own statistics
    before the encoder (per-video subject / camera offsets, as the ``fullres_inputs`` baselines
    do). ``local``: width of a depthwise temporal convolution before the transformer's attention
    (0: none); without positions it is what lets a frame see its neighbours' order.
    """

    temporal: str = "transformer"
    dim: int = 256
    layers: int = 7
    heads: int = 8
    dropout: float = 0.1
    positions: bool = True
    class_agnostic: bool = False
    input_norm: str = "none"
    local: int = 0


@dataclass
class LossConfig:
    """Eq. 12 and its terms; see :class:`procalign.losses.lrprop.LRPropLoss`.

    sigma2 (prior variance, frames^2, paper 10), tau (paper 0.1), lambda1/lambda2 (paper: per
    class, Table 5; ``train.per_class`` overrides), use_* ablation switches (Table 3), prop_cost
    (paper: l2 = ``euclidean``), sdtw_variant (``divergence`` or LAV's ``idm``), soft-DTW gamma /
    cost / per-frame scaling, IDM weight / window / margin.
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
class EvalConfig:
    """Evaluation protocol; every reported row names its variant.

    Attributes:
        stride: frame stride of Kendall's tau, cycle consistency and AP@K.
        distance: frame distance of the metrics; normalize: L2-normalise embeddings first.
        views: ``"strided"`` (a video longer than T is embedded as interleaved subsequences of
            at most T frames, each spanning the whole video) or ``"full"`` (one pass).
        ks, fractions, classifiers: AP@K, phase-classification label fractions and probes.
        retrieval_ks: K of video retrieval precision@K.
        max_pairs: video pairs per class (None: all pairs, the published protocol).
        max_queries: query videos per class for retrieval / verification.
        max_candidates: candidate videos per label in the retrieval / verification pool.
        controls: frame-alignment controls (``static``, ``shuffled``) reported with their gap.
        raw_baseline: also report the protocol on the raw (standardised) inputs.
        fullres_baselines: also report it on the raw inputs after per-video normalisation and
            temporal smoothing, the setting chosen on the training videos
            (:meth:`LRPropRecipe.alignment_baselines`).
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
    controls: list[str] = field(default_factory=lambda: ["static", "shuffled"])
    raw_baseline: bool = True
    fullres_baselines: bool = True


@dataclass
class LRPropConfig:
    """Everything an LRProp run needs (``configs/lrprop_*.yaml``)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig("adam", 1e-4, 1e-5, "cosine", 0))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=300, batch_size=2))
    eval: EvalConfig = field(default_factory=EvalConfig)


def class_settings(cfg: LRPropConfig, label: str) -> tuple[int, float, float]:
    """(T, lambda1, lambda2) of one class: its ``train.per_class`` entry, else the global value."""
    over = cfg.train.per_class.get(label, {})
    return (
        int(over.get("num_frames", cfg.data.num_frames)),
        float(over.get("lambda1", cfg.loss.lambda1)),
        float(over.get("lambda2", cfg.loss.lambda2)),
    )


def build_loss(cfg: LRPropConfig, lambda1: float, lambda2: float) -> LRPropLoss:
    lo = cfg.loss
    return LRPropLoss(
        lo.sigma2, lo.tau, lambda1, lambda2, lo.use_same, lo.use_prop, lo.use_sdtw, lo.prop_cost,
        lo.sdtw_variant, lo.sdtw_gamma, lo.sdtw_cost, lo.sdtw_normalize, lo.idm_weight,
        lo.idm_window, lo.idm_margin,
    )


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label) or "_"


def _check(ok: bool, key: str, must: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"config key {key!r} must be {must}, got {value!r}")


class LRPropRecipe(Recipe):
    """``procalign train lrprop``: one model per class under ``<run>/classes/<label>/``."""

    name = "lrprop"
    config_cls = LRPropConfig
    protocols = ("frame_alignment", "video_level")
    auto_frames = ("data.num_frames",)

    def validate(self, cfg: LRPropConfig) -> None:
        super().validate(cfg)
        d, a, m, lo, e = cfg.data, cfg.data.augmentation, cfg.model, cfg.loss, cfg.eval
        _check(d.joints_norm in JOINT_NORMS, "data.joints_norm", f"one of {JOINT_NORMS}", d.joints_norm)
        for key in ("max_train_videos", "max_test_videos"):
            val = getattr(d, key)
            _check(val is None or val >= 2, f"data.{key}", "None or >= 2", val)
        check_int_or_auto(d.num_frames, "data.num_frames", 2)
        _check(0 < d.crop_min <= 1, "data.crop_min", "in (0, 1]", d.crop_min)
        for key in ("scale", "rotation", "shift", "jitter", "noise"):
            _check(getattr(a, key) >= 0, f"data.augmentation.{key}", ">= 0", getattr(a, key))
        _check(0 <= a.dropout < 1 and a.scale < 1, "data.augmentation.dropout/scale",
               "in [0, 1)", (a.dropout, a.scale))
        for key in ("dim", "layers"):
            _check(getattr(m, key) >= 1, f"model.{key}", ">= 1", getattr(m, key))
        if cfg.train.val_fraction and not m.class_agnostic:
            raise ValueError(
                "config key 'train.val_fraction' needs model.class_agnostic=true (one model "
                "validated on held-out labels); per-class models have no validation split"
            )
        _check(m.input_norm in CLIP_NORMS, "model.input_norm", f"one of {CLIP_NORMS}", m.input_norm)
        _check(m.local == 0 or (m.local > 0 and m.local % 2 == 1), "model.local",
               "0 (off) or an odd kernel width", m.local)
        _check(m.local == 0 or m.temporal == "transformer", "model.local",
               "0 unless model.temporal is 'transformer'", m.local)
        if m.temporal == "transformer" and (m.heads < 1 or m.dim % m.heads):
            raise ValueError(f"config key 'model.dim' ({m.dim}) must be divisible by 'model.heads' ({m.heads})")
        for key in ("sigma2", "tau", "sdtw_gamma"):
            _check(getattr(lo, key) > 0, f"loss.{key}", "> 0", getattr(lo, key))
        for key in ("lambda1", "lambda2"):
            _check(getattr(lo, key) >= 0, f"loss.{key}", ">= 0", getattr(lo, key))
        _check(lo.sdtw_variant in SDTW_VARIANTS, "loss.sdtw_variant", f"one of {SDTW_VARIANTS}", lo.sdtw_variant)
        _check(lo.prop_cost in _COSTS, "loss.prop_cost", f"one of {_COSTS}", lo.prop_cost)
        _check(lo.sdtw_cost in _COSTS, "loss.sdtw_cost", f"one of {_COSTS}", lo.sdtw_cost)
        if not (lo.use_same or lo.use_prop or lo.use_sdtw):
            raise ValueError("config keys 'loss.use_same', 'loss.use_prop', 'loss.use_sdtw' are all false")
        if (lo.use_prop or lo.use_sdtw) and cfg.train.batch_size < 2:
            raise ValueError(
                "config key 'train.batch_size' must be >= 2 when L_prop or L_sdtw is on (pairs of "
                f"different videos), got {cfg.train.batch_size}"
            )
        _check(e.stride >= 1, "eval.stride", ">= 1", e.stride)
        _check(e.distance in _COSTS, "eval.distance", f"one of {_COSTS}", e.distance)
        _check(e.views in EVAL_VIEWS, "eval.views", f"one of {EVAL_VIEWS}", e.views)
        _check(e.max_queries >= 1, "eval.max_queries", ">= 1", e.max_queries)
        for key in ("max_pairs", "max_candidates"):
            _check(getattr(e, key) is None or getattr(e, key) >= 1, f"eval.{key}", "None or >= 1", getattr(e, key))
        for c in e.controls:
            _check(c in P.CONTROLS, "eval.controls entry", f"one of {P.CONTROLS}", c)
        for label, over in cfg.train.per_class.items():
            _check(isinstance(over, dict), f"train.per_class.{label}", "a mapping", over)
            unknown = sorted(set(over) - set(_PER_CLASS_KEYS))
            if unknown:
                raise ValueError(
                    f"unknown config key(s) {', '.join(f'train.per_class.{label}.{u}' for u in unknown)}; "
                    f"known: {', '.join(_PER_CLASS_KEYS)}"
                )
            t = over.get("num_frames", 2)
            _check(isinstance(t, int) and t >= 2, f"train.per_class.{label}.num_frames", "an int >= 2", t)
            for key in ("lambda1", "lambda2"):
                v = over.get(key, 0)
                _check(not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0,
                       f"train.per_class.{label}.{key}", "a number >= 0", v)

    def load_data(self, cfg: LRPropConfig, run_dir: Path | None, progress: bool):
        data = super().load_data(cfg, run_dir, progress)
        # cap per label and split, keeping id order (caps apply to every label: the negatives)
        capped = []
        for label in sorted({v.label for v in data.videos}):
            for split, cap in (("train", cfg.data.max_train_videos), ("val", cfg.data.max_train_videos),
                               ("test", cfg.data.max_test_videos)):
                members = sorted(data.split(split, label), key=lambda v: v.video_id)
                capped.extend(members if cap is None else members[:cap])
        data.videos = capped
        data.index = {v.video_id: i for i, v in enumerate(capped)}
        return data

    def classes(self, cfg: LRPropConfig, data) -> list[str]:
        present = sorted({str(v.label) for v in data.videos if v.label is not None})
        default = PENN_ACTION_TCC_ACTIONS if cfg.data.dataset == "pennaction" else ()
        classes = list(cfg.data.actions) or [a for a in default if a in present] or present
        unknown = [a for a in classes if a not in present]
        if unknown:
            raise ValueError(f"data.actions {unknown} are not labels of the data; known: {present}")
        return classes

    def describe(self, cfg: LRPropConfig, data) -> dict[str, Any]:
        if any(v.label is None for v in data.videos):
            bad = [v.video_id for v in data.videos if v.label is None][:3]
            raise ValueError(f"videos {bad} have no label (LRProp trains one model per label)")
        if cfg.model.class_agnostic:
            train = sorted({str(v.label) for v in data.split("train")})
            trainable = [c for c in train if len(data.split("train", c)) >= 2]
            test = sorted({str(v.label) for v in data.split("test")})
            if not trainable or not test:
                raise ValueError(
                    f"class-agnostic LRProp needs a training label with >= 2 videos and test "
                    f"videos; got {len(trainable)} such labels and {len(test)} test labels"
                )
            return {**data.info(), "classes": ["all"], "train_classes": trainable,
                    "eval_classes": test}
        classes = self.classes(cfg, data)
        for a in classes:
            n_train, n_test = len(data.split("train", a)), len(data.split("test", a))
            if n_train < 2 or n_test < 1:
                raise ValueError(
                    f"class {a!r} has {n_train} training and {n_test} test videos; LRProp needs "
                    ">= 2 training videos (pairs of different videos) and >= 1 test video"
                )
        return {**data.info(), "classes": classes}

    def build(self, cfg: LRPropConfig, info: Mapping[str, Any]) -> dict[str, nn.Module]:
        import torch

        m, models = cfg.model, {}
        if m.class_agnostic:
            torch.manual_seed(cfg.train.seed * 1000)
            return {"": LRPropModel(int(info["in_dim"]), m.temporal, m.dim, m.layers, m.heads,
                                    m.dropout, m.positions, m.input_norm, m.local)}
        for position, label in enumerate(info["classes"]):
            torch.manual_seed(cfg.train.seed * 1000 + position)
            models[f"classes/{slug(label)}"] = LRPropModel(
                int(info["in_dim"]), m.temporal, m.dim, m.layers, m.heads, m.dropout, m.positions,
                m.input_norm, m.local,
            )
        return models

    def trainer(self, cfg: LRPropConfig, data, info, part: str, model: nn.Module) -> TrainSpec:
        if cfg.model.class_agnostic:
            return self._agnostic_trainer(cfg, data, info, model)
        position = [f"classes/{slug(c)}" for c in info["classes"]].index(part)
        label = info["classes"][position]
        seed = cfg.train.seed * 1000 + position
        T, lambda1, lambda2 = class_settings(cfg, label)
        train = data.split("train", label)
        model.set_input_stats([v.features for v in train])
        loss = build_loss(cfg, lambda1, lambda2)
        mean, std = model.in_mean.cpu().numpy(), model.in_std.cpu().numpy()
        aug = dict(vars(cfg.data.augmentation))

        def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return augment_view(x, rng, data.kind, num_joints=data.num_joints, mean=mean, std=std, **aug)

        def batches(epoch: int):
            return make_batches(
                train, epoch, seed=seed, num_frames=T, batch_videos=cfg.train.batch_size,
                crop_min=cfg.data.crop_min, kind=data.kind,
                augment=augment if cfg.data.augment else None,
            )

        def loss_fn(m: nn.Module, batch):
            dev = m.in_mean.device
            z = m(batch["x"].to(dev))
            return loss(z, batch["idx"].to(dev), batch["video"].to(dev),
                        num_frames=batch["num_frames"].to(dev))

        summary = {"label": label, "train_videos": len(train), "num_frames": T,
                   "lambda1": lambda1, "lambda2": lambda2}
        return TrainSpec(loss_fn, batches, seed, cfg.optim, cfg.train.epochs,
                         {"label": label, "in_dim": str(data.in_dim)}, summary=summary,
                         shard="batches")  # L_prop / L_sdtw couple the videos of a batch

    def _agnostic_trainer(self, cfg: LRPropConfig, data, info, model: nn.Module) -> TrainSpec:
        """One model, every training class; each batch holds videos of one class, the batches
        of all classes shuffled together (a pure function of seed and epoch)."""
        classes = list(info["train_classes"])
        seed, T = cfg.train.seed * 1000, cfg.data.num_frames
        per = {c: data.split("train", c) for c in classes}
        model.set_input_stats([v.features for c in classes for v in per[c]])
        loss = build_loss(cfg, cfg.loss.lambda1, cfg.loss.lambda2)
        mean, std = model.in_mean.cpu().numpy(), model.in_std.cpu().numpy()
        aug = dict(vars(cfg.data.augmentation))

        def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return augment_view(x, rng, data.kind, num_joints=data.num_joints, mean=mean, std=std, **aug)

        def batches(epoch: int):
            out = []
            for position, c in enumerate(classes):
                out += make_batches(
                    per[c], epoch, seed=seed + 1 + position, num_frames=T,
                    batch_videos=cfg.train.batch_size, crop_min=cfg.data.crop_min, kind=data.kind,
                    augment=augment if cfg.data.augment else None,
                )
            order = np.random.default_rng([seed, epoch, 104729]).permutation(len(out))
            return [out[i] for i in order]

        def loss_fn(m: nn.Module, batch):
            dev = m.in_mean.device
            z = m(batch["x"].to(dev))
            return loss(z, batch["idx"].to(dev), batch["video"].to(dev),
                        num_frames=batch["num_frames"].to(dev))

        summary = {"label": "all", "train_classes": classes,
                   "train_videos": sum(len(v) for v in per.values()), "num_frames": T}
        eval_fn, select = self._validation(cfg, data), None
        if eval_fn is not None:
            select = "val_dtw_alignment_accuracy"
            summary["val_videos"] = len(data.split("val"))
        return TrainSpec(loss_fn, batches, seed, cfg.optim, cfg.train.epochs,
                         {"label": "all", "in_dim": str(data.in_dim)}, eval_fn, summary=summary,
                         select=select, shard="batches")

    def _validation(self, cfg: LRPropConfig, data):
        """``(model, epoch) -> {val_dtw_alignment_accuracy, val_tau_a}`` over pairs of the
        held-out training videos (``train.val_fraction``: whole labels when the test labels are
        unseen, so validation labels are new to the model too), by their phase labels; None
        without a validation split with phase labels."""
        val = {}
        for v in data.split("val"):
            if v.phases is not None:
                val.setdefault(v.label, []).append(v)
        val = {c: vs for c, vs in sorted(val.items()) if len(vs) >= 2}
        if not val:
            if data.split("val"):
                raise ValueError(
                    "train.val_fraction holds out training videos, but fewer than 2 per label "
                    "have phase labels to validate the alignment on (phases/<id>.txt); raise "
                    "train.val_fraction or set it to 0"
                )
            return None
        e = cfg.eval
        quick = dict(stride=e.stride, distance=e.distance, normalize=e.normalize, ks=e.ks,
                     fractions=(), classifiers=(), max_pairs=min(e.max_pairs or 50, 50),
                     controls=())

        def eval_fn(m: nn.Module, epoch: int) -> dict[str, float]:
            was = m.training
            m.eval()
            fn = lambda xs: embed_videos(m, xs, cfg.data.num_frames, e.views,  # noqa: E731
                                         device=m.in_mean.device)
            per = P.frame_alignment(list(val), val, {}, {c: fn for c in val}, data.num_phases,
                                    **quick)
            m.train(was)
            acc = [r.get("dtw_alignment_accuracy", np.nan) for r in per.values()]
            tau = [r.get("kendalls_tau[tau_a]", np.nan) for r in per.values()]
            return {"val_dtw_alignment_accuracy": float(np.nanmean(acc)),
                    "val_tau_a": float(np.nanmean(tau))}

        return eval_fn

    # ----------------------------------------------------------------- evaluation
    def eval_classes(self, info) -> list[str]:
        """The labels evaluated: every test label (class-agnostic) or the trained classes."""
        return list(info.get("eval_classes") or info["classes"])

    def embedders(self, cfg: LRPropConfig, models, info) -> dict[str, Any]:
        """{label: inputs -> embeddings} through the class's own model (class-agnostic: the one
        model, for every test label)."""
        if "" in models:
            model = models[""]
            fn = lambda xs: embed_videos(model, xs, cfg.data.num_frames, cfg.eval.views,  # noqa: E731
                                         device=model.in_mean.device)
            return {c: fn for c in self.eval_classes(info)}

        def one(label: str):
            model = models[f"classes/{slug(label)}"]
            window = class_settings(cfg, label)[0]
            return lambda xs: embed_videos(model, xs, window, cfg.eval.views,
                                           device=model.in_mean.device)

        return {c: one(c) for c in info["classes"]}

    def label_blind(self, cfg: LRPropConfig, models, info):
        """One embedding for every video, whatever its label: each class model's L2-normalised
        embedding, concatenated (a fixed shared space)."""
        per_class = self.embedders(cfg, models, info)
        if "" in models:  # one model: its embedding is label-blind already
            one = next(iter(per_class.values()))
            return lambda xs: [np.asarray(e, np.float32) for e in P.l2_normalise(one(xs), True)]

        def embed(xs: list[np.ndarray]) -> list[np.ndarray]:
            outs = [P.l2_normalise(fn(xs), True) for fn in per_class.values()]
            return [np.concatenate([o[i] for o in outs], 1).astype(np.float32) for i in range(len(xs))]

        return embed

    def evaluate(self, cfg: LRPropConfig, data, models, info, progress) -> dict[str, Any]:
        classes = self.eval_classes(info)
        rows, per_class = self._rows(cfg, data, classes, self.embedders(cfg, models, info),
                                     self.label_blind(cfg, models, info), "lrprop", progress)
        if cfg.eval.raw_baseline:
            rows += self.evaluate_inputs(cfg, data, classes)["metrics"]
        chosen = None
        if cfg.eval.fullres_baselines:
            extra, chosen = self.alignment_baselines(cfg, data, classes, progress)
            rows += extra
        flags = [
            f"{r['variant']}: tau_a gap to static input {r['value']:.3f} < 0.05: the frame index, "
            "not the frames, carries the alignment"
            for r in rows
            if r["model"] == "lrprop" and r["metric"] == "kendalls_tau"
            and r.get("control") == "gap_static" and "tau_a" in r["variant"] and r["value"] < 0.05
        ]
        return {
            "task": "alignment",
            "classes": classes,
            "eval_views": cfg.eval.views,
            "sdtw_variant": cfg.loss.sdtw_variant,
            "terms": [t for t in ("same", "prop", "sdtw") if getattr(cfg.loss, f"use_{t}")],
            "warnings": flags,
            "metrics": rows,
            "per_class": per_class,
            **({"baselines": chosen} if chosen else {}),
        }

    def alignment_baselines(self, cfg: LRPropConfig, data, classes: Sequence[str],
                            progress: bool = False) -> tuple[list[dict], dict[str, Any]]:
        """The strong model-free baselines of the alignment metrics: every frame of the raw
        inputs after per-video ``center`` / ``standardize`` normalisation and a moving average
        over ``width`` frames (:func:`procalign.eval.fullres.prepare`), the setting chosen by
        DTW-alignment accuracy (then tau) on the *training* videos of the evaluated labels
        (their phase labels; never the test videos'), then the same protocol on the test videos
        (rows ``model=fullres_inputs``). Returns (rows, what was chosen and on what)."""

        from procalign.eval.fullres import NORMS, WIDTHS, prepare

        def prepared(norm, width):  # one model-free "embedder" for every label
            return lambda xs: [prepare(np.asarray(x), norm, width, None) for x in xs]

        # choose on the training videos of every label that has some with phase labels
        val = {c: [v for v in data.split("train", c) if v.phases is not None]
               for c in sorted({v.label for v in data.split("train")})}
        val = {c: vs for c, vs in val.items() if len(vs) >= 2}
        if not val:
            return [], {}
        e = cfg.eval
        quick = dict(stride=e.stride, distance=e.distance, normalize=e.normalize, ks=e.ks,
                     fractions=(), classifiers=(), max_pairs=min(e.max_pairs or 50, 50),
                     controls=())
        scores = {}
        for norm in NORMS:
            for width in WIDTHS:
                per = P.frame_alignment(list(val), val, {},
                                        {c: prepared(norm, width) for c in val},
                                        data.num_phases, **quick)
                acc = [m.get("dtw_alignment_accuracy", np.nan) for m in per.values()]
                tau = [m.get("kendalls_tau[tau_a]", np.nan) for m in per.values()]
                scores[(norm, width)] = (float(np.nanmean(acc)), float(np.nanmean(tau)))
        (norm, width), (val_acc, val_tau) = max(scores.items(), key=lambda kv: kv[1])
        fn = prepared(norm, width)
        rows, _ = self._rows(cfg, data, classes, {c: fn for c in classes}, fn, "fullres_inputs",
                             False)
        for r in rows:
            r["variant"] = r["variant"].replace("fullres_inputs,",
                                                f"fullres_inputs,{norm},w={width},chosen_on_train,")
        chosen = {"fullres_inputs": {"norm": norm, "width": width,
                                     "train_dtw_alignment_accuracy": val_acc,
                                     "train_tau_a": val_tau}}
        return rows, {"chosen": chosen,
                      "validation": f"DTW-alignment accuracy over pairs of the training videos "
                                    f"of {len(val)} labels (settings chosen on them, never on "
                                    "the test videos)"}

    def evaluate_inputs(self, cfg: LRPropConfig, data, classes: Sequence[str] | None = None):
        """The same protocol with the raw inputs as embeddings (no training)."""
        classes = list(classes or self.classes(cfg, data))
        raw = self.raw_embedders(data, classes)
        rows, per = self._rows(cfg, data, classes, raw["per_class"], raw["blind"], "raw_inputs", False)
        return {"metrics": rows, "per_class": per}

    def raw_embedders(self, data, classes: Sequence[str]) -> dict[str, Any]:
        """The raw-input baseline: inputs standardised with the class's training statistics
        (per class) or with all training videos' (label-blind, video level)."""

        def standardise(videos):
            x = np.concatenate([np.asarray(v.features) for v in videos]).astype(np.float64)
            mean, std = x.mean(0), np.maximum(x.std(0), 1e-6)
            return lambda xs: [((np.asarray(x) - mean) / std).astype(np.float32) for x in xs]

        every = standardise(data.split("train"))  # labels unseen in training: all training videos
        return {"per_class": {c: standardise(data.split("train", c)) if data.split("train", c)
                              else every for c in classes},
                "blind": standardise(data.split("train"))}

    def _rows(self, cfg, data, classes, per_class, blind, model_name, progress) -> list[dict]:
        e = cfg.eval
        settings = f"stride={e.stride},{e.distance},{'l2norm' if e.normalize else 'raw'}"
        test = {c: data.split("test", c) for c in classes}
        train = {c: data.split("train", c) for c in classes}
        per = P.frame_alignment(
            classes, test, train, per_class, data.num_phases, stride=e.stride,
            distance=e.distance, normalize=e.normalize, ks=e.ks, fractions=e.fractions,
            classifiers=e.classifiers, max_pairs=e.max_pairs, controls=e.controls,
            progress=progress,
        )
        pool = []
        for lab in sorted({v.label for v in data.videos}):
            members = sorted(data.split("test", lab), key=lambda v: v.video_id)
            pool.extend(members if e.max_candidates is None else members[: e.max_candidates])
        queries = [q for c in classes for q in test[c][: e.max_queries]]
        video = P.video_level(queries, pool, blind, distance=e.distance, normalize=e.normalize,
                              retrieval_ks=e.retrieval_ks)
        for label, res in video["per_label"].items():
            per[label].update(res)
        rows = P.mean_rows(per, lambda m: _metric_variant(m, settings))
        if np.isfinite(video["pooled_auc"]):
            rows.append(P.row("verification_auc_pooled", video["pooled_auc"],
                              f"video_dtw/(N+M),{e.distance},all_class_models_concat"))
        for r in rows:
            r["model"] = model_name
            r["variant"] = f"{model_name},{r['variant']}"
            if cfg.model.class_agnostic and model_name != "raw_inputs":
                r["variant"] = r["variant"].replace("all_class_models_concat", "class_agnostic_model")
        return rows, per

    def pair_distances(self, cfg: LRPropConfig, data, models, info, pairs) -> np.ndarray:
        ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
        embs = self.label_blind(cfg, models, info)([np.asarray(data.get(i).features) for i in ids])
        embs = dict(zip(ids, P.l2_normalise(embs, cfg.eval.normalize)))
        return np.array([float(P.video_distances(embs[p.video_id_1], [embs[p.video_id_2]],
                                                 cfg.eval.distance)[0]) for p in pairs])

    def report_frames(self, cfg: LRPropConfig, models, info, x: np.ndarray) -> np.ndarray:
        """The label-blind embedding of every frame (each class model's, concatenated)."""
        return self.label_blind(cfg, models, info)([np.asarray(x)])[0].astype(np.float64)

    def finish(self, cfg: LRPropConfig, data, models, run_dir: Path) -> dict[str, Any]:
        """The verify threshold (EER point of training pairs, :meth:`Recipe.pair_threshold`)."""
        return {"threshold": self.pair_threshold(cfg, data, models, run_dir)}

    def verify(self, cfg: LRPropConfig, models, info, a, b, threshold, **_) -> dict[str, Any]:
        """Length-normalised DTW distance of the two videos in the label-blind embedding."""
        ea, eb = self.label_blind(cfg, models, info)([a, b])
        ea, eb = P.l2_normalise([ea, eb], cfg.eval.normalize)
        dist = float(P.video_distances(ea, [eb], cfg.eval.distance)[0])
        return {"distance": dist, "threshold": threshold,
                "same": None if threshold is None else bool(dist <= threshold),
                "embedding": "class_agnostic_model" if "" in models else "all_class_models_concat",
                "classes": list(info["classes"])}


def _metric_variant(metric: str, settings: str) -> str:
    if metric.startswith("ap@"):
        return settings
    if metric.startswith(("retrieval", "verification")):
        return "video_dtw/(N+M)," + ",".join(settings.split(",")[1:]) + ",all_class_models_concat"
    if metric.startswith("phase_classification"):
        return "first_videos"
    if metric == "phase_progression":
        return "tcc_event_completion_r2"
    if metric == "dtw_alignment_accuracy":
        return "procalign.dp.dtw," + ",".join(settings.split(",")[1:])
    return settings


@METHODS.register("lrprop")
def _recipe() -> LRPropRecipe:
    return LRPropRecipe()
