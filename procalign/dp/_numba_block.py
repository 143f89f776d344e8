"""Compiled CPU kernel for the K-block diagonal partition (CPA's collaborative step mining)."""

from __future__ import annotations

import numba as nb
import numpy as np

NEG = -1e30
_JIT = {"cache": True, "nogil": True}
#: Below this many cells a batch runs on one thread: fork-join costs more than it saves.
PARALLEL_MIN_WORK = 200_000


@nb.njit(**_JIT)
def _block_forward_one(S, ln, lm, K, sqrt_area, out, bn, bm, e):  # pragma: no cover - compiled
    n = ln[e]
    m = lm[e]
    P = np.zeros((n + 1, m + 1))
    for i in range(n):
        acc = 0.0
        for j in range(m):
            acc += S[e, i, j]
            P[i + 1, j + 1] = P[i, j + 1] + acc
    size = max(n, m) + 1
    f = np.zeros(size)
    for x in range(1, size):
        f[x] = 1.0 / np.sqrt(x) if sqrt_area else 1.0 / x
    D = np.full((K + 1, n + 1, m + 1), NEG)
    arg_a = np.zeros((K + 1, n + 1, m + 1), dtype=np.int32)
    arg_b = np.zeros((K + 1, n + 1, m + 1), dtype=np.int32)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            D[1, i, j] = P[i, j] * f[i] * f[j]
    for k in range(2, K + 1):
        Dk = D[k - 1]
        for i in range(k, n + 1):
            for j in range(k, m + 1):
                pij = P[i, j]
                best = NEG
                besta = 0
                bestb = 0
                for a in range(k - 1, i):
                    paj = P[a, j]
                    fa = f[i - a]
                    for b in range(k - 1, j):
                        v = Dk[a, b] + (pij - paj - P[i, b] + P[a, b]) * fa * f[j - b]
                        if v > best:
                            best = v
                            besta = a
                            bestb = b
                D[k, i, j] = best
                arg_a[k, i, j] = besta
                arg_b[k, i, j] = bestb
    out[e] = D[K, n, m]
    i = n
    j = m
    for k in range(K, 0, -1):
        bn[e, k] = i
        bm[e, k] = j
        if k > 1:
            a = arg_a[k, i, j]
            b = arg_b[k, i, j]
            i = a
            j = b
    bn[e, 0] = 0
    bm[e, 0] = 0


@nb.njit(parallel=True, **_JIT)
def _block_forward_par(S, ln, lm, K, sqrt_area, out, bn, bm):  # pragma: no cover - compiled
    for e in nb.prange(S.shape[0]):
        _block_forward_one(S, ln, lm, K, sqrt_area, out, bn, bm, e)


@nb.njit(**_JIT)
def _block_forward_ser(S, ln, lm, K, sqrt_area, out, bn, bm):  # pragma: no cover - compiled
    for e in range(S.shape[0]):
        _block_forward_one(S, ln, lm, K, sqrt_area, out, bn, bm, e)


def block_forward(S, ln, lm, K, sqrt_area, out, bn, bm):
    """S (B,N,M) similarities; out (B,) best total block score; bn, bm (B,K+1) boundaries.

    D[k, i, j] = max_{k-1 <= a < i, k-1 <= b < j} D[k-1, a, b] + score(a, b, i, j), where a block
    covers rows [a, i) and columns [b, j) and scores sum/area (mean) or sum/sqrt(area). Ties go to
    the smallest (a, b) in row-major order.
    """
    work = S.size * S.shape[1] * S.shape[2] * K // 4  # inner-loop visits, roughly
    kernel = _block_forward_par if work >= PARALLEL_MIN_WORK else _block_forward_ser
    kernel(S, ln, lm, K, sqrt_area, out, bn, bm)
