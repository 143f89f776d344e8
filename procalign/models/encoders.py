"""Frame encoders behind one registry: frames (B, T, 3, H, W) or features (B, T, D) -> (B, T, D).

Every encoder is an ``nn.Module`` with the same surface:

- ``forward(x)`` maps frames (B, T, 3, H, W) (float in [0, 1], or uint8 in [0, 255]) or, for
  ``identity``, features (B, T, D_in), to features (B, T, D). Frames are encoded independently,
  so padded frames never leak into valid ones.
- ``dim``: D, the output size; ``input_kind``: ``"frames"`` or ``"features"``;
  ``weights_id``: a string naming the weights (recorded in the feature-cache manifest).

Registered names: ``tiny_cnn`` (small built-in CNN, random init, deterministic by seed),
``resnet50`` (torchvision) and ``open_clip`` (open_clip) when those packages are installed
(``pip install 'procalign[vision]'``), and ``identity`` (already-computed features).

>>> enc = build_encoder("tiny_cnn", dim=8, seed=0)
>>> enc(torch.rand(2, 3, 3, 32, 32)).shape
torch.Size([2, 3, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from procalign._registry import Registry

ENCODERS: Registry[nn.Module] = Registry("encoder")

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def build_encoder(name: str, **kwargs) -> nn.Module:
    """Build a registered encoder by name (see :data:`ENCODERS`)."""
    return ENCODERS.build(name, **kwargs)


def list_encoders() -> list[str]:
    """Names of all registered encoders (buildable or not)."""
    return ENCODERS.names()


class FrameEncoder(nn.Module):
    """Base class: flattens (B, T, 3, H, W) to (B*T, 3, H, W), normalises, encodes, reshapes.

    Subclasses implement ``encode_images(x: (B*T, 3, H, W)) -> (B*T, D)``.
    """

    input_kind = "frames"

    def __init__(self, dim: int, weights_id: str, mean, std) -> None:
        super().__init__()
        self.dim = int(dim)
        self.weights_id = weights_id
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W) -> features (B, T, D)."""
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(
                f"{type(self).__name__} expects frames of shape (B, T, 3, H, W), got "
                f"{tuple(frames.shape)}"
            )
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:])
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        x = (x.to(self.mean.dtype) - self.mean) / self.std
        return self.encode_images(x).reshape(b, t, -1)


class TinyCNN(FrameEncoder):
    """A small 4-layer CNN (random init, deterministic by ``seed``) for tests and demos.

    Args:
        dim: D, output size.
        width: channels of the first layer (doubling twice after).
        seed: the initial weights depend only on this seed.
    """

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


def _missing_extra(name: str, package: str, exc: ImportError) -> ImportError:
    return ImportError(
        f"encoder {name!r} needs the {package!r} package, which is not importable here "
        f"({exc}); install the optional extra: pip install 'procalign[vision]'"
    )


class TorchvisionResNet50(FrameEncoder):
    """torchvision ResNet-50 without its classifier: D = 2048 (ImageNet normalisation).

    Args:
        weights: a torchvision weights name (e.g. ``"IMAGENET1K_V2"``) or None for random init.
    """

    def __init__(self, weights: str | None = None) -> None:
        try:
            import torchvision
        except ImportError as exc:
            raise _missing_extra("resnet50", "torchvision", exc) from exc
        super().__init__(
            2048, f"torchvision:resnet50:{weights or 'random'}", _IMAGENET_MEAN, _IMAGENET_STD
        )
        net = torchvision.models.resnet50(weights=weights)
        net.fc = nn.Identity()
        self.net = net

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class OpenCLIPImage(FrameEncoder):
    """open_clip image tower: D = the model's embedding size (CLIP normalisation).

    Args:
        model_name: an open_clip architecture, e.g. ``"ViT-B-32"``.
        pretrained: an open_clip pretrained tag or checkpoint path; None for random init.
    """

    def __init__(self, model_name: str = "ViT-B-32", pretrained: str | None = None) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise _missing_extra("open_clip", "open_clip_torch", exc) from exc
        model = open_clip.create_model(model_name, pretrained=pretrained)
        dim = int(model.visual.output_dim)
        super().__init__(
            dim, f"open_clip:{model_name}:{pretrained or 'random'}", _CLIP_MEAN, _CLIP_STD
        )
        self.visual = model.visual

    def encode_images(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


@ENCODERS.register("tiny_cnn")
def tiny_cnn(dim: int = 64, width: int = 16, seed: int = 0) -> nn.Module:
    return TinyCNN(dim=dim, width=width, seed=seed)


@ENCODERS.register("resnet50")
def resnet50(weights: str | None = None) -> nn.Module:
    return TorchvisionResNet50(weights=weights)


@ENCODERS.register("open_clip")
def open_clip(model_name: str = "ViT-B-32", pretrained: str | None = None) -> nn.Module:
    return OpenCLIPImage(model_name=model_name, pretrained=pretrained)


@ENCODERS.register("identity")
def identity(dim: int | None = None) -> nn.Module:
    return IdentityEncoder(dim=dim)
