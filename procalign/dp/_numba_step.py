"""Compiled CPU kernels for the monotone frame-to-step lattice (log and max semirings).

``skip=False``: the path starts on step 0, ends on step K_b - 1 and advances 0 or 1 step per frame.
``skip=True``: labels are non-decreasing, start and end anywhere (any forward jump allowed).
Accumulation is in float64; ``NEG`` stands for minus infinity (see ``semiring.NEG``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

NEG = -1e30
_JIT = {"cache": True, "nogil": True}
#: Below this many cells a batch runs on one thread: fork-join costs more than it saves.
PARALLEL_MIN_WORK = 200_000


@nb.njit(inline="always", **_JIT)
def _lae(x, y):  # pragma: no cover - compiled
    if x < y:
        x, y = y, x
    return x + np.log1p(np.exp(y - x))


@nb.njit(**_JIT)
def _forward_one(P, lt, lk, skip, hard, out, A, ptr, b):  # pragma: no cover - compiled
    T = lt[b]
    K = lk[b]
    a = A[b]
    a[:, :] = NEG
    if skip:
        for k in range(K):
            a[0, k] = P[b, 0, k]
    else:
        a[0, 0] = P[b, 0, 0]
    for t in range(1, T):
        if skip:
            run = NEG
            arg = 0
            for k in range(K):
                v = a[t - 1, k]
                if hard:
                    if v > run:
                        run = v
                        arg = k
                    ptr[b, t, k] = arg
                else:
                    run = _lae(run, v)
                a[t, k] = P[b, t, k] + run
        else:
            for k in range(min(t + 1, K)):
                stay = a[t - 1, k]
                adv = a[t - 1, k - 1] if k > 0 else NEG
                if hard:
                    if adv >= stay and k > 0:
                        a[t, k] = P[b, t, k] + adv
                        ptr[b, t, k] = k - 1
                    else:
                        a[t, k] = P[b, t, k] + stay
                        ptr[b, t, k] = k
                else:
                    a[t, k] = P[b, t, k] + _lae(adv, stay)
    if skip:
        best = NEG
        for k in range(K):
            v = a[T - 1, k]
            if hard:
                if v > best:
                    best = v
            else:
                best = _lae(best, v)
        out[b] = best
    else:
        out[b] = a[T - 1, K - 1]


@nb.njit(parallel=True, **_JIT)
def _forward_par(P, lt, lk, skip, hard, out, A, ptr):  # pragma: no cover - compiled
    for b in nb.prange(P.shape[0]):
        _forward_one(P, lt, lk, skip, hard, out, A, ptr, b)


@nb.njit(**_JIT)
def _forward_ser(P, lt, lk, skip, hard, out, A, ptr):  # pragma: no cover - compiled
    for b in range(P.shape[0]):
        _forward_one(P, lt, lk, skip, hard, out, A, ptr, b)


def forward(P, lt, lk, skip, hard, out, A, ptr):
    """P (B,T,K) potentials; out (B,) values; A (B,T,K) float64 alphas; ptr (B,T,K) int32 (hard).

    Ties (hard): strict lattice prefers advancing (the smaller predecessor index k-1); the skip
    lattice and the final state pick the smallest step index.
    """
    kernel = _forward_par if P.size >= PARALLEL_MIN_WORK else _forward_ser
    kernel(P, lt, lk, skip, hard, out, A, ptr)



@nb.njit(**_JIT)
def _backtrack_one(A, ptr, lt, lk, skip, labels, b):  # pragma: no cover - compiled
    T = lt[b]
    K = lk[b]
    if skip:
        k = 0
        best = A[b, T - 1, 0]
        for kk in range(1, K):
            if A[b, T - 1, kk] > best:
                best = A[b, T - 1, kk]
                k = kk
    else:
        k = K - 1
    for t in range(T - 1, -1, -1):
        labels[b, t] = k
        if t > 0:
            k = ptr[b, t, k]


@nb.njit(parallel=True, **_JIT)
def _backtrack_par(A, ptr, lt, lk, skip, labels):  # pragma: no cover - compiled
    for b in nb.prange(A.shape[0]):
        _backtrack_one(A, ptr, lt, lk, skip, labels, b)


@nb.njit(**_JIT)
def _backtrack_ser(A, ptr, lt, lk, skip, labels):  # pragma: no cover - compiled
    for b in range(A.shape[0]):
        _backtrack_one(A, ptr, lt, lk, skip, labels, b)


def backtrack(A, ptr, lt, lk, skip, labels):
    """Fill labels (B,T) (int64, pre-filled with -1) from the hard forward's pointers."""
    kernel = _backtrack_par if A.size >= PARALLEL_MIN_WORK else _backtrack_ser
    kernel(A, ptr, lt, lk, skip, labels)



@nb.njit(**_JIT)
def _marginals_one(P, A, out, lt, lk, skip, grad, G, b):  # pragma: no cover - compiled
    T = lt[b]
    K = lk[b]
    beta = np.full((T, K), NEG)
    if skip:
        for k in range(K):
            beta[T - 1, k] = 0.0
    else:
        beta[T - 1, K - 1] = 0.0
    for t in range(T - 2, -1, -1):
        if skip:
            run = NEG
            for k in range(K - 1, -1, -1):
                run = _lae(run, P[b, t + 1, k] + beta[t + 1, k])
                beta[t, k] = run
        else:
            for k in range(K):
                stay = P[b, t + 1, k] + beta[t + 1, k]
                adv = P[b, t + 1, k + 1] + beta[t + 1, k + 1] if k + 1 < K else NEG
                beta[t, k] = _lae(stay, adv)
    Z = out[b]
    g = grad[b]
    for t in range(T):
        for k in range(K):
            G[b, t, k] = g * np.exp(A[b, t, k] + beta[t, k] - Z)


@nb.njit(parallel=True, **_JIT)
def _marginals_par(P, A, out, lt, lk, skip, grad, G):  # pragma: no cover - compiled
    for b in nb.prange(P.shape[0]):
        _marginals_one(P, A, out, lt, lk, skip, grad, G, b)


@nb.njit(**_JIT)
def _marginals_ser(P, A, out, lt, lk, skip, grad, G):  # pragma: no cover - compiled
    for b in range(P.shape[0]):
        _marginals_one(P, A, out, lt, lk, skip, grad, G, b)


def marginals(P, A, out, lt, lk, skip, grad, G):
    """G (B,T,K) (zeroed) receives grad[b] * posterior marginals, from alphas A and a beta sweep."""
    kernel = _marginals_par if P.size >= PARALLEL_MIN_WORK else _marginals_ser
    kernel(P, A, out, lt, lk, skip, grad, G)
