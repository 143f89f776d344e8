"""The batch-tiled soft-DTW kernel (``_numba_sdtw``): every path through it against brute force.

Batches of B >= MIN_TILE examples run in tiles of LANES examples in lock step; these tests use
batch sizes that give full tiles, partial tiles and a per-example remainder, variable lengths in
one tile, NaN padding, both dtypes, and the inlined exp/log polynomials against numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from procalign import dp
from procalign.dp import _numba_sdtw as S
from tests.dp import oracles

GAMMAS = [1e-3, 1e-1, 1.0, 100.0]


def _batch(B, N, M, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    c = torch.rand(B, N, M, generator=g, dtype=torch.float64)
    ln = torch.randint(1, N + 1, (B,), generator=g)
    lm = torch.randint(1, M + 1, (B,), generator=g)
    return c.to(dtype), ln, lm


def _enumerate(c, n, m, gamma):
    """soft-DTW value and expected alignment of one (n, m) corner by listing every path."""
    paths = oracles.grid_paths(n, m)
    costs = torch.stack([sum(c[i, j] for i, j in p) for p in paths])
    value = -gamma * torch.logsumexp(-costs / gamma, 0)
    prob = torch.softmax(-costs / gamma, 0)
    E = torch.zeros(c.shape, dtype=torch.float64)
    for p, w in zip(paths, prob, strict=True):
        for cell in p:
            E[cell] += w
    return value, E


def test_tiles_cover_the_batch():
    ln = torch.randint(1, 9, (40,)).numpy()
    lm = torch.randint(1, 9, (40,)).numpy()
    tiles, counts, single = S.make_tiles(ln, lm)
    got = sorted([int(b) for t, k in zip(tiles, counts, strict=True) for b in t[:k]] + single.tolist())
    assert got == list(range(40))
    assert all(1 <= k <= S.LANES for k in counts) and single.size < S.MIN_TILE
    # sorted by corner size: a tile's examples are the largest ones not yet placed
    area = ln * lm
    assert area[tiles[0, : counts[0]]].min() >= area[tiles[1, : counts[1]]].max()


# B = 16: one full tile; 23: a full tile and a partial one (7 >= MIN_TILE);
# 21: a full tile and 5 examples run per example
@pytest.mark.parametrize("B", [16, 21, 23])
@pytest.mark.parametrize("gamma", [0.1, 1.0])
def test_tiled_values_and_gradients_match_enumeration(B, gamma):
    c, ln, lm = _batch(B, 5, 4, seed=B)
    x = c.clone().requires_grad_(True)
    v = dp.soft_dtw(x, gamma, ln, lm, backend="numba")
    v.sum().backward()
    for b in range(B):
        n, m = int(ln[b]), int(lm[b])
        value, E = _enumerate(c[b], n, m, gamma)
        torch.testing.assert_close(v[b], value)
        torch.testing.assert_close(x.grad[b], E)  # zero outside the corner


@pytest.mark.parametrize("gamma", GAMMAS)
def test_tiled_gradcheck(gamma):
    c, ln, lm = _batch(8, 5, 4, seed=7)
    c.requires_grad_(True)
    assert gradcheck(lambda z: dp.soft_dtw(z, gamma, ln, lm, backend="numba"), (c,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiled_padding_is_never_read(dtype):
    c, ln, lm = _batch(19, 9, 7, seed=3, dtype=dtype)
    pad = c.clone()
    for b in range(19):
        pad[b, int(ln[b]) :] = float("nan")
        pad[b, :, int(lm[b]) :] = float("nan")
    x = c.clone().requires_grad_(True)
    v0 = dp.soft_dtw(x, 0.3, ln, lm, backend="numba")
    v0.sum().backward()
    # NaN padding is refused by the public input check: feed it to the autograd Function itself
    from procalign.dp.grid import _SoftDTWNumba

    x_pad = pad.clone().requires_grad_(True)
    v = _SoftDTWNumba.apply(x_pad, ln, lm, 0.3)
    v.sum().backward()
    assert torch.equal(v, v0)
    assert torch.equal(x_pad.grad, x.grad)
    x = x_pad
    assert not torch.isnan(x.grad).any()
    for b in range(19):
        assert not x.grad[b, int(ln[b]) :].any() and not x.grad[b, :, int(lm[b]) :].any()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: most predecessors beyond the exp cut
def test_tiled_matches_per_example_kernel(dtype, scale):
    """Tiled (B = 37) against the per-example kernel (each example alone, B = 1), T up to 40."""
    c, ln, lm = _batch(37, 40, 33, seed=11, dtype=torch.float64)
    c = (c * scale).to(dtype)
    x = c.clone().requires_grad_(True)
    v = dp.soft_dtw(x, 0.1, ln, lm, backend="numba")
    (v * torch.linspace(0.5, 2, 37, dtype=dtype)).sum().backward()
    tol = dict(rtol=2e-5, atol=1e-5 * scale) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-10 * scale)
    gtol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-9, atol=1e-10)
    for b in range(37):
        n, m = int(ln[b]), int(lm[b])
        xb = c[b : b + 1, :n, :m].clone().requires_grad_(True)
        vb = dp.soft_dtw(xb, 0.1, backend="numba")
        (vb * float(torch.linspace(0.5, 2, 37, dtype=dtype)[b])).sum().backward()
        torch.testing.assert_close(v[b : b + 1], vb, **tol)
        torch.testing.assert_close(x.grad[b, :n, :m], xb.grad[0], **gtol)


def test_exp2_and_log2_polynomials():
    c2 = S.CUT2
    z = np.concatenate([-np.logspace(-12, np.log10(c2 - 0.1), 20000), [0.0, -c2, -c2 - 1, -np.inf]])
    e64 = np.array([S.exp2_cut64(float(t)) for t in z[::7]] + [S.exp2_cut64(float(t)) for t in z[-4:]])
    zz = np.concatenate([z[::7], z[-4:]])
    ref = np.where(zz > -c2, np.exp2(zz), 0.0)
    np.testing.assert_allclose(e64, ref, rtol=5e-16, atol=0)
    assert S.exp2_cut64(0.0) == 1.0 and S.exp2_cut32(np.float32(0.0)) == 1.0
    np.testing.assert_allclose(np.exp2(-c2), np.exp(-S.CUT), rtol=1e-13)  # the same cut as in base e
    e32 = np.array([S.exp2_cut32(np.float32(t)) for t in z[::7]], dtype=np.float64)
    np.testing.assert_allclose(e32, np.exp2(z[::7].astype(np.float32).astype(np.float64)), rtol=1.2e-7, atol=0)
    s = np.linspace(1.0, 3.0, 5001)
    np.testing.assert_allclose([S.log2_13_64(float(t)) for t in s], np.log2(s), rtol=0, atol=5e-16)
    assert S.log2_13_64(1.0) == 0.0


def test_polynomials_hold_in_vectorised_lane_loops_with_the_tile_flags():
    """The tile kernels inline exp2 / (1/s, log2 s) into SIMD lane loops compiled with the tiles'
    fastmath flags (reassociation included for float32): the same accuracy must hold there, and
    2**0 = 1, log2(1) = 0, 1/1 = 1 exactly (the minimum's weight and an all-far soft-min)."""
    import numba as nb

    @nb.njit(**S._TILE32)
    def lanes32(z, s, e32, r32, l32):
        for i in range(z.shape[0]):
            e32[i] = S.exp2_cut32(np.float32(z[i]))
        for i in range(s.shape[0]):
            r, lg = S.recip_log2_32(np.float32(s[i]))
            r32[i] = r
            l32[i] = lg

    @nb.njit(**S._TILE)
    def lanes64(z, s, e64, r64, l64):
        for i in range(z.shape[0]):
            e64[i] = S.exp2_cut64(z[i])
        for i in range(s.shape[0]):
            r, lg = S.recip_log2_64(s[i])
            r64[i] = r
            l64[i] = lg

    c2 = S.CUT2
    z = np.concatenate([-np.logspace(-12, np.log10(c2 - 0.1), 4000), [0.0, -c2, -c2 - 1, -np.inf]])
    s = np.concatenate([np.linspace(1.0, 3.0, 4001), [1.5, np.nextafter(1.5, 2.0)]])
    s32 = s.astype(np.float32).astype(np.float64)
    out = [np.empty(len(z), np.float32), np.empty(len(s), np.float32), np.empty(len(s), np.float32),
           np.empty(len(z)), np.empty(len(s)), np.empty(len(s))]
    lanes32(z, s, out[0], out[1], out[2])
    lanes64(z, s, out[3], out[4], out[5])
    e32, r32, l32, e64, r64, l64 = out
    z32 = z.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(e32, np.where(z32 > -c2, np.exp2(z32), 0.0), rtol=1.2e-7, atol=0)
    np.testing.assert_allclose(e64, np.where(z > -c2, np.exp2(z), 0.0), rtol=5e-16, atol=0)
    np.testing.assert_allclose(r32, 1.0 / s32, rtol=2.5e-7, atol=0)
    np.testing.assert_allclose(l32, np.log2(s32), rtol=0, atol=3e-7)  # ~1.3 ulp of log2 3
    np.testing.assert_allclose(r64, 1.0 / s, rtol=2.3e-16, atol=0)
    np.testing.assert_allclose(l64, np.log2(s), rtol=0, atol=5e-16)
    assert e32[-4] == 1.0 and e64[-4] == 1.0 and e32[-1] == 0.0 and e64[-1] == 0.0
    assert r32[0] == 1.0 and l32[0] == 0.0 and r64[0] == 1.0 and l64[0] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_reads_costs_in_place_with_any_layout_and_empty_lanes(dtype):
    """The forward kernel loads costs straight from the (B, N, M) input: a non-contiguous array
    gives the same values and weights, and a partial tile (empty lanes, rows beyond a lane's
    corner) never takes a cost from outside an example's corner (NaN there changes nothing)."""
    c, ln, lm = _batch(9, 11, 6, seed=5)  # one tile of 9 >= MIN_TILE examples: 7 empty lanes
    C = c.numpy().astype(dtype)
    ln_np, lm_np = ln.numpy(), lm.numpy()
    tiles, counts, single = S.make_tiles(ln_np, lm_np)
    assert len(tiles) == 1 and counts[0] == 9 and single.size == 0

    def run(costs):
        out = np.full(9, np.nan)
        W = np.empty((1, 12, 7, S.WEIGHTS, S.LANES), dtype=dtype)
        S.forward(costs, ln_np, lm_np, tiles, counts, 0.5, out, W)
        return out, W

    ref_out, ref_W = run(C)
    pad = C.copy()
    for b in range(9):
        pad[b, ln_np[b]:] = np.nan
        pad[b, :, lm_np[b]:] = np.nan
    fortran = np.asfortranarray(pad)
    for costs in (pad, fortran, C.transpose(0, 2, 1).copy().transpose(0, 2, 1)):
        out, W = run(costs)
        np.testing.assert_array_equal(out, ref_out)
        for q, b in enumerate(tiles[0, :9]):  # the weights inside each lane's corner
            n, m = ln_np[b], lm_np[b]
            np.testing.assert_array_equal(W[0, :n, :m, :, q], ref_W[0, :n, :m, :, q])
    for b in range(9):
        value, _ = _enumerate(c[b], int(ln[b]), int(lm[b]), 0.5)
        np.testing.assert_allclose(ref_out[b], float(value), rtol=1e-5 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tiled_long_rows_blocked_copies(dtype):
    """Rows long enough for the 8 x 8 block copies of the costs and of G (lanes sharing >= 8
    columns), with ragged tails past the blocks, empty lanes, and NaN padding: the same values and
    gradients as the torch wavefront, and the padding never read."""
    g = torch.Generator().manual_seed(11)
    B, N, M = 23, 29, 37  # a full tile and a partial one (7 lanes, 9 empty)
    c = torch.rand(B, N, M, generator=g, dtype=torch.float64)
    ln = torch.randint(N - 12, N + 1, (B,), generator=g)
    lm = torch.randint(M - 20, M + 1, (B,), generator=g)
    ln[0], lm[0] = N, M
    x = c.to(dtype).clone().requires_grad_(True)
    v = dp.soft_dtw(x, 0.5, ln, lm, backend="numba")
    v.sum().backward()
    xt = c.clone().requires_grad_(True)
    vt = dp.soft_dtw(xt, 0.5, ln, lm, backend="torch")
    vt.sum().backward()
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {}
    torch.testing.assert_close(v.double(), vt.detach(), **tol)
    torch.testing.assert_close(x.grad.double(), xt.grad, **tol)
    from procalign.dp.grid import _SoftDTWNumba

    pad = c.to(dtype).clone()
    for b in range(B):
        pad[b, int(ln[b]) :] = float("nan")
        pad[b, :, int(lm[b]) :] = float("nan")
    x_pad = pad.requires_grad_(True)
    vp = _SoftDTWNumba.apply(x_pad, ln, lm, 0.5)
    vp.sum().backward()
    assert torch.equal(vp, v.detach())
    assert torch.equal(x_pad.grad, x.grad)


def test_serial_and_parallel_tile_drivers_have_distinct_cache_keys():
    """numba's on-disk cache keys a function by bytecode and closure, not by its ``parallel``
    flag: the serial and parallel drivers (one source) must differ in their closure, or the one
    compiled first is loaded for the other (the parallel build then ran on one thread)."""
    from numba import types

    for dtype in (np.float32, np.float64):
        for which in (0, 1):
            serial = S._KERNELS[(dtype, False)][which]
            parallel = S._KERNELS[(dtype, True)][which]
            sig = (types.float32[:, :, ::1],)  # any signature: the key's other parts are equal
            codegen = serial.targetctx.codegen()
            assert serial._cache._index_key(sig, codegen) != parallel._cache._index_key(sig, codegen)
