"""Per-example lengths and the masks made from them: the one helper every layer uses.

Batches of videos are padded to T frames; ``lengths`` (B,) says how many are real.

>>> import torch
>>> check_lengths(None, B=2, T=3).tolist()
[3, 3]
>>> valid_mask(torch.tensor([1, 3]), T=3).tolist()
[[True, False, False], [True, True, True]]
>>> masked_mean(torch.ones(2, 3, 1), torch.tensor([1, 3])).tolist()
[[1.0], [1.0]]
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_lengths(
    lengths: object, B: int, T: int, name: str = "lengths", device: torch.device | str | None = None
) -> Tensor:
    """(B,) int64 lengths in [1, T] on ``device``; None means every example has T frames.

    Raises ValueError naming ``name`` for a wrong shape or a value outside [1, T].
    """
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long, device=device)
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if tuple(lengths.shape) != (B,):
        raise ValueError(f"{name} must have shape (B,) = ({B},), got {tuple(lengths.shape)}")
    lengths = lengths.to(device=device, dtype=torch.long)
    if bool((lengths < 1).any()) or bool((lengths > T).any()):
        raise ValueError(f"{name} must lie in [1, {T}], got {lengths.tolist()}")
    return lengths


def valid_mask(lengths: Tensor, T: int) -> Tensor:
    """(B, T) bool, True on real frames, from (B,) lengths."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_mean(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Mean over the real frames: x (B, T, D), lengths (B,) or None -> (B, D)."""
    if lengths is None:
        return x.mean(1)
    m = valid_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)
    return (x * m[..., None]).sum(1) / lengths.to(x.device)[:, None].to(x.dtype)


#: per-clip input normalisations (:func:`clip_normalize`)
CLIP_NORMS = ("none", "center", "standardize")


def clip_normalize(x: Tensor, lengths: Tensor | None, mode: str) -> Tensor:
    """Normalise each clip by its own statistics over its real frames: x (B, T, D) -> (B, T, D).

    ``"center"`` subtracts the clip's mean frame (a per-video offset: subject, camera,
    lighting); ``"standardize"`` also divides every dimension by the clip's std; ``"none"``
    returns x. Padded frames come out 0.

    >>> x = torch.tensor([[[1.0], [3.0], [9.0]]])
    >>> clip_normalize(x, torch.tensor([2]), "center")[0, :, 0].tolist()
    [-1.0, 1.0, 0.0]
    """
    if mode not in CLIP_NORMS:
        raise ValueError(f"unknown clip normalisation {mode!r}; choose one of {list(CLIP_NORMS)}")
    if mode == "none":
        return x
    m = torch.ones(x.shape[:2], device=x.device, dtype=x.dtype)
    if lengths is not None:
        m = valid_mask(lengths.to(x.device), x.shape[1]).to(x.dtype)
    n = m.sum(1)[:, None, None].clamp_min(1)
    mean = (x * m[..., None]).sum(1, keepdim=True) / n
    x = (x - mean) * m[..., None]
    if mode == "standardize":
        x = x / ((x**2).sum(1, keepdim=True) / n).sqrt().clamp_min(1e-4)
    return x
