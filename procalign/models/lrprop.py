"""LRProp's model: input standardisation + a temporal encoder (paper: transformer, 7 x 256)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import math

import numpy as np
import torch
from torch import Tensor, nn

from procalign.masks import CLIP_NORMS, clip_normalize

EVAL_VIEWS = ("strided", "full")


class LRPropModel(nn.Module):
    """Input standardisation + temporal encoder: ``forward(x (B, T, D_in), lengths (B,) | None)
    -> (B, T, D)`` frame embeddings; padded frames (``t >= lengths[b]``) are zero and never
    influence real frames.

    ``in_mean`` / ``in_std`` (D_in,) are buffers, set from the training videos of the class with
    :meth:`set_input_stats`, and saved with the weights. ``input_norm`` (``none`` / ``center``
    / ``standardize``) then normalises each clip by its own statistics
    (:func:`procalign.masks.clip_normalize`); ``local`` is the transformer's depthwise temporal
    convolution width (0: none).
    """

    def __init__(
        self,
        in_dim: int,
        temporal: str = "transformer",
        dim: int = 256,
        layers: int = 7,
        heads: int = 8,
        dropout: float = 0.1,
        positions: bool = True,
        input_norm: str = "none",
        local: int = 0,
    ) -> None:
        super().__init__()
        from procalign.models.temporal import build_temporal

        if in_dim < 1:
            raise ValueError(f"in_dim must be >= 1, got {in_dim}")
        kwargs: dict[str, Any] = {"dim": dim, "layers": layers, "dropout": dropout}
        if temporal == "transformer":
            kwargs.update(heads=heads, positions=positions, local=local)
        elif local:
            raise ValueError(f"local={local} needs temporal='transformer', got {temporal!r}")
        if input_norm not in CLIP_NORMS:
            raise ValueError(f"unknown input_norm {input_norm!r}; choose one of {list(CLIP_NORMS)}")
        self.input_norm = input_norm
        self.in_dim, self.dim = int(in_dim), int(dim)
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.temporal = build_temporal(temporal, in_dim, **kwargs)

    @torch.no_grad()
    def set_input_stats(self, xs: Sequence[np.ndarray]) -> None:
        """Per-dimension mean and std over all frames of ``xs`` (each (T, D_in))."""
        allx = np.concatenate([np.asarray(x, np.float64) for x in xs])
        if allx.ndim != 2 or allx.shape[1] != self.in_dim:
            raise ValueError(f"inputs must be (T, {self.in_dim}), got {allx.shape}")
        self.in_mean.copy_(torch.from_numpy(allx.mean(0)))
        self.in_std.copy_(torch.from_numpy(np.maximum(allx.std(0), 1e-6)))

    def embed(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, D_in) inputs, (B,) lengths -> (B, T, D) frame embeddings (the surface every
        evaluation protocol uses; the same as calling the model)."""
        return self(x, lengths)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"x must be (B, T, D_in={self.in_dim}), got {tuple(x.shape)}")
        x = clip_normalize((x - self.in_mean) / self.in_std, lengths, self.input_norm)
        return self.temporal(x, lengths)


def _views_of(num: int, window: int, mode: str) -> list[np.ndarray]:
    if mode == "full" or num <= window:
        return [np.arange(num)]
    k = math.ceil(num / window)
    return [np.arange(o, num, k) for o in range(k)]


@torch.no_grad()
def embed_videos(
    model: nn.Module,
    xs: Sequence[np.ndarray],
    window: int,
    mode: str = "strided",
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> list[np.ndarray]:
    """Frame embeddings of whole videos: each ``xs[b]`` (F_b, D_in) -> (F_b, D) float32.

    ``mode="strided"``: a video longer than ``window`` frames is split into ``ceil(F / window)``
    interleaved subsequences (frames o, o + k, o + 2k, ...), each spanning the whole video like a
    training crop; their embeddings are put back in frame order. ``mode="full"``: one pass.
    """
    if mode not in EVAL_VIEWS:
        raise ValueError(f"mode must be one of {EVAL_VIEWS}, got {mode!r}")
    was_training = model.training
    model.eval()
    jobs = [(b, sel) for b, x in enumerate(xs) for sel in _views_of(len(x), window, mode)]
    results: list[tuple[int, np.ndarray, np.ndarray]] = []
    jobs.sort(key=lambda j: len(j[1]))  # similar lengths together: less padding
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        T = max(len(sel) for _, sel in chunk)
        D = xs[chunk[0][0]].shape[1]
        batch = np.zeros((len(chunk), T, D), np.float32)
        lengths = []
        for i, (b, sel) in enumerate(chunk):
            batch[i, : len(sel)] = xs[b][sel]
            lengths.append(len(sel))
        z = model(torch.from_numpy(batch).to(device), torch.tensor(lengths, device=device))
        z = z.float().cpu().numpy()
        for i, (b, sel) in enumerate(chunk):
            results.append((b, sel, z[i, : len(sel)]))
    dim = results[0][2].shape[1] if results else 0
    out = [np.zeros((len(x), dim), np.float32) for x in xs]
    for b, sel, z in results:
        out[b][sel] = z
    model.train(was_training)
    return out
