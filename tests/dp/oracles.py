"""Brute-force enumerators: list every structure of a tiny input and reduce with the semiring.

The simplest code possible, never skipped. Inputs: N, M, T <= 6, K <= 3.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from procalign.dp.semiring import Semiring


def grid_paths(N: int, M: int) -> list[list[tuple[int, int]]]:
    """Every monotone path from (0, 0) to (N-1, M-1) with moves down, right, diagonal."""
    if (N, M) == (1, 1):
        return [[(0, 0)]]
    paths = []
    for di, dj in ((1, 1), (1, 0), (0, 1)):
        pi, pj = N - 1 - di, M - 1 - dj
        if pi >= 0 and pj >= 0:
            paths += [p + [(N - 1, M - 1)] for p in grid_paths(pi + 1, pj + 1)]
    return paths


def step_labelings(T: int, K: int, skip: bool) -> list[tuple[int, ...]]:
    """Every labelling of T frames with K steps allowed by the strict or skip lattice."""
    out = []
    for lab in itertools.product(range(K), repeat=T):
        diffs = [b - a for a, b in zip(lab, lab[1:], strict=False)]
        if skip:
            ok = all(d >= 0 for d in diffs)
        else:
            ok = lab[0] == 0 and lab[-1] == K - 1 and all(d in (0, 1) for d in diffs)
        if ok:
            out.append(lab)
    return out


def block_partitions(N: int, M: int, K: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Every pair of boundary sequences 0 = a_0 < ... < a_K = N and the same for M."""
    rows = [(0, *c, N) for c in itertools.combinations(range(1, N), K - 1)]
    cols = [(0, *c, M) for c in itertools.combinations(range(1, M), K - 1)]
    return [(r, c) for r in rows for c in cols]


def _reduce(sr: Semiring, items: list[Tensor]) -> Tensor:
    return sr.sum(torch.stack(items), dim=0)


def _product(sr: Semiring, items: list[Tensor]) -> Tensor:
    out = items[0]
    for x in items[1:]:
        out = sr.times(out, x)
    return out


def grid_value(scores: Tensor, sr: Semiring) -> Tensor:
    N, M = scores.shape
    return _reduce(sr, [_product(sr, [scores[c] for c in p]) for p in grid_paths(N, M)])


def step_value(potentials: Tensor, sr: Semiring, skip: bool) -> Tensor:
    T, K = potentials.shape
    labs = step_labelings(T, K, skip)
    return _reduce(sr, [_product(sr, [potentials[t, k] for t, k in enumerate(lab)]) for lab in labs])


def block_score(sim: Tensor, r0: int, r1: int, c0: int, c1: int, kind: str) -> Tensor:
    area = (r1 - r0) * (c1 - c0)
    return sim[r0:r1, c0:c1].sum() / (area if kind == "mean" else area**0.5)


def block_value(sim: Tensor, K: int, sr: Semiring, kind: str = "mean") -> Tensor:
    N, M = sim.shape
    vals = []
    for r, c in block_partitions(N, M, K):
        vals.append(_product(sr, [block_score(sim, r[k], r[k + 1], c[k], c[k + 1], kind) for k in range(K)]))
    return _reduce(sr, vals)


def best_block_partition(sim: Tensor, K: int, kind: str = "mean"):
    """(value, rows, cols) of the best partition; ties to the first in enumeration order."""
    best = None
    N, M = sim.shape
    for r, c in block_partitions(N, M, K):
        v = sum(float(block_score(sim, r[k], r[k + 1], c[k], c[k + 1], kind)) for k in range(K))
        if best is None or v > best[0] + 1e-12:
            best = (v, r, c)
    return best
