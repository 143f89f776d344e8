"""CPA's model: frame encoder + temporal module + the pair structure of collaborative step mining
and frame-to-step alignment (He et al., AAAI 2024), with a task head.

``CPAModel.embed(x (B, T, D_in), lengths) -> (B, T, D)`` is the surface every evaluation protocol
uses; :meth:`CPAModel.pair` computes everything CPA derives from two embedded videos.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from procalign.losses import cpa as L
from procalign.masks import CLIP_NORMS, check_lengths, clip_normalize, masked_mean

TASKS = ("verification", "quality")
STEP_MINING = ("csm", "uniform")
STEP_FEATURES = ("random", "center", "first", "mean", "attention")
#: per-clip normalisation of the encoded frames before the temporal module
INPUT_NORMS = CLIP_NORMS


def _choice(value: Any, name: str, options: tuple[Any, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


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
        input_norm: str = "none",
    ) -> None:
        super().__init__()
        from procalign.models.encoders import build_encoder
        from procalign.models.temporal import build_temporal

        _choice(task, "task", TASKS)
        _choice(relational, "relational", L.RELATIONAL_MODES)
        _choice(step_mining, "step_mining", STEP_MINING)
        _choice(step_features, "step_features", STEP_FEATURES)
        _choice(eval_step_features, "eval_step_features", STEP_FEATURES[1:])
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
        _choice(input_norm, "input_norm", INPUT_NORMS)
        self.input_norm = input_norm
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
        h = self.encoder(x)
        h = clip_normalize(h, lengths, self.input_norm)  # the clip's own statistics
        return self.temporal(h, lengths)

    def video_logits(self, F: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Procedure logits (B, C) from mean-pooled embeddings F (B, T, D)."""
        if self.classifier is None:
            raise ValueError(
                "this model has no classification head (num_classes=0 or task=quality)"
            )
        return self.classifier(masked_mean(F, lengths))

    # ---------------------------------------------------------------- pair structure
    def _lengths(self, F: Tensor, lengths: Tensor | None) -> Tensor:
        return check_lengths(lengths, F.shape[0], F.shape[1], device=F.device)

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


@torch.no_grad()
def explain_pair(
    model: CPAModel,
    Fa: Tensor,
    Fb: Tensor,
    K: int | None = None,
    source_a: Any = None,
    source_b: Any = None,
) -> dict[str, Any]:
    """Where two embedded videos agree and differ, step by step (one clip each).

    Args:
        Fa, Fb: (1, N, D) and (1, M, D) frame embeddings.
        source_a, source_b: (N,) / (M,) source frame number of each sampled frame (optional).

    Returns ``distance`` (Eq. 10), ``bounds_a`` (K+1,), ``bounds_b`` (K+1,), ``sim`` (N, M), and
    ``steps``: per step its frames in each video (sampled positions, and source frames when
    given), ``cosine`` of the two videos' mean step embeddings, ``block_mean`` of the relational
    matrix inside the block, and ``cost``: the posterior-weighted ``-log W`` of the frames
    aligned to that step (both directions averaged), the step's share of the distance.
    """
    from procalign import dp

    def step_costs(F: Tensor, S: Tensor) -> Tensor:
        logp = L.frame_to_step_log_probs(F, S)
        marg = dp.step_marginals(logp)[0]
        mass = marg.sum(0).clamp_min(1e-12)
        return (-(marg * logp[0]).sum(0) / mass).double()

    was = model.training
    model.eval()
    try:
        out = model.pair(Fa, Fb, K=K)
    finally:
        model.train(was)
    ba, bb = out["bounds_1"], out["bounds_2"]
    ma = L.gather_step_features(Fa, ba, "mean")[0]
    mb = L.gather_step_features(Fb, bb, "mean")[0]
    sim = out["sim"][0]
    a, b = ba[0].tolist(), bb[0].tolist()
    cos = torch.nn.functional.cosine_similarity(ma, mb, dim=-1).tolist()
    cost = (0.5 * (step_costs(Fa, out["S2"]) + step_costs(Fb, out["S1"]))).tolist()
    steps = []
    for k in range(len(a) - 1):
        s = {
            "step": k + 1,
            "frames_a": [a[k], a[k + 1] - 1],
            "frames_b": [b[k], b[k + 1] - 1],
            "cosine": cos[k],
            "block_mean": float(sim[a[k] : a[k + 1], b[k] : b[k + 1]].mean()),
            "cost": cost[k],
        }
        if source_a is not None and source_b is not None:
            s["source_frames_a"] = [int(source_a[a[k]]), int(source_a[a[k + 1] - 1])]
            s["source_frames_b"] = [int(source_b[b[k]]), int(source_b[b[k + 1] - 1])]
        steps.append(s)
    return {"distance": float(out["distance"][0]), "bounds_a": a, "bounds_b": b, "sim": sim,
            "steps": steps}
