"""Temporal encoders: (B, T, D_in) frame features -> (B, T, D) frame embeddings, padding-aware.

Registered in :data:`TEMPORAL` so configs pick them by name:

* ``"transformer"``: input projection, sinusoidal positions, pre-norm transformer encoder with a
  key-padding mask (LRProp's default: 7 layers, hidden 256, 8 heads). Without positions it is a
  function of the *set* of frames; ``local=W`` adds a depthwise temporal convolution of width W
  before the attention layers, so each frame sees its neighbours (relative order) without its
  index.
* ``"conv"``: a stack of dilated residual 1-D convolutions (cheap, local context).
* ``"mlp"``: per-frame two-layer MLP (no temporal context: the ablation baseline).

Padded frames (``t >= lengths[b]``) never influence valid frames, and their outputs are zero.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from procalign._registry import Registry
from procalign.masks import valid_mask as _valid_mask

TEMPORAL: Registry = Registry("temporal encoder")


def valid_mask(lengths: Tensor | None, B: int, T: int, device: torch.device) -> Tensor:
    """(B, T) bool, True on real frames."""
    if lengths is None:
        return torch.ones(B, T, dtype=torch.bool, device=device)
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"lengths must have shape (B,)=({B},), got {tuple(lengths.shape)}")
    return _valid_mask(lengths.to(device), T)


def _check_input(x: Tensor, in_dim: int) -> None:
    if x.dim() != 3:
        raise ValueError(f"x must have shape (B, T, D), got {tuple(x.shape)}")
    if x.shape[-1] != in_dim:
        raise ValueError(f"x has feature size {x.shape[-1]} but the encoder expects D={in_dim}")


def sinusoidal_positions(T: int, dim: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(T, dim) sinusoidal position encoding (Vaswani et al.)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(T, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


class TemporalTransformer(nn.Module):
    """Transformer over frames. ``forward(x (B,T,D_in), lengths (B,) | None) -> (B,T,dim)``."""

    def __init__(self, in_dim: int, dim: int = 256, layers: int = 7, heads: int = 8,
                 dropout: float = 0.1, ff_mult: int = 2, positions: bool = True,
                 local: int = 0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if local < 0 or (local and local % 2 == 0):
            raise ValueError(f"local must be 0 (off) or an odd kernel width, got {local}")
        self.in_dim, self.dim, self.positions = in_dim, dim, positions
        self.proj = nn.Linear(in_dim, dim)
        # no padding here: forward() replicates each clip's first and last real frame instead
        self.local = nn.Conv1d(dim, dim, local, groups=dim) if local else None
        layer = nn.TransformerEncoderLayer(dim, heads, ff_mult * dim, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def _local_context(self, h: Tensor, lengths: Tensor | None) -> Tensor:
        """Depthwise conv over each clip's real frames: h (B, T, dim) -> (B, T, dim).

        The conv sees the clip's first (last) real frame repeated beyond its start (end), never
        zeros: zero padding would make the frames near either edge differ from the middle ones,
        i.e. hand the model their position, and a static clip would come out ordered.
        """
        B, T, D = h.shape
        t = torch.arange(T, device=h.device).expand(B, T)
        if lengths is not None:  # frames past a clip's end repeat its last real frame
            t = torch.minimum(t, (lengths.to(h.device).clamp_min(1) - 1)[:, None])
        h = h.gather(1, t[..., None].expand(B, T, D))
        w = self.local.kernel_size[0] // 2
        h = F.pad(h.transpose(1, 2), (w, w), mode="replicate")
        return self.local(h).transpose(1, 2)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        B, T, _ = x.shape
        mask = valid_mask(lengths, B, T, x.device)
        h = self.proj(x)
        if self.local is not None:
            h = h + self._local_context(h, lengths)
        if self.positions:
            h = h + sinusoidal_positions(T, self.dim, x.device, h.dtype)
        h = self.encoder(h, src_key_padding_mask=~mask)
        return self.norm(h) * mask[..., None]


class TemporalConv(nn.Module):
    """Residual dilated 1-D convolutions; padded frames are zeroed before every layer."""

    def __init__(self, in_dim: int, dim: int = 128, layers: int = 3, kernel: int = 3, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_dim, self.dim = in_dim, dim
        self.proj = nn.Linear(in_dim, dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(dim, dim, kernel, padding=(kernel // 2) * 2**i, dilation=2**i) for i in range(layers)
        )
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        B, T, _ = x.shape
        m = valid_mask(lengths, B, T, x.device)[..., None]
        h = self.proj(x) * m
        for conv in self.convs:
            h = (h + self.drop(torch.relu(conv(h.transpose(1, 2)).transpose(1, 2)))) * m
        return self.norm(h) * m


class FrameMLP(nn.Module):
    """Per-frame MLP (no temporal context)."""

    def __init__(self, in_dim: int, dim: int = 128, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_dim, self.dim = in_dim, dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_input(x, self.in_dim)
        m = valid_mask(lengths, x.shape[0], x.shape[1], x.device)[..., None]
        return self.net(x) * m


@TEMPORAL.register("transformer")
def transformer(in_dim: int, dim: int = 256, layers: int = 7, heads: int = 8, dropout: float = 0.1, **kw) -> nn.Module:
    return TemporalTransformer(in_dim, dim, layers, heads, dropout, **kw)


@TEMPORAL.register("conv")
def conv(in_dim: int, dim: int = 128, layers: int = 3, dropout: float = 0.1, **kw) -> nn.Module:
    return TemporalConv(in_dim, dim, layers, dropout=dropout, **kw)


@TEMPORAL.register("mlp")
def mlp(in_dim: int, dim: int = 128, dropout: float = 0.1, **kw) -> nn.Module:
    return FrameMLP(in_dim, dim, dropout=dropout, **kw)


def build_temporal(name: str, in_dim: int, **kwargs) -> nn.Module:
    return TEMPORAL.build(name, in_dim, **kwargs)
