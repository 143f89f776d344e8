"""Every DP x semiring against brute-force enumeration and the cell-by-cell reference."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from procalign import dp
from procalign.dp import _reference as ref
from procalign.dp.semiring import CountingSemiring, LogSemiring, MaxSemiring
from tests.dp import oracles

SEMIRINGS = [LogSemiring(0.5), LogSemiring(1.0), MaxSemiring(), CountingSemiring()]
IDS = ["log0.5", "log1", "max", "counting"]
TINY = settings(max_examples=12, deadline=None)


def _potentials(shape, sr, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    # Counting works in real space with positive weights; the others with signed scores.
    return x + 0.5 if isinstance(sr, CountingSemiring) else 2 * x - 1


@pytest.mark.parametrize("sr", SEMIRINGS, ids=IDS)
@TINY
@given(N=st.integers(1, 5), M=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_grid_matches_enumeration(sr, N, M, seed):
    s = _potentials((N, M), sr, seed)
    expect = oracles.grid_value(s, sr)
    got = dp.grid_value(s[None], sr)[0]
    torch.testing.assert_close(got, expect)
    torch.testing.assert_close(ref.grid(s, sr), expect)


@pytest.mark.parametrize("skip", [False, True], ids=["strict", "skip"])
@pytest.mark.parametrize("sr", SEMIRINGS, ids=IDS)
@TINY
@given(T=st.integers(1, 6), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_step_lattice_matches_enumeration(sr, skip, T, K, seed):
    if not skip and K > T:
        K = T
    p = _potentials((T, K), sr, seed)
    expect = oracles.step_value(p, sr, skip)
    torch.testing.assert_close(dp.step_value(p[None], sr, skip=skip)[0], expect)
    torch.testing.assert_close(ref.step(p, sr, skip), expect)


@pytest.mark.parametrize("kind", ["mean", "sqrt_area"])
@pytest.mark.parametrize("sr", SEMIRINGS, ids=IDS)
@TINY
@given(N=st.integers(1, 6), M=st.integers(1, 6), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_block_partition_matches_enumeration(sr, kind, N, M, K, seed):
    K = min(K, N, M)
    s = _potentials((N, M), sr, seed)
    expect = oracles.block_value(s, K, sr, kind)
    torch.testing.assert_close(dp.block_value(s[None], K, sr, block_score=kind)[0], expect)
    torch.testing.assert_close(ref.block(s, K, sr, kind), expect)


# ---- public cost-based entry points, both backends, against enumeration ---------------------

BACKENDS = ["torch", "numba"]


@pytest.mark.parametrize("backend", BACKENDS)
@TINY
@given(N=st.integers(1, 5), M=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_dtw_and_soft_dtw_match_enumeration(backend, N, M, seed):
    c = torch.rand(N, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    paths = oracles.grid_paths(N, M)
    costs = torch.stack([sum(c[i, j] for i, j in p) for p in paths])
    r = dp.dtw(c[None], backend=backend)
    torch.testing.assert_close(r.values[0], costs.min())
    best = paths[int(costs.argmin())]
    onpath = torch.zeros(N, M, dtype=torch.float64)
    for cell in best:
        onpath[cell] = 1
    assert torch.equal(r.path[0].double(), onpath)
    for gamma in (0.1, 1.0):
        expect = -gamma * torch.logsumexp(-costs / gamma, 0)
        torch.testing.assert_close(dp.soft_dtw(c[None], gamma, backend=backend)[0], expect)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("skip", [False, True], ids=["strict", "skip"])
@TINY
@given(T=st.integers(1, 6), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_step_forward_and_viterbi_match_enumeration(backend, skip, T, K, seed):
    if not skip:
        K = min(K, T)
    lp = torch.randn(T, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    labs = oracles.step_labelings(T, K, skip)
    totals = torch.stack([sum(lp[t, k] for t, k in enumerate(lab)) for lab in labs])
    torch.testing.assert_close(dp.step_forward(lp[None], skip=skip, backend=backend)[0], torch.logsumexp(totals, 0))
    v = dp.step_viterbi(lp[None], skip=skip, backend=backend)
    torch.testing.assert_close(v.values[0], totals.max())
    assert list(v.labels[0].tolist()) == list(labs[int(totals.argmax())])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["mean", "sqrt_area"])
@TINY
@given(N=st.integers(1, 6), M=st.integers(1, 6), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_block_partition_best_and_bounds(backend, kind, N, M, K, seed):
    K = min(K, N, M)
    s = torch.rand(N, M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    value, rows, cols = oracles.best_block_partition(s, K, kind)
    r = dp.block_partition(s[None], K, block_score=kind, backend=backend)
    assert math.isclose(float(r.values[0]), value, rel_tol=1e-9, abs_tol=1e-12)
    assert tuple(r.bounds_n[0].tolist()) == rows
    assert tuple(r.bounds_m[0].tolist()) == cols


# ---- closed-form counts -------------------------------------------------------------------


def _delannoy(m: int, n: int) -> int:
    return sum(math.comb(m, k) * math.comb(n, k) * 2**k for k in range(min(m, n) + 1))


@pytest.mark.parametrize("N,M", [(1, 1), (2, 3), (4, 4), (6, 5), (9, 7)])
def test_grid_counts_are_delannoy(N, M):
    ones = torch.ones(1, N, M, dtype=torch.float64)
    assert dp.grid_value(ones, "counting").item() == _delannoy(N - 1, M - 1)
    assert len(oracles.grid_paths(min(N, 5), min(M, 5))) == _delannoy(min(N, 5) - 1, min(M, 5) - 1)


@pytest.mark.parametrize("T,K", [(1, 1), (5, 2), (6, 3), (10, 4), (12, 12)])
def test_step_counts(T, K):
    ones = torch.ones(1, T, K, dtype=torch.float64)
    assert dp.step_value(ones, "counting").item() == math.comb(T - 1, K - 1)
    assert dp.step_value(ones, "counting", skip=True).item() == math.comb(T + K - 1, T)
    # log semiring on zero potentials gives the log-count, through the compiled path too
    zeros = torch.zeros(1, T, K, dtype=torch.float64)
    for backend in BACKENDS:
        got = dp.step_forward(zeros, backend=backend).item()
        assert math.isclose(got, math.log(math.comb(T - 1, K - 1)), abs_tol=1e-12)


@pytest.mark.parametrize("N,M,K", [(3, 3, 1), (4, 5, 2), (6, 6, 3), (8, 7, 4)])
def test_block_counts(N, M, K):
    ones = torch.ones(1, N, M, dtype=torch.float64)
    assert dp.block_value(ones, K, "counting").item() == math.comb(N - 1, K - 1) * math.comb(M - 1, K - 1)
