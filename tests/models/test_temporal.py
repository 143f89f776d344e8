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
    # another module's setting is named, not a TypeError from deep inside
    with pytest.raises(ValueError, match="temporal encoder 'conv' does not take the setting 'heads'"):
        build_temporal("conv", 6, dim=4, heads=4)


def test_transformer_local_context_sees_order_not_index():
    """``local=W``: without positions the transformer is a function of the set of frames (a
    permutation of the frames permutes the outputs); the depthwise convolution makes a frame's
    output depend on its neighbours' order, and padding after the clip still never leaks into
    it."""
    torch.manual_seed(0)
    x = torch.randn(1, 8, 6)
    perm = torch.tensor([3, 0, 7, 1, 6, 2, 5, 4])
    plain = build_temporal("transformer", 6, dim=16, layers=1, heads=4, positions=False).eval()
    torch.testing.assert_close(plain(x[:, perm]), plain(x)[:, perm], atol=1e-5, rtol=1e-5)
    local = build_temporal("transformer", 6, dim=16, layers=1, heads=4, positions=False,
                           local=3).eval()
    assert (local(x[:, perm]) - local(x)[:, perm]).abs().max() > 1e-3
    # padding: valid outputs unchanged by what the padded frames hold
    lengths = torch.tensor([5])
    x2 = x.clone()
    x2[0, 5:] = 50.0
    torch.testing.assert_close(local(x2, lengths)[0, :5], local(x, lengths)[0, :5])
    torch.testing.assert_close(local(x[:, :5])[0], local(x, lengths)[0, :5], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="odd kernel width"):
        build_temporal("transformer", 6, dim=16, layers=1, heads=4, local=4)


def test_transformer_local_context_gives_a_static_clip_no_position():
    """A clip of one repeated frame carries no order, so without positions every output frame
    must be the same; zero padding in the local conv would make the edge frames differ (the
    static control of the evaluation would then come out ordered)."""
    torch.manual_seed(0)
    local = build_temporal("transformer", 6, dim=16, layers=2, heads=4, positions=False,
                           local=5).eval()
    static = torch.randn(1, 1, 6).expand(2, 9, 6).clone()
    out = local(static, torch.tensor([9, 6]))
    torch.testing.assert_close(out[0], out[0, :1].expand(9, 16), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1, :6], out[1, :1].expand(6, 16), atol=1e-5, rtol=1e-5)
    assert out[1, 6:].abs().max() == 0  # padded frames stay 0
    # an ordered clip still gives frame-dependent outputs
    ramp = torch.linspace(0, 1, 9)[None, :, None].expand(1, 9, 6)
    assert local(ramp).std(1).max() > 1e-3


@pytest.mark.parametrize("mode", ["center", "standardize"])
def test_clip_normalize_matches_numpy(mode):
    from procalign.masks import clip_normalize

    torch.manual_seed(1)
    x = torch.randn(2, 7, 3, dtype=torch.float64) * 3 + 5
    lengths = torch.tensor([7, 4])
    y = clip_normalize(x, lengths, mode)
    for b, n in enumerate(lengths.tolist()):
        ref = x[b, :n].numpy() - x[b, :n].numpy().mean(0)
        if mode == "standardize":
            ref = ref / ref.std(0)
        torch.testing.assert_close(y[b, :n], torch.from_numpy(ref))
        assert torch.all(y[b, n:] == 0)
    with pytest.raises(ValueError, match="unknown clip normalisation 'zscore'"):
        clip_normalize(x, lengths, "zscore")
