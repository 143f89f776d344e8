"""CPA's losses and distance as plain functions over frame features, built only on :mod:`procalign.dp`.

He et al., "Collaborative Weakly Supervised Video Correlation Learning for Procedure-Aware
Instructional Video Analysis", AAAI 2024. Notation: a pair of videos with frame features
F1 (B, N, D) and F2 (B, M, D), K steps.

* :func:`relational_matrix` - ``M = softmax(F1 F2^T / sqrt(D))`` (Sec. 3.2). ``mode="row"``
  normalises over video 2's frames (rows sum to 1, as the public code; not symmetric in the two
  videos); ``mode="symmetric"`` averages the row- and column-softmax, so swapping the videos
  transposes M.
* :func:`mine_steps` - collaborative step mining: the best K-block partition of M
  (:func:`procalign.dp.block_partition`, Eq. 1-5); its value is D_csm(N, M, K) and
  :func:`step_loss` is ``-D_csm`` (Eq. 11).
* :func:`uniform_bounds` - K equal steps (the FSA-only ablation of Table 3).
* :func:`gather_step_features` - one feature per step: a random frame of the step (training), its
  centre frame (evaluation), its first frame, or the mean of its frames.
* :func:`frame_to_step_log_probs` - ``log W``, ``W = softmax_over_steps(F S^T / sqrt(D))``.
* :func:`frame_to_step_nll` - ``-log P(S | F)`` over the strict monotone frame-to-step lattice
  (:func:`procalign.dp.step_forward`, Eq. 6-9, log space), normalised by the number of frames T
  (default, length-robust) or by K^2 (the public code's scaling).
* :func:`alignment_distance` - the symmetric distance of Eq. 10,
  ``0.5 * [nll(F1, S2) + nll(F2, S1)]``; :func:`align_loss` is its mean over positive pairs
  (Eq. 12).

Every function takes per-example ``lengths``; padded frames never enter a value.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from procalign import dp
from procalign.masks import check_lengths, valid_mask

RELATIONAL_MODES = ("row", "symmetric")
STEP_FEATURE_MODES = ("random", "center", "first", "mean")
NORMALIZE_MODES = ("frames", "code", "none")

__all__ = [
    "NORMALIZE_MODES",
    "RELATIONAL_MODES",
    "STEP_FEATURE_MODES",
    "align_loss",
    "alignment_distance",
    "frame_to_step_log_probs",
    "frame_to_step_nll",
    "gather_step_features",
    "mine_steps",
    "relational_matrix",
    "step_loss",
    "uniform_bounds",
    "CPALoss",
]


def _lengths(lengths: Tensor | None, B: int, T: int, name: str, device) -> Tensor:
    return check_lengths(lengths, B, T, name, device)


def _check_features(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(f"{name} must have shape (B, T, D), got {tuple(x.shape)}")


def _check_pair(F1: Tensor, F2: Tensor, n1: str = "F1", n2: str = "F2") -> None:
    _check_features(F1, n1)
    _check_features(F2, n2)
    if F1.shape[0] != F2.shape[0] or F1.shape[2] != F2.shape[2]:
        raise ValueError(f"{n1} {tuple(F1.shape)} and {n2} {tuple(F2.shape)} must agree on B and D")


_mask = valid_mask


def relational_matrix(
    F1: Tensor,
    F2: Tensor,
    lengths_1: Tensor | None = None,
    lengths_2: Tensor | None = None,
    mode: str = "row",
) -> Tensor:
    """CPA's relational matrix ``softmax(F1 F2^T / sqrt(D))`` -> (B, N, M).

    Args:
        F1: (B, N, D) frame features of video 1. F2: (B, M, D) of video 2.
        lengths_1, lengths_2: (B,) valid frames; padded rows/columns get 0.
        mode: ``"row"`` (softmax over video 2's frames, rows sum to 1; the public code) or
            ``"symmetric"`` (mean of the row- and column-softmax; swapping the videos transposes
            the matrix).

    >>> F = torch.eye(3)[None]
    >>> relational_matrix(F, F).sum(-1)
    tensor([[1.0000, 1.0000, 1.0000]])
    """
    _check_pair(F1, F2)
    if mode not in RELATIONAL_MODES:
        raise ValueError(f"mode must be one of {RELATIONAL_MODES}, got {mode!r}")
    B, N, D = F1.shape
    M = F2.shape[1]
    l1 = _lengths(lengths_1, B, N, "lengths_1", F1.device)
    l2 = _lengths(lengths_2, B, M, "lengths_2", F1.device)
    logits = F1 @ F2.transpose(1, 2) / math.sqrt(D)
    m1, m2 = _mask(l1, N), _mask(l2, M)
    valid = m1[:, :, None] & m2[:, None, :]
    # a large finite fill (not -inf) keeps padded rows/columns free of NaN in both passes
    low = torch.finfo(logits.dtype).min / 4
    rows = torch.softmax(logits.masked_fill(~m2[:, None, :], low), dim=2) * valid
    if mode == "row":
        return rows
    cols = torch.softmax(logits.masked_fill(~m1[:, :, None], low), dim=1) * valid
    return 0.5 * (rows + cols)


def mine_steps(
    sim: Tensor,
    K: int,
    lengths_1: Tensor | None = None,
    lengths_2: Tensor | None = None,
    block_score: str = "mean",
    max_over_k: bool = False,
) -> dp.BlockPartitionResult:
    """Collaborative step mining: the best K-block partition of ``sim`` (B, N, M).

    Returns ``values`` (B,) = D_csm(N, M, K) (differentiable, a subgradient through the selected
    blocks) and boundaries ``bounds_n``, ``bounds_m`` (B, K+1): step k of video 1 is frames
    ``bounds_n[b, k]:bounds_n[b, k+1]``. ``max_over_k=True`` takes the value as the max over
    k <= K of D_csm(N, M, k) (the public code's step loss); the boundaries always use exactly K.

    Raises:
        ValueError: K larger than a video's length (each step needs a frame), bad shapes.
    """
    res = dp.block_partition(sim, K, lengths_1, lengths_2, block_score=block_score)
    if not max_over_k or K == 1:
        return res
    values = [res.values]
    for k in range(1, K):
        values.append(
            dp.block_partition(sim, k, lengths_1, lengths_2, block_score=block_score).values
        )
    return dp.BlockPartitionResult(torch.stack(values, 0).max(0).values, res.bounds_n, res.bounds_m)


def step_loss(values: Tensor) -> Tensor:
    """L_step (Eq. 11) = mean over pairs of ``-D_csm``; ``values`` (B,) from :func:`mine_steps`."""
    return -values.mean()


def uniform_bounds(lengths: Tensor, K: int) -> Tensor:
    """K (near-)equal steps per video: (B,) lengths -> (B, K+1) boundaries ``floor(k * T_b / K)``.

    >>> uniform_bounds(torch.tensor([8, 7]), 3).tolist()
    [[0, 2, 5, 8], [0, 2, 4, 7]]
    """
    lengths = torch.as_tensor(lengths).long()
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    if isinstance(K, bool) or not isinstance(K, int) or K < 1:
        raise ValueError(f"K must be an int >= 1, got {K!r}")
    if bool((lengths < K).any()):
        raise ValueError(
            f"K={K} steps need at least K frames per video, got lengths {lengths.tolist()}"
        )
    k = torch.arange(K + 1, device=lengths.device)
    return torch.div(k[None, :] * lengths[:, None], K, rounding_mode="floor")


def gather_step_features(
    F: Tensor, bounds: Tensor, mode: str = "center", generator: torch.Generator | None = None
) -> Tensor:
    """One feature per step: (B, T, D) frames and (B, K+1) boundaries -> (B, K, D).

    Args:
        mode: ``"random"`` (a uniformly drawn frame of each step, CPA's training choice; drawn
            from ``generator`` or torch's global RNG), ``"center"`` (frame
            ``(start + end - 1) // 2``, evaluation), ``"first"`` (the public code's variant) or
            ``"mean"`` (mean of the step's frames).

    >>> F = torch.arange(6.)[None, :, None]
    >>> gather_step_features(F, torch.tensor([[0, 2, 6]]), "center")[..., 0].tolist()
    [[0.0, 3.0]]
    """
    _check_features(F, "F")
    if mode not in STEP_FEATURE_MODES:
        raise ValueError(f"mode must be one of {STEP_FEATURE_MODES}, got {mode!r}")
    B, T, D = F.shape
    bounds = bounds.to(F.device).long()
    if bounds.dim() != 2 or bounds.shape[0] != B or bounds.shape[1] < 2:
        raise ValueError(f"bounds must have shape (B, K+1)=({B}, K+1), got {tuple(bounds.shape)}")
    start, end = bounds[:, :-1], bounds[:, 1:]
    if bool((end <= start).any()) or bool((start < 0).any()) or bool((end > T).any()):
        raise ValueError(
            f"bounds must be strictly increasing within [0, {T}], got {bounds.tolist()}"
        )
    if mode == "mean":
        t = torch.arange(T, device=F.device)
        member = (t[None, None, :] >= start[..., None]) & (t[None, None, :] < end[..., None])
        w = member.to(F.dtype) / (end - start)[..., None].to(F.dtype)
        return w @ F
    if mode == "center":
        idx = torch.div(start + end - 1, 2, rounding_mode="floor")
    elif mode == "first":
        idx = start
    else:
        u = torch.rand(start.shape, generator=generator).to(F.device)
        idx = start + (u * (end - start)).long().clamp_max(end - start - 1)
    return torch.gather(F, 1, idx[..., None].expand(-1, -1, D))


def frame_to_step_log_probs(F: Tensor, S: Tensor, num_steps: Tensor | None = None) -> Tensor:
    """``log W`` with ``W = softmax_over_steps(F S^T / sqrt(D))``: (B, T, D), (B, K, D) -> (B, T, K).

    ``num_steps`` (B,) masks padded steps (their log-probability is -inf).
    """
    _check_pair(F, S, "F", "S")
    B, K, D = S.shape
    logits = F @ S.transpose(1, 2) / math.sqrt(D)
    if num_steps is not None:
        ks = _lengths(num_steps, B, K, "num_steps", F.device)
        logits = logits.masked_fill(~_mask(ks, K)[:, None, :], float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def frame_to_step_nll(
    F: Tensor,
    S: Tensor,
    lengths: Tensor | None = None,
    num_steps: Tensor | None = None,
    normalize: str = "frames",
) -> Tensor:
    """``-log P(S | F)`` over all strict monotone frame-to-step paths (Eq. 6-9) -> (B,).

    Args:
        F: (B, T, D) frame features of one video. S: (B, K, D) step features of the other.
        lengths: (B,) frames; num_steps: (B,) steps (T_b >= K_b is required).
        normalize: ``"frames"`` divides by T_b (default: a per-frame value, comparable across
            lengths), ``"code"`` by K_b^2 (the public code divides by K twice), ``"none"`` keeps
            the raw negative log-likelihood.
    """
    if normalize not in NORMALIZE_MODES:
        raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {normalize!r}")
    _check_pair(F, S, "F", "S")
    B, T, _ = F.shape
    K = S.shape[1]
    lt = _lengths(lengths, B, T, "lengths", F.device)
    lk = _lengths(num_steps, B, K, "num_steps", F.device)
    if bool((lk > lt).any()):
        b = int(torch.nonzero(lk > lt)[0, 0])
        raise ValueError(
            f"frame-to-step alignment needs at least as many frames as steps: pair {b} has "
            f"{int(lt[b])} frames (T) and {int(lk[b])} steps (K)"
        )
    logp = frame_to_step_log_probs(F, S, lk)
    # padded steps are -inf; the lattice never reaches them, but keep the kernel's input finite
    logp = torch.where(torch.isfinite(logp), logp, torch.full_like(logp, -1e4))
    nll = -dp.step_forward(logp, lt, lk)
    if normalize == "frames":
        return nll / lt.to(nll.dtype)
    if normalize == "code":
        return nll / (lk.to(nll.dtype) ** 2)
    return nll


def alignment_distance(
    F1: Tensor,
    S1: Tensor,
    F2: Tensor,
    S2: Tensor,
    lengths_1: Tensor | None = None,
    lengths_2: Tensor | None = None,
    num_steps: Tensor | None = None,
    normalize: str = "frames",
) -> Tensor:
    """Eq. 10: ``0.5 * [nll(F1, S2) + nll(F2, S1)]`` -> (B,); symmetric in the two videos.

    Args:
        F1: (B, N, D), S1: (B, K, D) frames and steps of video 1; F2: (B, M, D), S2: (B, K, D)
            of video 2. lengths_1, lengths_2: (B,); num_steps: (B,) (default K).
        normalize: see :func:`frame_to_step_nll`.
    """
    d12 = frame_to_step_nll(F1, S2, lengths_1, num_steps, normalize)
    d21 = frame_to_step_nll(F2, S1, lengths_2, num_steps, normalize)
    return 0.5 * (d12 + d21)


def align_loss(distances: Tensor, same: Tensor | None = None) -> Tensor:
    """L_align (Eq. 12): mean of ``distances`` (B,) over positive pairs (``same`` (B,) bool).

    Returns 0 (keeping the graph) when the batch has no positive pair.
    """
    if same is None:
        return distances.mean()
    same = same.to(distances.device).bool()
    if same.shape != distances.shape:
        raise ValueError(f"same {tuple(same.shape)} must match distances {tuple(distances.shape)}")
    if not bool(same.any()):
        return distances.sum() * 0.0
    return distances[same].mean()


def cross_entropy_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """L_task for verification (Eq. 13): cross-entropy over training procedures.

    ``logits`` (B, C), ``labels`` (B,) class indices; entries with label -1 are ignored.
    """
    return Fn.cross_entropy(logits, labels.long(), ignore_index=-1)


def score_regression_loss(pred: Tensor, target: Tensor) -> Tensor:
    """L_task for quality assessment (Eq. 14): mean squared error of (B,) scores."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match")
    return Fn.mse_loss(pred, target.to(pred.dtype))


class CPALoss(nn.Module):
    """The training loss of CPA: ``w_task L_task + w_align L_align + w_step L_step`` (Eq. 12).

    ``forward(model, batch) -> (loss, logs)`` with ``batch`` holding ``x1``, ``x2``
    (B, T, D_in), ``same`` (B,) bool, ``labels_1``, ``labels_2`` (B,) class indices (-1 unknown)
    and, for quality assessment, ``scores_1``, ``scores_2`` (B,). ``model`` is a
    :class:`procalign.models.cpa.CPAModel` (its pair structure, heads and step pooling).

    L_step and L_align use the positive pairs only (the DPs run only on those); the task loss is
    the cross-entropy of both videos of every pair (verification) or the squared error of the
    predicted score difference in units of ``score_scale`` (quality). The public code weights the
    terms 0.5 / 0.5 / 1.0 (the default); the paper sums them with equal weights.
    """

    def __init__(
        self, task: float = 0.5, align: float = 0.5, step: float = 1.0, score_scale: float = 100.0
    ) -> None:
        super().__init__()
        for name, w in (("task", task), ("align", align), ("step", step)):
            if not w >= 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {w}")
        self.w_task, self.w_align, self.w_step = float(task), float(align), float(step)
        self.score_scale = float(score_scale)

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        F1, F2 = model.embed_pair(batch["x1"], batch["x2"])
        same = batch["same"].bool()
        logs: dict[str, float] = {}
        zero = F1.sum() * 0.0
        l_step = l_align = l_task = zero
        out = None
        # a rank's slice of a bigger batch (torchrun; procalign.train.distributed): the terms
        # are sums over the slice divided by the *batch's* counts, times B / rows (the loop
        # weights a slice's loss by rows / B), so the ranks' step is the one-process step
        part = _slice_counts(batch, F1.shape[0])
        if bool(same.any()) and (self.w_align > 0 or self.w_step > 0 or model.task == "quality"):
            out = model.pair(F1[same], F2[same])
            if part is None:
                l_align = align_loss(out["distance"])
            else:
                l_align = out["distance"].sum() * part["pos"]
            if out["values"] is not None:
                l_step = step_loss(out["values"]) if part is None else -out["values"].sum() * part["pos"]
        if model.task == "verification":
            if model.classifier is not None and self.w_task > 0:
                logits = model.video_logits(torch.cat([F1, F2]))
                labels = torch.cat([batch["labels_1"], batch["labels_2"]])
                if part is None:
                    l_task = cross_entropy_loss(logits, labels)
                else:
                    l_task = Fn.cross_entropy(logits, labels.long(), ignore_index=-1,
                                              reduction="sum") * part["labels"]
                logs["acc"] = float((logits.argmax(-1) == labels).float().mean())
        elif out is not None:
            target = (batch["scores_1"][same] - batch["scores_2"][same]) / self.score_scale
            pred = model.score_delta(F1[same], F2[same], out["bounds_1"], out["bounds_2"])
            if part is None:
                l_task = score_regression_loss(pred, target)
            else:
                l_task = ((pred - target.to(pred.dtype)) ** 2).sum() * part["pos"]
        loss = self.w_task * l_task + self.w_align * l_align + self.w_step * l_step
        logs.update(
            l_task=float(l_task.detach()),
            l_align=float(l_align.detach()),
            l_step=float(l_step.detach()),
        )
        return loss, logs


def _slice_counts(batch: dict[str, Tensor], rows: int) -> dict[str, float] | None:
    """For a slice of a batch (``rows`` of its ``rows_total``): the factors ``B / (rows x
    count)`` that turn sums over the slice into its share of the batch's means (``pos``: over
    positive pairs, ``labels``: over known labels of both videos); None for a whole batch."""
    total = batch.get("rows_total")
    if total is None or not len(total) or int(total[0]) == rows:
        return None
    B = float(total[0])
    pos, labels = float(batch["pos_total"][0]), float(batch["labels_total"][0])
    return {"pos": B / (rows * max(pos, 1.0)), "labels": B / (rows * max(labels, 1.0))}
