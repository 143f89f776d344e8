"""CPA: collaborative step mining + frame-to-step alignment (He et al., AAAI 2024), as a recipe.

Top to bottom, the paper's pipeline over shared pieces:

1. **Data** (:class:`DataConfig`): any :func:`procalign.data.featureset.load_featureset` source;
   each training step draws pairs of training videos (deterministic in seed and epoch), T frames
   per video by TSN segment sampling (:func:`make_batches`).
2. **Model** (:class:`procalign.models.cpa.CPAModel`): frame encoder -> temporal module ->
   frame embeddings; for a pair, the relational matrix, collaborative step mining (Eq. 1-5,
   :func:`procalign.dp.block_partition`), step features and the symmetric frame-to-step distance
   (Eq. 6-10, :func:`procalign.dp.step_forward`); a procedure classifier or a quality head.
3. **Loss** (:class:`procalign.losses.cpa.CPALoss`): ``w_task L_task + w_align L_align +
   w_step L_step``, L_step and L_align on positive pairs only.
4. **Evaluation**: the SVIP clip-verification protocol (:func:`procalign.eval.protocols.
   clip_verification`: AUC / EER / WDR) for CPA and, over the same clips, the baselines (uniform
   steps, DTW, soft-DTW divergence, video-level L2, and the same on untrained inputs) and a K
   sweep; for quality assessment, exemplar-based Spearman's rho, relative L2 and AIoU.
5. **Verify**: a same/different threshold at the EER point of training pairs (``threshold.json``)
   and the K mined steps of two videos ranked by how much they disagree.

Defaults follow ``methods-notes.md``; every choice is a config field (see :class:`CPAConfig`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from procalign.config import OptimConfig, TrainConfig
from procalign.config import check_choice as _choice
from procalign.data import featureset as fset
from procalign.eval import protocols as P
from procalign.losses import cpa as L
from procalign.methods import METHODS
from procalign.eval.fullres import FULLRES, add_baselines
from procalign.eval.fullres import check_config as check_fullres
from procalign.methods import baselines as BL
from procalign.methods.auto import check_int_or_auto, is_auto
from procalign.methods.base import Recipe, TrainSpec
from procalign.models.cpa import (
    INPUT_NORMS, STEP_FEATURES, STEP_MINING, TASKS, CPAModel, explain_pair,
)

EVAL_DISTANCES = ("cpa", "fsa_uniform", "video_l2", "pyramid_l2", "dtw", "dtw_window", "soft_dtw",
                  "raw_video_l2", "raw_pyramid_l2", "raw_dtw", "raw_dtw_window", "raw_fsa_uniform")


@dataclass
class DataConfig(fset.DataConfig):
    """Shared data settings (:class:`procalign.data.featureset.DataConfig`) plus CPA's sampling.

    Attributes:
        num_frames: T frames sampled per video (SVIP uses 16); K <= T is required. ``auto``:
            chosen from the training videos' lengths (:mod:`procalign.methods.auto`).
        clip_offsets: evaluation clips: one fixed offset per clip inside each of the T segments
            (SVIP's protocol: 1/4, 2/4, 3/4; distances are averaged over clips).
        boundaries: segment boundaries ``"even"`` or ``"svip"`` (the reference code's integers).
        pairs_per_epoch: training pairs drawn per epoch (``train.batch_size`` per step).
        positive_fraction: share of positive pairs (negatives only feed the task loss).
        negatives: ``"same_task"`` / ``"prefer_same_task"`` / ``"any"`` (PairSampler modes).
        threshold_pairs: training pairs used to choose the verify threshold (EER point).
        quality_strength: synthetic quality assessment: norm of the per-step quality direction.
    """

    num_frames: int | str = 16
    clip_offsets: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    boundaries: str = "even"
    pairs_per_epoch: int = 256
    positive_fraction: float = 0.5
    negatives: str = "prefer_same_task"
    threshold_pairs: int = 400
    quality_strength: float = 2.0


@dataclass
class ModelConfig:
    """The CPA model (methods-notes.md, CPA section); see :class:`CPAModel` for each choice.

    Attributes:
        task: ``"verification"`` (cross-entropy over training procedures) or ``"quality"``.
        encoder, encoder_args: frame encoder (``identity`` over cached features).
        temporal, temporal_args: temporal module and its settings. Default: a 2-layer
            transformer *without* position encodings: a module that can tell the frame index
            solves the positives-only losses trivially (every pair aligns along the diagonal;
            measured on CSV-scripted data: AUC 0.52 with positions, 0.87 without).
        steps: K (paper: 13 on CSV, 6 on FineDiving); K <= T. ``auto``: the median number of
            steps in the training videos' ``steps`` column.
        relational: ``"row"`` (public code) or ``"symmetric"``.
        block_score: ``"mean"`` (Eq. 1) or ``"sqrt_area"`` (sum / sqrt(area)).
        max_over_k: L_step takes the max over k <= K (public code).
        step_mining: ``"csm"`` or ``"uniform"`` (the FSA-only ablation; L_step is then 0).
        step_features, eval_step_features: step features while training (``random`` frame, the
            paper) and at evaluation (``center``); ``attention`` is the learned pooling.
        fsa_normalize: ``"frames"`` (-log P / T), ``"code"`` (/ K^2) or ``"none"``.
        score_hidden: hidden size of the quality head.
        input_norm: ``"none"``, ``"center"`` (subtract each clip's mean encoded frame before the
            temporal module: removes a per-video offset such as subject, camera, lighting) or
            ``"standardize"`` (also divide each dimension by the clip's std), as the
            full-resolution baselines do (measured in docs/results.md).
    """

    task: str = "verification"
    encoder: str = "identity"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    temporal: str = "transformer"
    temporal_args: dict[str, Any] = field(
        default_factory=lambda: {"dim": 128, "layers": 2, "heads": 4, "dropout": 0.1,
                                 "positions": False}
    )
    steps: int | str = 6
    relational: str = "row"
    block_score: str = "mean"
    max_over_k: bool = False
    step_mining: str = "csm"
    step_features: str = "random"
    eval_step_features: str = "center"
    fsa_normalize: str = "frames"
    score_hidden: int = 128
    input_norm: str = "none"


@dataclass
class LossConfig:
    """Loss weights (public code: 0.5 task + 0.5 align + 1.0 step; the paper sums them)."""

    task: float = 0.5
    align: float = 0.5
    step: float = 1.0


@dataclass
class EvalConfig:
    """Evaluation settings.

    Attributes:
        split: which split's pairs to score.
        pairs: ``"auto"`` (the dataset's own list when it has one, else sampled), ``"dataset"``
            or ``"sampled"`` (``num_pairs`` pairs, half positive, ``data.negatives`` mode).
        num_pairs: pairs to sample. max_pairs: score only the first N pairs.
        distances: any of ``EVAL_DISTANCES`` (``raw_*``: over the untrained input features;
            ``video_l2`` is a bag of frames, blind to order; ``pyramid_l2`` is order-aware;
            ``dtw_window`` scores the worst fifth of the DTW path instead of its mean).
        steps_sweep: extra K values for the CPA distance (Table 4 at evaluation time).
        gamma: soft-DTW temperature. batch_size: pairs per distance call.
        fullres: the strong baselines on every frame of the inputs
            (:mod:`procalign.eval.fullres`: DTW and soft-DTW after per-video normalisation and
            smoothing, mean pooling), each at the setting that wins on validation pairs of
            ``val_fraction`` held-out training videos (``val_pairs`` pairs); at most
            ``fullres_max_frames`` frames per video. The report's ``verdict`` says whether CPA
            beats the best of them.
        tune_on_val: after training, choose the evaluation T (frames per clip) and K (steps)
            of the CPA distance by AUC on the validation pairs (needs ``train.val_fraction``):
            T in ``tune_frames`` (ints, ``"train"``: the trained T, ``"median"``: the median
            length of the validation videos, i.e. full resolution), K in ``tune_steps`` times
            the trained K (rounded, K <= T); the model is unchanged (no position encodings,
            K-free weights). The choice is recorded in ``meta.json: eval_setting`` and used by
            eval, verify, the threshold and the report.
        num_exemplars: quality assessment: exemplars per query (predictions averaged).
        aiou_thresholds: AIoU thresholds (after regrouping the K steps into 3 phases).
    """

    split: str = "test"
    pairs: str = "auto"
    num_pairs: int = 400
    max_pairs: int | None = None
    distances: list[str] = field(
        default_factory=lambda: ["cpa", "fsa_uniform", "video_l2", "dtw", "dtw_window",
                                 "soft_dtw", "raw_video_l2", "raw_dtw"]
    )
    steps_sweep: list[int] = field(default_factory=list)
    gamma: float = 0.1
    batch_size: int = 128
    fullres: list[str] = field(default_factory=lambda: list(FULLRES))
    val_fraction: float = 0.2
    val_pairs: int = 200
    fullres_max_frames: int | None = 512
    tune_on_val: bool = False
    tune_frames: list[Any] = field(default_factory=lambda: [16, 32, "train", "median"])
    tune_steps: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0])
    num_exemplars: int = 5
    aiou_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.75])


@dataclass
class CPAConfig:
    """Everything a CPA run needs; ``procalign train cpa --config FILE key=value``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig("adamw", 1e-3, 1e-4, "cosine", 1, 5.0)
    )
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20, batch_size=16))
    eval: EvalConfig = field(default_factory=EvalConfig)




def build_model(cfg: CPAConfig, in_dim: int, num_classes: int) -> CPAModel:
    """A :class:`CPAModel` from a config (the only place where a config meets the model)."""
    m = cfg.model
    return CPAModel(
        in_dim, num_classes, steps=m.steps, task=m.task, encoder=m.encoder,
        encoder_args=dict(m.encoder_args), temporal=m.temporal,
        temporal_args=dict(m.temporal_args), relational=m.relational,
        block_score=m.block_score, max_over_k=m.max_over_k, step_mining=m.step_mining,
        step_features=m.step_features, eval_step_features=m.eval_step_features,
        fsa_normalize=m.fsa_normalize, score_hidden=m.score_hidden, input_norm=m.input_norm,
    )


def make_batches(data: fset.FeatureSet, cfg: CPAConfig, classes: list[str]):
    """``epoch -> list of batches``, deterministic in (train.seed, epoch).

    A batch holds ``x1``, ``x2`` (B, T, D_in), ``same`` (B,), ``labels_1``, ``labels_2`` (B,)
    (class index, -1 unknown) and, for quality, ``scores_1``, ``scores_2`` (B,); ``rows_total``,
    ``pos_total``, ``labels_total`` (B,) repeat the batch's rows, positive pairs and known
    labels on every row, so that a rank training on a slice weights its terms as one process.
    """
    from procalign.data.pairs import PairSampler
    from procalign.data.records import VideoRecord
    from procalign.data.sampling import train_indices

    d = cfg.data
    train = data.split(d.train_split)
    cls = {c: i for i, c in enumerate(classes)}
    T, quality = d.num_frames, cfg.model.task == "quality"
    recs = [VideoRecord(v.video_id, label=v.label, task=v.task) for v in train]

    def clip(v: fset.FeatureVideo, rng: np.random.Generator) -> np.ndarray:
        x = v.features
        return np.asarray(x[train_indices(len(x), T, rng, boundaries=d.boundaries)], np.float32)

    def batches(epoch: int) -> list[dict[str, Tensor]]:
        seed = (cfg.train.seed + 1) * 100_003 + epoch
        sampler = PairSampler(recs, negatives=d.negatives, seed=seed)
        pairs = sampler.sample(d.pairs_per_epoch, 1.0 if quality else d.positive_fraction)
        rng = np.random.default_rng(seed)
        out = []
        for s in range(0, len(pairs), cfg.train.batch_size):
            x1, x2, a_, b_ = [], [], [], []
            for p in pairs[s : s + cfg.train.batch_size]:
                a, b = data.get(p.video_id_1), data.get(p.video_id_2)
                x1.append(clip(a, rng))
                x2.append(clip(b, rng))
                a_.append(a)
                b_.append(b)
            batch = {
                "x1": torch.from_numpy(np.stack(x1)),
                "x2": torch.from_numpy(np.stack(x2)),
                "labels_1": torch.tensor([cls.get(v.label, -1) for v in a_]),
                "labels_2": torch.tensor([cls.get(v.label, -1) for v in b_]),
                "same": torch.tensor([bool(p.same) for p in pairs[s : s + cfg.train.batch_size]]),
            }
            # the batch's counts on every row, so a rank's slice (torchrun) knows them
            n, k = len(a_), int(batch["same"].sum())
            known = int((batch["labels_1"] >= 0).sum() + (batch["labels_2"] >= 0).sum())
            batch.update(rows_total=torch.full((n,), n), pos_total=torch.full((n,), k),
                         labels_total=torch.full((n,), known))
            if quality:
                batch.update(scores_1=torch.tensor([v.score or 0.0 for v in a_]),
                             scores_2=torch.tensor([v.score or 0.0 for v in b_]))
            out.append(batch)
        return out

    return batches


def distances(model: CPAModel, cfg: CPAConfig) -> list[P.Distance]:
    """The report's distances: ``eval.distances`` at the model's K, then the K sweep."""
    K, gamma = int(cfg.model.steps), cfg.eval.gamma

    def fn(name: str, k: int):
        base = name.removeprefix("raw_")
        if name == "raw_fsa_uniform":
            return lambda a, b: _raw_fsa(a, b, k, cfg.model.fsa_normalize)
        if base == "cpa":
            return lambda a, b: model.distance(a, b, K=k)
        if base == "fsa_uniform":
            return lambda a, b: model.distance(a, b, K=k, mining="uniform")
        if base == "soft_dtw":
            return lambda a, b: BL.soft_dtw_distance(a, b, gamma=gamma)
        return BL.BASELINES[base]

    jobs = [(d, K) for d in cfg.eval.distances]
    jobs += [("cpa", k) for k in cfg.eval.steps_sweep if k != K or "cpa" not in cfg.eval.distances]
    return [
        P.Distance(
            name if k == K or name not in ("cpa", "fsa_uniform") else f"{name}@K={k}",
            fn(name, k),
            name.startswith("raw_"),
            f"K={k}" if "fsa" in name or "cpa" in name else "",
        )
        for name, k in jobs
    ]


def _raw_fsa(a: Tensor, b: Tensor, K: int, normalize: str) -> Tensor:
    """Frame-to-step alignment with uniform steps over the *input* features (no model)."""
    bounds = L.uniform_bounds(torch.full((a.shape[0],), a.shape[1]), K)
    Sa, Sb = L.gather_step_features(a, bounds, "center"), L.gather_step_features(b, bounds, "center")
    return L.alignment_distance(a, Sa, b, Sb, normalize=normalize)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _embed(model: CPAModel):
    """``(N, T, D_in)`` on any device -> embeddings on the model's device (``train.device``)."""
    dev = _device(model)
    return lambda x: model.embed(x.to(dev))


class CPARecipe(Recipe):
    """The ``cpa`` entry of :data:`procalign.methods.METHODS`."""

    name = "cpa"
    config_cls = CPAConfig
    protocols = ("clip_verification", "quality")
    auto_frames = ("data.num_frames",)
    auto_steps = (("model.steps", "data.num_frames"),)

    def validate(self, cfg: CPAConfig) -> None:
        super().validate(cfg)
        d, m = cfg.data, cfg.model
        for value, key, options in (
            (m.task, "model.task", TASKS),
            (m.relational, "model.relational", L.RELATIONAL_MODES),
            (m.block_score, "model.block_score", ("mean", "sqrt_area")),
            (m.step_mining, "model.step_mining", STEP_MINING),
            (m.step_features, "model.step_features", STEP_FEATURES),
            (m.eval_step_features, "model.eval_step_features", STEP_FEATURES[1:]),
            (m.fsa_normalize, "model.fsa_normalize", L.NORMALIZE_MODES),
            (m.input_norm, "model.input_norm", INPUT_NORMS),
            (d.boundaries, "data.boundaries", ("even", "svip")),
            (d.negatives, "data.negatives", ("same_task", "prefer_same_task", "any")),
            *((x, "eval.distances entry", EVAL_DISTANCES) for x in cfg.eval.distances),
        ):
            _choice(value, key, options)
        check_fullres(cfg.eval)
        if m.eval_step_features == "attention" and m.step_features != "attention":
            raise ValueError("model.eval_step_features=attention needs model.step_features=attention")
        check_int_or_auto(d.num_frames, "data.num_frames (T)")
        check_int_or_auto(m.steps, "model.steps (K)")
        chosen_later = is_auto(d.num_frames) or is_auto(m.steps)  # validated again by resolve
        if not chosen_later and not 1 <= m.steps <= d.num_frames:
            raise ValueError(
                f"model.steps (K={m.steps}) must be in [1, data.num_frames (T={d.num_frames})]: "
                "each step needs at least one frame"
            )
        for k in cfg.eval.steps_sweep:
            if not is_auto(d.num_frames) and not 1 <= k <= d.num_frames:
                raise ValueError(f"eval.steps_sweep value {k} must be in [1, T={d.num_frames}]")
        e = cfg.eval
        if e.tune_on_val:
            if not e.tune_frames or any(
                not (t in ("train", "median") or (isinstance(t, int) and t >= 1))
                for t in e.tune_frames
            ):
                raise ValueError("eval.tune_frames must be a non-empty list of ints >= 1, "
                                 f"'train' or 'median', got {e.tune_frames}")
            if not e.tune_steps or any(not (isinstance(f, (int, float)) and f > 0)
                                       for f in e.tune_steps):
                raise ValueError("eval.tune_steps must be a non-empty list of factors > 0 "
                                 f"(of the trained K), got {e.tune_steps}")
        if not d.clip_offsets or any(not 0 <= o < 1 for o in d.clip_offsets):
            raise ValueError(f"data.clip_offsets must be non-empty values in [0, 1), got {d.clip_offsets}")
        if not 0 < d.positive_fraction <= 1 or d.pairs_per_epoch < 1:
            raise ValueError("data.positive_fraction must be in (0, 1] and data.pairs_per_epoch "
                             f">= 1, got {d.positive_fraction}, {d.pairs_per_epoch}")
        for name, w in vars(cfg.loss).items():
            if w < 0:
                raise ValueError(f"loss.{name} must be >= 0, got {w}")
        if m.task == "quality" and d.dataset != "synthetic":
            raise ValueError("model.task=quality runs on data.dataset=synthetic (simulated scores)")
        for key in ("encoder_args", "temporal_args"):
            if not isinstance(getattr(m, key), dict):
                raise TypeError(f"model.{key} must be a mapping, got {getattr(m, key)!r}")

    def load_data(self, cfg: CPAConfig, run_dir: Path | None, progress: bool):
        data = super().load_data(cfg, run_dir, progress)
        if cfg.model.task == "quality":
            seed = fset.synth_config(cfg.data.synthetic).seed
            data = fset.with_quality_scores(data, cfg.data.quality_strength, seed)
        return data

    def min_frames(self, cfg: CPAConfig) -> tuple[int, str]:
        return max([cfg.model.steps, *cfg.eval.steps_sweep]), f"K={cfg.model.steps} steps"

    def describe(self, cfg: CPAConfig, data) -> dict[str, Any]:
        info = super().describe(cfg, data)
        if len(data.split(cfg.data.train_split)) < 2:
            raise ValueError(
                f"need at least 2 training videos (split {cfg.data.train_split!r}) in "
                f"{data.description}"
            )
        return info

    def build(self, cfg: CPAConfig, info: Mapping[str, Any]) -> dict[str, nn.Module]:
        from procalign.train import seed_everything

        seed_everything(cfg.train.seed)
        classes = info["classes"] if cfg.model.task == "verification" else []
        model = build_model(cfg, int(info["in_dim"]), len(classes))
        if getattr(model.encoder, "input_kind", "features") == "frames":
            raise ValueError(
                f"model.encoder={cfg.model.encoder!r} takes frames, but training reads cached "
                "features; use model.encoder=identity with data.video_encoder or `procalign extract`"
            )
        return {"": model}

    def trainer(self, cfg: CPAConfig, data, info, part: str, model: nn.Module) -> TrainSpec:
        eval_fn, select = None, None
        val = data.split("val")
        if val and cfg.model.task == "verification":  # model selection on held-out videos
            pairs, _, _ = P.evaluation_pairs(val, [], "sampled", cfg.eval.val_pairs,
                                             cfg.data.negatives, cfg.train.seed + 17)
            same = np.array([bool(p.same) for p in pairs])

            def eval_fn(m, epoch):
                from procalign.eval import verification_auc

                d = P.clip_distances(lambda i: data.get(i).features, pairs, _embed(m),
                                     lambda x, y: m.distance(x, y), **_clip_args(cfg))
                return {"val_auc": verification_auc(d, same)}

            select = "val_auc"
        elif cfg.train.eval_every > 0:

            def eval_fn(m, epoch):
                rows = self.evaluate(cfg, data, {"": m}, info, False, ["cpa"])["metrics"]
                return {r["metric"]: r["value"] for r in rows if r["distance"] == "cpa"}

        return TrainSpec(
            L.CPALoss(cfg.loss.task, cfg.loss.align, cfg.loss.step),
            make_batches(data, cfg, list(info["classes"])),
            cfg.train.seed,
            cfg.optim,
            cfg.train.epochs,
            {"task": cfg.model.task},
            eval_fn,
            select=select,
        )

    def finish(self, cfg: CPAConfig, data, models, run_dir: Path) -> dict[str, Any]:
        if cfg.model.task != "verification":
            return {}
        out: dict[str, Any] = {}
        if cfg.eval.tune_on_val and data.split("val"):
            from procalign.train import write_json
            from procalign.train.runner import RunFolder

            setting = tune_on_validation(models[""], cfg, data)
            meta = RunFolder(run_dir).meta() or {}
            write_json(Path(run_dir) / "meta.json", {**meta, "eval_setting": setting})
            cfg = tuned(cfg, {"eval_setting": setting})
            out["eval_setting"] = setting
        return {**out, "threshold": choose_threshold(models[""], cfg, data, run_dir)}

    def evaluate(self, cfg: CPAConfig, data, models, info, progress, only=None) -> dict[str, Any]:
        model, cfg = models[""], tuned(cfg, info)
        if cfg.model.task == "quality":
            return evaluate_quality(model, cfg, data, progress)
        e = cfg.eval
        own = data.pairs if e.split == cfg.data.test_split else []
        pairs, source, notes = P.evaluation_pairs(
            data.split(e.split), own, e.pairs, e.num_pairs, cfg.data.negatives, 7, e.max_pairs
        )
        dists = distances(model, cfg)
        if only is not None:
            dists = [x for x in dists if x.label in only]
        report = P.clip_verification(
            lambda i: data.get(i).features, pairs, _embed(model), dists,
            steps=lambda i: data.get(i).steps, progress=progress, **_clip_args(cfg),
        )
        if only is None:
            add_baselines(report, data, cfg, pairs, "cpa", progress)
        return {**report, "split": e.split, "pairs": source,
                "warnings": [*notes, *report.get("warnings", [])],
                "simulated_frames": data.simulated,
                **({"eval_setting": info["eval_setting"]} if info.get("eval_setting") else {})}

    def verify(self, cfg: CPAConfig, models, info, a, b, threshold, steps=None, **_) -> dict:
        return verify_pair(models[""], tuned(cfg, info), a, b, threshold, steps)

    def pair_distances(self, cfg: CPAConfig, data, models, info, pairs) -> np.ndarray:
        model, cfg = models[""], tuned(cfg, info)
        K = int(cfg.model.steps)
        return P.clip_distances(lambda i: data.get(i).features, pairs, _embed(model),
                                lambda x, y: model.distance(x, y, K=K), **_clip_args(cfg))

    def report_rows(self, cfg: CPAConfig, length: int, info: Mapping[str, Any] | None = None) -> np.ndarray:
        """The centre clip's T segment indices (what :meth:`report_frames` embeds)."""
        from procalign.data.sampling import segment_indices

        d = tuned(cfg, info or {}).data
        c = P.centre_clip(d.clip_offsets)
        return segment_indices(length, d.num_frames, d.clip_offsets[c], boundaries=d.boundaries)

    @torch.no_grad()
    def report_frames(self, cfg: CPAConfig, models, info, x: np.ndarray) -> np.ndarray:
        """The centre SVIP clip's T frame embeddings."""
        d, model = tuned(cfg, info).data, models[""]
        model.eval()
        c = P.centre_clip(d.clip_offsets)
        clip = P.clip_features(x, d.num_frames, [d.clip_offsets[c]], d.boundaries)
        return _embed(model)(torch.from_numpy(clip))[0].double().cpu().numpy()


def choose_threshold(model: CPAModel, cfg: CPAConfig, data, run_dir: Path | None = None) -> dict:
    """Same/different threshold on the CPA distance at the EER point of training pairs
    (``data.threshold_pairs``, half positive, SVIP clips); a pair is "same" when its distance is
    <= threshold. Written to ``run_dir/threshold.json`` when ``run_dir`` is given."""
    from procalign.train import write_json

    pairs, _, _ = P.evaluation_pairs(
        data.split(cfg.data.train_split), [], "sampled", cfg.data.threshold_pairs,
        cfg.data.negatives, cfg.train.seed + 11, cfg.data.threshold_pairs,
    )
    K = int(cfg.model.steps)
    d = P.clip_distances(lambda i: data.get(i).features, pairs, _embed(model),
                         lambda x, y: model.distance(x, y, K=K), **_clip_args(cfg))
    out = P.threshold_record(d, np.array([bool(p.same) for p in pairs]), "cpa",
                             len(cfg.data.clip_offsets))
    if run_dir is not None:
        write_json(Path(run_dir) / "threshold.json", out)
    return out


def tuned(cfg: CPAConfig, info: Mapping[str, Any] | None) -> CPAConfig:
    """``cfg`` with the evaluation T and K chosen on validation pairs (``info["eval_setting"]``,
    :func:`tune_on_validation`), or ``cfg`` itself when the run chose none."""
    import copy

    setting = (info or {}).get("eval_setting")
    if not setting:
        return cfg
    out = copy.deepcopy(cfg)
    out.data.num_frames, out.model.steps = int(setting["num_frames"]), int(setting["steps"])
    return out


def tune_on_validation(model: CPAModel, cfg: CPAConfig, data) -> dict[str, Any]:
    """The evaluation (T, K) of the CPA distance with the best AUC on the validation pairs
    (the held-out ``val`` videos; never the test split). Candidates: T in ``eval.tune_frames``
    (``"train"``: the trained T; ``"median"``: the validation videos' median length), K in
    ``eval.tune_steps`` x the trained K, with K <= T. Returns ``{num_frames, steps, val_auc,
    grid}``."""
    from procalign.eval import verification_auc

    pairs, _, _ = P.evaluation_pairs(data.split("val"), [], "sampled", cfg.eval.val_pairs,
                                     cfg.data.negatives, cfg.train.seed + 17)
    same = np.array([bool(p.same) for p in pairs])
    if len(set(same.tolist())) < 2:
        raise ValueError("the validation pairs must hold both same and different pairs to "
                         "choose the evaluation T and K (eval.tune_on_val)")
    T0, K0 = int(cfg.data.num_frames), int(cfg.model.steps)
    frames = set()
    for t in cfg.eval.tune_frames:
        if t == "train":
            frames.add(T0)
        elif t == "median":
            frames.add(int(np.median([len(v.features) for v in data.split("val")])))
        else:
            frames.add(int(t))
    frames = sorted(frames)
    steps = sorted({max(1, int(round(f * K0))) for f in cfg.eval.tune_steps})
    grid: dict[str, float] = {}
    model.eval()
    for T in frames:
        args = {**_clip_args(cfg), "T": T}
        for K in (k for k in steps if k <= T):
            d = P.clip_distances(lambda i: data.get(i).features, pairs, _embed(model),
                                 lambda x, y, K=K: model.distance(x, y, K=K), **args)
            grid[f"T={T},K={K}"] = float(verification_auc(d, same))
    best = max(grid, key=grid.get)
    T, K = (int(part.split("=")[1]) for part in best.split(","))
    return {"num_frames": T, "steps": K, "val_auc": grid[best], "grid": grid,
            "chosen_on": f"{len(pairs)} validation pairs of {len(data.split('val'))} held-out "
                         "training videos"}


def _clip_args(cfg: CPAConfig) -> dict[str, Any]:
    d = cfg.data
    return {"T": d.num_frames, "offsets": d.clip_offsets, "boundaries": d.boundaries,
            "batch_size": cfg.eval.batch_size}


def evaluate_quality(model: CPAModel, cfg: CPAConfig, data, progress: bool = True) -> dict:
    """Exemplar-based quality assessment (:func:`procalign.eval.protocols.exemplar_quality`):
    the score difference to each exemplar from the aligned steps (:meth:`CPAModel.score_delta`),
    the step boundaries from collaborative step mining."""
    model.eval()

    @torch.no_grad()
    def score(q: Tensor, ex: Tensor) -> tuple[Tensor, Tensor]:
        embed = _embed(model)
        Fq, Fe = embed(q), embed(ex)
        out = model.pair(Fq, Fe)
        delta = model.score_delta(Fq, Fe, out["bounds_1"], out["bounds_2"])
        return delta.cpu(), out["bounds_1"].cpu()

    report = P.exemplar_quality(
        data.split(cfg.data.train_split), data.split(cfg.eval.split), score,
        num_exemplars=cfg.eval.num_exemplars, aiou_thresholds=cfg.eval.aiou_thresholds,
        progress=progress, **_clip_args(cfg),
    )
    for r in report["metrics"]:
        r.update(distance="cpa")
        if r["metric"].startswith("aiou"):
            r["variant"] = r["variant"].replace("K->", f"K={model.steps}->")
    return {**report, "split": cfg.eval.split}


@torch.no_grad()
def verify_pair(model: CPAModel, cfg: CPAConfig, a: np.ndarray, b: np.ndarray,
                threshold: float | None = None, K: int | None = None) -> dict[str, Any]:
    """Verify two videos (SVIP clips): ``distance`` (mean over clips), ``clip_distances``,
    ``same`` (or None without a threshold), and for the centre clip the K mined ``steps`` (frames
    of each video, sampled positions and source frame numbers, ``cosine``, ``block_mean``,
    ``cost``); ``most_disagreeing`` lists step numbers by decreasing cost.

    ``a``, ``b``: (L, D_in) features (or (L, H, W, 3) uint8 frames for a frames encoder)."""
    from procalign.data.sampling import segment_indices

    d = cfg.data
    K = int(cfg.model.steps) if K is None else int(K)
    T = d.num_frames
    if K > T:
        raise ValueError(f"K={K} steps cannot be mined from T={T} sampled frames (need K <= T)")
    frames = getattr(model.encoder, "input_kind", "features") == "frames"
    for name, x in (("a", a), ("b", b)):
        if x.ndim != (4 if frames else 2) or (not frames and x.shape[1] != model.in_dim):
            shape = "(L, H, W, 3) frames" if frames else f"(L, D={model.in_dim}) features"
            raise ValueError(f"input {name} must be {shape}, got shape {tuple(x.shape)}")
        if len(x) < K:
            raise ValueError(
                f"input {name} has {len(x)} frame(s): K={K} steps need at least K frames"
            )
    xa = torch.from_numpy(P.clip_features(a, T, d.clip_offsets, d.boundaries))
    xb = torch.from_numpy(P.clip_features(b, T, d.clip_offsets, d.boundaries))
    if frames:
        xa, xb = xa.permute(0, 1, 4, 2, 3), xb.permute(0, 1, 4, 2, 3)
    model.eval()
    Fa, Fb = _embed(model)(xa), _embed(model)(xb)
    clip_d = model.distance(Fa, Fb, K=K).double().cpu().numpy()
    dist = float(clip_d.mean())
    c = P.centre_clip(d.clip_offsets)
    ia = segment_indices(len(a), T, d.clip_offsets[c], boundaries=d.boundaries)
    ib = segment_indices(len(b), T, d.clip_offsets[c], boundaries=d.boundaries)
    ex = explain_pair(model, Fa[c : c + 1], Fb[c : c + 1], K, ia, ib)
    steps = ex["steps"]
    return {
        "distance": dist,
        "clip_distances": clip_d.tolist(),
        "threshold": threshold,
        "same": None if threshold is None else bool(dist <= threshold),
        "K": K,
        "T": T,
        "clip_offsets": list(d.clip_offsets),
        "steps": steps,
        "most_disagreeing": [s["step"] for s in sorted(steps, key=lambda s: -s["cost"])],
        "sim": ex["sim"].cpu().numpy(),
        "bounds_a": np.asarray(ex["bounds_a"]),
        "bounds_b": np.asarray(ex["bounds_b"]),
    }


@METHODS.register("cpa")
def _cpa_recipe() -> CPARecipe:
    return CPARecipe()
