"""Invariants: padding never leaks, gamma -> 0 limit, semiring bounds, symmetry, fast == generic."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from procalign import dp

BACKENDS = ["torch", "numba"]


def _padded_batch(shapes, seed=0, fill=123.0):
    g = torch.Generator().manual_seed(seed)
    N = max(s[0] for s in shapes)
    M = max(s[1] for s in shapes)
    items = [torch.rand(*s, generator=g, dtype=torch.float64) for s in shapes]
    batch = torch.full((len(shapes), N, M), fill, dtype=torch.float64)
    for b, x in enumerate(items):
        batch[b, : x.shape[0], : x.shape[1]] = x
    ln = torch.tensor([s[0] for s in shapes])
    lm = torch.tensor([s[1] for s in shapes])
    return items, batch, ln, lm


SHAPES = [(7, 5), (3, 6), (7, 7), (4, 2), (1, 3)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_leaks_grid(backend):
    items, batch, ln, lm = _padded_batch(SHAPES, seed=1)
    batch.requires_grad_()
    sd = dp.soft_dtw(batch, 0.3, ln, lm, backend=backend)
    (g,) = torch.autograd.grad(sd.sum(), batch)
    r = dp.dtw(batch, ln, lm, backend=backend)
    for b, x in enumerate(items):
        n, m = x.shape
        x1 = x[None].clone().requires_grad_()
        one = dp.soft_dtw(x1, 0.3, backend=backend)
        (g1,) = torch.autograd.grad(one.sum(), x1)
        torch.testing.assert_close(sd[b], one[0])
        torch.testing.assert_close(g[b, :n, :m], g1[0])
        assert torch.all(g[b, n:, :] == 0) and torch.all(g[b, :, m:] == 0)
        r1 = dp.dtw(x[None], backend=backend)
        torch.testing.assert_close(r.values[b], r1.values[0])
        assert torch.equal(r.path[b, :n, :m], r1.path[0])
        assert r.path[b].sum() == r.path[b, :n, :m].sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_leaks_step_lattice(backend):
    g = torch.Generator().manual_seed(2)
    sizes = [(6, 3), (4, 4), (6, 1), (2, 2)]
    T, K = 6, 4
    batch = torch.full((4, T, K), 50.0, dtype=torch.float64)
    items = []
    for b, (t, k) in enumerate(sizes):
        x = torch.randn(t, k, generator=g, dtype=torch.float64)
        batch[b, :t, :k] = x
        items.append(x)
    lt = torch.tensor([s[0] for s in sizes])
    lk = torch.tensor([s[1] for s in sizes])
    for skip in (False, True):
        bb = batch.clone().requires_grad_()
        f = dp.step_forward(bb, lt, lk, skip, backend)
        (gr,) = torch.autograd.grad(f.sum(), bb)
        v = dp.step_viterbi(batch, lt, lk, skip, backend)
        for b, x in enumerate(items):
            t, k = x.shape
            xx = x[None].clone().requires_grad_()
            f1 = dp.step_forward(xx, skip=skip, backend=backend)
            (g1,) = torch.autograd.grad(f1.sum(), xx)
            torch.testing.assert_close(f[b], f1[0])
            torch.testing.assert_close(gr[b, :t, :k], g1[0])
            assert torch.all(gr[b, t:] == 0) and torch.all(gr[b, :, k:] == 0)
            v1 = dp.step_viterbi(x[None], skip=skip, backend=backend)
            torch.testing.assert_close(v.values[b], v1.values[0])
            assert v.labels[b, :t].tolist() == v1.labels[0].tolist()
            assert torch.all(v.labels[b, t:] == -1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_padding_never_leaks_block_partition(backend):
    items, batch, ln, lm = _padded_batch([(7, 5), (3, 6), (6, 6), (4, 3)], seed=3, fill=9.0)
    batch.requires_grad_()
    r = dp.block_partition(batch, 3, ln, lm, backend=backend)
    (g,) = torch.autograd.grad(r.values.sum(), batch)
    for b, x in enumerate(items):
        n, m = x.shape
        x1 = x[None].clone().requires_grad_()
        r1 = dp.block_partition(x1, 3, backend=backend)
        (g1,) = torch.autograd.grad(r1.values.sum(), x1)
        torch.testing.assert_close(r.values[b], r1.values[0])
        assert torch.equal(r.bounds_n[b], r1.bounds_n[0]) and torch.equal(r.bounds_m[b], r1.bounds_m[0])
        torch.testing.assert_close(g[b, :n, :m], g1[0])
        assert torch.all(g[b, n:] == 0) and torch.all(g[b, :, m:] == 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_soft_dtw_tends_to_dtw(backend):
    c = torch.rand(4, 8, 6, dtype=torch.float64)
    hard = dp.dtw(c, backend=backend).values
    logn = math.log(sum(math.comb(7, k) * math.comb(5, k) * 2**k for k in range(6)))
    for gamma in (1.0, 0.1, 1e-2, 1e-3, 1e-4):
        soft = dp.soft_dtw(c, gamma, backend=backend)
        # softmin <= min, and min - softmin <= gamma * log(#paths)
        assert torch.all(soft <= hard + 1e-12)
        assert torch.all(hard - soft <= gamma * logn + 1e-12)
    e = dp.expected_alignment(c, 1e-4, backend=backend)
    torch.testing.assert_close(e, dp.dtw(c, backend=backend).path.double(), atol=1e-6, rtol=0)


@settings(max_examples=15, deadline=None)
@given(N=st.integers(1, 6), M=st.integers(1, 6), K=st.integers(1, 3), seed=st.integers(0, 10**6))
def test_max_le_log_le_max_plus_log_count(N, M, K, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(1, N, M, generator=g, dtype=torch.float64)
    ones = torch.ones_like(s)
    for gamma in (0.3, 1.0):
        mx = dp.grid_value(s, "max")
        lg = dp.grid_value(s, "log", gamma=gamma)
        n = dp.grid_value(ones, "counting")
        assert mx <= lg + 1e-12 and lg <= mx + gamma * n.log() + 1e-12
        K2 = min(K, N, M)
        mx = dp.block_value(s, K2, "max")
        lg = dp.block_value(s, K2, "log", gamma=gamma)
        n = dp.block_value(ones, K2, "counting")
        assert mx <= lg + 1e-12 and lg <= mx + gamma * n.log() + 1e-12
        p = s[:, :, :K2] if N >= K2 else s
        mx = dp.step_value(p, "max", skip=True)
        lg = dp.step_value(p, "log", skip=True, gamma=gamma)
        n = dp.step_value(torch.ones_like(p), "counting", skip=True)
        assert mx <= lg + 1e-12 and lg <= mx + gamma * n.log() + 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_dtw_symmetric_under_transpose(backend):
    c = torch.rand(3, 9, 6, dtype=torch.float64)
    a = dp.dtw(c, backend=backend)
    b = dp.dtw(c.transpose(1, 2).contiguous(), backend=backend)
    torch.testing.assert_close(a.values, b.values)
    torch.testing.assert_close(dp.soft_dtw(c, 0.5, backend=backend), dp.soft_dtw(c.transpose(1, 2), 0.5, backend=backend))


def test_viterbi_path_scores_exactly_the_max():
    s = torch.randn(5, 12, 4, dtype=torch.float64)
    for skip in (False, True):
        v = dp.step_viterbi(s, skip=skip)
        scored = s.gather(2, v.labels[..., None]).squeeze(-1).sum(-1)
        torch.testing.assert_close(scored, v.values)
        torch.testing.assert_close(v.values, dp.step_value(s, "max", skip=skip))
        labs = v.labels
        assert torch.all(labs[:, 1:] >= labs[:, :-1])
        if not skip:
            assert torch.all(labs[:, 0] == 0) and torch.all(labs[:, -1] == 3)
            assert torch.all(labs[:, 1:] - labs[:, :-1] <= 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_matches_torch_on_larger_inputs(dtype):
    g = torch.Generator().manual_seed(7)
    c = torch.rand(6, 23, 17, generator=g).to(dtype)
    ln, lm = torch.tensor([23, 20, 5, 17, 1, 9]), torch.tensor([17, 3, 17, 12, 8, 1])
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    for gamma in (0.01, 1.0):
        torch.testing.assert_close(dp.soft_dtw(c, gamma, ln, lm, "numba"), dp.soft_dtw(c, gamma, ln, lm, "torch"), **tol)
        torch.testing.assert_close(
            dp.expected_alignment(c, gamma, ln, lm, "numba"), dp.expected_alignment(c, gamma, ln, lm, "torch"), **tol
        )
    a, b = dp.dtw(c, ln, lm, "numba"), dp.dtw(c, ln, lm, "torch")
    torch.testing.assert_close(a.values, b.values, **tol)
    assert torch.equal(a.path, b.path)
    lp = torch.randn(6, 23, 5, generator=g).to(dtype).log_softmax(-1)
    lt, lk = ln, torch.tensor([5, 4, 5, 3, 1, 2])
    for skip in (False, True):
        torch.testing.assert_close(dp.step_forward(lp, lt, lk, skip, "numba"), dp.step_forward(lp, lt, lk, skip, "torch"), **tol)
        torch.testing.assert_close(dp.step_marginals(lp, lt, lk, skip, "numba"), dp.step_marginals(lp, lt, lk, skip, "torch"), **tol)
        va, vb = dp.step_viterbi(lp, lt, lk, skip, "numba"), dp.step_viterbi(lp, lt, lk, skip, "torch")
        assert torch.equal(va.labels, vb.labels)
    sim = torch.rand(3, 14, 12, generator=g).to(dtype)
    ra = dp.block_partition(sim, 5, torch.tensor([14, 9, 6]), torch.tensor([12, 12, 5]), backend="numba")
    rb = dp.block_partition(sim, 5, torch.tensor([14, 9, 6]), torch.tensor([12, 12, 5]), backend="torch")
    torch.testing.assert_close(ra.values, rb.values, **tol)
    assert torch.equal(ra.bounds_n, rb.bounds_n) and torch.equal(ra.bounds_m, rb.bounds_m)


def test_integer_ties_resolve_identically():
    """Exact ties (integer costs) follow the same smallest-index rule on both backends."""
    g = torch.Generator().manual_seed(11)
    c = torch.randint(0, 3, (40, 6, 5), generator=g).double()
    a, b = dp.dtw(c, backend="numba"), dp.dtw(c, backend="torch")
    assert torch.equal(a.path, b.path)
    s = torch.randint(0, 2, (40, 7, 3), generator=g).double()
    for skip in (False, True):
        assert torch.equal(dp.step_viterbi(s, skip=skip, backend="numba").labels, dp.step_viterbi(s, skip=skip, backend="torch").labels)
    sim = torch.randint(0, 2, (20, 6, 6), generator=g).double()
    ra, rb = dp.block_partition(sim, 3, backend="numba"), dp.block_partition(sim, 3, backend="torch")
    assert torch.equal(ra.bounds_n, rb.bounds_n) and torch.equal(ra.bounds_m, rb.bounds_m)


def test_float32_stable_long_sequences():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 1024, 8, generator=g)
    y = torch.randn(2, 1024, 8, generator=g)
    c = dp.pairwise_costs(x, y).requires_grad_()
    for gamma in (1e-3, 1e2):
        for backend in BACKENDS:
            v = dp.soft_dtw(c, gamma, backend=backend)
            (gr,) = torch.autograd.grad(v.sum(), c)
            assert torch.isfinite(v).all() and torch.isfinite(gr).all()
            # the expected alignment's mass: each row of a path has at least one cell
            assert torch.all(gr.sum(dim=(1, 2)) >= 1024 - 1e-2)
    lp = torch.randn(2, 1024, 16, generator=g).log_softmax(-1).requires_grad_()
    for backend in BACKENDS:
        v = dp.step_forward(lp, backend=backend)
        (gr,) = torch.autograd.grad(v.sum(), lp)
        assert torch.isfinite(v).all() and torch.isfinite(gr).all()
        # the compiled path accumulates in float64; the torch path in the input's float32
        atol = 1e-5 if backend == "numba" else 1e-2
        torch.testing.assert_close(gr.sum(-1), torch.ones(2, 1024), atol=atol, rtol=0)


def test_divergence_zero_on_equal_and_positive_otherwise():
    x = torch.randn(3, 10, 4, dtype=torch.float64)
    y = torch.randn(3, 8, 4, dtype=torch.float64)
    torch.testing.assert_close(dp.soft_dtw_divergence(x, x, 0.5), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0)
    assert torch.all(dp.soft_dtw_divergence(x, y, 0.5) > 0)
