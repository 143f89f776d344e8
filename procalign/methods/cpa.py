"""CPA: collaborative step mining + frame-to-step alignment (He et al., AAAI 2024), end to end.

The method reads top to bottom in four parts:

1. **Model** (:class:`CPAModel`): frame encoder (registry; ``identity`` over cached features by
   default) -> temporal module (registry) -> frame embeddings F (B, T, D). For a pair, the
   relational matrix, collaborative step mining (:func:`procalign.dp.block_partition`), one step
   feature per mined step, and the symmetric frame-to-step distance of Eq. 6-10
   (:func:`procalign.dp.step_forward`). A linear head over mean-pooled embeddings classifies the
   training procedures (verification); a step-wise head regresses score differences against an
   exemplar (quality assessment).
2. **Data** (:func:`load_videos`): the built-in synthetic procedures, an SVIP benchmark (CSV,
   Diving48-SV, COIN-SV) with cached features or, without features, with frames simulated for the
   real scripts and the official test pairs (:func:`procalign.data.synthetic.from_svip`), or a
   user's ``folder`` dataset (features, or videos encoded with a registered frame encoder).
3. **Training** (:func:`train`): pairs drawn per epoch (deterministic in seed and epoch), T frames
   per video by TSN segment sampling, loss ``w_task L_task + w_align L_align + w_step L_step``
   (L_step and L_align on positive pairs only), :func:`procalign.train.fit` for checkpoints,
   resuming, JSON-lines logs and progress bars; then a same/different threshold at the EER point of
   training pairs, saved in ``threshold.json``.
4. **Evaluation** (:func:`evaluate`): the SVIP protocol (each video sampled as 3 clips at segment
   offsets 1/4, 2/4, 3/4, pair distances averaged over the clips), AUC / EER / WDR for CPA and for
   the baselines over the same embeddings (video-level L2, DTW, soft-DTW divergence, frame-to-step
   with uniform steps, and the untrained input features), plus a sweep of K; Spearman's rho,
   relative L2 and AIoU for quality assessment.

Defaults follow ``methods-notes.md``; every choice is a config field (see :class:`CPAConfig`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from procalign.losses import cpa as L
from procalign.methods import METHODS
from procalign.methods import baselines as BL

# =============================================================================================
# Configuration
# =============================================================================================

SOURCES = ("synthetic", "svip", "folder")
TASKS = ("verification", "quality")
STEP_MINING = ("csm", "uniform")
STEP_FEATURES_TRAIN = ("random", "center", "first", "mean", "attention")
EVAL_DISTANCES = (
    "cpa",
    "fsa_uniform",
    "video_l2",
    "dtw",
    "soft_dtw",
    "raw_video_l2",
    "raw_dtw",
    "raw_fsa_uniform",
)
_SVIP_FOLDERS = {"svip-csv": "CSV", "svip-diving": "DIVING48-SV", "svip-coin": "COIN-SV"}


@dataclass
class DataConfig:
    """Where the videos come from and how frames are sampled.

    Attributes:
        source: ``"synthetic"`` (built-in generator), ``"svip"`` (an SVIP benchmark: ``name``) or
            ``"folder"`` (a user's dataset in the ``folder`` layout at ``root``).
        name: SVIP reader (``svip-csv``, ``svip-diving``, ``svip-coin``) for ``source: svip``.
        root: dataset folder; ``${PROCALIGN_DATA}`` and ``~`` are expanded. For ``svip`` it
            defaults to ``$PROCALIGN_DATA/svip/<CSV|DIVING48-SV|COIN-SV>``.
        features_dir: cached features ``<features_dir>/<video_id>.npy`` (T, D) (e.g. from
            ``procalign extract``). For ``svip`` without it, frames are *simulated* for the real
            scripts, splits and official test pairs (``from_svip``): results then measure the
            method on the benchmark's procedure structure, not on its pixels.
        synthetic: settings of :class:`procalign.data.synthetic.SynthConfig` for ``synthetic``
            and for simulated ``svip`` frames (``num_frames``, ``dim``, noise, ``seed``...).
        max_videos: keep the first N videos of each split (quick runs; pairs losing a video go).
        train_split, test_split: split names (COIN-SV's simulated run trains on ``val``: its
            train labels have no script in the label bank).
        num_frames: T frames sampled per video (SVIP uses 16); K <= T is required.
        clip_offsets: evaluation clips: one fixed offset per clip inside each of the T segments
            (SVIP's protocol: 1/4, 2/4, 3/4; distances are averaged over clips).
        boundaries: segment boundaries ``"even"`` or ``"svip"`` (the reference code's integers).
        pairs_per_epoch, batch_size: training pairs drawn per epoch, pairs per step.
        positive_fraction: share of positive pairs (negatives only feed the task loss).
        negatives: ``"same_task"`` / ``"prefer_same_task"`` / ``"any"`` (PairSampler modes).
        test_pairs: sample this many test pairs (half positive, ``negatives`` mode) instead of
            the dataset's own list (official SVIP pairs, ``pairs.csv``, the synthetic list).
        threshold_pairs: training pairs used to choose the verify threshold (EER point).
        video_encoder, video_encoder_args: frame encoder (registry) that turns videos into
            features for ``folder`` datasets without features and for ``procalign verify`` on
            video files; must match how the cached features were made.
        video_size: decoded frame side for video inputs.
        quality_strength: synthetic quality assessment: norm of the per-step quality direction.
    """

    source: str = "synthetic"
    name: str = "svip-csv"
    root: str | None = None
    features_dir: str | None = None
    synthetic: dict[str, Any] = field(default_factory=dict)
    max_videos: int | None = None
    train_split: str = "train"
    test_split: str = "test"
    num_frames: int = 16
    clip_offsets: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75])
    boundaries: str = "even"
    pairs_per_epoch: int = 256
    batch_size: int = 16
    positive_fraction: float = 0.5
    negatives: str = "prefer_same_task"
    test_pairs: int | None = None
    threshold_pairs: int = 400
    video_encoder: str = "tiny_cnn"
    video_encoder_args: dict[str, Any] = field(default_factory=dict)
    video_size: int = 32
    quality_strength: float = 2.0


@dataclass
class ModelConfig:
    """The CPA model. Defaults from methods-notes.md (CPA section).

    Attributes:
        task: ``"verification"`` (cross-entropy over training procedures) or ``"quality"``
            (exemplar-based score regression).
        encoder, encoder_args: frame encoder from the registry (``identity`` over features).
        temporal, temporal_args: temporal module from the registry and its settings. Default:
            a 2-layer transformer *without* position encodings (``positions: false``), so frame
            embeddings carry context but not absolute time. A module that can tell the frame
            index (the transformer with its sinusoidal positions; a dilated ``conv`` whose
            receptive field spans the clip sees the zero padding) solves the positives-only
            L_step and L_align trivially: every pair then aligns along the diagonal and
            verification falls towards chance (measured on CSV-scripted data: AUC 0.52 with
            positions, 0.87 without; synthetic: conv 0.62, no-position transformer 0.90).
        steps: K, steps mined per pair (paper: 13 on CSV, 6 on FineDiving); K <= T.
        relational: ``"row"`` (softmax over video 2's frames, the public code) or
            ``"symmetric"`` (mean of row and column softmax: swapping videos transposes it).
        block_score: ``"mean"`` (Eq. 1) or ``"sqrt_area"`` (sum / sqrt(area)).
        max_over_k: L_step uses max over k <= K of D_csm (public code); boundaries use K.
        step_mining: ``"csm"`` (collaborative step mining) or ``"uniform"`` (K equal steps: the
            FSA-only ablation; L_step is then 0).
        step_features: step feature while training: ``"random"`` frame of the step (paper),
            ``"center"``, ``"first"``, ``"mean"`` or ``"attention"`` (3 frames resampled per step
            and pooled by a learned 1-layer attention, a public-code variant).
        eval_step_features: step feature at evaluation (``"center"``; ``"attention"`` when
            training used it).
        fsa_normalize: ``"frames"`` (-log P / T, default), ``"code"`` (/ K^2) or ``"none"``.
        score_hidden: hidden size of the quality head.
    """

    task: str = "verification"
    encoder: str = "identity"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    temporal: str = "transformer"
    temporal_args: dict[str, Any] = field(
        default_factory=lambda: {
            "dim": 128,
            "layers": 2,
            "heads": 4,
            "dropout": 0.1,
            "positions": False,
        }
    )
    steps: int = 6
    relational: str = "row"
    block_score: str = "mean"
    max_over_k: bool = False
    step_mining: str = "csm"
    step_features: str = "random"
    eval_step_features: str = "center"
    fsa_normalize: str = "frames"
    score_hidden: int = 128


@dataclass
class LossConfig:
    """Loss weights (public code: 0.5 task + 0.5 align + 1.0 step)."""

    task: float = 0.5
    align: float = 0.5
    step: float = 1.0


@dataclass
class OptimConfig:
    """Adam(W) with a cosine schedule after ``warmup`` epochs."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 1
    grad_clip: float | None = 5.0


@dataclass
class TrainConfig:
    """Epochs, seed and run-time switches.

    Attributes:
        stop_after_epoch: stop after this epoch as if killed (tests; resume continues).
        eval_every: evaluate on the test pairs every N epochs during training (0 = never).
        threads: torch and numba threads while training and evaluating (restored after). The
            per-pair dynamic programs are small; with 2 numba threads next to torch's pool an
            epoch on a busy 2-core machine took 22 s instead of 1.4 s. None leaves the process's
            settings alone.
    """

    epochs: int = 20
    seed: int = 0
    stop_after_epoch: int | None = None
    eval_every: int = 0
    threads: int | None = 1


@dataclass
class EvalConfig:
    """Evaluation settings.

    Attributes:
        split: which split's pairs to score (``test``; ``train`` samples training pairs).
        distances: distances to report, any of ``EVAL_DISTANCES``: ``cpa``, ``fsa_uniform``
            (uniform steps over the same embeddings), ``video_l2``, ``dtw``, ``soft_dtw``, and
            ``raw_*`` versions over the untrained input features.
        steps_sweep: extra K values for the CPA distance (Table 4 at evaluation time).
        gamma: soft-DTW temperature. batch_size: pairs per distance call.
        max_pairs: score only the first N pairs (quick runs; None = all).
        num_exemplars: quality assessment: exemplars per query (predictions averaged).
        aiou_thresholds: AIoU thresholds (after regrouping the K steps into 3 phases).
    """

    split: str = "test"
    distances: list[str] = field(
        default_factory=lambda: [
            "cpa",
            "fsa_uniform",
            "video_l2",
            "dtw",
            "soft_dtw",
            "raw_video_l2",
            "raw_dtw",
        ]
    )
    steps_sweep: list[int] = field(default_factory=list)
    gamma: float = 0.1
    batch_size: int = 128
    max_pairs: int | None = None
    num_exemplars: int = 5
    aiou_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.75])


@dataclass
class CPAConfig:
    """Everything a CPA run needs; ``procalign train cpa --config FILE key=value``."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


def _choice(value: Any, name: str, options: Sequence[Any]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


def validate_config(cfg: CPAConfig) -> None:
    """Raise ValueError naming the key for any inconsistent setting (before anything runs)."""
    d, m = cfg.data, cfg.model
    _choice(d.source, "data.source", SOURCES)
    _choice(m.task, "model.task", TASKS)
    _choice(m.relational, "model.relational", L.RELATIONAL_MODES)
    _choice(m.block_score, "model.block_score", ("mean", "sqrt_area"))
    _choice(m.step_mining, "model.step_mining", STEP_MINING)
    _choice(m.step_features, "model.step_features", STEP_FEATURES_TRAIN)
    _choice(m.eval_step_features, "model.eval_step_features", STEP_FEATURES_TRAIN[1:])
    if m.eval_step_features == "attention" and m.step_features != "attention":
        raise ValueError("model.eval_step_features=attention needs model.step_features=attention")
    _choice(m.fsa_normalize, "model.fsa_normalize", L.NORMALIZE_MODES)
    _choice(d.boundaries, "data.boundaries", ("even", "svip"))
    _choice(d.negatives, "data.negatives", ("same_task", "prefer_same_task", "any"))
    if d.source == "svip":
        _choice(d.name, "data.name", sorted(_SVIP_FOLDERS))
    if d.num_frames < 1:
        raise ValueError(f"data.num_frames (T) must be >= 1, got {d.num_frames}")
    if m.steps < 1 or m.steps > d.num_frames:
        raise ValueError(
            f"model.steps (K={m.steps}) must be in [1, data.num_frames (T={d.num_frames})]: "
            "each step needs at least one frame"
        )
    for k in cfg.eval.steps_sweep:
        if k < 1 or k > d.num_frames:
            raise ValueError(f"eval.steps_sweep value {k} must be in [1, T={d.num_frames}]")
    if not d.clip_offsets or any(not 0 <= o < 1 for o in d.clip_offsets):
        raise ValueError(
            f"data.clip_offsets must be non-empty values in [0, 1), got {d.clip_offsets}"
        )
    if not 0 < d.positive_fraction <= 1:
        raise ValueError(f"data.positive_fraction must be in (0, 1], got {d.positive_fraction}")
    if d.pairs_per_epoch < 1 or d.batch_size < 1:
        raise ValueError("data.pairs_per_epoch and data.batch_size must be >= 1")
    for name in ("task", "align", "step"):
        if getattr(cfg.loss, name) < 0:
            raise ValueError(f"loss.{name} must be >= 0, got {getattr(cfg.loss, name)}")
    if cfg.train.epochs < 1:
        raise ValueError(f"train.epochs must be >= 1, got {cfg.train.epochs}")
    for name in cfg.eval.distances:
        _choice(name, "eval.distances entry", EVAL_DISTANCES)
    for key in ("synthetic", "video_encoder_args"):
        if not isinstance(getattr(d, key), dict):
            raise TypeError(f"data.{key} must be a mapping, got {getattr(d, key)!r}")
    for key in ("encoder_args", "temporal_args"):
        if not isinstance(getattr(m, key), dict):
            raise TypeError(f"model.{key} must be a mapping, got {getattr(m, key)!r}")


# =============================================================================================
# Model
# =============================================================================================


class AttentionStepPool(nn.Module):
    """Learned step pooling: 3 frames resampled per step, weighted by a 1-layer attention.

    ``forward(F (B, T, D), bounds (B, K+1)) -> (B, K, D)``.
    """

    def __init__(self, dim: int, samples: int = 3) -> None:
        super().__init__()
        self.samples = samples
        self.score = nn.Linear(dim, 1)

    def forward(self, F: Tensor, bounds: Tensor) -> Tensor:
        B, _, D = F.shape
        start, end = bounds[:, :-1].long(), bounds[:, 1:].long()
        j = (torch.arange(self.samples, device=F.device, dtype=F.dtype) + 0.5) / self.samples
        idx = start[..., None] + (j * (end - start)[..., None].to(F.dtype)).long()  # (B, K, 3)
        idx = torch.minimum(idx, end[..., None] - 1)
        frames = torch.gather(F, 1, idx.reshape(B, -1, 1).expand(-1, -1, D)).reshape(
            B, -1, self.samples, D
        )
        w = torch.softmax(self.score(frames).squeeze(-1), dim=-1)
        return (w[..., None] * frames).sum(2)


class CPAModel(nn.Module):
    """Frame encoder + temporal module + CPA's pair distance, with a task head.

    Args:
        in_dim: D_in, input feature size (or frame channels for a frames encoder: ignored).
        num_classes: training procedures for the cross-entropy head (0: no head).
        steps: K. Other arguments: see :class:`ModelConfig`.

    Shapes: inputs x (B, T, D_in) features (or (B, T, 3, H, W) frames for a frames encoder),
    lengths (B,); embeddings (B, T, D); steps (B, K, D); distances (B,).
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int = 0,
        *,
        steps: int = 6,
        task: str = "verification",
        encoder: str = "identity",
        encoder_args: dict[str, Any] | None = None,
        temporal: str = "transformer",
        temporal_args: dict[str, Any] | None = None,
        relational: str = "row",
        block_score: str = "mean",
        max_over_k: bool = False,
        step_mining: str = "csm",
        step_features: str = "random",
        eval_step_features: str = "center",
        fsa_normalize: str = "frames",
        score_hidden: int = 128,
    ) -> None:
        super().__init__()
        from procalign.models.encoders import build_encoder
        from procalign.models.temporal import build_temporal

        _choice(task, "task", TASKS)
        _choice(relational, "relational", L.RELATIONAL_MODES)
        _choice(step_mining, "step_mining", STEP_MINING)
        _choice(step_features, "step_features", STEP_FEATURES_TRAIN)
        _choice(eval_step_features, "eval_step_features", STEP_FEATURES_TRAIN[1:])
        _choice(fsa_normalize, "fsa_normalize", L.NORMALIZE_MODES)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps (K) must be an int >= 1, got {steps!r}")
        self.in_dim = int(in_dim)
        self.steps = steps
        self.task = task
        self.relational = relational
        self.block_score = block_score
        self.max_over_k = max_over_k
        self.step_mining = step_mining
        self.step_features = step_features
        self.eval_step_features = eval_step_features
        self.fsa_normalize = fsa_normalize
        self.encoder = build_encoder(encoder, **(encoder_args or {}))
        enc_dim = getattr(self.encoder, "dim", None) or self.in_dim
        self.temporal = build_temporal(temporal, enc_dim, **(temporal_args or {}))
        dim = int(self.temporal.dim)
        self.dim = dim
        self.classifier = (
            nn.Linear(dim, num_classes) if task == "verification" and num_classes else None
        )
        self.step_pool = (
            AttentionStepPool(dim) if "attention" in (step_features, eval_step_features) else None
        )
        self.score_head = (
            nn.Sequential(nn.Linear(3 * dim, score_hidden), nn.ReLU(), nn.Linear(score_hidden, 1))
            if task == "quality"
            else None
        )

    # ---------------------------------------------------------------- frames -> embeddings
    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, D_in) features or (B, T, 3, H, W) frames -> (B, T, D) frame embeddings."""
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        kind = getattr(self.encoder, "input_kind", "features")
        if kind == "features" and (x.dim() != 3 or x.shape[-1] != self.in_dim):
            raise ValueError(
                f"expected features of shape (B, T, D={self.in_dim}), got {tuple(x.shape)}"
            )
        return self.temporal(self.encoder(x), lengths)

    def video_logits(self, F: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Procedure logits (B, C) from mean-pooled embeddings F (B, T, D)."""
        if self.classifier is None:
            raise ValueError(
                "this model has no classification head (num_classes=0 or task=quality)"
            )
        T = F.shape[1]
        if lengths is None:
            pooled = F.mean(1)
        else:
            m = (torch.arange(T, device=F.device)[None, :] < lengths[:, None]).to(F.dtype)
            pooled = (F * m[..., None]).sum(1) / lengths[:, None].to(F.dtype)
        return self.classifier(pooled)

    # ---------------------------------------------------------------- pair structure
    def _lengths(self, F: Tensor, lengths: Tensor | None) -> Tensor:
        if lengths is None:
            return torch.full((F.shape[0],), F.shape[1], dtype=torch.long, device=F.device)
        return torch.as_tensor(lengths, device=F.device).long()

    def mine(
        self,
        F1: Tensor,
        F2: Tensor,
        l1: Tensor | None = None,
        l2: Tensor | None = None,
        K: int | None = None,
        mining: str | None = None,
    ) -> dict[str, Tensor | None]:
        """Steps of a pair: ``sim`` (B, N, M), ``values`` (B,) (None for uniform steps),
        ``bounds_1``, ``bounds_2`` (B, K+1)."""
        K = self.steps if K is None else K
        mining = mining or self.step_mining
        l1, l2 = self._lengths(F1, l1), self._lengths(F2, l2)
        short = int(torch.minimum(l1, l2).min())
        if K > short:
            raise ValueError(
                f"K={K} steps need at least K frames per video, but a video of this batch has "
                f"{short} frames (F1 {tuple(F1.shape)}, F2 {tuple(F2.shape)})"
            )
        sim = L.relational_matrix(F1, F2, l1, l2, self.relational)
        if mining == "uniform":
            return {
                "sim": sim,
                "values": None,
                "bounds_1": L.uniform_bounds(l1, K),
                "bounds_2": L.uniform_bounds(l2, K),
            }
        res = L.mine_steps(sim, K, l1, l2, self.block_score, self.max_over_k)
        return {
            "sim": sim,
            "values": res.values,
            "bounds_1": res.bounds_n.to(F1.device),
            "bounds_2": res.bounds_m.to(F1.device),
        }

    def step_features_of(self, F: Tensor, bounds: Tensor, mode: str | None = None) -> Tensor:
        """(B, T, D) embeddings and (B, K+1) bounds -> (B, K, D) step features."""
        mode = mode or (self.step_features if self.training else self.eval_step_features)
        if mode == "attention":
            if self.step_pool is None:
                raise ValueError("step feature mode 'attention' needs a model built with it")
            return self.step_pool(F, bounds)
        return L.gather_step_features(F, bounds, mode)

    def pair(
        self,
        F1: Tensor,
        F2: Tensor,
        l1: Tensor | None = None,
        l2: Tensor | None = None,
        K: int | None = None,
        mining: str | None = None,
        step_mode: str | None = None,
    ) -> dict[str, Any]:
        """Everything CPA computes for a pair of embedded videos (B pairs).

        Returns ``sim`` (B, N, M), ``values`` (B,) or None, ``bounds_1``/``bounds_2`` (B, K+1),
        ``S1``/``S2`` (B, K, D) and ``distance`` (B,) (Eq. 10).
        """
        l1, l2 = self._lengths(F1, l1), self._lengths(F2, l2)
        out = self.mine(F1, F2, l1, l2, K, mining)
        S1 = self.step_features_of(F1, out["bounds_1"], step_mode)
        S2 = self.step_features_of(F2, out["bounds_2"], step_mode)
        out.update(
            S1=S1,
            S2=S2,
            distance=L.alignment_distance(F1, S1, F2, S2, l1, l2, normalize=self.fsa_normalize),
        )
        return out

    def score_delta(
        self, F_query: Tensor, F_exemplar: Tensor, bounds_q: Tensor, bounds_e: Tensor
    ) -> Tensor:
        """Quality head: predicted ``score(query) - score(exemplar)`` (B,) from aligned steps.

        Per step k: ``h_k = [s_q, s_e, s_q - s_e]`` with s the mean embedding of the mined step;
        the head maps each h_k to a number and the K numbers are summed.
        """
        if self.score_head is None:
            raise ValueError("this model has no quality head (task=verification)")
        sq = L.gather_step_features(F_query, bounds_q, "mean")
        se = L.gather_step_features(F_exemplar, bounds_e, "mean")
        return self.score_head(torch.cat([sq, se, sq - se], dim=-1)).squeeze(-1).sum(-1)

    def forward(
        self,
        x1: Tensor,
        x2: Tensor,
        lengths_1: Tensor | None = None,
        lengths_2: Tensor | None = None,
    ) -> dict[str, Any]:
        """Embed both videos of B pairs and run :meth:`pair`; adds ``F1``, ``F2`` and, with a
        classifier, ``logits_1``, ``logits_2`` (B, C)."""
        F1, F2 = self.embed_pair(x1, x2, lengths_1, lengths_2)
        out = self.pair(F1, F2, lengths_1, lengths_2)
        out.update(F1=F1, F2=F2)
        if self.classifier is not None:
            out.update(
                logits_1=self.video_logits(F1, lengths_1), logits_2=self.video_logits(F2, lengths_2)
            )
        return out

    def embed_pair(
        self, x1: Tensor, x2: Tensor, l1: Tensor | None = None, l2: Tensor | None = None
    ):
        """Embed both sides in one call when shapes allow it -> (F1, F2)."""
        if x1.shape[1:] == x2.shape[1:]:
            lengths = (
                None
                if l1 is None and l2 is None
                else torch.cat([self._lengths(x1, l1), self._lengths(x2, l2)])
            )
            F = self.embed(torch.cat([x1, x2]), lengths)
            return F[: len(x1)], F[len(x1) :]
        return self.embed(x1, l1), self.embed(x2, l2)

    @torch.no_grad()
    def distance(
        self,
        F1: Tensor,
        F2: Tensor,
        l1: Tensor | None = None,
        l2: Tensor | None = None,
        K: int | None = None,
        mining: str | None = None,
    ) -> Tensor:
        """Evaluation distance (B,) between embedded videos (eval step features)."""
        was = self.training
        self.eval()
        try:
            return self.pair(F1, F2, l1, l2, K, mining)["distance"]
        finally:
            self.train(was)


def build_model(cfg: CPAConfig, in_dim: int, num_classes: int) -> CPAModel:
    """A :class:`CPAModel` from a config (the only place where a config meets the model)."""
    m = cfg.model
    return CPAModel(
        in_dim,
        num_classes,
        steps=m.steps,
        task=m.task,
        encoder=m.encoder,
        encoder_args=dict(m.encoder_args),
        temporal=m.temporal,
        temporal_args=dict(m.temporal_args),
        relational=m.relational,
        block_score=m.block_score,
        max_over_k=m.max_over_k,
        step_mining=m.step_mining,
        step_features=m.step_features,
        eval_step_features=m.eval_step_features,
        fsa_normalize=m.fsa_normalize,
        score_hidden=m.score_hidden,
    )


# =============================================================================================
# Data
# =============================================================================================


@dataclass
class Video:
    """One video as the recipe sees it: features (L, D_in) and what is known about it."""

    video_id: str
    features: np.ndarray
    label: str | None = None
    steps: tuple[str, ...] | None = None
    split: str | None = None
    task: str | None = None
    phases: np.ndarray | None = None  # (L,) script position per frame (-1 background), synthetic
    score: float | None = None  # quality score


@dataclass
class VideoSet:
    """The videos of a run, the evaluation pairs, and where they came from."""

    videos: list[Video]
    pairs: list[Any]  # PairRecord of the test split (official list or sampled)
    in_dim: int
    description: str
    simulated: bool = False
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.index = {v.video_id: i for i, v in enumerate(self.videos)}

    def split(self, name: str) -> list[Video]:
        return [v for v in self.videos if v.split == name]

    def get(self, video_id: str) -> Video:
        if video_id not in self.index:
            raise KeyError(f"no video {video_id!r} in {self.description}")
        return self.videos[self.index[video_id]]


def _expand(path: str | None) -> str | None:
    if path is None:
        return None
    if "$PROCALIGN_DATA" in path.replace("{", "") and not os.environ.get("PROCALIGN_DATA"):
        raise FileNotFoundError(
            f"{path!r} uses $PROCALIGN_DATA, which is not set; point it at the shared data "
            "folder (e.g. export PROCALIGN_DATA=../shared/data) or give data.root explicitly"
        )
    return os.path.expanduser(os.path.expandvars(path))


def _synth_config(settings: dict[str, Any]):
    from procalign.data.synthetic import SynthConfig

    known = set(SynthConfig.__dataclass_fields__)
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown data.synthetic key(s) {unknown}; known: {sorted(known)}")
    return SynthConfig(**settings)


def _from_synthetic(ds, description: str, simulated: bool) -> VideoSet:
    videos = [
        Video(
            v.video_id,
            v.features,
            v.record.label,
            tuple(v.record.steps or ()) or None,
            v.record.split,
            v.record.task,
            v.phases,
        )
        for v in ds.videos
    ]
    return VideoSet(
        videos, list(ds.pairs), int(ds.videos[0].features.shape[1]), description, simulated
    )


def _load_npy(path: Path, video_id: str) -> np.ndarray:
    arr = np.load(path, mmap_mode="r")
    if arr.ndim != 2:
        raise ValueError(
            f"features of {video_id!r} at {path} must be (T, D), got shape {arr.shape}"
        )
    return arr


def _features_from_dir(records, features_dir: Path) -> list[np.ndarray]:
    if not features_dir.is_dir():
        raise FileNotFoundError(f"data.features_dir {features_dir} does not exist")
    paths = [features_dir / f"{r.video_id}.npy" for r in records]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} feature files are missing in {features_dir}, e.g. "
            f"{missing[:3]}; extract them with `procalign extract` or unset data.features_dir"
        )
    return [_load_npy(p, r.video_id) for p, r in zip(paths, records)]


def encode_video(path: str | Path, encoder: nn.Module, size: int = 32) -> np.ndarray:
    """Decode every frame of a video file / frame folder and encode it -> (L, D) float32."""
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy, read_video

    dec = read_video(path, SamplingPolicy(mode="all"), ResizePolicy("fixed", size, None))
    frames = torch.from_numpy(np.ascontiguousarray(dec.frames[0])).permute(0, 3, 1, 2)[None]
    with torch.no_grad():
        return encoder(frames)[0].float().numpy()


def build_video_encoder(cfg: DataConfig) -> nn.Module:
    from procalign.models.encoders import build_encoder

    enc = build_encoder(cfg.video_encoder, **dict(cfg.video_encoder_args))
    if getattr(enc, "input_kind", "frames") != "frames":
        raise ValueError(f"data.video_encoder {cfg.video_encoder!r} does not take frames")
    return enc.eval()


def _add_quality(vs: VideoSet, strength: float, seed: int) -> VideoSet:
    """Synthetic quality assessment on top of synthetic videos.

    Each video gets a per-step execution quality ``q_k ~ U(0, 1)``; frames of step k move by
    ``strength * (q_k - 1/2) * a_s`` along a fixed random direction ``a_s`` of the step's name,
    and the video's score is ``100 * mean_k q_k``. Score differences are thus visible only step
    by step, which is what exemplar-based regression over aligned steps must exploit.
    """
    from procalign.data.synthetic import _rng

    dirs: dict[str, np.ndarray] = {}
    out = []
    for v in vs.videos:
        if v.phases is None or v.steps is None:
            raise ValueError("quality simulation needs synthetic videos with per-frame phases")
        r = _rng(seed, "quality", v.video_id)
        q = r.uniform(0, 1, size=len(v.steps))
        feats = np.array(v.features, dtype=np.float32, copy=True)
        for k, name in enumerate(v.steps):
            if name not in dirs:
                a = _rng(seed, "quality-dir", name).normal(size=feats.shape[1])
                dirs[name] = a / np.linalg.norm(a)
            feats[v.phases == k] += strength * (q[k] - 0.5) * dirs[name]
        out.append(
            Video(
                v.video_id,
                feats,
                v.label,
                v.steps,
                v.split,
                v.task,
                v.phases,
                float(100 * q.mean()),
            )
        )
    return VideoSet(
        out, vs.pairs, vs.in_dim, vs.description + " + simulated quality scores", vs.simulated
    )


def load_videos(cfg: DataConfig, task: str = "verification", progress: bool = False) -> VideoSet:
    """Assemble the videos of a run from ``cfg`` (see :class:`DataConfig`).

    Raises:
        FileNotFoundError: a dataset folder, features folder or feature file is missing.
        ValueError: inconsistent settings (unknown keys, no split column, ...).
    """
    from procalign.data.synthetic import from_svip, make_dataset

    splits = (cfg.train_split, cfg.test_split)
    if cfg.source == "synthetic":
        sc = _synth_config(cfg.synthetic)
        ds = make_dataset(sc, progress=progress)
        vs = _from_synthetic(ds, f"synthetic procedures (seed {sc.seed})", False)
    elif cfg.source == "svip":
        root = _expand(cfg.root) or _expand(f"${{PROCALIGN_DATA}}/svip/{_SVIP_FOLDERS[cfg.name]}")
        root_p = Path(root)
        if not root_p.is_dir():
            raise FileNotFoundError(f"data.root {root} does not exist")
        if cfg.features_dir is None:
            ds = from_svip(
                root_p,
                _synth_config(cfg.synthetic),
                splits=splits,
                max_videos=cfg.max_videos,
                progress=progress,
            )
            vs = _from_synthetic(
                ds,
                f"{cfg.name} scripts, splits and official pairs from {root} with SIMULATED "
                "frames (no features_dir)",
                True,
            )
        else:
            from procalign.data import load

            data = load(cfg.name, root_p)
            keep = [r for r in data.records if r.split in splits]
            if cfg.max_videos is not None:
                kept: list = []
                for s in splits:
                    kept += [r for r in keep if r.split == s][: cfg.max_videos]
                keep = kept
            feats = _features_from_dir(keep, Path(_expand(cfg.features_dir)))
            videos = [
                Video(r.video_id, f, r.label, tuple(r.steps) if r.steps else None, r.split, r.task)
                for r, f in zip(keep, feats)
            ]
            ids = {v.video_id for v in videos}
            pairs = [
                p
                for p in (data.pairs or [])
                if p.video_id_1 in ids
                and p.video_id_2 in ids
                and (p.split is None or p.split == cfg.test_split)
            ]
            vs = VideoSet(
                videos,
                pairs,
                int(feats[0].shape[1]),
                f"{cfg.name} at {root} with features from {cfg.features_dir}",
            )
    else:
        vs = _from_folder(cfg, progress)
    if not vs.videos:
        raise ValueError(f"no videos in {vs.description}")
    if task == "quality":
        if cfg.source != "synthetic":
            raise ValueError("model.task=quality runs on data.source=synthetic (simulated scores)")
        vs = _add_quality(vs, cfg.quality_strength, _synth_config(cfg.synthetic).seed)
    return vs


def _from_folder(cfg: DataConfig, progress: bool) -> VideoSet:
    from procalign.data import load

    if cfg.root is None:
        raise ValueError("data.source=folder needs data.root (the dataset folder)")
    root = Path(_expand(cfg.root))
    data = load("folder", root)
    if not data.splits:
        raise ValueError(f"folder dataset {root}: index.csv needs a split column (train / test)")
    for s in (cfg.train_split, cfg.test_split):
        if s not in data.splits:
            raise ValueError(f"folder dataset {root} has no {s!r} videos; splits: {data.splits}")
    records = [r for r in data.records if r.split in (cfg.train_split, cfg.test_split)]
    if cfg.features_dir is not None:
        feats = _features_from_dir(records, Path(_expand(cfg.features_dir)))
    else:
        feats, encoder = [], None
        from tqdm.auto import tqdm

        for r in tqdm(records, desc="encode", disable=not progress, leave=False):
            if r.path is None:
                raise FileNotFoundError(f"video {r.video_id!r} of {root} has no features or video")
            if Path(r.path).suffix == ".npy":
                feats.append(_load_npy(Path(r.path), r.video_id))
            else:
                encoder = encoder or build_video_encoder(cfg)
                feats.append(encode_video(r.path, encoder, cfg.video_size))
    dims = {f.shape[1] for f in feats}
    if len(dims) != 1:
        raise ValueError(f"folder dataset {root}: features have different sizes D {sorted(dims)}")
    videos = [
        Video(r.video_id, f, r.label, tuple(r.steps) if r.steps else None, r.split, r.task)
        for r, f in zip(records, feats)
    ]
    ids = {v.video_id for v in videos if v.split == cfg.test_split}
    pairs = [p for p in (data.pairs or []) if p.video_id_1 in ids and p.video_id_2 in ids]
    if not pairs:
        from procalign.data.pairs import PairSampler

        test = [r for r in records if r.split == cfg.test_split]
        pairs = PairSampler(
            test, negatives="prefer_same_task" if all(r.task for r in test) else "any", seed=0
        ).per_video(1, 1)
    return VideoSet(videos, pairs, dims.pop(), f"folder dataset {root}")


# =============================================================================================
# Training
# =============================================================================================


def _clip(features: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.asarray(features[idx], dtype=np.float32)


def make_batch_fn(vs: VideoSet, cfg: CPAConfig, classes: list[str]):
    """``make_batches(epoch) -> list of batches``, deterministic in (train.seed, epoch).

    A batch holds ``x1``, ``x2`` (B, T, D_in), ``same`` (B,), ``labels_1``, ``labels_2`` (B,)
    (class index, -1 unknown) and, for quality, ``scores_1``, ``scores_2`` (B,).
    """
    from procalign.data.pairs import PairSampler
    from procalign.data.sampling import train_indices

    d = cfg.data
    train = vs.split(d.train_split)
    cls = {c: i for i, c in enumerate(classes)}
    T = d.num_frames
    quality = cfg.model.task == "quality"

    def make_batches(epoch: int) -> list[dict[str, Tensor]]:
        seed = (cfg.train.seed + 1) * 100_003 + epoch
        from procalign.data.records import VideoRecord

        recs = [VideoRecord(v.video_id, label=v.label, task=v.task) for v in train]
        sampler = PairSampler(recs, negatives=d.negatives, seed=seed)
        frac = 1.0 if quality else d.positive_fraction
        pairs = sampler.sample(d.pairs_per_epoch, positive_fraction=frac)
        rng = np.random.default_rng(seed)
        batches = []
        for s in range(0, len(pairs), d.batch_size):
            chunk = pairs[s : s + d.batch_size]
            x1, x2, y1, y2, same, s1, s2 = [], [], [], [], [], [], []
            for p in chunk:
                a, b = vs.get(p.video_id_1), vs.get(p.video_id_2)
                x1.append(
                    _clip(
                        a.features, train_indices(len(a.features), T, rng, boundaries=d.boundaries)
                    )
                )
                x2.append(
                    _clip(
                        b.features, train_indices(len(b.features), T, rng, boundaries=d.boundaries)
                    )
                )
                y1.append(cls.get(a.label, -1))
                y2.append(cls.get(b.label, -1))
                same.append(bool(p.same))
                s1.append(a.score or 0.0)
                s2.append(b.score or 0.0)
            batch = {
                "x1": torch.from_numpy(np.stack(x1)),
                "x2": torch.from_numpy(np.stack(x2)),
                "labels_1": torch.tensor(y1),
                "labels_2": torch.tensor(y2),
                "same": torch.tensor(same),
            }
            if quality:
                batch.update(scores_1=torch.tensor(s1), scores_2=torch.tensor(s2))
            batches.append(batch)
        return batches

    return make_batches


def make_loss_fn(cfg: CPAConfig, score_scale: float = 100.0):
    """``(model, batch) -> (loss, logs)``: ``w_task L_task + w_align L_align + w_step L_step``.

    L_step and L_align use the positive pairs only (the DPs run only on those); the task loss is
    the cross-entropy of both videos of every pair (verification) or the squared error of the
    predicted score difference, in units of ``score_scale`` (quality).
    """
    w = cfg.loss

    def loss_fn(model: CPAModel, batch: dict[str, Tensor]):
        F1, F2 = model.embed_pair(batch["x1"], batch["x2"])
        same = batch["same"].bool()
        logs: dict[str, float] = {}
        zero = F1.sum() * 0.0
        l_step = l_align = l_task = zero
        out = None
        if bool(same.any()) and (w.align > 0 or w.step > 0 or model.task == "quality"):
            out = model.pair(F1[same], F2[same])
            l_align = L.align_loss(out["distance"])
            if out["values"] is not None:
                l_step = L.step_loss(out["values"])
        if model.task == "verification":
            if model.classifier is not None and w.task > 0:
                logits = model.video_logits(torch.cat([F1, F2]))
                labels = torch.cat([batch["labels_1"], batch["labels_2"]])
                l_task = L.cross_entropy_loss(logits, labels)
                logs["acc"] = float((logits.argmax(-1) == labels).float().mean())
        elif out is not None:
            target = (batch["scores_1"][same] - batch["scores_2"][same]) / score_scale
            pred = model.score_delta(F1[same], F2[same], out["bounds_1"], out["bounds_2"])
            l_task = L.score_regression_loss(pred, target)
        loss = w.task * l_task + w.align * l_align + w.step * l_step
        logs.update(
            l_task=float(l_task.detach()),
            l_align=float(l_align.detach()),
            l_step=float(l_step.detach()),
        )
        return loss, logs

    return loss_fn


def _run_meta(vs: VideoSet, classes: list[str]) -> dict[str, Any]:
    return {
        "in_dim": vs.in_dim,
        "classes": classes,
        "data": vs.description,
        "simulated": vs.simulated,
        "num_videos": len(vs.videos),
        "num_test_pairs": len(vs.pairs),
    }


class _threads:
    """Set torch and numba thread counts for a block, then restore them (None: no change)."""

    def __init__(self, n: int | None) -> None:
        self.n = n

    def __enter__(self) -> None:
        if self.n is None:
            return
        import numba

        self.saved = (torch.get_num_threads(), numba.get_num_threads())
        torch.set_num_threads(max(1, self.n))
        numba.set_num_threads(max(1, min(self.n, numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc: object) -> None:
        if self.n is None:
            return
        import numba

        torch.set_num_threads(self.saved[0])
        numba.set_num_threads(self.saved[1])


def train(
    cfg: CPAConfig,
    run_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    videos: VideoSet | None = None,
) -> dict[str, Any]:
    """Train CPA into ``run_dir``; returns a summary (also written to ``summary.json``).

    The run folder holds ``config.yaml``, ``meta.json`` (input size, class names, data),
    ``log.jsonl``, ``checkpoints/``, ``model.safetensors``, ``history.json`` and
    ``threshold.json`` (the same/different threshold at the EER point of training pairs).
    Running again with ``resume=True`` continues from the newest checkpoint. ``videos`` reuses
    already loaded data (:func:`load_videos`).
    """
    validate_config(cfg)
    with _threads(cfg.train.threads):
        return _train(cfg, run_dir, resume, progress, videos)


def _train(
    cfg: CPAConfig,
    run_dir: str | Path,
    resume: bool,
    progress: bool,
    videos: VideoSet | None,
) -> dict[str, Any]:
    from procalign.config import dump_yaml
    from procalign.train import cosine_warmup, fit, seed_everything, write_json

    validate_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    vs = videos if videos is not None else load_videos(cfg.data, cfg.model.task, progress)
    train_videos = vs.split(cfg.data.train_split)
    if len(train_videos) < 2:
        raise ValueError(
            f"need at least 2 training videos (split {cfg.data.train_split!r}) in {vs.description}"
        )
    short = min(len(v.features) for v in vs.videos)
    classes = sorted(
        {v.label for v in train_videos if v.label is not None},
        key=lambda s: [(0, int(x), "") if x.isdigit() else (1, 0, x) for x in s.split(".")],
    )
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    write_json(run_dir / "meta.json", {**_run_meta(vs, classes), "shortest_video": short})
    seed_everything(cfg.train.seed)
    model = build_model(cfg, vs.in_dim, len(classes) if cfg.model.task == "verification" else 0)
    if getattr(model.encoder, "input_kind", "features") == "frames":
        raise ValueError(
            f"model.encoder={cfg.model.encoder!r} takes frames, but training reads cached features; "
            "use model.encoder=identity and encode videos with data.video_encoder (folder "
            "datasets) or `procalign extract`"
        )
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
    )
    sched = cosine_warmup(opt, cfg.train.epochs, cfg.optim.warmup)
    eval_fn = None
    if cfg.train.eval_every > 0:

        def eval_fn(m, epoch):
            rows = evaluate_model(m, cfg, vs, ["cpa"], progress=False)["metrics"]
            return {r["metric"]: r["value"] for r in rows if r["distance"] == "cpa"}

    t0 = time.perf_counter()
    result = fit(
        model,
        make_loss_fn(cfg),
        make_batch_fn(vs, cfg, classes),
        opt,
        cfg.train.epochs,
        run_dir,
        scheduler=sched,
        eval_fn=eval_fn,
        eval_every=max(1, cfg.train.eval_every),
        resume=resume,
        seed=cfg.train.seed,
        grad_clip=cfg.optim.grad_clip,
        progress=progress,
        metadata={"method": "cpa", "task": cfg.model.task},
        stop_after_epoch=cfg.train.stop_after_epoch,
    )
    summary: dict[str, Any] = {
        "method": "cpa",
        "run_dir": str(run_dir),
        "data": vs.description,
        "epochs_done": len(result.history),
        "resumed_from_epoch": result.resumed_from_epoch,
        "seconds_per_epoch": float(np.mean(result.seconds_per_epoch))
        if result.seconds_per_epoch
        else None,
        "wall_seconds": time.perf_counter() - t0,
        "last_epoch": result.history[-1] if result.history else None,
    }
    finished = len(result.history) >= cfg.train.epochs
    if finished and cfg.model.task == "verification":
        summary["threshold"] = choose_threshold(model, cfg, vs, run_dir)
    write_json(run_dir / "summary.json", summary)
    return summary


# =============================================================================================
# Evaluation (SVIP protocol)
# =============================================================================================


def clip_features(
    features: np.ndarray, T: int, offsets: Sequence[float], boundaries: str = "even"
) -> np.ndarray:
    """SVIP clips of one video: (L, D) features (or (L, ...) frames) -> (C, T, D) (or (C, T, ...)),
    clip c taking offset ``offsets[c]`` inside each of T equal segments (frames repeat when
    L < T)."""
    from procalign.data.sampling import clip_indices

    if features.ndim < 2 or len(features) < 1:
        raise ValueError(f"features must be (L, D) with L >= 1, got shape {features.shape}")
    idx = clip_indices(len(features), T, list(offsets), boundaries=boundaries)
    out = np.asarray(features[idx])
    return out.astype(np.float32) if out.dtype != np.uint8 else out


@torch.no_grad()
def embed_clips(model: CPAModel, clips: Tensor, batch_size: int = 256) -> Tensor:
    """(V, C, T, D_in) clips -> (V, C, T, D) embeddings (eval mode)."""
    model.eval()
    V, C = clips.shape[:2]
    flat = clips.reshape(V * C, *clips.shape[2:])
    out = [model.embed(flat[s : s + batch_size]) for s in range(0, len(flat), batch_size)]
    return torch.cat(out).reshape(V, C, *out[0].shape[1:])


def pair_distance_fn(model: CPAModel, name: str, K: int | None = None, gamma: float = 0.1):
    """Distance ``(F1 (B, T, D), F2 (B, T, D)) -> (B,)`` named in ``EVAL_DISTANCES`` (without
    the ``raw_`` prefix: the caller chooses embeddings or input features)."""
    base = name.removeprefix("raw_")
    if base == "cpa":
        return lambda a, b: model.distance(a, b, K=K)
    if base == "fsa_uniform":
        return lambda a, b: model.distance(a, b, K=K, mining="uniform")
    if base == "soft_dtw":
        return lambda a, b: BL.soft_dtw_distance(a, b, gamma=gamma)
    if base in BL.BASELINES:
        return lambda a, b: BL.BASELINES[base](a, b)
    raise ValueError(f"unknown distance {name!r}; known: {EVAL_DISTANCES}")


@torch.no_grad()
def pair_distances(
    fn, emb: Tensor, index: dict[str, int], pairs: Sequence[tuple[str, str]], batch_size: int = 128
) -> np.ndarray:
    """Mean over clips of ``fn`` for each pair -> (P,). ``emb`` (V, C, T, D)."""
    C = emb.shape[1]
    ia = torch.tensor([index[a] for a, _ in pairs])
    ib = torch.tensor([index[b] for _, b in pairs])
    out = []
    step = max(1, batch_size // C)
    for s in range(0, len(pairs), step):
        A = emb[ia[s : s + step]]
        B = emb[ib[s : s + step]]
        d = fn(A.flatten(0, 1), B.flatten(0, 1)).reshape(len(A), C)
        out.append(d.mean(1))
    return torch.cat(out).double().numpy()


def verification_rows(
    distances: np.ndarray, same: np.ndarray, steps_1, steps_2, variant: str, distance: str
) -> list[dict[str, Any]]:
    """AUC, EER and (with step lists) WDR rows for one distance."""
    from procalign.eval import verification_auc, verification_eer, wrong_distance_ratio

    rows = []

    def row(metric: str, value: float, higher: bool, note: str = "") -> None:
        rows.append(
            {
                "metric": metric,
                "variant": f"{distance},{variant}{note}",
                "value": float(value),
                "higher_is_better": higher,
                "distance": distance,
            }
        )

    row("auc", verification_auc(distances, same), True)
    row("eer", verification_eer(distances, same), False)
    if steps_1 is not None:
        keep = np.array(
            [bool(s) or (tuple(a) != tuple(b)) for s, a, b in zip(same, steps_1, steps_2)]
        )
        dropped = int((~keep).sum())
        if keep.any() and same[keep].any() and (~same[keep]).any():
            wdr = wrong_distance_ratio(
                distances[keep],
                same[keep],
                [steps_1[i] for i in np.flatnonzero(keep)],
                [steps_2[i] for i in np.flatnonzero(keep)],
            )
            row("wdr", wdr, True, f",dropped_identical_scripts={dropped}" if dropped else "")
    return rows


def _pairs_for_split(
    vs: VideoSet,
    cfg: CPAConfig,
    split: str,
    num: int | None,
    seed: int,
    info: dict[str, Any] | None = None,
) -> list:
    """Pairs to score on ``split``: the dataset's own list for the test split (official SVIP
    pairs, ``pairs.csv``, the generator's list) unless ``data.test_pairs`` asks for sampled ones,
    or the list lacks a class (e.g. ``max_videos`` dropped every negative); otherwise pairs
    sampled from the split (half positive, ``data.negatives`` mode). ``info["pairs"]`` says
    which."""
    info = {} if info is None else info
    own = list(vs.pairs) if split == cfg.data.test_split else []
    if split == cfg.data.test_split and cfg.data.test_pairs:
        num = cfg.data.test_pairs
        own = []
        info["pairs"] = f"{num} sampled pairs (data.test_pairs)"
    elif own and len({bool(p.same) for p in own}) < 2:
        info["pairs"] = (
            f"sampled: the dataset's {len(own)} pairs of this split hold one class only "
            "(max_videos?)"
        )
        own = []
    if own:
        pairs = own
        info.setdefault("pairs", f"the dataset's own list ({len(own)} pairs)")
    else:
        from procalign.data.pairs import PairSampler
        from procalign.data.records import VideoRecord

        recs = [VideoRecord(v.video_id, label=v.label, task=v.task) for v in vs.split(split)]
        sampler = PairSampler(recs, negatives=cfg.data.negatives, seed=seed)
        pairs = sampler.sample(num or 400, positive_fraction=0.5)
        info.setdefault("pairs", f"{len(pairs)} pairs sampled from split {split!r}")
    if num is not None:
        pairs = pairs[:num]
    if not pairs:
        raise ValueError(f"no evaluation pairs for split {split!r} in {vs.description}")
    return pairs


def _embed_for(model: CPAModel, vs: VideoSet, ids: Sequence[str], cfg: CPAConfig, raw: bool):
    T, offs = cfg.data.num_frames, cfg.data.clip_offsets
    clips = torch.from_numpy(
        np.stack([clip_features(vs.get(i).features, T, offs, cfg.data.boundaries) for i in ids])
    )
    emb = embed_clips(model, clips, cfg.eval.batch_size)
    return emb, (clips if raw else None)


def evaluate_model(
    model: CPAModel,
    cfg: CPAConfig,
    vs: VideoSet,
    distances: Sequence[str] | None = None,
    progress: bool = True,
    split: str | None = None,
) -> dict[str, Any]:
    """SVIP-protocol verification of ``model`` on ``vs``: rows for each distance (and K sweep)."""
    e = cfg.eval
    split = split or e.split
    distances = list(distances if distances is not None else e.distances)
    info: dict[str, Any] = {}
    pairs = _pairs_for_split(vs, cfg, split, e.max_pairs, 7, info)
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    index = {v: i for i, v in enumerate(ids)}
    raw = any(d.startswith("raw_") for d in distances)
    emb, clips = _embed_for(model, vs, ids, cfg, raw)
    same = np.array([bool(p.same) for p in pairs])
    have_steps = all(vs.get(i).steps for i in ids)
    steps_1 = [vs.get(p.video_id_1).steps for p in pairs] if have_steps else None
    steps_2 = [vs.get(p.video_id_2).steps for p in pairs] if have_steps else None
    K = model.steps
    jobs = [(d, K) for d in distances] + [
        ("cpa", k) for k in e.steps_sweep if k != K or "cpa" not in distances
    ]
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    C = len(cfg.data.clip_offsets)
    from tqdm.auto import tqdm

    for name, k in tqdm(jobs, desc="eval", disable=not progress, leave=False):
        feats = clips if name.startswith("raw_") else emb
        fn = pair_distance_fn(model, name, k, e.gamma)
        if name == "raw_fsa_uniform":
            fn = _raw_fsa(k, cfg.model.fsa_normalize)
        t0 = time.perf_counter()
        d = pair_distances(
            fn, feats, index, [(p.video_id_1, p.video_id_2) for p in pairs], e.batch_size
        )
        timings[f"{name}@K={k}"] = time.perf_counter() - t0
        label = name if k == K or name not in ("cpa", "fsa_uniform") else f"{name}@K={k}"
        variant = f"svip_{C}clips,T={cfg.data.num_frames}" + (
            f",K={k}" if "fsa" in name or "cpa" in name else ""
        )
        rows += verification_rows(d, same, steps_1, steps_2, variant, label)
    return {
        "task": "verification",
        "split": split,
        "pairs": info["pairs"],
        "num_pairs": len(pairs),
        "num_positive": int(same.sum()),
        "num_videos": len(ids),
        "data": vs.description,
        "simulated_frames": vs.simulated,
        "metrics": rows,
        "seconds": timings,
    }


def _raw_fsa(K: int, normalize: str):
    """Frame-to-step alignment with uniform steps over the *input* features (no model)."""

    def fn(a: Tensor, b: Tensor) -> Tensor:
        la = torch.full((a.shape[0],), a.shape[1])
        ba = L.uniform_bounds(la, K)
        Sa, Sb = L.gather_step_features(a, ba, "center"), L.gather_step_features(b, ba, "center")
        return L.alignment_distance(a, Sa, b, Sb, normalize=normalize)

    return fn


def choose_threshold(
    model: CPAModel, cfg: CPAConfig, vs: VideoSet, run_dir: str | Path | None = None
) -> dict[str, Any]:
    """Same/different threshold on the CPA distance at the EER point of training pairs.

    Pairs are drawn from the training split (``data.threshold_pairs``, half positive) and scored
    with the SVIP 3-clip protocol; ``threshold`` is the distance where the false-accept and
    false-reject rates cross (a pair is "same" when its distance <= threshold). Written to
    ``run_dir/threshold.json`` when ``run_dir`` is given.
    """
    from sklearn.metrics import roc_curve

    from procalign.eval import verification_auc, verification_eer

    pairs = _pairs_for_split(
        vs, cfg, cfg.data.train_split, cfg.data.threshold_pairs, cfg.train.seed + 11
    )
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    emb, _ = _embed_for(model, vs, ids, cfg, False)
    d = pair_distances(
        pair_distance_fn(model, "cpa"),
        emb,
        {v: i for i, v in enumerate(ids)},
        [(p.video_id_1, p.video_id_2) for p in pairs],
        cfg.eval.batch_size,
    )
    same = np.array([bool(p.same) for p in pairs])
    fpr, tpr, thr = roc_curve(same, -d)
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    threshold = float(-thr[i]) if np.isfinite(thr[i]) else float(d.max())
    out = {
        "threshold": threshold,
        "distance": "cpa",
        "rule": "same if distance <= threshold",
        "chosen_on": f"{len(pairs)} training pairs ({int(same.sum())} positive), SVIP "
        f"{len(cfg.data.clip_offsets)}-clip protocol, EER point",
        "train_auc": verification_auc(d, same),
        "train_eer": verification_eer(d, same),
        "positive_mean": float(d[same].mean()),
        "negative_mean": float(d[~same].mean()),
    }
    if run_dir is not None:
        from procalign.train import write_json

        write_json(Path(run_dir) / "threshold.json", out)
    return out


def evaluate_quality(
    model: CPAModel, cfg: CPAConfig, vs: VideoSet, progress: bool = True
) -> dict[str, Any]:
    """Exemplar-based quality assessment: each test video is scored against
    ``eval.num_exemplars`` training videos of the same procedure (predictions averaged); reports
    Spearman's rho, relative L2 (x100, score range of the training scores) and AIoU after
    regrouping the K mined steps uniformly into 3 phases (centre clip, sampled-frame units)."""
    from procalign.eval import aiou, relative_l2, spearman_rho

    e, d = cfg.eval, cfg.data
    train_v = vs.split(d.train_split)
    test_v = vs.split(e.split)
    by_label: dict[str, list[Video]] = {}
    for v in train_v:
        by_label.setdefault(v.label, []).append(v)
    T, C = d.num_frames, len(d.clip_offsets)
    centre = int(np.argmin(np.abs(np.asarray(d.clip_offsets) - 0.5)))
    preds, trues, pt, tt = [], [], [], []
    model.eval()
    from tqdm.auto import tqdm

    with torch.no_grad():
        for v in tqdm(test_v, desc="quality", disable=not progress, leave=False):
            ex = by_label.get(v.label, [])[: e.num_exemplars]
            if not ex:
                continue
            q = torch.from_numpy(clip_features(v.features, T, d.clip_offsets, d.boundaries))
            xs = torch.from_numpy(
                np.stack([clip_features(x.features, T, d.clip_offsets, d.boundaries) for x in ex])
            )
            Fq = model.embed(q)  # (C, T, D)
            Fe = model.embed(xs.flatten(0, 1)).reshape(len(ex), C, T, -1)
            Fq_rep = Fq[None].expand(len(ex), -1, -1, -1).flatten(0, 1)
            out = model.pair(Fq_rep, Fe.flatten(0, 1))
            delta = model.score_delta(Fq_rep, Fe.flatten(0, 1), out["bounds_1"], out["bounds_2"])
            base = torch.tensor([x.score for x in ex]).repeat_interleave(C)
            preds.append(float((base + 100.0 * delta).mean()))
            trues.append(v.score)
            bq = out["bounds_1"][centre].numpy()  # query vs first exemplar, centre clip
            K = len(bq) - 1
            pt.append([bq[round(K / 3)], bq[round(2 * K / 3)]])
            idx = clip_features(np.arange(len(v.features))[:, None], T, [d.clip_offsets[centre]])[
                0, :, 0
            ].astype(int)
            ph = v.phases[idx]
            n = len(v.steps)
            group = np.where(ph >= 0, np.minimum(ph * 3 // n, 2), -1)
            tt.append([_first_at_least(group, 1), _first_at_least(group, 2)])
    if len(preds) < 2:
        raise ValueError("quality evaluation needs at least 2 test videos with exemplars")
    lo = min(v.score for v in train_v)
    hi = max(v.score for v in train_v)
    rows = [
        {
            "metric": "spearman_rho",
            "variant": f"exemplars={e.num_exemplars},{C}clips",
            "value": spearman_rho(preds, trues),
            "higher_is_better": True,
            "distance": "cpa",
        },
        {
            "metric": "relative_l2",
            "variant": f"x100,range=train[{lo:.1f},{hi:.1f}]",
            "value": relative_l2(preds, trues, (lo, hi)),
            "higher_is_better": False,
            "distance": "cpa",
        },
    ]
    for thr, val in aiou(np.array(pt, float), np.array(tt, float), e.aiou_thresholds).items():
        rows.append(
            {
                "metric": f"aiou@{thr}",
                "variant": f"tsa,K={model.steps}->3 phases",
                "value": val,
                "higher_is_better": True,
                "distance": "cpa",
            }
        )
    return {
        "task": "quality",
        "split": e.split,
        "num_videos": len(preds),
        "data": vs.description,
        "metrics": rows,
    }


def _first_at_least(group: np.ndarray, g: int) -> int:
    hits = np.flatnonzero(group >= g)
    return int(hits[0]) if hits.size else len(group)


@torch.no_grad()
def verify_pair(
    model: CPAModel,
    cfg: CPAConfig,
    a: np.ndarray,
    b: np.ndarray,
    threshold: float | None = None,
    K: int | None = None,
) -> dict[str, Any]:
    """Verify two videos with a trained model (SVIP 3-clip protocol).

    Args:
        a, b: (L, D_in) features, or (L, H, W, 3) uint8 frames for a model with a frames encoder.
        threshold: "same procedure" when the distance is <= threshold (None: no decision).
        K: steps to mine (default: the model's).

    Returns:
        ``distance`` (mean over clips), ``clip_distances``, ``same`` (bool or None), and for the
        centre clip the mined ``steps``: per step the frames of each video (sampled positions and
        source frame numbers), ``cosine`` of the two videos' mean step embeddings, ``block_mean``
        of the relational matrix inside the block and ``cost``: the posterior-weighted
        ``-log W`` of the frames aligned to that step (both directions averaged), the step's
        share of the distance. ``most_disagreeing`` lists step numbers by decreasing cost.
    """
    d = cfg.data
    K = model.steps if K is None else int(K)
    T = d.num_frames
    if K > T:
        raise ValueError(f"K={K} steps cannot be mined from T={T} sampled frames (need K <= T)")
    frames = getattr(model.encoder, "input_kind", "features") == "frames"
    for name, x in (("a", a), ("b", b)):
        want = 4 if frames else 2
        if x.ndim != want or (not frames and x.shape[1] != model.in_dim):
            shape = "(L, H, W, 3) frames" if frames else f"(L, D={model.in_dim}) features"
            raise ValueError(f"input {name} must be {shape}, got shape {tuple(x.shape)}")
    ca = clip_features(a, T, d.clip_offsets, d.boundaries)
    cb = clip_features(b, T, d.clip_offsets, d.boundaries)
    xa, xb = torch.from_numpy(ca), torch.from_numpy(cb)
    if frames:
        xa, xb = xa.permute(0, 1, 4, 2, 3), xb.permute(0, 1, 4, 2, 3)
    model.eval()
    Fa, Fb = model.embed(xa), model.embed(xb)
    out = model.pair(Fa, Fb, K=K)
    clip_d = out["distance"].double().numpy()
    dist = float(clip_d.mean())
    c = int(np.argmin(np.abs(np.asarray(d.clip_offsets) - 0.5)))
    ba, bb = out["bounds_1"][c].tolist(), out["bounds_2"][c].tolist()
    ia = _clip_source_index(len(a), T, d.clip_offsets[c], d.boundaries)
    ib = _clip_source_index(len(b), T, d.clip_offsets[c], d.boundaries)
    bounds_a, bounds_b = out["bounds_1"][c : c + 1], out["bounds_2"][c : c + 1]
    ma = L.gather_step_features(Fa[c : c + 1], bounds_a, "mean")[0]
    mb = L.gather_step_features(Fb[c : c + 1], bounds_b, "mean")[0]
    cos = torch.nn.functional.cosine_similarity(ma, mb, dim=-1)
    sim = out["sim"][c]
    cost = 0.5 * (
        _step_costs(Fa[c : c + 1], out["S2"][c : c + 1])
        + _step_costs(Fb[c : c + 1], out["S1"][c : c + 1])
    )
    steps = []
    for k in range(K):
        steps.append(
            {
                "step": k + 1,
                "frames_a": [ba[k], ba[k + 1] - 1],
                "frames_b": [bb[k], bb[k + 1] - 1],
                "source_frames_a": [int(ia[ba[k]]), int(ia[ba[k + 1] - 1])],
                "source_frames_b": [int(ib[bb[k]]), int(ib[bb[k + 1] - 1])],
                "cosine": float(cos[k]),
                "block_mean": float(sim[ba[k] : ba[k + 1], bb[k] : bb[k + 1]].mean()),
                "cost": float(cost[k]),
            }
        )
    order = sorted(steps, key=lambda s: -s["cost"])
    return {
        "distance": dist,
        "clip_distances": clip_d.tolist(),
        "threshold": threshold,
        "same": None if threshold is None else bool(dist <= threshold),
        "K": K,
        "T": T,
        "clip_offsets": list(d.clip_offsets),
        "steps": steps,
        "most_disagreeing": [s["step"] for s in order],
        "sim": sim.numpy(),
        "bounds_a": np.asarray(ba),
        "bounds_b": np.asarray(bb),
    }


def _clip_source_index(length: int, T: int, offset: float, boundaries: str) -> np.ndarray:
    from procalign.data.sampling import segment_indices

    return segment_indices(length, T, offset, boundaries=boundaries)


def _step_costs(F: Tensor, S: Tensor) -> Tensor:
    """Per step (K,): posterior-weighted mean of -log W over the frames aligned to it."""
    from procalign import dp

    logp = L.frame_to_step_log_probs(F, S)
    marg = dp.step_marginals(logp)[0]
    mass = marg.sum(0).clamp_min(1e-12)
    return (-(marg * logp[0]).sum(0) / mass).double()


# =============================================================================================
# Runs on disk
# =============================================================================================


def load_run(
    run_dir: str | Path, overrides: Sequence[str] = ()
) -> tuple[CPAModel, CPAConfig, dict[str, Any]]:
    """(model with trained weights, config, meta) of a finished run folder."""
    from procalign.config import load_config
    from procalign.train import load_weights

    run_dir = Path(run_dir)
    for name in ("config.yaml", "meta.json", "model.safetensors"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"{run_dir} is not a finished CPA run: no {name} (train with `procalign train cpa`)"
            )
    cfg = load_config(CPAConfig, run_dir / "config.yaml", list(overrides))
    validate_config(cfg)
    meta = json.loads((run_dir / "meta.json").read_text())
    model = build_model(
        cfg, int(meta["in_dim"]), len(meta["classes"]) if cfg.model.task == "verification" else 0
    )
    load_weights(model, run_dir / "model.safetensors")
    model.eval()
    return model, cfg, meta


def evaluate(
    run_dir: str | Path,
    overrides: Sequence[str] = (),
    progress: bool = True,
    videos: VideoSet | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run (``procalign eval cpa --run DIR key=value``); writes
    ``eval.json`` in the run folder and returns the report (rows: metric, variant, value,
    higher_is_better, distance)."""
    from procalign.train import write_json

    model, cfg, meta = load_run(run_dir, overrides)
    with _threads(cfg.train.threads):
        vs = videos if videos is not None else load_videos(cfg.data, cfg.model.task, progress)
        if vs.in_dim != meta["in_dim"]:
            raise ValueError(
                f"the run was trained on D={meta['in_dim']} features, the data has D={vs.in_dim}"
            )
        t0 = time.perf_counter()
        if cfg.model.task == "quality":
            report = evaluate_quality(model, cfg, vs, progress)
        else:
            report = evaluate_model(model, cfg, vs, progress=progress)
        report.update(
            method="cpa",
            run_dir=str(run_dir),
            overrides=list(overrides),
            eval_seconds=time.perf_counter() - t0,
        )
        write_json(Path(run_dir) / "eval.json", report)
        return report


class CPARecipe:
    """The ``cpa`` entry of :data:`procalign.methods.METHODS`."""

    name = "cpa"
    config_cls = CPAConfig

    def train(
        self, config: CPAConfig, run_dir, resume: bool = True, progress: bool = True
    ) -> dict[str, Any]:
        return train(config, run_dir, resume=resume, progress=progress)

    def evaluate(
        self, run_dir, overrides: Sequence[str] = (), progress: bool = True
    ) -> dict[str, Any]:
        return evaluate(run_dir, overrides, progress=progress)


@METHODS.register("cpa")
def _cpa_recipe() -> CPARecipe:
    return CPARecipe()
