"""The torch path on every available device agrees with the compiled CPU path.

This machine class has no GPU; on one with CUDA (or Apple MPS) the list below grows and the same
checks run there: values, paths, and the gradients of soft-DTW and of every frame cost.
"""

from __future__ import annotations

import pytest
import torch

from procalign import dp

DEVICES = (
    ["cpu"]
    + (["cuda"] if torch.cuda.is_available() else [])
    + (["mps"] if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available() else [])
)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_path_on_device_matches_cpu_kernels(device, dtype):
    g = torch.Generator().manual_seed(3)
    c = torch.rand(3, 11, 9, generator=g, dtype=torch.float64)
    ln, lm = torch.tensor([11, 6, 4]), torch.tensor([9, 9, 4])
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    cd = c.to(device=device, dtype=dtype)
    lnd, lmd = ln.to(device), lm.to(device)
    got = dp.soft_dtw(cd, 0.2, lnd, lmd, backend="torch" if device != "cpu" else "auto")
    assert got.device.type == device and got.dtype == dtype
    torch.testing.assert_close(got.cpu().double(), dp.soft_dtw(c, 0.2, ln, lm, backend="numba"), **tol)
    r = dp.dtw(cd, lnd, lmd, backend="torch")
    assert torch.equal(r.path.cpu().double(), dp.dtw(c, ln, lm, backend="numba").path)
    lp = torch.randn(3, 11, 4, generator=g, dtype=torch.float64).log_softmax(-1)
    torch.testing.assert_close(
        dp.step_forward(lp.to(device, dtype), lnd, backend="torch").cpu().double(),
        dp.step_forward(lp, ln, backend="numba"),
        **tol,
    )
    b = dp.block_partition(c.to(device, dtype), 2, lnd, lmd, backend="torch")
    assert b.bounds_n.device.type == device
    bn = dp.block_partition(c, 2, ln, lm, backend="numba")
    assert torch.equal(b.bounds_n.cpu(), bn.bounds_n) and torch.equal(b.bounds_m.cpu(), bn.bounds_m)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean", "cosine"])
def test_torch_path_gradients_on_device_match_cpu_kernels(device, cost):
    """soft-DTW end to end (features -> cost -> value) in float32 on the device, gradients w.r.t.
    both inputs, against the float64 compiled CPU path; identical frames included."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 13, 6, generator=g, dtype=torch.float64)
    y = torch.cat([x[:, :5], torch.randn(3, 7, 6, generator=g, dtype=torch.float64)], dim=1)
    ln, lm = torch.tensor([13, 9, 5]), torch.tensor([12, 12, 6])

    def value_and_grads(a, b, l1, l2, backend):
        a = a.clone().requires_grad_(True)
        b = b.clone().requires_grad_(True)
        v = dp.soft_dtw(dp.pairwise_costs(a, b, cost), 0.3, l1, l2, backend=backend)
        ga, gb = torch.autograd.grad(v.sum(), (a, b))
        return v, ga, gb

    ref = value_and_grads(x, y, ln, lm, "numba")
    got = value_and_grads(x.to(device, torch.float32), y.to(device, torch.float32), ln.to(device), lm.to(device), "torch")
    for r, o in zip(ref, got):
        assert o.device.type == device and torch.isfinite(o).all()
        torch.testing.assert_close(o.cpu().double(), r, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_path_on_device_matches_tiled_cpu_kernel(device, dtype):
    """A batch of 21 (a full tile of 16 lanes and 5 examples run one by one on the CPU), variable
    lengths: the torch wavefront on the device against the compiled CPU kernel, values and
    gradients."""
    g = torch.Generator().manual_seed(5)
    c = torch.rand(21, 17, 12, generator=g, dtype=torch.float64)
    ln, lm = torch.randint(1, 18, (21,), generator=g), torch.randint(1, 13, (21,), generator=g)
    tol = dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    x = c.to(device=device, dtype=dtype).requires_grad_(True)
    v = dp.soft_dtw(x, 0.2, ln.to(device), lm.to(device), backend="torch")
    v.sum().backward()
    ref = c.to(dtype).requires_grad_(True)
    r = dp.soft_dtw(ref, 0.2, ln, lm, backend="numba")
    r.sum().backward()
    torch.testing.assert_close(v.detach().cpu(), r.detach(), **tol)
    torch.testing.assert_close(x.grad.cpu(), ref.grad, **tol)
