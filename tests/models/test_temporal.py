"""Registry-driven smoke tests for every temporal encoder."""

from __future__ import annotations

import pytest
import torch

from procalign.models.temporal import TEMPORAL, build_temporal


@pytest.mark.parametrize("name", TEMPORAL.names())
def test_temporal_encoder_contract(name):
    torch.manual_seed(0)
    enc = build_temporal(name, 6, dim=16, **({"layers": 2, "heads": 4} if name == "transformer" else {}))
    enc.eval()
    x = torch.randn(3, 9, 6)
    lengths = torch.tensor([9, 5, 2])
    y = enc(x, lengths)
    assert y.shape == (3, 9, 16) and torch.isfinite(y).all()
    assert torch.all(y[1, 5:] == 0) and torch.all(y[2, 2:] == 0)
    # padding never leaks: changing padded frames leaves valid outputs unchanged
    x2 = x.clone()
    x2[1, 5:] = 100.0
    x2[2, 2:] = -7.0
    torch.testing.assert_close(enc(x2, lengths), y)
    # equal to running the example alone
    torch.testing.assert_close(enc(x[1:2, :5])[0], y[1, :5], atol=1e-5, rtol=1e-5)
    enc.train()
    enc(x, lengths).sum().backward()
    for n, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n


def test_temporal_bad_input():
    enc = build_temporal("mlp", 6, dim=4)
    with pytest.raises(ValueError, match=r"feature size 5 but the encoder expects D=6"):
        enc(torch.randn(1, 3, 5))
    with pytest.raises(ValueError, match=r"shape \(B, T, D\)"):
        enc(torch.randn(3, 6))
    with pytest.raises(KeyError, match="unknown temporal encoder 'lstm'"):
        build_temporal("lstm", 6)
