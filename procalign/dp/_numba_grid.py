"""Compiled CPU kernels for the pairwise grid lattice (DTW and soft-DTW).

Every kernel is batched over B (``prange``), reads only the top-left ``n x m`` corner of each
cost matrix, and accumulates in float64 whatever the input dtype. Soft-DTW stores, for each cell,
the softmax weights of its three predecessors during the forward pass, so the backward pass is a
single reverse sweep of multiply-adds with no exponentials.
"""

from __future__ import annotations

import numba as nb
import numpy as np

_JIT = {"cache": True, "nogil": True}
#: Below this many cells a batch runs on one thread: fork-join costs more than it saves.
PARALLEL_MIN_WORK = 200_000
CUT = 40.0


@nb.njit(**_JIT)
def _soft_dtw_forward_one(C, ln, lm, gamma, out, W, b):  # pragma: no cover - compiled
    inv = 1.0 / gamma
    n = ln[b]
    m = lm[b]
    R = np.empty((n + 1, m + 1))
    R[0, :] = np.inf
    R[:, 0] = np.inf
    R[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            a = R[i - 1, j - 1]
            u = R[i - 1, j]
            left = R[i, j - 1]
            # One predecessor is the minimum, so its weight exp(0) = 1: at most two exps per
            # cell, and none for a predecessor more than CUT*gamma above the minimum (its
            # weight < 4e-18 cannot change 1 + e in float64).
            w = W[b, i - 1, j - 1]
            if a <= u and a <= left:
                mn = a
                d1 = (a - u) * inv
                d2 = (a - left) * inv
                k = 0
            elif u <= left:
                mn = u
                d1 = (u - a) * inv
                d2 = (u - left) * inv
                k = 1
            else:
                mn = left
                d1 = (left - a) * inv
                d2 = (left - u) * inv
                k = 2
            e1 = np.exp(d1) if d1 > -CUT else 0.0
            e2 = np.exp(d2) if d2 > -CUT else 0.0
            tail = e1 + e2
            r = 1.0 / (1.0 + tail)
            # weights in (diag, up, left) order: the minimum gets r, the others e * r
            if k == 0:
                w[0] = r
                w[1] = e1 * r
                w[2] = e2 * r
            elif k == 1:
                w[0] = e1 * r
                w[1] = r
                w[2] = e2 * r
            else:
                w[0] = e1 * r
                w[1] = e2 * r
                w[2] = r
            R[i, j] = C[b, i - 1, j - 1] + mn - (gamma * np.log1p(tail) if tail > 0.0 else 0.0)
    out[b] = R[n, m]


@nb.njit(parallel=True, **_JIT)
def _soft_dtw_forward_par(C, ln, lm, gamma, out, W):  # pragma: no cover - compiled
    for b in nb.prange(C.shape[0]):
        _soft_dtw_forward_one(C, ln, lm, gamma, out, W, b)


@nb.njit(**_JIT)
def _soft_dtw_forward_ser(C, ln, lm, gamma, out, W):  # pragma: no cover - compiled
    for b in range(C.shape[0]):
        _soft_dtw_forward_one(C, ln, lm, gamma, out, W, b)


def soft_dtw_forward(C, ln, lm, gamma, out, W):
    """C (B,N,M) costs; out (B,) float64 values; W (B,N,M,3) predecessor weights (diag, up, left)."""
    kernel = _soft_dtw_forward_par if C.size >= PARALLEL_MIN_WORK else _soft_dtw_forward_ser
    kernel(C, ln, lm, gamma, out, W)



@nb.njit(**_JIT)
def _soft_dtw_backward_one(W, ln, lm, grad, G, b):  # pragma: no cover - compiled
    n = ln[b]
    m = lm[b]
    E = np.zeros((n + 1, m + 1))
    E[n, m] = grad[b]
    for i in range(n, 0, -1):
        for j in range(m, 0, -1):
            e = E[i, j]
            G[b, i - 1, j - 1] = e
            w = W[b, i - 1, j - 1]
            E[i - 1, j - 1] += e * w[0]
            E[i - 1, j] += e * w[1]
            E[i, j - 1] += e * w[2]


@nb.njit(parallel=True, **_JIT)
def _soft_dtw_backward_par(W, ln, lm, grad, G):  # pragma: no cover - compiled
    for b in nb.prange(W.shape[0]):
        _soft_dtw_backward_one(W, ln, lm, grad, G, b)


@nb.njit(**_JIT)
def _soft_dtw_backward_ser(W, ln, lm, grad, G):  # pragma: no cover - compiled
    for b in range(W.shape[0]):
        _soft_dtw_backward_one(W, ln, lm, grad, G, b)


def soft_dtw_backward(W, ln, lm, grad, G):
    """Reverse sweep: G (B,N,M) receives grad[b] * expected alignment; G must be zeroed."""
    kernel = _soft_dtw_backward_par if W.size >= PARALLEL_MIN_WORK else _soft_dtw_backward_ser
    kernel(W, ln, lm, grad, G)



@nb.njit(**_JIT)
def _dtw_forward_one(C, ln, lm, out, P, b):  # pragma: no cover - compiled
    n = ln[b]
    m = lm[b]
    prev = np.full(m + 1, np.inf)
    cur = np.empty(m + 1)
    prev[0] = 0.0
    choice = np.empty((n, m), dtype=np.int8)
    for i in range(n):
        cur[0] = np.inf
        left = np.inf
        row = C[b, i]
        ch = choice[i]
        for j in range(m):
            # strict comparisons in (diag, up, left) order keep the first on ties and
            # compile to selects rather than branches
            best = prev[j]
            c = 0
            u = prev[j + 1]
            if u < best:
                best = u
                c = 1
            if left < best:
                best = left
                c = 2
            ch[j] = c
            left = row[j] + best
            cur[j + 1] = left
        prev, cur = cur, prev
        prev[0] = np.inf
    out[b] = prev[m]
    i = n - 1
    j = m - 1
    while True:
        P[b, i, j] = 1
        if i == 0 and j == 0:
            break
        c = choice[i, j]
        if c == 0:
            i -= 1
            j -= 1
        elif c == 1:
            i -= 1
        else:
            j -= 1


@nb.njit(parallel=True, **_JIT)
def _dtw_forward_par(C, ln, lm, out, P):  # pragma: no cover - compiled
    for b in nb.prange(C.shape[0]):
        _dtw_forward_one(C, ln, lm, out, P, b)


@nb.njit(**_JIT)
def _dtw_forward_ser(C, ln, lm, out, P):  # pragma: no cover - compiled
    for b in range(C.shape[0]):
        _dtw_forward_one(C, ln, lm, out, P, b)


def dtw_forward(C, ln, lm, out, P):
    """Hard DTW: out (B,) float64 minimal path costs; P (B,N,M) zeroed, receives the 0/1 path.

    Ties go to the predecessor with the smallest indices: diagonal, then up (i-1, j), then left.
    Two row buffers hold the accumulated costs; a byte per cell records the choice.
    """
    kernel = _dtw_forward_par if C.size >= PARALLEL_MIN_WORK else _dtw_forward_ser
    kernel(C, ln, lm, out, P)
