"""Registry-driven tests: every registered encoder is built and checked, or says clearly which
optional extra it needs; the pretrained encoders prove their weights are real."""

from __future__ import annotations

import importlib.abc
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from procalign.models.encoders import (
    ENCODERS,
    EncoderUnavailableError,
    build_encoder,
    is_random_weights,
    list_encoders,
    normalise_landmarks,
    random_weights_warning,
)

# small settings per encoder so the smoke test stays fast; others use their defaults
SMALL = {"tiny_cnn": {"dim": 8, "width": 4}, "identity": {"dim": 6}}
# not differentiable by design (MediaPipe returns plain landmark features)
NO_GRAD = {"mediapipe_pose"}
OPTIONAL = {"resnet50": "vision", "open_clip": "vision", "timm": "vision", "mediapipe_pose": "pose"}

_CACHE: dict[str, torch.nn.Module | None] = {}


def make_input(enc: torch.nn.Module, b: int = 2, t: int = 3) -> torch.Tensor:
    if enc.input_kind == "features":
        return torch.randn(b, t, enc.dim, requires_grad=True)
    return torch.rand(b, t, 3, 32, 32)


def try_build(name: str):
    if name not in _CACHE:
        try:
            _CACHE[name] = build_encoder(name, **SMALL.get(name, {}))
        except ImportError as exc:
            # Only an optional backbone may be missing, and it must name the extra to install.
            assert name in OPTIONAL, f"core encoder {name!r} failed to build: {exc}"
            assert f"procalign[{OPTIONAL[name]}]" in str(exc) and name in str(exc)
            assert "\n" not in str(exc)
            _CACHE[name] = None
    return _CACHE[name]


def imagenet_top5(enc, image: np.ndarray) -> list[int]:
    """Shorter side 224, centre crop 224 (the ImageNet evaluation crop), then the classifier."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    s = 224 / min(h, w)
    x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top : top + 224, left : left + 224]
    with torch.no_grad():
        logits = enc.eval().logits(x[None])[0, 0]
    return logits.topk(5).indices.tolist()


def test_registry_lists_the_documented_encoders():
    assert set(list_encoders()) >= {
        "efficientnet_lite0",
        "mediapipe_pose",
        "tiny_cnn",
        "resnet50",
        "open_clip",
        "timm",
        "identity",
    }


@pytest.mark.parametrize("name", list_encoders())
def test_smoke_shape_gradients_no_nans(name):
    enc = try_build(name)
    if enc is None:
        return  # checked in try_build: a one-line ImportError naming the extra
    x = make_input(enc)
    out = enc(x)
    assert out.shape == (2, 3, enc.dim)
    assert torch.isfinite(out).all()
    if name in NO_GRAD:
        assert not out.requires_grad
        return
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


# ----------------------------------------------------------------------------- efficientnet_lite0


def test_efficientnet_lite0_weights_are_real_imagenet_weights():
    from skimage import data

    enc = try_build("efficientnet_lite0")
    assert enc.dim == 1280 and not enc.random_weights and "imagenet" in enc.weights_id
    cat = imagenet_top5(enc, data.chelsea())
    coffee = imagenet_top5(enc, data.coffee())
    print(f"chelsea top-5 {cat}, coffee top-5 {coffee}")  # shown with pytest -s
    assert 281 <= cat[0] <= 285, f"chelsea (a tabby cat) classified as ImageNet class {cat[0]}"
    assert coffee[0] in (967, 968, 504), f"coffee (an espresso cup) classified as {coffee[0]}"


def test_efficientnet_lite0_loads_with_weights_only(monkeypatch):
    calls = []
    real = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    build_encoder("efficientnet_lite0")
    assert calls == [True]


def test_efficientnet_lite0_local_weights_file(tmp_path):
    enc = try_build("efficientnet_lite0")
    state = {k: v for k, v in enc.net.state_dict().items()}
    state["_fc.weight"], state["_fc.bias"] = enc.fc_weight, enc.fc_bias
    path = tmp_path / "lite0.pth"
    torch.save(state, path)
    again = build_encoder("efficientnet_lite0", weights=str(path))
    assert again.weights_id.startswith("efficientnet_lite0:file:lite0.pth:")
    x = torch.rand(1, 2, 3, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), enc.eval()(x))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_encoder("efficientnet_lite0", weights=str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read weights file") as info:
        build_encoder("efficientnet_lite0", weights=str(tmp_path / "junk.pth"))
    assert "\n" not in str(info.value)
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit the architecture"):
        build_encoder("efficientnet_lite0", weights=str(tmp_path / "other.pth"))


# ----------------------------------------------------------------------------- mediapipe_pose


def test_mediapipe_pose_finds_33_landmarks_on_the_astronaut():
    from skimage import data

    if sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 (the pinned pose extra) has no wheels for Python >= 3.13")
    enc = build_encoder("mediapipe_pose")  # the test extra installs it: must build here
    image = data.astronaut()  # (512, 512, 3): a person, head and torso
    raw = enc.landmarks(image)
    assert raw is not None and raw.shape == (33, 4)
    assert (raw[:13, 3] > 0.5).all()  # face and upper-body landmarks are visible
    frames = torch.from_numpy(image).permute(2, 0, 1)[None, None]
    feats = enc(frames)[0, 0].reshape(33, 4).numpy()
    # centred on the mid-hip, one torso = 1, y up: the nose is above the hips by about a torso+
    np.testing.assert_allclose(feats[[23, 24], :2].mean(0), 0.0, atol=1e-5)
    torso = np.linalg.norm(feats[[11, 12], :2].mean(0) - feats[[23, 24], :2].mean(0))
    assert torso == pytest.approx(1.0, abs=1e-4)
    assert feats[0, 1] > 1.0
    penn = build_encoder("mediapipe_pose", layout="penn13")
    joints = penn(frames)[0, 0].reshape(13, 2).numpy()
    assert penn.dim == 26 and joints[0, 1] > joints[7:9, 1].max()  # head above the hips
    nobody = enc(torch.zeros(1, 1, 3, 64, 64, dtype=torch.uint8))
    assert torch.all(nobody == 0)


def test_mediapipe_pose_left_open_does_not_hang_interpreter_exit():
    """A MediaPipe graph closed from a finalizer at shutdown deadlocked the process (pytest
    printed its summary and never exited): live encoders are closed by an atexit hook."""
    import subprocess

    if sys.version_info >= (3, 13):
        pytest.skip("mediapipe 0.10.14 (the pinned pose extra) has no wheels for Python >= 3.13")
    code = (
        "import torch\n"
        "from procalign.models.encoders import build_encoder\n"
        "enc = build_encoder('mediapipe_pose')\n"
        "enc(torch.zeros(1, 1, 3, 32, 32, dtype=torch.uint8))\n"
        "holder = [enc, {'cycle': None}]\n"
        "holder[1]['cycle'] = holder\n"  # kept alive until interpreter finalization
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
    enc = build_encoder("mediapipe_pose")
    with enc:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        enc.landmarks(np.zeros((8, 8, 3), np.uint8))


def test_normalise_landmarks_matches_penn_joint_normalisation():
    from procalign.data.joints import normalize_joints

    rng = np.random.default_rng(0)
    lm = np.concatenate([rng.uniform(0.2, 0.8, (33, 3)), np.ones((33, 1))], 1)
    h, w = 240, 320
    mine = normalise_landmarks(lm, h, w, "penn13").reshape(13, 2)
    from procalign.models.encoders import MEDIAPIPE_TO_PENN

    pixels = lm[list(MEDIAPIPE_TO_PENN), :2] * [w, h]
    theirs = normalize_joints(pixels[None], mode="hips")[0]
    np.testing.assert_allclose(mine, theirs, atol=1e-5)


# ----------------------------------------------------------------------------- optional backbones


class _BrokenImport(importlib.abc.MetaPathFinder):
    """Makes ``import <name>`` fail the way a torchvision built for another torch does."""

    def __init__(self, name: str, exc: BaseException) -> None:
        self.name, self.exc = name, exc

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name or fullname.startswith(self.name + "."):
            raise self.exc
        return None


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("operator torchvision::nms does not exist\n  more traceback text"),
        OSError("libc10.so: cannot open shared object file"),
        ImportError("No module named 'torchvision'"),
    ],
)
def test_broken_torchvision_is_one_clear_line(monkeypatch, exc):
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, mod)
    finder = _BrokenImport("torchvision", exc)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    with pytest.raises(EncoderUnavailableError) as info:
        build_encoder("resnet50", weights="r50.pth")
    msg = str(info.value)
    assert "\n" not in msg and "resnet50" in msg and "pip install 'procalign[vision]'" in msg
    assert str(exc).splitlines()[0] in msg
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


def test_cli_extract_with_broken_torchvision_says_one_line(monkeypatch, tmp_path, capsys):
    from procalign.cli.main import main

    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        monkeypatch.delitem(sys.modules, mod)
    finder = _BrokenImport("torchvision", RuntimeError("operator torchvision::nms does not exist"))
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    (tmp_path / "in").mkdir()
    code = main(
        [
            "extract",
            str(tmp_path / "in"),
            str(tmp_path / "out"),
            "--encoder",
            "resnet50",
            "--weights",
            str(tmp_path / "r50.pth"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "operator torchvision::nms does not exist" in err and "procalign[vision]" in err


def test_random_weights_are_flagged():
    assert is_random_weights("tiny_cnn") and is_random_weights(build_encoder("tiny_cnn", dim=4))
    assert not is_random_weights("efficientnet_lite0")
    assert not is_random_weights(try_build("efficientnet_lite0"))
    assert is_random_weights("resnet50") and not is_random_weights("resnet50", weights="x.pth")
    assert is_random_weights("open_clip") and not is_random_weights("open_clip", pretrained="f")
    assert is_random_weights("tiny_cnn:random-seed0-w16-d64")
    assert not is_random_weights("identity") and not is_random_weights(None)
    assert "carries no meaning" in random_weights_warning() and "\n" not in random_weights_warning()


# ----------------------------------------------------------------------------- tiny_cnn, identity


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
    with pytest.raises(ValueError, match="layout"):
        build_encoder("mediapipe_pose", layout="hands")
