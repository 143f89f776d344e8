"""Compiled CPU kernels for the pairwise grid lattice (DTW and soft-DTW).

Every kernel is batched over B (``prange``), reads only the top-left ``n x m`` corner of each
cost matrix, and accumulates in float64 whatever the input dtype. Soft-DTW stores, for each cell,
the softmax weights of its three predecessors during the forward pass, so the backward pass is a
single reverse sweep of multiply-adds with no exponentials.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_JIT = {"cache": True, "nogil": True}
#: Below this many cells a batch runs on one thread: fork-join costs more than it saves.
PARALLEL_MIN_WORK = 200_000
CUT = 40.0


# --------------------------------------------------------------------------------------------
# Soft-DTW: anti-diagonal wavefront with branch-free, vectorisable exp / log
# --------------------------------------------------------------------------------------------
#
# Every cell of an anti-diagonal d = i + j depends only on diagonals d-1 and d-2, so each diagonal
# is one loop without a loop-carried dependency. Written branch-free, LLVM turns it into AVX2 code
# (4 float64 lanes) -- but only if exp and log are inlined arithmetic: numba's np.exp / np.log call
# libm one element at a time (this machine's numba has no SVML). ``_exp_cut`` and ``_log_1_3`` are
# polynomial versions accurate to ~2 ulp on the ranges the kernel feeds them.

_VEC = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split for Cody-Waite range reduction
_LN2_LO = 1.90821492927058770002e-10
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951
_MAGIC = 6755399441055744.0  # 1.5 * 2**52: adding it rounds to an integer held in the low bits
_MAGIC_BITS = 0x4338000000000000  # the bit pattern of _MAGIC


@intrinsic
def _f64_bits(typingctx, x):  # pragma: no cover - compiled
    """Reinterpret a float64's bits as an int64 (a no-op register move, vectorisable)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _bits_f64(typingctx, x):  # pragma: no cover - compiled
    """Reinterpret an int64's bits as a float64."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@nb.njit(inline="always", **_VEC)
def _exp_cut(z):  # pragma: no cover - compiled
    """exp(z) for z <= 0, and exactly 0 for z <= -CUT (then exp(z) < 4.3e-18 cannot change a sum
    that holds 1). Relative error < 4e-16 on (-CUT, 0]; exp(0) = 1 exactly."""
    x = z if z > -CUT else -CUT  # also maps -inf (and NaN) into range; masked below
    t = x * _LOG2E + _MAGIC
    k = t - _MAGIC  # round(x / ln 2)
    r = (x - k * _LN2_HI) - k * _LN2_LO  # |r| <= ln(2)/2
    # Taylor to degree 12 (remainder < 2e-16 on |r| <= 0.347) in Estrin's form: the dependency
    # chain is 4 multiply-adds deep instead of Horner's 12, so consecutive cells overlap
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q0 = 1.0 + r
    q1 = 0.5 + r * (1.0 / 6.0)
    q2 = 1.0 / 24.0 + r * (1.0 / 120.0)
    q3 = 1.0 / 720.0 + r * (1.0 / 5040.0)
    q4 = 1.0 / 40320.0 + r * (1.0 / 362880.0)
    q5 = 1.0 / 3628800.0 + r * (1.0 / 39916800.0)
    s0 = q0 + r2 * q1
    s1 = q2 + r2 * q3
    s2 = q4 + r2 * q5
    p = (s0 + r4 * s1) + r8 * (s2 + r4 * (1.0 / 479001600.0))
    # 2**k from the integer in t's low bits: exponent field k + 1023
    e = p * _bits_f64((_f64_bits(t) - _MAGIC_BITS + 1023) << 52)
    return e if z > -CUT else 0.0


@nb.njit(inline="always", **_VEC)
def _log_1_3(s):  # pragma: no cover - compiled
    """log(s) for s in [1, 3] (a soft-min's sum of three weights, one of them 1); abs error < 3e-16.

    s = 2**e * m with m in [0.707, 1.5]; log m = 2 atanh(f), f = (m - 1)/(m + 1), |f| <= 0.2,
    summed to f**21 (remainder < 1e-17)."""
    h = 0.5 if s > _SQRT2 else 1.0
    m = s * h
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    f4 = f2 * f2
    f8 = f4 * f4
    # 1 + f2/3 + f2^2/5 + ... + f2^10/21 in Estrin's form
    q0 = 1.0 + f2 * (1.0 / 3.0)
    q1 = 1.0 / 5.0 + f2 * (1.0 / 7.0)
    q2 = 1.0 / 9.0 + f2 * (1.0 / 11.0)
    q3 = 1.0 / 13.0 + f2 * (1.0 / 15.0)
    q4 = 1.0 / 17.0 + f2 * (1.0 / 19.0)
    q = (q0 + f4 * q1) + f8 * ((q2 + f4 * q3) + f8 * (q4 + f4 * (1.0 / 21.0)))
    return (1.0 - h) * (2.0 * _LN2) + 2.0 * f * q


@intrinsic
def _f32_bits(typingctx, x):  # pragma: no cover - compiled
    sig = types.int32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def _bits_f32(typingctx, x):  # pragma: no cover - compiled
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_F = np.float32
_MAGIC32 = _F(12582912.0)  # 1.5 * 2**23
_MAGIC32_BITS = np.int32(0x4B400000)


@nb.njit(inline="always", **_VEC)
def _exp_cut32(z):  # pragma: no cover - compiled
    """float32 exp(z) for z <= 0, 0 for z <= -CUT; Cephes expf polynomial (~1 ulp)."""
    x = z if z > _F(-CUT) else _F(-CUT)
    t = x * _F(_LOG2E) + _MAGIC32
    k = t - _MAGIC32
    r = (x - k * _F(0.693359375)) - k * _F(-2.12194440e-4)
    p = _F(1.9875691500e-4)
    p = p * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    p = (p * r) * r + r + _F(1.0)
    e = p * _bits_f32((_f32_bits(t) - _MAGIC32_BITS + np.int32(127)) << np.int32(23))
    return e if z > _F(-CUT) else _F(0.0)


@nb.njit(inline="always", **_VEC)
def _log_1_3_32(s):  # pragma: no cover - compiled
    """float32 log(s) for s in [1, 3]: s = 2**k m, m in [0.707, 1.414]; Cephes logf polynomial."""
    k = _F(2.0) if s > _F(2.0 * _SQRT2) else (_F(1.0) if s > _F(_SQRT2) else _F(0.0))
    h = _F(0.25) if s > _F(2.0 * _SQRT2) else (_F(0.5) if s > _F(_SQRT2) else _F(1.0))
    x = s * h - _F(1.0)
    z = x * x
    y = _F(7.0376836292e-2)
    y = y * x - _F(1.1514610310e-1)
    y = y * x + _F(1.1676998740e-1)
    y = y * x - _F(1.2420140846e-1)
    y = y * x + _F(1.4249322787e-1)
    y = y * x - _F(1.6668057665e-1)
    y = y * x + _F(2.0000714765e-1)
    y = y * x - _F(2.4999993993e-1)
    y = y * x + _F(3.3333331174e-1)
    y = y * x * z
    y = y + k * _F(-2.12194440e-4) - _F(0.5) * z
    return x + y + k * _F(0.693359375)


def _make_soft_min_diagonal(exp, log, F):
    """Build the per-diagonal soft-min for one precision: ``exp``/``log`` are the polynomial
    kernels above and ``F`` the weights' float type (R and costs stay float64)."""
    cut = F(-CUT)

    @nb.njit(**_VEC)
    def soft_min_cells(e0, e1, e2, lg, cnt, weights):  # pragma: no cover - compiled
        """In place: exponents e_k -> exp(e_k), normalised to weights if ``weights``; lg = log(s)."""
        for t in range(cnt):
            e0[t] = exp(e0[t])
            e1[t] = exp(e1[t])
            e2[t] = exp(e2[t])
        if weights:
            for t in range(cnt):
                s = e0[t] + e1[t] + e2[t]  # one term is exp(0) = 1, so s is in [1, 3]
                rs = F(1.0) / s
                e0[t] *= rs
                e1[t] *= rs
                e2[t] *= rs
                lg[t] = log(s)
        else:
            for t in range(cnt):
                lg[t] = log(e0[t] + e1[t] + e2[t])

    @nb.njit(**_VEC)
    def soft_min_diagonal(a_, u_, cd, r_, w0, w1, w2, S, idx, cnt, inv, gamma, weights):  # pragma: no cover - compiled
        """One anti-diagonal: r_[t] = cd[t] + softmin_gamma(a_[t], u_[t], u_[t+1]); with
        ``weights``, w0, w1, w2 receive the softmax weights of the three predecessors (otherwise
        they are scratch). S (4, n) and idx (n,) are scratch.

        Every array is an argument (plain pointers for LLVM's dependence analysis), and the work
        is split in short loops that each compile to SIMD code. A cell is *active* when a second
        predecessor lies within CUT * gamma of the minimum; the others are exactly one-hot with
        log(s) = 0. When at most half the cells are active (e.g. well-separated costs with small
        gamma), only those are gathered and sent through exp/log."""
        for t in range(cnt):
            a = a_[t]
            u = u_[t]
            v = u_[t + 1]
            mn = a if a < u else u
            mn = mn if mn < v else v
            r_[t] = cd[t] + mn
            w0[t] = F((mn - a) * inv)
            w1[t] = F((mn - u) * inv)
            w2[t] = F((mn - v) * inv)
        na = 0
        for t in range(cnt):  # branch-free compaction of the active cells
            idx[na] = t
            k = (1 if w0[t] > cut else 0) + (1 if w1[t] > cut else 0) + (1 if w2[t] > cut else 0)
            na += 1 if k > 1 else 0
        lg = S[3]
        if 2 * na > cnt:  # dense: every cell through exp/log
            soft_min_cells(w0, w1, w2, lg, cnt, weights)
            for t in range(cnt):
                r_[t] = r_[t] - gamma * np.float64(lg[t])
            return
        s0 = S[0]
        s1 = S[1]
        s2 = S[2]
        for q in range(na):  # gather the active cells' exponents
            t = idx[q]
            s0[q] = w0[t]
            s1[q] = w1[t]
            s2[q] = w2[t]
        if weights:  # the inactive cells are exactly one-hot on the minimum
            for t in range(cnt):
                w0[t] = F(1.0) if w0[t] > cut else F(0.0)
                w1[t] = F(1.0) if w1[t] > cut else F(0.0)
                w2[t] = F(1.0) if w2[t] > cut else F(0.0)
        soft_min_cells(s0, s1, s2, lg, na, weights)
        for q in range(na):  # scatter back
            t = idx[q]
            r_[t] = r_[t] - gamma * np.float64(lg[q])
        if weights:
            for q in range(na):
                t = idx[q]
                w0[t] = s0[q]
                w1[t] = s1[q]
                w2[t] = s2[q]

    return soft_min_diagonal


#: float64 costs: float64 weights and polynomials (< 4e-16).
_soft_min_diagonal = _make_soft_min_diagonal(_exp_cut, _log_1_3, np.float64)
#: float32 costs: the exponentials and the log run in float32, 8 lanes with low-degree
#: polynomials, while R stays float64; their rounding (< 1e-7 relative) is below that of the
#: float32 costs themselves.
_soft_min_diagonal32 = _make_soft_min_diagonal(_exp_cut32, _log_1_3_32, np.float32)


#: Diagonals per checkpoint segment: the forward pass keeps R on two diagonals every SEG, the
#: backward pass recomputes one segment's weights at a time (3 * SEG * N values, cache-resident).
SEG = 32


@nb.njit(**_VEC)
def _advance(Cb, n, m, d0, d1, inv, gamma, p2, p1, cur, cd, S, idx, WS, weights, diag):  # pragma: no cover - compiled
    """Run diagonals d0 .. d1-1 (d0 >= 1) of one example from R on d0-2 (p1) and d0-1 (cur); p2 is
    spare. Returns the rolled buffers, cur = R on d1-1 and p1 on d1-2.

    R buffers hold row i at index i + 1 with +inf one past each end of the valid rows (the grid's
    border). Diagonal d has rows [lo, hi] = [max(0, d-m+1), min(d, n-1)]; its weights go to
    WS[k, d - d0, :hi-lo+1] (k = diag, up, left), WS[:, 0] doubling as scratch when not
    ``weights``."""
    M = Cb.shape[1]
    Cf = Cb.ravel()
    for d in range(d0, d1):
        p2, p1, cur = p1, cur, p2
        lo = max(0, d - m + 1)
        hi = min(d, n - 1)
        cnt = hi - lo + 1
        base = lo * M + d - lo
        for t in range(cnt):  # the diagonal's costs, (lo + t, d - lo - t), into a contiguous buffer
            cd[t] = Cf[base + t * (M - 1)]
        k = d - d0 if weights else 0
        # views that start at row lo and are indexed by t >= 0 (no wraparound code: it vectorises)
        diag(p2[lo:], p1[lo:], cd, cur[lo + 1 :], WS[0, k], WS[1, k], WS[2, k], S, idx, cnt, inv, gamma, weights)
        cur[lo] = np.inf
        cur[hi + 2] = np.inf
    return p2, p1, cur


@nb.njit(**_VEC)
def _soft_dtw_forward_one(C, ln, lm, gamma, out, CK, b, diag):  # pragma: no cover - compiled
    """Example b: out[b] = R(n-1, m-1); CK[b, s] = R on diagonals s*SEG - 1 and s*SEG - 2."""
    inv = 1.0 / gamma
    n = ln[b]
    m = lm[b]
    cur = np.full(n + 2, np.inf)
    p1 = np.full(n + 2, np.inf)
    p2 = np.full(n + 2, np.inf)
    cd = np.empty(n)
    S = np.empty((4, n), dtype=C.dtype)  # float32 costs take the float32-weight variant of diag
    idx = np.empty(n, dtype=np.int64)
    WS = np.empty((3, 1, n), dtype=C.dtype)
    cur[1] = C[b, 0, 0]
    last = n + m - 2
    d = 1
    while d <= last:
        if d % SEG == 0:  # checkpoint: cur holds diagonal d-1, p1 diagonal d-2
            CK[b, d // SEG, 0, : n + 2] = cur
            CK[b, d // SEG, 1, : n + 2] = p1
        d1 = min(last + 1, (d // SEG + 1) * SEG)
        p2, p1, cur = _advance(C[b], n, m, d, d1, inv, gamma, p2, p1, cur, cd, S, idx, WS, False, diag)
        d = d1
    out[b] = cur[n]


@nb.njit(parallel=True, **_VEC)
def _soft_dtw_forward_par(C, ln, lm, gamma, out, CK, diag):  # pragma: no cover - compiled
    for b in nb.prange(C.shape[0]):
        _soft_dtw_forward_one(C, ln, lm, gamma, out, CK, b, diag)


@nb.njit(**_VEC)
def _soft_dtw_forward_ser(C, ln, lm, gamma, out, CK, diag):  # pragma: no cover - compiled
    for b in range(C.shape[0]):
        _soft_dtw_forward_one(C, ln, lm, gamma, out, CK, b, diag)


def checkpoint_shape(B: int, N: int, M: int) -> tuple[int, int, int, int]:
    """Shape of the float64 checkpoint array ``soft_dtw_forward`` fills: (B, S, 2, N + 2)."""
    return (B, (N + M - 2) // SEG + 1, 2, N + 2)


def soft_dtw_forward(C, ln, lm, gamma, out, CK):
    """C (B,N,M) float32 or float64 costs; out (B,) float64 values; CK float64 checkpoints of
    shape ``checkpoint_shape(B, N, M)`` (R on two diagonals every SEG), read by the backward."""
    kernel = _soft_dtw_forward_par if C.size >= PARALLEL_MIN_WORK else _soft_dtw_forward_ser
    diag = _soft_min_diagonal32 if C.dtype == np.float32 else _soft_min_diagonal
    kernel(C, ln, lm, gamma, out, CK, diag)


@nb.njit(**_VEC)
def _expected_diagonal(q1, q2, q0, w0, w1, w2, r0, r1, r2, ed, cnt):  # pragma: no cover - compiled
    """One reverse diagonal: ed[t] = E of row lo + t; r_k[t] = ed[t] * w_k (the shares it sends
    back to its predecessors). Inputs start at row lo: q1, q2 (diagonal d+1), q0 (d+2)."""
    for t in range(cnt):
        e = q1[t + 1] + q2[t] + q0[t + 1]
        ed[t] = e
        r0[t] = e * w0[t]
        r1[t] = e * w1[t]
        r2[t] = e * w2[t]


@nb.njit(**_VEC)
def _soft_dtw_backward_one(C, ln, lm, gamma, CK, grad, G, b, diag):  # pragma: no cover - compiled
    """E(i, j) = E(i+1, j+1) w0(i+1, j+1) + E(i+1, j) w1(i+1, j) + E(i, j+1) w2(i, j+1), swept over
    anti-diagonals from the end, one checkpoint segment at a time: the segment's forward is rerun
    from its checkpoint (bit-identical R) to get its weights. Share buffers hold E * w_k of
    diagonals d+1 (q1, q2, q0a) and d+2 (q0b), row i at index i + 1, zeros one past each end."""
    inv = 1.0 / gamma
    n = ln[b]
    m = lm[b]
    M = C.shape[2]
    last = n + m - 2
    q0a = np.zeros(n + 2)
    q0b = np.zeros(n + 2)
    q1 = np.zeros(n + 2)
    q2 = np.zeros(n + 2)
    r0 = np.zeros(n + 2)
    r1 = np.zeros(n + 2)
    r2 = np.zeros(n + 2)
    ed = np.empty(n)
    cur = np.full(n + 2, np.inf)
    p1 = np.full(n + 2, np.inf)
    p2 = np.full(n + 2, np.inf)
    cd = np.empty(n)
    S = np.empty((4, n), dtype=C.dtype)
    idx = np.empty(n, dtype=np.int64)
    WS = np.zeros((3, SEG, n), dtype=C.dtype)
    Gf = G[b].ravel()
    for s in range(last // SEG, -1, -1):
        d0 = s * SEG
        d1 = min(last + 1, d0 + SEG)
        if s == 0:  # diagonal 0 is the start cell: no predecessors, weights 0
            p1[:] = np.inf
            cur[:] = np.inf
            cur[1] = C[b, 0, 0]
            WS[:, 0, 0] = 0.0
            if d1 > 1:
                p2, p1, cur = _advance(C[b], n, m, 1, d1, inv, gamma, p2, p1, cur, cd, S, idx, WS[:, 1:], True, diag)
        else:
            p1[:] = CK[b, s, 1, : n + 2]
            cur[:] = CK[b, s, 0, : n + 2]
            p2, p1, cur = _advance(C[b], n, m, d0, d1, inv, gamma, p2, p1, cur, cd, S, idx, WS, True, diag)
        for d in range(d1 - 1, d0 - 1, -1):
            lo = max(0, d - m + 1)
            hi = min(d, n - 1)
            cnt = hi - lo + 1
            k = d - d0
            if d == last:  # the end cell receives the incoming gradient
                ed[0] = grad[b]
                r0[n] = ed[0] * WS[0, k, 0]
                r1[n] = ed[0] * WS[1, k, 0]
                r2[n] = ed[0] * WS[2, k, 0]
            else:
                _expected_diagonal(q1[lo + 1 :], q2[lo + 1 :], q0b[lo + 1 :], WS[0, k], WS[1, k], WS[2, k],
                                   r0[lo + 1 :], r1[lo + 1 :], r2[lo + 1 :], ed, cnt)
            base = lo * M + d - lo
            for t in range(cnt):  # scatter the diagonal into G (strided)
                Gf[base + t * (M - 1)] = ed[t]
            r0[lo] = 0.0
            r1[lo] = 0.0
            r2[lo] = 0.0
            r0[hi + 2] = 0.0
            r1[hi + 2] = 0.0
            r2[hi + 2] = 0.0
            q0b, q0a, r0 = q0a, r0, q0b
            q1, r1 = r1, q1
            q2, r2 = r2, q2


@nb.njit(parallel=True, **_VEC)
def _soft_dtw_backward_par(C, ln, lm, gamma, CK, grad, G, diag):  # pragma: no cover - compiled
    for b in nb.prange(C.shape[0]):
        _soft_dtw_backward_one(C, ln, lm, gamma, CK, grad, G, b, diag)


@nb.njit(**_VEC)
def _soft_dtw_backward_ser(C, ln, lm, gamma, CK, grad, G, diag):  # pragma: no cover - compiled
    for b in range(C.shape[0]):
        _soft_dtw_backward_one(C, ln, lm, gamma, CK, grad, G, b, diag)


def soft_dtw_backward(C, ln, lm, gamma, CK, grad, G):
    """G (B,N,M), zeroed, receives grad[b] * the expected alignment of example b, from the costs C
    and the checkpoints CK of ``soft_dtw_forward`` (same C, lengths and gamma)."""
    kernel = _soft_dtw_backward_par if C.size >= PARALLEL_MIN_WORK else _soft_dtw_backward_ser
    diag = _soft_min_diagonal32 if C.dtype == np.float32 else _soft_min_diagonal
    kernel(C, ln, lm, gamma, CK, grad, G, diag)


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
