"""Registry-driven smoke tests: every registered encoder is built and checked, or must say
clearly which optional extra it needs."""

from __future__ import annotations

import pytest
import torch

from procalign.models.encoders import ENCODERS, build_encoder, list_encoders

# small settings per encoder so the smoke test stays fast; others use their defaults
SMALL = {"tiny_cnn": {"dim": 8, "width": 4}, "identity": {"dim": 6}}


def make_input(enc: torch.nn.Module, b: int = 2, t: int = 3) -> torch.Tensor:
    if enc.input_kind == "features":
        return torch.randn(b, t, enc.dim, requires_grad=True)
    return torch.rand(b, t, 3, 32, 32)


def try_build(name: str):
    try:
        return build_encoder(name, **SMALL.get(name, {}))
    except ImportError as exc:
        # An optional backbone that is not installed must name the extra to install.
        assert "procalign[vision]" in str(exc) and name in str(exc)
        return None


def test_registry_lists_the_documented_encoders():
    assert set(list_encoders()) >= {"tiny_cnn", "resnet50", "open_clip", "identity"}


@pytest.mark.parametrize("name", list_encoders())
def test_smoke_shape_gradients_no_nans(name):
    enc = try_build(name)
    if enc is None:
        return  # checked above: a clear ImportError naming procalign[vision]
    x = make_input(enc)
    out = enc(x)
    assert out.shape == (2, 3, enc.dim)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), (
            f"{name}.{pname} got no gradient"
        )
    if enc.input_kind == "features":
        assert x.grad is not None


@pytest.mark.parametrize("name", list_encoders())
def test_padded_frames_do_not_leak(name):
    enc = try_build(name)
    if enc is None:
        return
    enc.eval()
    x = make_input(enc, b=1, t=4).detach()
    y = x.clone()
    y[:, 2:] = 0.0 if enc.input_kind == "features" else torch.rand_like(y[:, 2:])  # new padding
    with torch.no_grad():
        torch.testing.assert_close(enc(x)[:, :2], enc(y)[:, :2])


def test_tiny_cnn_deterministic_by_seed_and_uint8_input():
    a, b, c = (build_encoder("tiny_cnn", dim=8, width=4, seed=s) for s in (1, 1, 2))
    x = torch.rand(1, 2, 3, 16, 16)
    torch.testing.assert_close(a(x), b(x))
    assert not torch.allclose(a(x), c(x))
    assert a.weights_id != c.weights_id
    frames = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(a(frames), a(frames.float() / 255))


def test_seeding_does_not_touch_global_rng():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    build_encoder("tiny_cnn", dim=4, width=2, seed=123)
    torch.testing.assert_close(torch.rand(3), expected)


def test_optional_backbones_name_the_extra():
    for name in ("resnet50", "open_clip"):
        try:
            build_encoder(name)
        except ImportError as exc:
            assert "pip install 'procalign[vision]'" in str(exc)


def test_bad_input_shapes_are_named():
    enc = build_encoder("tiny_cnn", dim=4, width=2)
    with pytest.raises(ValueError, match=r"\(B, T, 3, H, W\)"):
        enc(torch.rand(2, 3, 16, 16))
    ident = build_encoder("identity", dim=5)
    with pytest.raises(ValueError, match="dim=5"):
        ident(torch.rand(1, 2, 4))
    with pytest.raises(ValueError, match=r"\(B, T, D\)"):
        ident(torch.rand(2, 5))
    with pytest.raises(KeyError, match="unknown encoder"):
        ENCODERS.build("vgg")
