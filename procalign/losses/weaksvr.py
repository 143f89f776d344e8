"""WeakSVR's losses (Dong et al., CVPR 2023): video-paragraph InfoNCE and frame-sentence CE.

Shapes: ``B`` videos in a batch, ``N`` sampled frames per video, ``K`` (padded) step sentences per
video, ``D`` the joint embedding size.

* :func:`info_nce` (Eqs. 4-6): symmetric InfoNCE between video embeddings ``v`` (B, D) and
  paragraph embeddings ``l`` (B, D) on cosine similarity with a (learnable) temperature. Eq. 4's
  denominator is read as ``sum_j exp(phi(v_i, l_j) / tau)`` (the printed ``phi(v_j, l_j)`` is a
  typo). With ``groups``, the other videos of the same procedure are *removed* from the
  denominator (their paragraph is the same sentence list, so they are not negatives).
* :func:`gumbel_st` (Eq. 8): straight-through Gumbel-softmax: one-hot forward, soft backward.
* pseudo-labels (Eqs. 9-12, Sec. 5.3): :func:`sort_labels`, :func:`viterbi_labels` (the monotone
  lattice with skips of :func:`procalign.dp.step_viterbi`, in log space), :func:`split_labels`.
* :func:`fine_loss` (Eq. 7): cross-entropy of the Gumbel predictions against the pseudo-labels,
  frames -> steps and steps -> frames, padded steps masked in both directions.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

PSEUDO_LABELS = ("sort", "viterbi", "split", "none")

__all__ = [
    "PSEUDO_LABELS",
    "cosine_matrix",
    "fine_loss",
    "gumbel_st",
    "info_nce",
    "sort_labels",
    "split_labels",
    "step_mask",
    "viterbi_labels",
]


def _check(x: Tensor, name: str, ndim: int, shape: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({shape}), got {type(x).__name__}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must have shape ({shape}), got {tuple(x.shape)}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")


def info_nce(v: Tensor, l: Tensor, logit_scale: Tensor | float, groups: Tensor | None = None) -> Tensor:  # noqa: E741
    """Symmetric InfoNCE (Eq. 6 = Eq. 4 both ways), mean over the batch.

    Args:
        v: (B, D) video embeddings. l: (B, D) paragraph embeddings (row i describes video i).
        logit_scale: 1 / tau (a tensor keeps it learnable).
        groups: (B,) procedure ids; other rows of the same id leave the denominators.

    >>> v = torch.eye(3); round(float(info_nce(v, v, 10.0)), 4)  # well separated: near 0
    0.0002
    """
    _check(v, "v", 2, "B, D")
    _check(l, "l", 2, "B, D")
    if v.shape != l.shape:
        raise ValueError(f"v {tuple(v.shape)} and l {tuple(l.shape)} must have the same shape")
    logits = logit_scale * F.normalize(v, dim=-1) @ F.normalize(l, dim=-1).T  # (B, B)
    if groups is not None:
        groups = torch.as_tensor(groups, device=v.device)
        if groups.shape != (v.shape[0],):
            raise ValueError(f"groups must have shape (B={v.shape[0]},), got {tuple(groups.shape)}")
        same = groups[:, None] == groups[None, :]
        same &= ~torch.eye(len(groups), dtype=torch.bool, device=v.device)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(v.shape[0], device=v.device)
    return F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)


def gumbel_st(logits: Tensor, tau: float = 1.0, mask: Tensor | None = None,
              noise: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Straight-through Gumbel-softmax over the last dim: forward one-hot, gradient of the soft
    sample ``softmax((logits + g) / tau)``. ``mask`` (same shape, bool) marks allowed entries;
    ``noise`` fixes ``g`` (tests), else it is drawn from ``generator``."""
    if tau <= 0:
        raise ValueError(f"Gumbel temperature must be > 0, got {tau}")
    if noise is None:
        u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype,
                       device=logits.device if generator is None else generator.device)
        u = u.to(logits.device).clamp(1e-10, 1.0 - 1e-7)
        noise = -torch.log((-torch.log(u)).clamp_min(1e-10))
    z = (logits + noise) / tau
    if mask is not None:
        z = z.masked_fill(~mask, float("-inf"))
    soft = z.softmax(dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), logits.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft


def step_mask(num_steps: Tensor, K: int) -> Tensor:
    """(B,) step counts -> (B, K) bool, True on real (unpadded) steps."""
    return torch.arange(K, device=num_steps.device)[None, :] < num_steps[:, None]


def cosine_matrix(H: Tensor, S: Tensor) -> Tensor:
    """(B, N, D) frames x (B, K, D) sentences -> (B, N, K) cosine similarities."""
    _check(H, "H", 3, "B, N, D")
    _check(S, "S", 3, "B, K, D")
    return F.normalize(H, dim=-1) @ F.normalize(S, dim=-1).transpose(1, 2)


def sort_labels(pred: Tensor) -> Tensor:
    """Eq. 9: (B, N, K) one-hot predictions -> (B, N) their argmax indices sorted in time."""
    return pred.argmax(dim=-1).sort(dim=-1).values


def viterbi_labels(sim: Tensor, num_steps: Tensor) -> Tensor:
    """Eqs. 10-12: (B, N, K) similarities -> (B, N) the best non-decreasing labelling (stay or move
    forward, skipping allowed, any first and last step), scores = similarities (log space: a path's
    score is the sum of its cells). Padded steps are never used."""
    from procalign.dp import step_viterbi

    B, N, _ = sim.shape
    # labels only (no gradient): the compiled CPU kernel, whatever device the model is on
    return step_viterbi(sim.detach().double().cpu(), torch.full((B,), N), num_steps.cpu(),
                        skip=True).labels.to(sim.device)


def split_labels(N: int, num_steps: Tensor) -> Tensor:
    """Sec. 5.3 splitting as labels: frame t of N goes to step ``floor(t * K_b / N)`` (uniform
    parts); (B,) step counts -> (B, N)."""
    t = torch.arange(N, device=num_steps.device)[None, :]
    return (t * num_steps[:, None]) // N


def _ce_rows(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Mean cross-entropy of rows ``logits`` (R, C) against ``target`` (R,) over ``valid`` rows."""
    if not valid.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], target[valid])


def fine_loss(
    H: Tensor,
    S: Tensor,
    num_steps: Tensor,
    pseudo: str = "sort",
    tau: float = 1.0,
    scale: float = 1.0,
    generator: torch.Generator | None = None,
    logits: str = "gumbel",
) -> tuple[Tensor, Tensor]:
    """Eq. 7: L_fine for frames H (B, N, D) and sentences S (B, K, D) with ``num_steps`` (B,) real
    steps; returns (loss, frame pseudo-labels (B, N)).

    Frames -> steps: each frame's Gumbel prediction over its video's real steps (row of the
    cosine matrix, ``scale``-times, temperature ``tau``) against the frame's pseudo-label.
    Steps -> frames: each real step's prediction over the N frames against the *first* frame the
    pseudo-labels give it (steps given no frame are masked out of this direction). The logits of
    both cross-entropies are the straight-through one-hot predictions (the public code's reading
    of Eq. 7: the loss gradient reaches the similarities through the soft Gumbel sample).

    ``logits="similarity"`` takes the cross-entropies over the scaled similarities themselves
    (the pseudo-labels still come from the Gumbel sample / Viterbi): a full softmax gradient
    instead of the straight-through one.

    ``pseudo="split"`` (Sec. 5.3) averages the similarities over N/K uniform frame parts into a
    (K, K) matrix whose diagonal is the target, both directions. ``"none"``: zero.
    """
    if pseudo not in PSEUDO_LABELS:
        raise ValueError(f"pseudo-labels must be one of {list(PSEUDO_LABELS)}, got {pseudo!r}")
    sim = cosine_matrix(H, S)  # (B, N, K)
    B, N, K = sim.shape
    num_steps = torch.as_tensor(num_steps, device=sim.device).long()
    if num_steps.shape != (B,) or num_steps.min() < 1 or num_steps.max() > K:
        raise ValueError(f"num_steps must be (B={B},) values in [1, K={K}], got {num_steps.tolist()}")
    smask = step_mask(num_steps, K)  # (B, K)
    if pseudo == "none":
        return sim.sum() * 0.0, torch.full((B, N), -1, device=sim.device)
    if logits not in ("gumbel", "similarity"):
        raise ValueError(f"fine-loss logits must be 'gumbel' or 'similarity', got {logits!r}")
    scaled = scale * sim
    if pseudo == "split":
        return _split_loss(scaled, num_steps, tau, generator), split_labels(N, num_steps)
    pred = gumbel_st(scaled, tau, smask[:, None, :].expand(B, N, K), generator=generator)
    labels = sort_labels(pred) if pseudo == "sort" else viterbi_labels(scaled, num_steps)
    if logits == "similarity":
        pred = scaled.masked_fill(~smask[:, None, :], float("-inf"))
    f2s = F.cross_entropy(pred.reshape(B * N, K), labels.reshape(-1))
    # steps -> frames: the first frame of each step
    first = torch.full((B, K), N, device=sim.device, dtype=torch.long)
    t = torch.arange(N, device=sim.device).expand(B, N)
    first = first.scatter_reduce(1, labels, t, reduce="amin")
    got = smask & (first < N)
    pred_t = (scaled.transpose(1, 2) if logits == "similarity"
              else gumbel_st(scaled.transpose(1, 2), tau, generator=generator))  # (B, K, N)
    s2f = _ce_rows(pred_t.reshape(B * K, N), first.clamp_max(N - 1).reshape(-1), got.reshape(-1))
    return f2s + s2f, labels


def _split_loss(logits: Tensor, num_steps: Tensor, tau: float, generator) -> Tensor:
    B, N, K = logits.shape
    total = logits.sum() * 0.0
    for b in range(B):
        k = int(num_steps[b])
        m = logits[b, :, :k]  # (N, k)
        if N >= k:  # average frames over k uniform parts
            part = (torch.arange(N, device=m.device) * k) // N
            sq = torch.zeros(k, k, dtype=m.dtype, device=m.device).index_add(0, part, m)
            sq = sq / torch.bincount(part, minlength=k).clamp_min(1)[:, None].to(m.dtype)
        else:  # fewer frames than steps: average sentences over N parts
            part = (torch.arange(k, device=m.device) * N) // k
            sq = torch.zeros(N, N, dtype=m.dtype, device=m.device).index_add(1, part, m)
            sq = sq / torch.bincount(part, minlength=N).clamp_min(1)[None, :].to(m.dtype)
        target = torch.arange(sq.shape[0], device=m.device)
        pr = gumbel_st(sq, tau, generator=generator)
        pc = gumbel_st(sq.T, tau, generator=generator)
        total = total + F.cross_entropy(pr, target) + F.cross_entropy(pc, target)
    return total / B
