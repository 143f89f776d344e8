"""Frame costs: values, safe square roots at zero distance, gradcheck for every cost x DP.

Issue 18: ``soft_dtw_divergence(..., cost="euclidean")`` had NaN/inf gradients from the square
root at the zero diagonal of its self-alignment terms. Every cost the LRProp config accepts is
checked against soft_dtw, soft_dtw_divergence and dtw, on random, identical (a copy) and self
(the same tensor) inputs, on both backends.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from procalign import dp
from procalign.dp.grid import _COSTS
from procalign.losses.lrprop import _COSTS as LRPROP_COSTS

BACKENDS = ["torch", "numba"]
VARIANTS = ["soft_dtw", "soft_dtw_divergence", "dtw"]


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _objective(variant: str, cost: str, backend: str, ln=None, lm=None):
    if variant == "soft_dtw":
        return lambda a, b: dp.soft_dtw(dp.pairwise_costs(a, b, cost), 0.5, ln, lm, backend=backend)
    if variant == "soft_dtw_divergence":
        return lambda a, b: dp.soft_dtw_divergence(a, b, 0.5, ln, lm, cost=cost, backend=backend)
    return lambda a, b: dp.dtw(dp.pairwise_costs(a, b, cost), ln, lm, backend=backend).values


def test_every_config_cost_is_covered():
    assert set(LRPROP_COSTS) <= set(_COSTS)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cost", _COSTS)
@pytest.mark.parametrize("inputs", ["random", "identical", "self"])
def test_gradcheck_every_cost_and_variant(cost, variant, backend, inputs):
    x = _rand(2, 4, 3, seed=1).requires_grad_()
    ln = torch.tensor([4, 2])
    if inputs == "random":
        y, lm = _rand(2, 3, 3, seed=2).requires_grad_(), torch.tensor([3, 2])
    else:
        y, lm = x.detach().clone().requires_grad_(), ln
    f = _objective(variant, cost, backend, ln, lm)
    if inputs == "self":  # one tensor on both sides: the zero diagonal moves with x
        assert gradcheck(lambda a: f(a, a), (x,), eps=1e-6, atol=1e-5)
    else:
        assert gradcheck(f, (x, y), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cost", _COSTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradients_finite_at_zero_distance(cost, variant, dtype):
    """Larger inputs with repeated frames (many exact zeros), float32 included: no NaN/inf."""
    base = _rand(2, 12, 8, seed=3, dtype=dtype)
    x = base.repeat_interleave(2, dim=1).requires_grad_()  # consecutive identical frames
    y = base.flip(1).repeat_interleave(2, dim=1).requires_grad_()
    for a, b in ((x, y), (x, x), (x, x.detach().clone().requires_grad_())):
        v = _objective(variant, cost, "auto")(a, b)
        assert torch.isfinite(v).all()
        grads = torch.autograd.grad(v.sum(), [t for t in {id(a): a, id(b): b}.values()])
        for g in grads:
            assert torch.isfinite(g).all(), f"{cost} {variant}: non-finite gradient"


def test_euclidean_is_exact_at_zero_and_gradient_zero_there():
    x = _rand(2, 6, 5, seed=4).mul_(100.0).requires_grad_()  # large norms: cancellation-prone
    c = dp.pairwise_costs(x, x, "euclidean")
    assert torch.equal(torch.diagonal(c, dim1=1, dim2=2), torch.zeros(2, 6, dtype=torch.float64))
    # only the zero diagonal receives gradient: its contribution must be exactly 0
    (g,) = torch.autograd.grad((c * torch.eye(6, dtype=torch.float64)).sum(), x)
    assert torch.equal(g, torch.zeros_like(g))
    # a near-identical pair gets its true small distance (not cancellation noise)
    y = x.detach().clone()
    y[0, 2, 0] += 1e-6
    d = dp.pairwise_costs(x, y, "euclidean")[0, 2, 2]
    torch.testing.assert_close(d, torch.tensor(1e-6, dtype=torch.float64), rtol=1e-6, atol=0)


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
@pytest.mark.parametrize("grad_y", [True, False])
def test_matmul_gradient_matches_autograd_of_differences(cost, grad_y):
    x = _rand(3, 7, 4, seed=5).requires_grad_()
    y = _rand(3, 9, 4, seed=6).requires_grad_(grad_y)
    w = _rand(3, 7, 9, seed=7)
    diff = x[:, :, None, :] - y[:, None, :, :]
    ref = (diff * diff).sum(-1)
    if cost == "euclidean":
        ref = ref.sqrt()
    got = dp.pairwise_costs(x, y, cost)
    torch.testing.assert_close(got, ref)
    inputs = (x, y) if grad_y else (x,)
    for a, b in zip(torch.autograd.grad((got * w).sum(), inputs), torch.autograd.grad((ref * w).sum(), inputs)):
        torch.testing.assert_close(a, b)


def test_unknown_cost_is_rejected():
    with pytest.raises(ValueError, match="cost must be one of"):
        dp.pairwise_costs(_rand(1, 2, 3), _rand(1, 2, 3), "manhattan")
