"""Slow cell-by-cell versions of the DPs, one example at a time: a second opinion for tests.

They follow the recursions in the module docstrings literally, with Python loops over cells and
0-dim tensors (so autograd works), and share nothing with the vectorised or compiled paths except
the semiring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from procalign.dp.semiring import Semiring


def _plus(sr: Semiring, xs: list[Tensor]) -> Tensor:
    return sr.sum(torch.stack(xs), dim=0)


def grid(scores: Tensor, sr: Semiring) -> Tensor:
    """scores (N, M) -> value of the grid lattice (0-dim)."""
    N, M = scores.shape
    R: dict[tuple[int, int], Tensor] = {}
    for i in range(N):
        for j in range(M):
            if i == 0 and j == 0:
                R[i, j] = scores[0, 0]
                continue
            preds = [R[p] for p in ((i - 1, j - 1), (i - 1, j), (i, j - 1)) if p in R]
            R[i, j] = sr.times(scores[i, j], _plus(sr, preds))
    return R[N - 1, M - 1]


def step(potentials: Tensor, sr: Semiring, skip: bool = False) -> Tensor:
    """potentials (T, K) -> value of the strict or skip-allowed step lattice (0-dim)."""
    T, K = potentials.shape
    A: dict[tuple[int, int], Tensor] = {}
    for k in range(K):
        if skip or k == 0:
            A[0, k] = potentials[0, k]
    for t in range(1, T):
        for k in range(K):
            if skip:
                preds = [A[t - 1, q] for q in range(k + 1) if (t - 1, q) in A]
            else:
                preds = [A[t - 1, q] for q in (k - 1, k) if (t - 1, q) in A]
            if preds:
                A[t, k] = sr.times(potentials[t, k], _plus(sr, preds))
    if skip:
        return _plus(sr, [A[T - 1, k] for k in range(K) if (T - 1, k) in A])
    return A[T - 1, K - 1]


def block(sim: Tensor, K: int, sr: Semiring, block_score: str = "mean") -> Tensor:
    """sim (N, M) -> value of the K-block partition lattice (0-dim)."""
    N, M = sim.shape

    def score(a: int, b: int, i: int, j: int) -> Tensor:
        area = (i - a) * (j - b)
        total = sim[a:i, b:j].sum()
        return total / (area if block_score == "mean" else area**0.5)

    D: dict[tuple[int, int, int], Tensor] = {}
    for i in range(1, N + 1):
        for j in range(1, M + 1):
            D[i, j, 1] = score(0, 0, i, j)
    for k in range(2, K + 1):
        for i in range(k, N + 1):
            for j in range(k, M + 1):
                cands = [
                    sr.times(D[a, b, k - 1], score(a, b, i, j))
                    for a in range(k - 1, i)
                    for b in range(k - 1, j)
                ]
                D[i, j, k] = _plus(sr, cands)
    return D[N, M, K]
