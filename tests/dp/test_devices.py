"""The torch path on every available device agrees with the compiled CPU path.

This machine class has no GPU; on one with CUDA the list below grows and the same checks run there.
"""

from __future__ import annotations

import pytest
import torch

from procalign import dp

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


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
