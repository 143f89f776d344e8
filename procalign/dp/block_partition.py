"""CPA's collaborative step mining: the best split of a similarity matrix into K diagonal blocks.

A partition is two boundary sequences ``0 = a_0 < a_1 < ... < a_K = n`` and
``0 = b_0 < ... < b_K = m``; block k covers rows ``[a_k, a_{k+1})`` of video 1 and columns
``[b_k, b_{k+1})`` of video 2, so the K blocks tile both videos in order (He et al., AAAI 2024,
Eq. 1-5). A block scores the mean of the similarities inside it (Eq. 1) or, with
``block_score="sqrt_area"``, their sum over sqrt(area). Under a semiring,

    D(i, j, 1) = C(0, 0, i, j)
    D(i, j, k) = (+)_{k-1 <= a < i, k-1 <= b < j} D(a, b, k-1) (x) C(a, b, i, j)

and the value is D(n, m, K). There are C(n-1, K-1) * C(m-1, K-1) partitions. Time
O(B K N^2 M^2 / 4) with O(1) block sums from prefix sums; the compiled CPU kernel is the fast path,
the torch recursion (O(B N^2 M^2) memory) serves other semirings, GPUs and cross-checks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from procalign.dp import _validate as V
from procalign.dp.semiring import MaxSemiring, Semiring, get_semiring

_SCORES = ("mean", "sqrt_area")


class BlockPartitionResult(NamedTuple):
    """``values`` (B,); ``bounds_n``, ``bounds_m`` (B, K+1) block boundaries (``a_0 = 0``,
    ``a_K = n_b``); step k of video 1 is frames ``bounds_n[b, k]:bounds_n[b, k+1]``."""

    values: Tensor
    bounds_n: Tensor
    bounds_m: Tensor


def _prepare(sim, K, lengths_n, lengths_m, block_score, backend):
    sim = V.check_tensor(sim, "sim", 3, "B, N, M")
    B, N, M = sim.shape
    ln = V.check_lengths(lengths_n, "lengths_n", B, N, sim)
    lm = V.check_lengths(lengths_m, "lengths_m", B, M, sim)
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)):
        raise TypeError(f"K must be an int, got {type(K).__name__}")
    K = int(K)
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    shortest = int(torch.minimum(ln, lm).min())
    if K > shortest:
        raise ValueError(
            f"K={K} is larger than a sequence length: the shortest sequence in the batch has "
            f"{shortest} frames (sim shape {tuple(sim.shape)}); each of the K blocks needs a frame"
        )
    if block_score not in _SCORES:
        raise ValueError(f"block_score must be one of {_SCORES}, got {block_score!r}")
    V.check_backend(backend)
    return sim, K, ln, lm


def _block_scores(sim: Tensor, block_score: str) -> tuple[Tensor, Tensor]:
    """All block scores C[b, a, c, i, j] (B, N+1, M+1, N+1, M+1) and their validity a<i, c<j."""
    B, N, M = sim.shape
    P = torch.nn.functional.pad(sim.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (B, N+1, M+1)
    a = torch.arange(N + 1, device=sim.device)
    c = torch.arange(M + 1, device=sim.device)
    Pij = P[:, None, None, :, :]  # P[i, j]
    Paj = P[:, :, None, None, :]  # P[a, j]  indexed [b, a, -, -, j]
    Pic = P.transpose(1, 2)[:, None, :, :, None]  # P[i, c] indexed [b, -, c, i, -]
    Pac = P[:, :, :, None, None]  # P[a, c]
    S = Pij - Paj - Pic + Pac
    rows = (a[None, :] - a[:, None]).clamp_min(0)  # [a, i] -> i - a
    cols = (c[None, :] - c[:, None]).clamp_min(0)  # [c, j] -> j - c
    area = (rows[:, None, :, None] * cols[None, :, None, :]).to(sim.dtype)  # [a, c, i, j]
    valid = area > 0
    safe = torch.where(valid, area, torch.ones_like(area))
    denom = safe if block_score == "mean" else safe.sqrt()
    return S / denom, valid


def block_value(
    sim: Tensor,
    K: int,
    semiring: Semiring | str = "max",
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    block_score: str = "mean",
    gamma: float = 1.0,
    _argmax: list | None = None,
) -> Tensor:
    """Value (B,) of the K-block partition lattice over ``sim`` (B, N, M) under any semiring.

    The generic torch recursion (autograd, any device), O(B N^2 M^2) memory.

    >>> import torch
    >>> ones = torch.ones(1, 4, 5, dtype=torch.float64)
    >>> block_value(ones, 2, "counting")  # C(3, 1) * C(4, 1)
    tensor([12.], dtype=torch.float64)
    """
    sr = get_semiring(semiring, gamma)
    sim, K, ln, lm = _prepare(sim, K, lengths_n, lengths_m, block_score, "torch")
    B, N, M = sim.shape
    C, valid = _block_scores(sim, block_score)
    zero = torch.tensor(sr.zero, dtype=sim.dtype, device=sim.device)
    C = torch.where(valid, C, zero)
    ii = torch.arange(N + 1, device=sim.device)
    jj = torch.arange(M + 1, device=sim.device)
    D = C[:, 0, 0]  # (B, N+1, M+1): one block from the origin
    for k in range(2, K + 1):
        reach = (ii[:, None] >= k - 1) & (jj[None, :] >= k - 1)
        prev = torch.where(reach, D, zero)[:, :, :, None, None]  # [b, a, c, -, -]
        cand = torch.where(valid, sr.times(prev, C), zero)  # [b, a, c, i, j]
        if _argmax is not None:
            flat = cand.flatten(1, 2)
            best = flat.max(dim=1)
            _argmax.append(best.indices)
            D = best.values
        else:
            D = sr.sum(cand, dim=(1, 2))
        D = torch.where((ii[:, None] >= k) & (jj[None, :] >= k), D, zero)
    return D[torch.arange(B, device=sim.device), ln, lm]


def _np(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


def _paint(bounds_n: Tensor, bounds_m: Tensor, shape, sqrt_area: bool, grad: Tensor) -> Tensor:
    """Subgradient of the best value: grad[b] / area (or / sqrt(area)) on each selected block."""
    G = torch.zeros(shape, dtype=grad.dtype)
    bn, bm = bounds_n.tolist(), bounds_m.tolist()
    for e in range(shape[0]):
        for k in range(len(bn[e]) - 1):
            r0, r1, c0, c1 = bn[e][k], bn[e][k + 1], bm[e][k], bm[e][k + 1]
            area = float((r1 - r0) * (c1 - c0))
            G[e, r0:r1, c0:c1] = grad[e] / (area**0.5 if sqrt_area else area)
    return G


class _BlockNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sim: Tensor, ln: Tensor, lm: Tensor, K: int, sqrt_area: bool):  # type: ignore[override]
        from procalign.dp import _numba_block as NB

        S = _np(sim)
        B = S.shape[0]
        out = np.empty(B)
        bn = np.zeros((B, K + 1), dtype=np.int64)
        bm = np.zeros((B, K + 1), dtype=np.int64)
        NB.block_forward(S, _np(ln), _np(lm), K, sqrt_area, out, bn, bm)
        bn_t, bm_t = torch.from_numpy(bn), torch.from_numpy(bm)
        ctx.mark_non_differentiable(bn_t, bm_t)
        ctx.save_for_backward(bn_t, bm_t)
        ctx.shape, ctx.sqrt_area = S.shape, sqrt_area
        return torch.from_numpy(out).to(sim.dtype), bn_t, bm_t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _gn, _gm):  # type: ignore[override]
        bn, bm = ctx.saved_tensors
        return _paint(bn, bm, ctx.shape, ctx.sqrt_area, grad), None, None, None, None


def block_partition(
    sim: Tensor,
    K: int,
    lengths_n: Tensor | None = None,
    lengths_m: Tensor | None = None,
    block_score: str = "mean",
    backend: str = "auto",
) -> BlockPartitionResult:
    """Best partition of each ``sim`` (B, N, M) into exactly K non-empty diagonal blocks.

    Returns the total block score ``values`` (B,), differentiable with a subgradient that spreads
    ``1/area`` (or ``1/sqrt(area)``) over each selected block, and integer boundaries
    ``bounds_n``/``bounds_m`` (B, K+1). Ties go to the smallest earlier corner. Needs
    ``K <= min(n_b, m_b)`` for every example.

    >>> import torch
    >>> sim = torch.eye(4).repeat_interleave(2, 0).repeat_interleave(2, 1)[None]  # 4 clear blocks
    >>> r = block_partition(sim, 4)
    >>> r.values, r.bounds_n.tolist()
    (tensor([4.]), [[0, 2, 4, 6, 8]])
    """
    sim, K, ln, lm = _prepare(sim, K, lengths_n, lengths_m, block_score, backend)
    sqrt_area = block_score == "sqrt_area"
    if V.use_numba(backend, sim, True):
        return BlockPartitionResult(*_BlockNumba.apply(sim, ln, lm, K, sqrt_area))
    argmax: list[Tensor] = []
    values = block_value(sim, K, MaxSemiring(), ln, lm, block_score, _argmax=argmax)
    B, N, M = sim.shape
    bn = torch.zeros(B, K + 1, dtype=torch.long)
    bm = torch.zeros(B, K + 1, dtype=torch.long)
    ptrs = [p.cpu() for p in argmax]  # ptrs[k-2][b, i, j] -> flat (a, c) for step k
    for e in range(B):
        i, j = int(ln[e]), int(lm[e])
        for k in range(K, 0, -1):
            bn[e, k], bm[e, k] = i, j
            if k > 1:
                i, j = divmod(int(ptrs[k - 2][e, i, j]), M + 1)
    return BlockPartitionResult(values, bn.to(sim.device), bm.to(sim.device))
