"""Soft-DTW on CPU, batch-tiled: the innermost loop runs over LANES examples at the same cell.

Why this layout. The soft-min of a cell needs two ``exp`` and one ``log``; numba without SVML calls
libm for ``np.exp`` one element at a time, and the per-example kernel's "which predecessor is the
minimum" branch is unpredictable on random costs. Here a *tile* of up to ``LANES`` examples is
swept row by row in lock step, with every per-cell quantity stored as ``[..., lane]``: the lane
loop has no dependencies, no branches (minimum and weights are selects) and calls no function
(``exp`` and ``log`` are the inlined polynomials below), so LLVM compiles it to SIMD code. Unlike
an anti-diagonal sweep there is no index arithmetic per cell and every access is contiguous.

Exactness and padding.

* Examples are sorted by their corner ``n x m`` and grouped, so a tile runs over the largest
  corner of its examples. Costs outside an example's own corner are taken as 0, never from the
  padding (which may hold anything): the kernel copies each lane's in-corner costs and writes
  0 past them. Those cells only feed cells outside the corner (paths are monotone), so the
  example's value is that of its corner. In the backward pass the seed of example b enters at
  the cell one past its corner, through stored weights that send it all along the diagonal, so
  E is exactly 0 outside the corner (finite weights times 0) and its gradient is 0 there.
* R (the accumulated soft-min) and E (the backward marginals) are float64 for every input dtype.
  Float32 inputs take the soft-min's ``exp``/``log`` in float32 (16 lanes per AVX-512 vector,
  relative error < 2e-7): the resulting error in R is below 1e-7 * gamma per cell, far below the
  rounding of the float32 costs (e.g. 1.5e-5 for costs of size 256). Float64 inputs use float64
  polynomials (error < 5e-16, about libm's own rounding). The sweep runs in base 2 (R in units
  of gamma ln 2, ``exp2``/``log2``), which saves the per-exponent scaling and half of exp's
  range reduction; the value is scaled back once per example.
* Rows run in pairs, the second two cells behind the first: a row alone is one chain of
  dependent cells (each needs its left neighbour), two give the core independent work to overlap.
* One predecessor is the minimum and gets exp(0) = 1 exactly, so a cell computes two ``exp``.
  An exponent below -CUT (a predecessor more than CUT * gamma above the minimum) gives weight 0:
  exp(-40) < 4.3e-18 cannot change the sum 1 + e1 + e2 in float64 (nor in float32). The clamp
  that implements this also maps the grid's +inf border to weight 0.
* The forward pass stores two of each cell's three predecessor weights (``WEIGHTS``; float32
  for float32 input), so the backward pass is one reverse sweep of multiply-adds.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.compiler import Compiler
from numba.extending import intrinsic

from procalign.dp._numba_transpose import tr8_gather, tr8_scatter

#: Examples per tile: one AVX-512 vector of float32 (two of float64).
LANES = 16
#: A predecessor more than CUT * gamma above the minimum gets weight exactly 0.
CUT = 40.0
#: Fewer examples than this in a tile are run one by one by the per-example kernel instead.
MIN_TILE = 6
#: Numbers stored per cell and lane for the backward pass: of the three predecessor weights
#: (diag, up, left; they sum to 1) the two that are not the minimum's, in that order, the first
#: negated when "up" is the minimum, the second when "left" is; the minimum's weight (>= 1/3)
#: is 1 minus the other two, exact to rounding. Two thirds of the traffic of three weights.
WEIGHTS = 2
#: Floor of a stored weight (so that it has a sign to carry); 0 would lose the flag.
TINY = 1e-30

_VEC = {"cache": True, "nogil": True, "error_model": "numpy", "fastmath": {"contract"}}


class _NoAliasCompiler(Compiler):
    """numba's default pipeline with the ``noalias`` flag: the array arguments of the function are
    declared not to overlap (LLVM ``noalias``), which is what lets LLVM vectorise the lane loops
    without runtime overlap checks (with them it gave up: 4x slower). Only for functions whose
    written array arguments are always distinct buffers (here: fresh per-call scratch and outputs)."""

    def __init__(self, typingctx, targetctx, library, args, return_type, flags, locals):
        flags = flags.copy()
        flags.noalias = True
        super().__init__(typingctx, targetctx, library, args, return_type, flags, locals)


#: jit options of the float64 tile kernels
_TILE = {**_VEC, "pipeline_class": _NoAliasCompiler}
#: ... and of the float32 ones: reassociation (and no signed zeros, reciprocals) lets LLVM
#: schedule the lane loops' polynomials and selects with fewer registers: forward 8-12 % faster
#: on AVX2. Accuracy stays (tests/dp/test_soft_dtw_tiles.py checks the inlined exp, 1/s and log
#: under these flags); exp rounds with ``np.rint`` rather than the add-and-subtract-a-magic-
#: constant trick, which reassociation may fold away. Not for float64, whose Cody-Waite split
#: (x - k hi) - k lo would lose its extra bits (1.4e-15 instead of 5e-16).
_TILE32 = {**_VEC, "fastmath": {"contract", "reassoc", "nsz", "arcp"}, "pipeline_class": _NoAliasCompiler}

# --------------------------------------------------------------------------------------------
# Branch-free exp and log (inlined, so the lane loops vectorise)
# --------------------------------------------------------------------------------------------


@intrinsic
def _bits_f64(typingctx, x):  # pragma: no cover - compiled
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@intrinsic
def _bits_f32(typingctx, x):  # pragma: no cover - compiled
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
_SQRT2 = 1.4142135623730951
#: CUT in the kernels' base-2 units: 2**-CUT2 = exp(-CUT)
CUT2 = CUT * _LOG2E


@nb.njit(inline="always", **_VEC)
def exp2_cut64(z):  # pragma: no cover - compiled
    """2**z for z <= 0; exactly 0 for z <= -CUT2 (or -inf); 2**0 = 1 exactly.

    z = k + r with k = rint(z), |r| <= 1/2 (exact), 2**r = exp(t) for t = r ln 2 by Taylor to
    degree 12 in Estrin's form (remainder < 2e-16), 2**k built in the exponent field. Relative
    error < 5e-16."""
    x = z if z > -CUT2 else -CUT2
    k = np.rint(x)  # an intrinsic: reassociation cannot fold it (a magic-constant add could be)
    r = (x - k) * _LN2
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    s0 = (1.0 + r) + r2 * (0.5 + r * (1.0 / 6.0))
    s1 = (1.0 / 24.0 + r * (1.0 / 120.0)) + r2 * (1.0 / 720.0 + r * (1.0 / 5040.0))
    s2 = (1.0 / 40320.0 + r * (1.0 / 362880.0)) + r2 * (1.0 / 3628800.0 + r * (1.0 / 39916800.0))
    p = (s0 + r4 * s1) + r8 * (s2 + r4 * (1.0 / 479001600.0))
    e = p * _bits_f64((np.int64(np.int32(k)) + 1023) << 52)  # |k| <= 58: an int32 conversion
    return e if z > -CUT2 else 0.0


@nb.njit(inline="always", **_VEC)
def log2_13_64(s):  # pragma: no cover - compiled
    """log2(s) for s in [1, 3] (1 + two weights in [0, 1]); absolute error < 5e-16.

    s = 2**e m with m in [0.707, 1.5]; log m = 2 atanh(f), f = (m - 1) / (m + 1), |f| <= 0.2,
    the series summed to f**21 (remainder < 1e-17), times 1 / ln 2. log2(1) = 0 exactly."""
    h = 0.5 if s > _SQRT2 else 1.0
    m = s * h
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    f4 = f2 * f2
    f8 = f4 * f4
    q0 = 1.0 + f2 * (1.0 / 3.0)
    q1 = 1.0 / 5.0 + f2 * (1.0 / 7.0)
    q2 = 1.0 / 9.0 + f2 * (1.0 / 11.0)
    q3 = 1.0 / 13.0 + f2 * (1.0 / 15.0)
    q4 = 1.0 / 17.0 + f2 * (1.0 / 19.0)
    q = (q0 + f4 * q1) + f8 * ((q2 + f4 * q3) + f8 * (q4 + f4 * (1.0 / 21.0)))
    return (1.0 - h) * 2.0 + (f * (2.0 / _LN2)) * q


_F = np.float32


@nb.njit(inline="always", **_VEC)
def exp2_cut32(z):  # pragma: no cover - compiled
    """float32 2**z for z <= 0, 0 for z <= -CUT2, 2**0 = 1; Cephes' exp2f polynomial on the
    exact remainder z - rint(z) (relative error < 8e-8, measured over [-CUT2, 0]). In base 2
    the reduction is one exact subtraction, where exp's needs a multiply and a two-constant
    Cody-Waite split: three operations fewer per exponential."""
    x = z if z > _F(-CUT2) else _F(-CUT2)
    k = np.rint(x)
    r = x - k
    p = _F(1.535336188319500e-4)
    p = p * r + _F(1.339887440266574e-3)
    p = p * r + _F(9.618437357674640e-3)
    p = p * r + _F(5.550332471162809e-2)
    p = p * r + _F(2.402264791363012e-1)
    p = p * r + _F(6.931472028550421e-1)
    p = p * r + _F(1.0)
    e = p * _bits_f32((np.int32(k) + np.int32(127)) << np.int32(23))
    return e if z > _F(-CUT2) else _F(0.0)


@nb.njit(inline="always", **_VEC)
def recip_log2_64(s):  # pragma: no cover - compiled
    """(1 / s, log2 s) for s in [1, 3], float64: a true division and ``log2_13_64``."""
    return 1.0 / s, log2_13_64(s)


@nb.njit(inline="always", **_VEC)
def recip_log2_32(s):  # pragma: no cover - compiled
    """(1 / s, log2 s) for float32 s in [1, 3] with one division between them.

    s = 2**k m with m in [0.75, 1.5] (k = 0 or 1, one select); log m = 2 atanh(f) with
    f = (m - 1) / (m + 1), |f| <= 0.2, summed to f**9 (remainder < 4e-9), times 1 / ln 2 (folded
    into the constants). Both quotients come from X = 1 / (s (m + 1)): 1 / s = (m + 1) X and
    f = (m - 1) s X, so the cell pays one division where a reciprocal and Cephes' logf cost a
    division and a degree-9 polynomial with three range cases. Error: 1 / s within 2 ulp,
    log2 s within 3e-7 absolute, far below the float32 rounding of the costs it is added to
    (log2 s joins a float64 R); log2(1) = 0 and 1 / 1 = 1 exactly."""
    big = s > _F(1.5)
    m = s * _F(0.5) if big else s
    mp = m + _F(1.0)
    x = _F(1.0) / (s * mp)
    f = (m - _F(1.0)) * (s * x)
    f2 = f * f
    q = _F(1.0 / 7.0) + f2 * _F(1.0 / 9.0)
    q = _F(1.0 / 5.0) + f2 * q
    q = _F(1.0 / 3.0) + f2 * q
    t = f * _F(2.0 / _LN2)
    lg = t + t * (f2 * q)
    return mp * x, lg + (_F(1.0) if big else _F(0.0))


# --------------------------------------------------------------------------------------------
# Tiled forward and backward
# --------------------------------------------------------------------------------------------


def _make_kernels(exp, recip_log, F):
    """Forward and backward over tiles for one precision of the weights (``F``); R and E are
    float64 in both. The forward pass runs in base 2: R is held in units of gamma ln 2 (costs
    scaled by 1 / (gamma ln 2) as they are added, the value scaled back on output), so a
    predecessor's weight is 2**(min - R) and the soft-min subtracts log2 of the sum: no multiply
    by 1 / gamma per exponent, and ``exp``/``recip_log`` are ``exp2``/``log2`` (cheaper range
    reduction)."""
    L = LANES
    opts = _TILE32 if F == np.float32 else _TILE

    @nb.njit(inline="always", **opts)
    def cell(Rp, Rc, Crow, Wi, j, to2, Z, CM, LG):  # pragma: no cover - compiled
        """Cell j of a row: Rc[j + 1] = Crow[j] + softmin(Rp[j], Rp[j + 1], Rc[j]) and the three
        weights of Wi[j], packed (``WEIGHTS``). Rp, Rc (Mt+1, L) are R on rows i-1 and i (column 0 the
        +inf border).

        The cell runs as three lane loops, so that each loop has one element width and LLVM
        vectorises it at the full register width (one loop mixing float64 and float32 is
        vectorised at the float64 width: on AVX2, 4 lanes, half of every float32 register idle):

        1. float64: the minimum ``mn`` of the three predecessors, their exponents
           ``mn - x`` (<= 0, one of them exactly 0; base-2 units) rounded to ``F`` into Z (3, L),
           and ``mn + c / (gamma ln 2)`` into CM (L,);
        2. ``F``: the two exp2 of the non-minimal predecessors, the weights, ``log2(s)`` into
           LG (L,);
        3. float64: Rc[j + 1] = CM - LG, done at the start of loop 1 of the next cell
           (cell j + 1 writes Rc[j + 1] as it reads it: its left predecessor) or by ``finish``.

        Crow (Mt, L) is the row's costs, lane-major (``gather_row``)."""
        za = Z[0]
        zu = Z[1]
        zl = Z[2]
        a_ = Rp[j]
        u_ = Rp[j + 1]
        l_ = Rc[j]
        w = Wi[j]
        c_ = Crow[j]
        for q in range(L):  # 3. of cell j - 1, then 1. of cell j: float64, SIMD over lanes
            lf = CM[q] - np.float64(LG[q])
            l_[q] = lf
            a = a_[q]
            u = u_[q]
            mu = u if u < lf else lf
            mn = a if a < mu else mu
            za[q] = F(mn - a)  # mn is finite: an +inf border gives -inf
            zu[q] = F(mn - u)
            zl[q] = F(mn - lf)
            CM[q] = mn + np.float64(c_[q]) * to2
        for q in range(L):  # 2. precision F: no branches, selects only
            isa = za[q] == F(0.0)  # a is a minimum (ties: diag, then up, then left)
            isu = (~isa) & (zu[q] == F(0.0))
            isl = ~(isa | isu)
            o1 = zu[q] if isa else za[q]  # the two others: (u, l), (a, l) or (a, u)
            o2 = zu[q] if isl else zl[q]
            e1 = exp(o1)
            e2 = exp(o2)
            rs, lg = recip_log(F(1.0) + e1 + e2)
            w1 = max(e1 * rs, F(TINY))  # > 0, so that the sign can carry the flag
            w2 = max(e2 * rs, F(TINY))
            w[0, q] = -w1 if isu else w1
            w[1, q] = -w2 if isl else w2
            LG[q] = lg

    @nb.njit(inline="always", **opts)
    def start(CM, LG):  # pragma: no cover - compiled
        for q in range(L):  # cell j = -1 is the +inf border: R = CM - LG = +inf
            CM[q] = np.inf
            LG[q] = F(0.0)

    @nb.njit(inline="always", **opts)
    def finish(Rc, mt, CM, LG):  # pragma: no cover - compiled
        r_ = Rc[mt]
        for q in range(L):  # 3. of the row's last cell
            r_[q] = CM[q] - np.float64(LG[q])

    @nb.njit(**opts)
    def forward_row(Rp, Rc, Crow, Wi, mt, to2, Z, CM, LG):  # pragma: no cover - compiled
        """Row i of a tile, cells j < mt (``cell``). A function of its own so that its arguments
        are distinct buffers for LLVM (swapping Rp and Rc inside one loop would hide that); Z,
        CM and LG are per-tile scratch, passed in (not allocated here) for the same reason."""
        start(CM, LG)
        for j in range(mt):
            cell(Rp, Rc, Crow, Wi, j, to2, Z, CM, LG)
        finish(Rc, mt, CM, LG)

    @nb.njit(**opts)
    def forward_rows2(Rp, Rc, Rn, Crow, Crow2, Wi, Wi2, mt, to2, Z, CM, LG, Z2, CM2, LG2):  # pragma: no cover - compiled
        """Rows i and i + 1 of a tile in one sweep, row i + 1 two cells behind row i (its cell
        j - 2 needs R(i, j - 3 .. j - 2), final once row i's cell j - 1 has run). A row alone is
        one chain of dependent cells (each reads its left neighbour's R: about 100 cycles of
        min, exp, division and log); two rows interleaved give the core two independent chains
        to overlap. Rp, Rc, Rn: R on rows i - 1, i, i + 1; each row has its own scratch."""
        start(CM, LG)
        start(CM2, LG2)
        for j in range(min(2, mt)):
            cell(Rp, Rc, Crow, Wi, j, to2, Z, CM, LG)
        for j in range(2, mt):
            cell(Rp, Rc, Crow, Wi, j, to2, Z, CM, LG)
            cell(Rc, Rn, Crow2, Wi2, j - 2, to2, Z2, CM2, LG2)
        finish(Rc, mt, CM, LG)
        for j in range(max(0, mt - 2), mt):
            cell(Rc, Rn, Crow2, Wi2, j, to2, Z2, CM2, LG2)
        finish(Rn, mt, CM2, LG2)

    @nb.njit(**opts)
    def gather_row(Cf, offs, lim, mt, Crow):  # pragma: no cover - compiled
        """Crow[j, q] = Cf[offs[q] + j] for j < lim[q], 0 for lim[q] <= j < mt: lane q's cost row
        starts at ``offs[q]`` of the flat input and has ``lim[q]`` columns inside its corner (0
        for a row outside it or an empty lane). A cost outside the corner is 0, never read
        from the padding (which may hold anything, NaN included).

        Each group of 8 lanes is copied in 8 x 8 blocks (``tr8_gather``: vector loads, shuffles,
        vector stores) over the columns all its lanes have, the rest element by element. On
        AVX2 this transposing copy costs about a third of what the previous per-lane scalar load
        in the cell loop did (LLVM does not emit gathers for znver3 and scalarised it: 16 loads,
        16 index computations and 14 inserts per cell); bit-identical results."""
        for q0 in range(0, L, 8):
            n = lim[q0]
            for q in range(q0 + 1, q0 + 8):
                n = min(n, lim[q])
            nb8 = n // 8 * 8
            for j0 in range(0, nb8, 8):
                tr8_gather(Cf, offs, q0, j0, Crow)
            for q in range(q0, q0 + 8):
                o = offs[q]
                for j in range(nb8, lim[q]):
                    Crow[j, q] = Cf[o + j]
                for j in range(lim[q], mt):
                    Crow[j, q] = F(0.0)

    @nb.njit(**_VEC)
    def tile_lengths(ln, lm, idx, cnt):  # pragma: no cover - compiled
        nl = np.zeros(L, dtype=np.int64)  # lengths per lane, 0 for an empty lane
        ml = np.zeros(L, dtype=np.int64)
        for q in range(cnt):
            nl[q] = ln[idx[q]]
            ml[q] = lm[idx[q]]
        return nl, ml, max(1, nl.max()), max(1, ml.max())

    @nb.njit(**_VEC)
    def forward_tile(C, ln, lm, idx, cnt, gamma, out, W, R3):  # pragma: no cover - compiled
        """Tile of examples idx[:cnt]: out[idx[q]] = R(n, m) of lane q; W (Nt+1, Mt+1, WEIGHTS, L)
        packed weights, the last row and column zero (the backward pass reads them as "no
        successor", and writes each lane's seed cell there itself).

        C is C-contiguous (B, N, M); R3 (3, Mt+1, L) is scratch: R on three rows. Rows run in
        pairs (``forward_rows2``), the last one alone when the tile has an odd number."""
        to2 = 1.0 / (gamma * _LN2)  # costs into base-2 units: exp((a - b) / gamma) = 2**((a - b) * to2)
        unit = gamma * _LN2
        nl, ml, nt, mt = tile_lengths(ln, lm, idx, cnt)
        for k in range(3):
            for j in range(mt + 1):
                for q in range(L):
                    R3[k, j, q] = np.inf
        for q in range(L):
            R3[0, 0, q] = 0.0  # R(0, 0) = 0; R(0, j > 0) = R(i > 0, 0) = +inf
        Cf = C.reshape(-1)
        # unsigned offsets: numba emits no negative-index wraparound for the loads
        offs = np.zeros(L, dtype=np.uint64)  # where lane q's cost row i starts in Cf
        lim = np.zeros(L, dtype=np.int64)  # its columns inside the corner (0: none)
        Z = np.empty((3, L), dtype=F)  # per-cell scratch of the two rows
        CM = np.empty(L)
        LG = np.empty(L, dtype=F)
        Z2 = np.empty((3, L), dtype=F)
        CM2 = np.empty(L)
        LG2 = np.empty(L, dtype=F)
        Crow = np.empty((mt, L), dtype=F)
        Crow2 = np.empty((mt, L), dtype=F)
        p = 0  # R3[p]: the row above the pair; the pair writes R3[(p + 1) % 3], R3[(p + 2) % 3]
        for i in range(0, nt, 2):
            two = i + 1 < nt
            for r in range(2 if two else 1):
                for q in range(L):
                    inside = q < cnt and i + r < nl[q]
                    offs[q] = (idx[q] * C.shape[1] + i + r) * C.shape[2] if inside else 0
                    lim[q] = ml[q] if inside else 0
                gather_row(Cf, offs, lim, mt, Crow if r == 0 else Crow2)
            # rotating the three buffers by call arguments: each call sees them as distinct
            a, b, c = R3[p], R3[(p + 1) % 3], R3[(p + 2) % 3]
            if two:
                forward_rows2(a, b, c, Crow, Crow2, W[i], W[i + 1], mt, to2, Z, CM, LG, Z2, CM2, LG2)
            else:
                forward_row(a, b, Crow, W[i], mt, to2, Z, CM, LG)
            for q in range(cnt):
                if nl[q] == i + 1:
                    out[idx[q]] = b[ml[q], q] * unit
                elif two and nl[q] == i + 2:
                    out[idx[q]] = c[ml[q], q] * unit
            if i == 0:
                R3[0, 0, :] = np.inf  # from row 1 on, column 0 is the border in every buffer
            p = (p + 2) % 3
        W[nt, : mt + 1] = 0.0
        W[:nt, mt] = 0.0

    @nb.njit(**opts)
    def backward_row(Eb, Ec, Wb, Wi, mt):  # pragma: no cover - compiled
        """Row i: Ec[j] = E(i, j) from row i+1 (Eb) and Ec[j + 1], for j = mt-1 .. 0.

        Each cell's weights come packed (``WEIGHTS``): the diag and up weights of cell
        (i+1, j) are decoded together at step j, its up weight used there and its diag weight
        kept (``wd``) for step j - 1, where (i+1, j) is the diagonal successor; the left weight
        of (i, j+1) is decoded from Wi. Column Mt holds zeros (finite weights that only ever
        multiply E = 0: no successor) except at a seed's cell (``backward_tile``)."""
        wd = np.empty(L, dtype=F)  # diag weight of cell (i+1, j+1), from (i+1, Mt) on
        pm = Wb[mt]
        for q in range(L):
            a1 = abs(pm[0, q])
            a2 = abs(pm[1, q])
            wd[q] = (F(1.0) - a1 - a2) if (pm[0, q] >= F(0.0)) & (pm[1, q] >= F(0.0)) else a1
        for j in range(mt - 1, -1, -1):
            eb_d = Eb[j + 1]
            eb_u = Eb[j]
            ec_l = Ec[j + 1]
            pb = Wb[j]
            pl = Wi[j + 1]
            e_ = Ec[j]
            for q in range(L):  # SIMD across the tile's examples
                p1 = pb[0, q]
                p2 = pb[1, q]
                a1 = abs(p1)
                a2 = abs(p2)
                mb = F(1.0) - a1 - a2  # the minimum's weight, >= 1/3: no cancellation
                su = p1 < F(0.0)
                isa = ~(su | (p2 < F(0.0)))
                wu = a1 if isa else (mb if su else a2)
                d_ = wd[q]
                wd[q] = mb if isa else a1
                l1 = pl[0, q]
                l2 = pl[1, q]
                b2 = abs(l2)
                wl = (F(1.0) - abs(l1) - b2) if l2 < F(0.0) else b2
                e_[q] = eb_d[q] * np.float64(d_) + eb_u[q] * np.float64(wu) + ec_l[q] * np.float64(wl)

    @nb.njit(**opts)
    def scatter_row(Gf, goffs, glim, Ec):  # pragma: no cover - compiled
        """Gf[goffs[q] + j] = Ec[j, q] for j < glim[q] (0 for a lane with no row here): E of the
        row, lane-major, into the examples' flat (B, N, M) gradient, in 8 x 8 blocks
        (``tr8_scatter``) over the columns all 8 lanes of a group have, the rest element by
        element. The per-element copy cost two fifths of the backward pass."""
        for q0 in range(0, L, 8):
            n = glim[q0]
            for q in range(q0 + 1, q0 + 8):
                n = min(n, glim[q])
            nb8 = n // 8 * 8
            for j0 in range(0, nb8, 8):
                tr8_scatter(Ec, q0, j0, Gf, goffs)
            for q in range(q0, q0 + 8):
                o = goffs[q]
                for j in range(nb8, glim[q]):
                    Gf[o + j] = Ec[j, q]

    @nb.njit(**_VEC)
    def backward_tile(W, ln, lm, idx, cnt, grad, G, Ea, Eb):  # pragma: no cover - compiled
        """E(i, j) = E(i+1, j+1) w_diag(i+1, j+1) + E(i+1, j) w_up(i+1, j)
        + E(i, j+1) w_left(i, j+1), swept from the tile's last cell, with E(n, m) = grad[b] one
        past example b's last cell, whose diag weight is set to 1 here: so E(n-1, m-1) =
        grad[b] and the cell loop tests no seed. G[b, i, j] = E(i, j) on each example's corner.
        Ea, Eb (Mt+1, L) hold E on two rows, column Mt zero ("no successor") but for seeds."""
        nl, ml, nt, mt = tile_lengths(ln, lm, idx, cnt)
        seed = np.zeros(L)
        for q in range(cnt):
            seed[q] = grad[idx[q]]
        ni = nl - 1  # each lane's seed enters above row ni: at E(ni + 1, ml)
        for q in range(cnt):
            # the seed's cell (n, m), one past lane q's last cell, outside its corner: diag
            # weight 1 (a minimum, the other two TINY) carries the seed put at E(n, m) into
            # E(n - 1, m - 1). Written here, not by the forward pass (where this loop cost
            # 0.5 ms of its 3.6, measured); the same values each time: backward may run twice
            W[nl[q], ml[q], 0, q] = TINY
            W[nl[q], ml[q], 1, q] = TINY
        Ea[: mt + 1] = 0.0
        Eb[: mt + 1] = 0.0
        Gf = G.reshape(-1)
        goffs = np.zeros(L, dtype=np.uint64)  # where lane q's row i starts in Gf
        glim = np.zeros(L, dtype=np.int64)  # its columns inside the corner (0: none)
        for i in range(nt - 1, -1, -1):
            Ep, Ec = (Ea, Eb) if (nt - 1 - i) % 2 == 0 else (Eb, Ea)  # rows i + 1 and i
            for q in range(cnt):
                if ni[q] == i:  # E(n, m) = seed, carried into E(n - 1, m - 1) by weight 1
                    Ep[ml[q], q] = seed[q]
            backward_row(Ep, Ec, W[i + 1], W[i], mt)
            for q in range(cnt):
                if ni[q] == i:  # column Mt is never rewritten: clear the seed there
                    Ep[ml[q], q] = 0.0
            for q in range(L):
                inside = q < cnt and i < nl[q]
                goffs[q] = (idx[q] * G.shape[1] + i) * G.shape[2] if inside else 0
                glim[q] = ml[q] if inside else 0
            scatter_row(Gf, goffs, glim, Ec)

    return forward_tile, backward_tile


_fwd64, _bwd64 = _make_kernels(exp2_cut64, recip_log2_64, np.float64)
_fwd32, _bwd32 = _make_kernels(exp2_cut32, recip_log2_32, np.float32)


def _drivers(fwd, bwd, F, parallel):
    """The tile loops, serial or ``prange``-parallel. Both builds come from the same source, and
    numba's on-disk cache keys a function by its bytecode and closure only, not by its flags:
    unless ``parallel`` is in the closure, whichever build was compiled first is loaded for the
    other (found in session 10: after a small batch had run the serial build first, the
    parallel one ran on one thread, in that process and in every later one). Each driver reads
    ``parallel`` (``par``) so that the two builds have distinct cache keys."""
    L = LANES
    par = bool(parallel)

    @nb.njit(parallel=par, **_VEC)
    def forward(C, ln, lm, tiles, counts, gamma, out, W):  # pragma: no cover - compiled
        M = C.shape[2] + (0 if par else 0)  # reads `par`: see the docstring of _drivers
        for t in nb.prange(tiles.shape[0]):
            R3 = np.empty((3, M + 1, L))
            fwd(C, ln, lm, tiles[t], counts[t], gamma, out, W[t], R3)

    @nb.njit(parallel=par, **_VEC)
    def backward(W, ln, lm, tiles, counts, grad, G):  # pragma: no cover - compiled
        M = G.shape[2] + (0 if par else 0)  # reads `par`: see the docstring of _drivers
        for t in nb.prange(tiles.shape[0]):
            Ea = np.empty((M + 1, L))
            Eb = np.empty((M + 1, L))
            bwd(W[t], ln, lm, tiles[t], counts[t], grad, G, Ea, Eb)

    return forward, backward


_KERNELS = {
    (dtype, parallel): _drivers(fwd, bwd, dtype, parallel)
    for dtype, fwd, bwd in ((np.float64, _fwd64, _bwd64), (np.float32, _fwd32, _bwd32))
    for parallel in (False, True)
}
#: Below this many lane-cells a batch of tiles runs on one thread (fork-join costs more).
#: Measured on 2 threads, two tiles, forward + backward (session 10, after the cache-key fix in
#: ``_drivers``): serial / parallel 0.047 / 0.044 ms at T = 16 (8k lane-cells), 0.096 / 0.067 at
#: T = 24 (18k), 0.625 / 0.396 at T = 64 (131k; the old bound of 200k kept this serial).
PARALLEL_MIN_WORK = 16_000


def make_tiles(ln: np.ndarray, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group examples into tiles of up to LANES with similar corners (sorted by n * m, largest
    first). Returns tiles (T, LANES) int64 example indices (unused lanes 0), counts (T,), and the
    examples left to the per-example kernel: a last tile of fewer than MIN_TILE examples, which
    would pay for LANES lanes."""
    order = np.argsort(-(ln.astype(np.int64) * lm), kind="stable")
    full = len(order) // LANES * LANES
    rest = order[full:]
    chunks = [order[s : s + LANES] for s in range(0, full, LANES)]
    single = np.empty(0, dtype=np.int64)
    if len(rest) >= MIN_TILE:
        chunks.append(rest)
    else:
        single = rest.astype(np.int64)
    tiles = np.zeros((len(chunks), LANES), dtype=np.int64)
    counts = np.zeros(len(chunks), dtype=np.int64)
    for t, ch in enumerate(chunks):
        tiles[t, : len(ch)] = ch
        counts[t] = len(ch)
    return tiles, counts, single


def _kernel(dtype, tiles, N, M, which):
    parallel = len(tiles) > 1 and len(tiles) * LANES * N * M >= PARALLEL_MIN_WORK
    return _KERNELS[(np.float32 if dtype == np.float32 else np.float64, parallel)][which]


def forward(C, ln, lm, tiles, counts, gamma, out, W):
    """C (B,N,M) float32/float64; out (B,) float64 receives the values of the tiled examples;
    W (T, N+1, M+1, WEIGHTS, LANES) of C's dtype receives the packed weights."""
    C = np.ascontiguousarray(C)  # the kernel reads it flat
    _, N, M = C.shape
    _kernel(C.dtype, tiles, N, M, 0)(C, ln, lm, tiles, counts, gamma, out, W)


def backward(W, ln, lm, tiles, counts, grad, G):
    """grad (B,) float64; G (B,N,M) zeroed, receives grad[b] * the expected alignment of the
    tiled examples."""
    _, N, M = G.shape
    _kernel(W.dtype, tiles, N, M, 1)(W, ln, lm, tiles, counts, grad, G)
