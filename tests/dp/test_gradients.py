"""gradcheck in float64 across gamma, for every differentiable DP and both backends."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from procalign import dp

GAMMAS = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0]
BACKENDS = ["torch", "numba"]


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gamma", GAMMAS)
def test_soft_dtw_gradcheck(gamma, backend):
    c = _rand(3, 5, 4, seed=1).requires_grad_()
    ln, lm = torch.tensor([5, 3, 4]), torch.tensor([4, 4, 2])
    assert gradcheck(lambda x: dp.soft_dtw(x, gamma, ln, lm, backend=backend), (c,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("gamma", [1e-2, 1.0, 100.0])
def test_soft_dtw_gradgradcheck_generic_recursion(gamma):
    """The generic semiring recursion supports double backward (the fast paths are once-differentiable)."""
    c = _rand(2, 4, 3, seed=2).requires_grad_()
    f = lambda x: -dp.grid_value(-x, "log", gamma=gamma)  # noqa: E731
    torch.testing.assert_close(f(c), dp.soft_dtw(c, gamma))
    assert gradgradcheck(f, (c,), eps=1e-6, atol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("gamma", [1e-2, 1.0, 10.0])
def test_soft_dtw_divergence_gradcheck(gamma, backend):
    x = _rand(2, 5, 3, seed=3).requires_grad_()
    y = _rand(2, 4, 3, seed=4).requires_grad_()
    ln, lm = torch.tensor([5, 3]), torch.tensor([4, 2])
    f = lambda a, b: dp.soft_dtw_divergence(a, b, gamma, ln, lm, backend=backend)  # noqa: E731
    assert gradcheck(f, (x, y), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("skip", [False, True])
def test_step_forward_gradcheck(skip, backend):
    lp = torch.randn(3, 6, 3, dtype=torch.float64).log_softmax(-1).requires_grad_()
    lt, lk = torch.tensor([6, 4, 3]), torch.tensor([3, 2, 3])
    assert gradcheck(lambda x: dp.step_forward(x, lt, lk, skip=skip, backend=backend), (lp,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hard_dp_subgradients_are_structures(backend):
    """Max-semiring values: gradient = path / one-hot labels / painted blocks (no ties here)."""
    c = _rand(2, 6, 5, seed=5).requires_grad_()
    r = dp.dtw(c, backend=backend)
    (g,) = torch.autograd.grad(r.values.sum(), c)
    assert torch.equal(g, r.path.double())
    s = torch.randn(2, 6, 3, dtype=torch.float64).requires_grad_()
    v = dp.step_viterbi(s, backend=backend)
    (g,) = torch.autograd.grad(v.values.sum(), s)
    assert torch.equal(g, torch.nn.functional.one_hot(v.labels, 3).double())
    sim = _rand(2, 6, 5, seed=6).requires_grad_()
    b = dp.block_partition(sim, 3, backend=backend)
    (g,) = torch.autograd.grad(b.values.sum(), sim)
    for e in range(2):
        for k in range(3):
            r0, r1 = b.bounds_n[e, k : k + 2].tolist()
            c0, c1 = b.bounds_m[e, k : k + 2].tolist()
            block = g[e, r0:r1, c0:c1]
            torch.testing.assert_close(block, torch.full_like(block, 1.0 / ((r1 - r0) * (c1 - c0))))
        assert torch.isclose(g[e].sum(), torch.tensor(3.0, dtype=torch.float64))


def test_step_marginals_sum_to_one_and_match_numba():
    lp = torch.randn(4, 9, 4, dtype=torch.float64).log_softmax(-1)
    lt, lk = torch.tensor([9, 7, 4, 5]), torch.tensor([4, 3, 4, 2])
    for skip in (False, True):
        m_t = dp.step_marginals(lp, lt, lk, skip, backend="torch")
        m_n = dp.step_marginals(lp, lt, lk, skip, backend="numba")
        torch.testing.assert_close(m_t, m_n)
        sums = m_n.sum(-1)
        for e in range(4):
            torch.testing.assert_close(sums[e, : lt[e]], torch.ones(int(lt[e]), dtype=torch.float64))
            assert torch.all(sums[e, lt[e] :] == 0)
            assert torch.all(m_n[e, :, lk[e] :] == 0)
