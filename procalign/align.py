"""Align two feature sequences: DTW, soft-DTW and CPA-style step mining in one call.

>>> import numpy as np
>>> from procalign.align import align_pair
>>> a = np.repeat(np.eye(3), 4, axis=0)            # 12 frames, 3 steps
>>> b = np.repeat(np.eye(3), [2, 5, 3], axis=0)    # 10 frames, same steps, other timing
>>> r = align_pair(a, b, steps=3)
>>> r.bounds_a.tolist(), r.bounds_b.tolist()
([0, 4, 8, 12], [0, 2, 7, 10])
>>> round(r.dtw_distance, 6)
0.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from procalign import dp

_SIMS = ("cosine", "relational")


@dataclass
class PairAlignment:
    """Everything :func:`align_pair` found for sequences A (N, D) and B (M, D).

    Attributes:
        dtw_distance: DTW cost of the best path divided by the path length (per aligned pair).
        soft_dtw_distance: soft-DTW value (gamma) divided by N + M.
        soft_dtw_divergence: soft-DTW divergence, normalised by N + M (0 when A == B).
        path: (N, M) 0/1 DTW alignment matrix.
        sim: (N, M) similarity used for step mining.
        bounds_a, bounds_b: (K+1,) step boundaries: step k is frames ``bounds[k]:bounds[k+1]``.
        block_scores: (K,) mean similarity inside each mined block.
        steps_value: total block score (CPA's D_csm(N, M, K)).
    """

    dtw_distance: float
    soft_dtw_distance: float
    soft_dtw_divergence: float
    path: np.ndarray
    sim: np.ndarray
    bounds_a: np.ndarray
    bounds_b: np.ndarray
    block_scores: np.ndarray
    steps_value: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "dtw_distance": self.dtw_distance,
            "soft_dtw_distance": self.soft_dtw_distance,
            "soft_dtw_divergence": self.soft_dtw_divergence,
            "steps_value": self.steps_value,
            "bounds_a": self.bounds_a.tolist(),
            "bounds_b": self.bounds_b.tolist(),
            "block_scores": self.block_scores.tolist(),
            "settings": self.settings,
        }


def _as_sequence(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x, dtype=np.float64) if not isinstance(x, torch.Tensor) else x)
    if t.dim() != 2:
        raise ValueError(f"{name} must be a (T, D) feature sequence, got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t.double()


def similarity(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """(N, D), (M, D) -> (N, M): cosine similarity, or CPA's relational matrix
    ``softmax(A B^T / sqrt(D))`` over B's frames (``kind="relational"``)."""
    if kind == "cosine":
        return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    if kind == "relational":
        return torch.softmax(a @ b.T / a.shape[-1] ** 0.5, dim=-1)
    raise ValueError(f"sim must be one of {_SIMS}, got {kind!r}")


def align_pair(
    a,
    b,
    steps: int = 6,
    gamma: float = 0.1,
    cost: str = "cosine",
    sim: str = "cosine",
    block_score: str = "sqrt_area",
) -> PairAlignment:
    """Align A (N, D) and B (M, D) (numpy arrays or tensors).

    ``cost`` is the frame cost for DTW/soft-DTW (``"cosine"``, ``"sqeuclidean"``, ``"euclidean"``);
    ``sim`` the similarity for step mining (``"cosine"`` or ``"relational"``); ``steps`` the number
    K of blocks to mine (K <= min(N, M)); ``block_score`` ``"sqrt_area"`` (default here) or
    ``"mean"`` (CPA's Eq. 1). On features that were not trained for step mining, the mean favours
    tiny blocks around the single most similar cells, while sum/sqrt(area) recovers step
    boundaries; CPA's training (L_step) is what makes the mean usable, so the CPA model keeps it.
    """
    A = _as_sequence(a, "a")
    B = _as_sequence(b, "b")
    if A.shape[1] != B.shape[1]:
        raise ValueError(f"a and b must have the same feature size D, got {A.shape[1]} and {B.shape[1]}")
    N, M = A.shape[0], B.shape[0]
    if steps > min(N, M):
        raise ValueError(f"steps={steps} is larger than the shorter sequence ({min(N, M)} frames)")
    costs = dp.pairwise_costs(A[None], B[None], cost)
    hard = dp.dtw(costs)
    path = hard.path[0]
    soft = dp.soft_dtw(costs, gamma)
    div = dp.soft_dtw_divergence(A[None], B[None], gamma, cost=cost)
    S = similarity(A, B, sim)
    part = dp.block_partition(S[None], steps, block_score=block_score)
    ba, bb = part.bounds_n[0].numpy(), part.bounds_m[0].numpy()
    block_means = np.array(
        [float(S[ba[k] : ba[k + 1], bb[k] : bb[k + 1]].mean()) for k in range(steps)]
    )
    return PairAlignment(
        dtw_distance=float(hard.values[0]) / float(path.sum()),
        soft_dtw_distance=float(soft[0]) / (N + M),
        soft_dtw_divergence=float(div[0]) / (N + M),
        path=path.numpy(),
        sim=S.numpy(),
        bounds_a=ba,
        bounds_b=bb,
        block_scores=block_means,
        steps_value=float(part.values[0]),
        settings={"steps": steps, "gamma": gamma, "cost": cost, "sim": sim, "block_score": block_score},
    )
