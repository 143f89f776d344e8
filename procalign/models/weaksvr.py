"""The WeakSVR vision model (Dong et al., CVPR 2023, Eqs. 1-2).

``N`` TSN frames' features (B, N, D_in) -> input standardisation -> MLP -> [CLS] + frame tokens +
learned position embedding -> transformer -> H (B, N + 1, dim) (Eq. 1). Two heads into the text
space (D_text, the sentence encoder's size):

* the video embedding ``v`` (B, D_text): one linear layer over all of H flattened (Eq. 2,
  ``video_head="flatten"``), or over the mean of the frame tokens (``"mean"``: the paper's
  "TE + Pool" baseline, Table 1);
* frame embeddings (B, N, D_text): one linear layer per frame token, compared with the step
  sentences by the fine-grained loss.

An optional classifier on ``v`` (``num_classes > 0``) is the supervised "w CLS" variant (Table 2).
The temperature of the coarse loss is a learnable ``logit_scale`` (CLIP's, initialised to 1/0.07,
clamped at 100).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

VIDEO_HEADS = ("flatten", "mean")


class WeakSVRModel(nn.Module):
    """``video(x (B, N, D_in)) -> (B, D_text)``, ``frames(x) -> (B, N, D_text)``,
    ``forward(x) -> (v, frames)``; ``embed(x, lengths)`` = frame embeddings (the protocol surface).
    """

    def __init__(
        self,
        in_dim: int,
        text_dim: int,
        num_frames: int,
        dim: int = 256,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        video_head: str = "flatten",
        num_classes: int = 0,
        center: bool = False,
    ) -> None:
        super().__init__()
        if in_dim < 1 or text_dim < 1 or num_frames < 1:
            raise ValueError(
                f"in_dim, text_dim and num_frames must be >= 1, got {in_dim}, {text_dim}, {num_frames}"
            )
        if video_head not in VIDEO_HEADS:
            raise ValueError(f"video_head must be one of {list(VIDEO_HEADS)}, got {video_head!r}")
        if dim % heads:
            raise ValueError(f"model dim ({dim}) must be divisible by heads ({heads})")
        self.in_dim, self.text_dim, self.num_frames = int(in_dim), int(text_dim), int(num_frames)
        self.video_head, self.center = video_head, bool(center)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.inp = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, num_frames + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        width = (num_frames + 1) * dim if video_head == "flatten" else dim
        self.video_proj = nn.Linear(width, text_dim)
        self.frame_proj = nn.Linear(dim, text_dim)
        self.classifier = nn.Linear(text_dim, num_classes) if num_classes > 0 else None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @torch.no_grad()
    def set_input_stats(self, xs: Sequence[np.ndarray]) -> None:
        """Per-dimension mean and std of the training frames (each (T, D_in))."""
        allx = np.concatenate([np.asarray(x, np.float64) for x in xs])
        self.in_mean.copy_(torch.from_numpy(allx.mean(0)))
        self.in_std.copy_(torch.from_numpy(np.maximum(allx.std(0), 1e-6)))

    def tokens(self, x: Tensor) -> Tensor:
        """(B, N, D_in) -> H (B, N + 1, dim), token 0 = [CLS] (Eq. 1)."""
        if x.dim() != 3 or x.shape[1] != self.num_frames or x.shape[2] != self.in_dim:
            raise ValueError(
                f"x must be (B, N={self.num_frames}, D_in={self.in_dim}) TSN frames, got "
                f"{tuple(x.shape)}"
            )
        x = (x - self.in_mean) / self.in_std
        if self.center:  # remove the video's own offset (camera, lighting): its mean frame
            x = x - x.mean(dim=1, keepdim=True)
        h = self.inp(x)
        h = torch.cat([self.cls.expand(len(h), -1, -1), h], 1) + self.pos
        return self.norm(self.encoder(h))

    def heads(self, H: Tensor) -> tuple[Tensor, Tensor]:
        if self.video_head == "flatten":
            v = self.video_proj(H.flatten(1))
        else:
            v = self.video_proj(H[:, 1:].mean(1))
        return v, self.frame_proj(H[:, 1:])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, D_in) -> (v (B, D_text), frame embeddings (B, N, D_text))."""
        return self.heads(self.tokens(x))

    def video(self, x: Tensor) -> Tensor:
        return self(x)[0]

    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, N, D_in) -> (B, N, D_text) frame embeddings."""
        return self(x)[1]

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=100.0)
