"""The pairwise grid lattice: DTW, soft-DTW and the soft-DTW divergence.

A path is a monotone chain of cells from (0, 0) to (n-1, m-1) that moves down, right or
diagonally. Under a semiring, the value of the lattice over scores ``s`` is

    R(i, j) = s(i, j) (x) [ R(i-1, j-1) (+) R(i-1, j) (+) R(i, j-1) ],   R(0, 0) = s(0, 0)

and the value is ``R(n-1, m-1)``. DTW is the max semiring over ``-costs``; soft-DTW (Cuturi &
Blondel, ICML 2017) the log semiring with temperature gamma over ``-costs``. The gradient of the
soft-DTW value with respect to the costs is the expected alignment matrix. Time O(B N M); the
torch path sweeps anti-diagonals (O(N + M) sequential steps of O(B N) work) with a hand-written
backward sweep, the numba path sweeps rows on each core. ``grid_value`` is the generic recursion
for any semiring (autograd, double backward).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from procalign.dp import _validate as V
from procalign.dp.semiring import NEG, Semiring, get_semiring


class DTWResult(NamedTuple):
    """``values`` (B,) minimal path cost; ``path`` (B, N, M) 0/1 optimal alignment matrix."""

    values: Tensor
    path: Tensor


# --------------------------------------------------------------------------------------------
# Generic torch recursion (any semiring, autograd, any device)
# --------------------------------------------------------------------------------------------


def _skew_index(N: int, M: int, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """For anti-diagonal d and row i: column j = d - i, its clamp and validity (N+M-1, N)."""
    i = torch.arange(N, device=device)
    d = torch.arange(N + M - 1, device=device)
    j = d[:, None] - i[None, :]
    valid = (j >= 0) & (j < M)
    return i[None, :].expand_as(j), j.clamp(0, M - 1), valid


def grid_value(
    scores: Tensor,
    semiring: Semiring | str = "log",
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    gamma: float = 1.0,
) -> Tensor:
    """Value of the grid lattice over ``scores`` (B, N, M) under any semiring -> (B,).

    This is the generic anti-diagonal wavefront in torch: differentiable by autograd, runs on any
    device. Example ``n, m = lengths_n[b], lengths_m[b]`` reads only ``scores[b, :n, :m]``.

    >>> import torch
    >>> ones = torch.ones(1, 3, 3, dtype=torch.float64)
    >>> grid_value(ones, "counting")  # Delannoy number D(2, 2)
    tensor([13.], dtype=torch.float64)
    """
    scores = V.check_tensor(scores, "scores", 3, "B, N, M")
    sr = get_semiring(semiring, gamma)
    B, N, M = scores.shape
    ln = V.check_lengths(lengths_n, "lengths_n", B, N, scores)
    lm = V.check_lengths(lengths_m, "lengths_m", B, M, scores)
    ii, jj, valid = _skew_index(N, M, scores.device)
    zero = torch.tensor(sr.zero, dtype=scores.dtype, device=scores.device)
    skew = torch.where(valid, scores[:, ii, jj], zero)  # (B, N+M-1, N)
    edge = zero.expand(B, 1)
    diags: list[Tensor] = []
    prev1 = prev2 = None
    for d in range(N + M - 1):
        s = skew[:, d]
        if d == 0:
            r = s
        else:
            up = torch.cat([edge, prev1[:, :-1]], dim=1)  # (i-1, j) sits at index i-1
            left = prev1  # (i, j-1) sits at index i
            diag = torch.cat([edge, prev2[:, :-1]], dim=1) if prev2 is not None else zero.expand_as(s)
            # Order: diagonal, up, left. MaxSemiring gives ties to the first: smallest indices.
            r = sr.times(s, sr.plus(diag, up, left))
            r = torch.where(valid[d], r, zero)
        diags.append(r)
        prev2, prev1 = prev1, r
    R = torch.stack(diags, dim=1)
    return R[torch.arange(B, device=scores.device), ln + lm - 2, ln - 1]


class _GridWavefront(torch.autograd.Function):
    """Soft-DTW (``gamma`` > 0) or DTW (``gamma`` None) over costs on any device, with a
    hand-written backward: the forward stores each cell's three predecessor weights (softmax or
    first-argmin one-hot) in the skewed (diagonal, row) layout; the backward is one reverse
    anti-diagonal sweep, E(i, j) = sum over successors of E(successor) * weight."""

    @staticmethod
    def forward(ctx, costs: Tensor, ln: Tensor, lm: Tensor, gamma: float | None):  # type: ignore[override]
        B, N, M = costs.shape
        dev, dt = costs.device, costs.dtype
        ii, jj, valid = _skew_index(N, M, dev)
        big = torch.tensor(-NEG, dtype=dt, device=dev)  # "impossible" for a cost
        skew = torch.where(valid, costs[:, ii, jj], big)
        edge = big.expand(B, 1)
        zero_w = torch.zeros(B, N, 3, dtype=dt, device=dev)
        Rs, Ws = [], []
        prev1 = prev2 = None
        for d in range(N + M - 1):
            c = skew[:, d]
            if d == 0:
                r, w = c, zero_w
            else:
                up = torch.cat([edge, prev1[:, :-1]], dim=1)
                diag = torch.cat([edge, prev2[:, :-1]], dim=1) if prev2 is not None else big.expand(B, N)
                P = torch.stack([diag, up, prev1], dim=-1)  # (B, N, 3): diag, up, left
                if gamma is None:
                    best, idx = P.min(dim=-1)  # first minimum: smallest indices win ties
                    w = torch.nn.functional.one_hot(idx, 3).to(dt)
                else:
                    m = P.min(dim=-1, keepdim=True).values
                    z = torch.exp((m - P) / gamma)
                    tot = z.sum(dim=-1, keepdim=True)
                    w = z / tot
                    best = (m - gamma * torch.log(tot)).squeeze(-1)
                r = torch.where(valid[d], c + best, big)
                w = w * valid[d][:, None].to(dt)
            Rs.append(r)
            Ws.append(w)
            prev2, prev1 = prev1, r
        W = torch.stack(Ws, dim=1)  # (B, N+M-1, N, 3)
        R = torch.stack(Rs, dim=1)
        ctx.save_for_backward(W, ln, lm)
        ctx.shape = (B, N, M)
        return R[torch.arange(B, device=dev), ln + lm - 2, ln - 1]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        W, ln, lm = ctx.saved_tensors
        B, N, M = ctx.shape
        dev, dt = W.device, W.dtype
        Dg = N + M - 1
        end_d, end_i = ln + lm - 2, ln - 1
        rows = torch.arange(B, device=dev)
        pad = torch.zeros(B, 1, dtype=dt, device=dev)
        E = torch.zeros(B, Dg, N, dtype=dt, device=dev)
        e1 = e2 = torch.zeros(B, N, dtype=dt, device=dev)  # E on diagonals d+1 and d+2
        for d in range(Dg - 1, -1, -1):
            e = torch.zeros(B, N, dtype=dt, device=dev)
            if d + 1 < Dg:
                w1 = W[:, d + 1]
                # (i+1, j) on d+1 at index i+1 reached us by "up"; (i, j+1) at index i by "left"
                e = e + torch.cat([(e1 * w1[..., 1])[:, 1:], pad], dim=1) + e1 * w1[..., 2]
            if d + 2 < Dg:
                e = e + torch.cat([(e2 * W[:, d + 2, :, 0])[:, 1:], pad], dim=1)
            hit = end_d == d
            if bool(hit.any()):
                e = e.index_put((rows[hit], end_i[hit]), grad.to(dt)[hit], accumulate=True)
            E[:, d] = e
            e2, e1 = e1, e
        ii, jj, valid = _skew_index(N, M, dev)
        G = torch.zeros(B, N, M, dtype=dt, device=dev)
        G[:, ii[valid], jj[valid]] = E[:, valid]
        return G, None, None, None


# --------------------------------------------------------------------------------------------
# Compiled CPU path (log and max semirings) with hand-written backward
# --------------------------------------------------------------------------------------------


def _np(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


class _SoftDTWNumba(torch.autograd.Function):
    """Compiled soft-DTW: tiles of up to 16 examples run in lock step (``_numba_sdtw``, SIMD
    across examples); a last tile too small to pay for its lanes runs per example
    (``_numba_grid``). Both store the predecessor weights of each cell for the backward (the
    tiles two numbers per cell: ``_numba_sdtw.WEIGHTS``)."""

    @staticmethod
    def forward(ctx, costs: Tensor, ln: Tensor, lm: Tensor, gamma: float) -> Tensor:  # type: ignore[override]
        from procalign.dp import _numba_grid as K
        from procalign.dp import _numba_sdtw as S

        C = _np(costs)
        B, N, M = C.shape
        out = np.empty(B, dtype=np.float64)
        ln_np, lm_np = _np(ln), _np(lm)
        tiles, counts, single = S.make_tiles(ln_np, lm_np)
        W = np.empty((len(tiles), N + 1, M + 1, S.WEIGHTS, S.LANES), dtype=C.dtype)
        if len(tiles):
            S.forward(C, ln_np, lm_np, tiles, counts, gamma, out, W)
        Ws = None
        if single.size:
            out_s = np.empty(single.size, dtype=np.float64)
            Ws = np.empty((single.size, N, M, 3), dtype=C.dtype)
            K.soft_dtw_forward(np.ascontiguousarray(C[single]), ln_np[single], lm_np[single], gamma, out_s, Ws)
            out[single] = out_s
        ctx.saved = (W, tiles, counts, single, Ws, ln_np, lm_np, C.dtype, (B, N, M))
        return torch.from_numpy(out).to(dtype=costs.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        from procalign.dp import _numba_grid as K
        from procalign.dp import _numba_sdtw as S

        W, tiles, counts, single, Ws, ln, lm, dtype, shape = ctx.saved
        g = _np(grad.double())
        B, N, M = shape
        # the kernels write every cell of each example's corner: with full lengths that is all
        # of G, and zeroing it first (8 MB at B = 32, T = 256) would be wasted
        full = bool((ln == N).all() and (lm == M).all())
        G = np.empty(shape, dtype=dtype) if full else np.zeros(shape, dtype=dtype)
        if len(tiles):
            S.backward(W, ln, lm, tiles, counts, g, G)
        if single.size:
            Gs = np.zeros((single.size, *shape[1:]), dtype=dtype)
            K.soft_dtw_backward(Ws, ln[single], lm[single], np.ascontiguousarray(g[single]), Gs)
            G[single] = Gs
        return torch.from_numpy(G), None, None, None


class _DTWNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, costs: Tensor, ln: Tensor, lm: Tensor):  # type: ignore[override]
        from procalign.dp import _numba_grid as K

        C = _np(costs)
        out = np.empty(C.shape[0], dtype=np.float64)
        P = np.zeros(C.shape, dtype=C.dtype)
        K.dtw_forward(C, _np(ln), _np(lm), out, P)
        path = torch.from_numpy(P)
        ctx.save_for_backward(path)
        ctx.mark_non_differentiable(path)
        return torch.from_numpy(out).to(dtype=costs.dtype), path

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_values: Tensor, _grad_path: Tensor):  # type: ignore[override]
        (path,) = ctx.saved_tensors
        return grad_values[:, None, None] * path, None, None


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def _prepare(costs: Tensor, lengths_n, lengths_m, backend: str):
    costs = V.check_tensor(costs, "costs", 3, "B, N, M")
    B, N, M = costs.shape
    ln = V.check_lengths(lengths_n, "lengths_n", B, N, costs)
    lm = V.check_lengths(lengths_m, "lengths_m", B, M, costs)
    V.check_backend(backend)
    return costs, ln, lm


def dtw(
    costs: Tensor,
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    backend: str = "auto",
) -> DTWResult:
    """Dynamic time warping: minimal-cost monotone path through ``costs`` (B, N, M).

    Returns ``values`` (B,), differentiable (its gradient w.r.t. costs is the path), and
    ``path`` (B, N, M), the 0/1 alignment matrix. Moves are right, down and diagonal; ties go to
    the predecessor with the smallest indices (diagonal, then (i-1, j), then (i, j-1)), as in
    tslearn. With ``lengths_n``/``lengths_m`` (B,), example b uses ``costs[b, :n_b, :m_b]`` only
    and its path is zero outside that corner.

    >>> import torch
    >>> c = torch.tensor([[[0., 1., 1.], [1., 0., 0.], [1., 1., 0.]]])
    >>> r = dtw(c)
    >>> r.values
    tensor([0.])
    >>> r.path[0].int().tolist()  # ties: the diagonal step wins
    [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    """
    costs, ln, lm = _prepare(costs, lengths_n, lengths_m, backend)
    if V.use_numba(backend, costs, True):
        return DTWResult(*_DTWNumba.apply(costs, ln, lm))
    with torch.enable_grad():
        c = costs.detach().requires_grad_(True)
        best = _GridWavefront.apply(c, ln, lm, None)
        (path,) = torch.autograd.grad(best.sum(), c)
    # The path's cost is the DTW value; written this way its gradient is the path.
    return DTWResult((path * costs).sum(dim=(1, 2)), path)


def soft_dtw(
    costs: Tensor,
    gamma: float = 1.0,
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Soft-DTW ``-gamma * log sum_paths exp(-cost(path) / gamma)`` over ``costs`` (B, N, M) -> (B,).

    Differentiable; the gradient w.r.t. ``costs`` is the expected alignment matrix (each cell's
    probability under the Gibbs distribution over paths). Stable for gamma in [1e-3, 1e2] and
    lengths up to thousands in float32 (the compiled path accumulates in float64). Tends to
    :func:`dtw` as gamma -> 0.

    >>> import torch
    >>> c = torch.zeros(1, 2, 2, dtype=torch.float64)
    >>> soft_dtw(c, gamma=1.0)  # three paths of cost 0: -log 3
    tensor([-1.0986], dtype=torch.float64)
    """
    g = V.check_gamma(gamma)
    costs, ln, lm = _prepare(costs, lengths_n, lengths_m, backend)
    if V.use_numba(backend, costs, True):
        return _SoftDTWNumba.apply(costs, ln, lm, g)
    return _GridWavefront.apply(costs, ln, lm, g)


def expected_alignment(
    costs: Tensor,
    gamma: float = 1.0,
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """The expected alignment matrix (B, N, M) of soft-DTW: the gradient of its value."""
    costs = V.check_tensor(costs, "costs", 3, "B, N, M")
    with torch.enable_grad():
        c = costs.detach().requires_grad_(True)
        v = soft_dtw(c, gamma, lengths_n, lengths_m, backend)
        (grad,) = torch.autograd.grad(v.sum(), c)
    return grad


_COSTS = ("sqeuclidean", "euclidean", "cosine")


def _refine_small(x: Tensor, y: Tensor, sq: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Recompute squared distances that cancellation may have swamped, in place; return their
    (b, i, j) indices. ``|x|^2 + |y|^2 - 2 x.y`` carries an absolute error of a few eps * scale
    (scale = |x|^2 + |y|^2); pairs below sqrt(eps) * scale are recomputed from differences, so
    identical frames give exactly 0 and near-identical ones their true small distance."""
    rel = float(torch.finfo(sq.dtype).eps) ** 0.5
    b, i, j = torch.nonzero(sq <= rel * scale, as_tuple=True)
    chunk = max(1, (1 << 22) // x.shape[-1])  # bound the (pairs, D) temporary
    for s in range(0, b.numel(), chunk):
        bb, ii, jj = b[s : s + chunk], i[s : s + chunk], j[s : s + chunk]
        diff = x[bb, ii] - y[bb, jj]
        sq[bb, ii, jj] = (diff * diff).sum(-1)
    return b, i, j


class _SqDistance(torch.autograd.Function):
    """Squared Euclidean (``root`` False) or Euclidean (``root`` True) frame costs, with the
    gradient written as batched matmuls: for H = dL/dC (scaled by 1/c for the Euclidean cost),
    dL/dx_i = 2 (x_i sum_j H_ij - sum_j H_ij y_j), dL/dy_j likewise -- two ``baddbmm`` calls,
    no (B, N, M) temporaries beyond H.

    The Euclidean cost is a safe square root: its value is exact (0) for identical frames and its
    gradient there is defined as 0 (the minimum-norm subgradient of ||x - y|| at x = y, and what
    central differences give). Near-zero pairs are recomputed from differences and their gradient
    (x - y) / ||x - y|| taken from the differences too, so it stays bounded by |dL/dC|."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, root: bool) -> Tensor:  # type: ignore[override]
        nx = (x * x).sum(-1)
        ny = (y * y).sum(-1)
        scale = nx[:, :, None] + ny[:, None, :]
        # one baddbmm (not bmm then in-place adds, 0.3 ms faster at B = 32, T = 256): rounding
        # nx + ny once gives float32 soft-DTW gradients 1.5-6x closer to float64 (measured)
        sq = torch.baddbmm(scale, x, y.transpose(1, 2), alpha=-2.0).clamp_min_(0.0)
        ctx.root = root
        if not root:
            ctx.save_for_backward(x, y)
            return sq
        b, i, j = _refine_small(x, y, sq, scale)
        c = sq.sqrt_()
        ctx.save_for_backward(x, y, c, b, i, j)
        return c

    @staticmethod
    @once_differentiable
    def backward(ctx, G: Tensor):  # type: ignore[override]
        if not ctx.root:
            x, y = ctx.saved_tensors
            H, k = G, 2.0
        else:
            x, y, c, b, i, j = ctx.saved_tensors
            # 1/c away from the refined pairs; those are added from their differences below
            H = torch.where(c > 0, G / torch.where(c > 0, c, torch.ones_like(c)), torch.zeros_like(c))
            H[b, i, j] = 0.0
            k = 1.0
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = torch.baddbmm(x * H.sum(2, keepdim=True), H, y, beta=k, alpha=-k)
        if ctx.needs_input_grad[1]:
            gy = torch.baddbmm(y * H.sum(1)[:, :, None], H.transpose(1, 2), x, beta=k, alpha=-k)
        if ctx.root and b.numel():
            diff = x[b, i] - y[b, j]
            cb = c[b, i, j]
            u = diff * (G[b, i, j] / torch.where(cb > 0, cb, torch.ones_like(cb)) * (cb > 0))[:, None]
            if gx is not None:
                gx.index_put_((b, i), u, accumulate=True)
            if gy is not None:
                gy.index_put_((b, j), -u, accumulate=True)
        return gx, gy, None


def pairwise_costs(x: Tensor, y: Tensor, cost: str = "sqeuclidean") -> Tensor:
    """Frame-to-frame costs between ``x`` (B, N, D) and ``y`` (B, M, D) -> (B, N, M).

    ``cost`` is ``"sqeuclidean"`` (||x - y||^2), ``"euclidean"`` (||x - y||) or ``"cosine"``
    (1 - cos). Values and gradients are finite everywhere, including zero distances: the
    Euclidean cost of identical frames is exactly 0 with gradient 0 there, and a zero frame has
    cosine cost 1 with finite gradient. The (squared) Euclidean gradients are computed as batched
    matmuls (once differentiable); cosine uses autograd.
    """
    x, bx = V.check_tensor_bound(x, "x", 3, "B, N, D")
    y, by = V.check_tensor_bound(y, "y", 3, "B, M, D")
    V.same_device_dtype(x, y, "x", "y")
    if x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(
            f"x (B, N, D) and y (B, M, D) must share B and D, got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    big = max(bx, by)
    if 4 * big * big * x.shape[2] > torch.finfo(x.dtype).max:
        raise ValueError(
            f"x and y have values up to {big:.3g}: their squared distances overflow {x.dtype}; "
            "rescale the features or use float64"
        )
    if cost == "cosine":
        xn = torch.nn.functional.normalize(x, dim=-1)
        yn = torch.nn.functional.normalize(y, dim=-1)
        return V.mark_finite(1.0 - torch.bmm(xn, yn.transpose(1, 2)), 2.0)  # in [0, 2]: finite
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost!r}")
    # finite inputs whose squared distances cannot overflow give finite costs, at most (2 big)^2 D
    # (its square root for the Euclidean cost): the DP entry points need not scan them again
    bound = 4 * big * big * x.shape[2]
    root = cost == "euclidean"
    return V.mark_finite(_SqDistance.apply(x, y, root), math.sqrt(bound) if root else bound)


def soft_dtw_divergence(
    x: Tensor,
    y: Tensor,
    gamma: float = 1.0,
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    cost: str = "sqeuclidean",
    backend: str = "auto",
) -> Tensor:
    """Soft-DTW divergence ``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2`` -> (B,).

    ``x`` (B, N, D), ``y`` (B, M, D). Non-negative for the squared Euclidean cost and zero when
    ``x == y`` (Blondel, Mensch & Vert, AISTATS 2021).
    """
    cxy = pairwise_costs(x, y, cost)
    B, N, M = cxy.shape
    ln = V.check_lengths(lengths_n, "lengths_n", B, N, cxy)
    lm = V.check_lengths(lengths_m, "lengths_m", B, M, cxy)
    xy = soft_dtw(cxy, gamma, ln, lm, backend)
    xx = soft_dtw(pairwise_costs(x, x, cost), gamma, ln, ln, backend)
    yy = soft_dtw(pairwise_costs(y, y, cost), gamma, lm, lm, backend)
    return xy - 0.5 * (xx + yy)
