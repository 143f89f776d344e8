"""Verification distances that serve as baselines next to CPA, over any frame embeddings.

Each is a function ``(F1 (B, N, D), F2 (B, M, D), lengths_1 (B,), lengths_2 (B,)) -> (B,)``
(lower = more likely the same procedure), so the evaluation harness scores CPA and every baseline
on exactly the same embeddings and the same SVIP 3-clip protocol:

* :func:`video_l2` - the video-level baseline (first row of CPA's Table 3; the distance of the
  video and visual-language methods of Table 1): L2 distance between the L2-normalised mean-pooled
  frame embeddings. A *bag of frames*: it cannot see order (a permutation of the frames leaves it
  unchanged), so on order-only negatives it is at chance by construction.
* :func:`pyramid_l2` - an order-aware video-level baseline: a temporal pyramid (the means of the
  whole video, its halves and its quarters, each L2-normalised, concatenated), L2 distance.
* :func:`dtw_distance` - DTW over the cosine frame costs, divided by the length of the optimal
  path (a per-aligned-pair cost).
* :func:`soft_dtw_distance` - the soft-DTW *divergence* (soft-DTW minus half of each
  self-alignment, zero for identical sequences) over cosine costs, divided by N + M. The raw
  soft-DTW value is not a distance (it can be negative and is not zero on identical inputs).

The frame-to-step ablation with uniformly split steps (Table 3, "FSA only") and CPA itself need
the model's step features; they live in :mod:`procalign.methods.cpa` (``CPAModel.pair_distance``
with ``step_mining="uniform"``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from procalign import dp

__all__ = ["BASELINES", "dtw_distance", "dtw_window_distance", "pyramid_l2", "soft_dtw_distance", "video_l2"]


def _check(F1: Tensor, F2: Tensor, lengths_1, lengths_2) -> tuple[Tensor, Tensor]:
    for name, F in (("F1", F1), ("F2", F2)):
        if not isinstance(F, Tensor) or F.dim() != 3:
            shape = tuple(F.shape) if isinstance(F, Tensor) else type(F).__name__
            raise ValueError(f"{name} must be a (B, T, D) tensor, got {shape}")
    if F1.shape[0] != F2.shape[0] or F1.shape[2] != F2.shape[2]:
        raise ValueError(f"F1 {tuple(F1.shape)} and F2 {tuple(F2.shape)} must agree on B and D")
    B = F1.shape[0]
    l1 = torch.full((B,), F1.shape[1]) if lengths_1 is None else torch.as_tensor(lengths_1).long()
    l2 = torch.full((B,), F2.shape[1]) if lengths_2 is None else torch.as_tensor(lengths_2).long()
    return l1.to(F1.device), l2.to(F1.device)


def video_l2(F1: Tensor, F2: Tensor, lengths_1=None, lengths_2=None) -> Tensor:
    """``|| norm(mean F1) - norm(mean F2) ||_2`` over valid frames -> (B,), in [0, 2].

    >>> F = torch.ones(1, 4, 3)
    >>> video_l2(F, F).tolist()
    [0.0]
    """
    l1, l2 = _check(F1, F2, lengths_1, lengths_2)

    def pooled(F: Tensor, lengths: Tensor) -> Tensor:
        m = (torch.arange(F.shape[1], device=F.device)[None, :] < lengths[:, None]).to(F.dtype)
        mean = (F * m[..., None]).sum(1) / lengths[:, None].to(F.dtype)
        return torch.nn.functional.normalize(mean, dim=-1)

    return (pooled(F1, l1) - pooled(F2, l2)).norm(dim=-1)


def pyramid_l2(
    F1: Tensor, F2: Tensor, lengths_1=None, lengths_2=None, levels: tuple[int, ...] = (1, 2, 4)
) -> Tensor:
    """Temporal-pyramid video distance -> (B,): level l splits the valid frames into l equal
    parts (at least one frame each), every part's mean is L2-normalised, all are concatenated and
    normalised again. Unlike :func:`video_l2` it changes when the frames are reordered.

    >>> F = torch.arange(8.).reshape(1, 4, 2)
    >>> bool(pyramid_l2(F, F.flip(1)) > 0), float(video_l2(F, F.flip(1))) == 0.0
    (True, True)
    """
    l1, l2 = _check(F1, F2, lengths_1, lengths_2)

    def pyramid(F: Tensor, lengths: Tensor) -> Tensor:
        t = torch.arange(F.shape[1], device=F.device)[None, :].to(F.dtype)
        n = lengths[:, None].to(F.dtype)
        parts = []
        for level in levels:
            part = torch.clamp((t * level / n).floor(), max=level - 1)  # (B, T) part index
            for k in range(level):
                m = ((part == k) & (t < n)).to(F.dtype)
                mean = (F * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
                parts.append(torch.nn.functional.normalize(mean, dim=-1))
        return torch.nn.functional.normalize(torch.cat(parts, -1), dim=-1)

    return (pyramid(F1, l1) - pyramid(F2, l2)).norm(dim=-1)


def dtw_distance(
    F1: Tensor, F2: Tensor, lengths_1=None, lengths_2=None, cost: str = "cosine"
) -> Tensor:
    """DTW cost of the best path over ``cost`` frame costs, per aligned pair -> (B,)."""
    l1, l2 = _check(F1, F2, lengths_1, lengths_2)
    costs = dp.pairwise_costs(F1, F2, cost)
    res = dp.dtw(costs, l1, l2)
    return res.values / res.path.sum(dim=(1, 2)).to(res.values.dtype)


def dtw_window_distance(
    F1: Tensor,
    F2: Tensor,
    lengths_1=None,
    lengths_2=None,
    fraction: float = 0.2,
    cost: str = "cosine",
) -> Tensor:
    """The worst stretch of the best DTW path: F1 (B, N, D), F2 (B, M, D) -> (B,), the largest
    mean ``cost`` over ``round(fraction * L)`` consecutive cells of the path (L its length; at
    least 1 cell). ``lengths_1`` / ``lengths_2`` (B,) as in :func:`dtw_distance`.

    ``dtw_distance`` averages over the whole path, so a step that one video skips (a few frames
    that the path absorbs at a high cost) is diluted by every well-matched frame; a procedure is
    wrong as soon as one stretch is, and this distance scores that stretch. ``fraction=1`` gives
    ``dtw_distance``; a fraction below ``1 / L`` gives the path's largest cell cost.

    >>> import torch
    >>> a, b, c = torch.eye(3)
    >>> x = torch.stack([a, a, a, b, b, c, c, c])[None]  # steps a, b, c
    >>> y = torch.stack([a, a, a, a, c, c, c, c])[None]  # b skipped
    >>> float(dtw_distance(x, y)[0]), float(dtw_window_distance(x, y, fraction=0.25)[0])
    (0.25, 1.0)
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    l1, l2 = _check(F1, F2, lengths_1, lengths_2)
    costs = dp.pairwise_costs(F1, F2, cost)
    path = dp.dtw(costs, l1, l2).path.bool()
    out = torch.empty(costs.shape[0], dtype=costs.dtype, device=costs.device)
    for b in range(costs.shape[0]):
        # a monotone path's cells in row-major order are its cells in path order
        c = costs[b][path[b]]
        k = max(1, min(len(c), int(round(fraction * len(c)))))
        s = torch.cat([c.new_zeros(1), c.cumsum(0)])
        out[b] = ((s[k:] - s[:-k]) / k).max()
    return out


def soft_dtw_distance(
    F1: Tensor,
    F2: Tensor,
    lengths_1=None,
    lengths_2=None,
    gamma: float = 0.1,
    cost: str = "cosine",
) -> Tensor:
    """Soft-DTW divergence over ``cost`` frame costs, divided by N + M -> (B,)."""
    l1, l2 = _check(F1, F2, lengths_1, lengths_2)
    div = dp.soft_dtw_divergence(F1, F2, gamma, l1, l2, cost=cost)
    return div / (l1 + l2).to(div.dtype)


#: name -> distance function over (F1, F2, lengths_1, lengths_2); extra settings via partial.
BASELINES: dict[str, Callable[..., Tensor]] = {
    "video_l2": video_l2,
    "pyramid_l2": pyramid_l2,
    "dtw": dtw_distance,
    "dtw_window": dtw_window_distance,
    "soft_dtw": soft_dtw_distance,
}
