"""Parity with tslearn (test-only dependency): soft-DTW value and gradient, DTW path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tslearn.metrics import SoftDTW, dtw_path_from_metric

from procalign import dp


@pytest.mark.parametrize("backend", ["torch", "numba"])
@pytest.mark.parametrize("gamma", [1e-2, 0.1, 1.0, 10.0])
def test_soft_dtw_value_and_gradient_match_tslearn(gamma, backend):
    rng = np.random.default_rng(0)
    for n, m in [(7, 5), (12, 12), (3, 9)]:
        D = rng.random((n, m))
        sdtw = SoftDTW(D, gamma=gamma)
        expect_value = sdtw.compute()
        expect_grad = sdtw.grad()
        c = torch.from_numpy(D)[None].requires_grad_()
        v = dp.soft_dtw(c, gamma, backend=backend)
        (g,) = torch.autograd.grad(v.sum(), c)
        np.testing.assert_allclose(v.item(), expect_value, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(g[0].numpy(), expect_grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("backend", ["torch", "numba"])
def test_dtw_path_matches_tslearn(backend):
    rng = np.random.default_rng(1)
    for n, m in [(8, 6), (15, 15), (2, 11), (20, 9)]:
        x = rng.normal(size=(n, 3))
        y = rng.normal(size=(m, 3))
        cost = ((x[:, None] - y[None]) ** 2).sum(-1)
        path, dist = dtw_path_from_metric(cost, metric="precomputed")
        r = dp.dtw(torch.from_numpy(cost)[None], backend=backend)
        # with a precomputed metric tslearn returns the accumulated cost itself
        np.testing.assert_allclose(r.values.item(), dist, rtol=1e-10)
        expect = np.zeros((n, m))
        for i, j in path:
            expect[i, j] = 1
        np.testing.assert_array_equal(r.path[0].numpy(), expect)


def test_dtw_path_ties_match_tslearn():
    rng = np.random.default_rng(2)
    for _ in range(20):
        cost = rng.integers(0, 3, size=(6, 5)).astype(float)
        path, _ = dtw_path_from_metric(cost, metric="precomputed")
        expect = np.zeros(cost.shape)
        for i, j in path:
            expect[i, j] = 1
        for backend in ("torch", "numba"):
            got = dp.dtw(torch.from_numpy(cost)[None], backend=backend).path[0].numpy()
            np.testing.assert_array_equal(got, expect)
