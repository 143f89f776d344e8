"""Training views of single videos: random temporal crops and temporally consistent augmentation.

LRProp (and any method trained on pairs of crops of one video) draws, per epoch, each video's
crops with :func:`sample_view` (T frames with their *original* indices) and augments each crop
with one set of parameters (:func:`augment_view`); :func:`make_batches` is an epoch of such
batches, a pure function of ``(seed, epoch)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor


def sample_view(
    num_source_frames: int, num_frames: int, crop_min: float, rng: np.random.Generator
) -> np.ndarray:
    """Original frame indices (T,) int64 of one random temporal crop, sorted.

    The crop spans ``L = round(u F)`` frames, ``u ~ U(crop_min, 1)``, at a random start; T frames
    are taken one per equal part of it at a random offset, so a crop shorter than T repeats
    frames and a longer one is subsampled with jittered spacing.

    >>> sample_view(10, 4, 1.0, np.random.default_rng(0)).tolist()
    [0, 2, 5, 9]
    """
    F, T = int(num_source_frames), int(num_frames)
    if F < 1 or T < 1:
        raise ValueError(f"num_source_frames and num_frames must be >= 1, got {F}, {T}")
    length = max(1, min(F, round(rng.uniform(crop_min, 1.0) * F)))
    start = int(rng.integers(0, F - length + 1))
    pos = start + (np.arange(T) + rng.uniform(0.0, 1.0, T)) * (length / T)
    return np.clip(np.floor(pos).astype(np.int64), start, start + length - 1)


def augment_view(
    x: np.ndarray,
    rng: np.random.Generator,
    kind: str,
    *,
    num_joints: int = 0,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
    scale: float = 0.15,
    rotation: float = 10.0,
    shift: float = 0.1,
    jitter: float = 0.01,
    noise: float = 0.1,
    dropout: float = 0.1,
) -> np.ndarray:
    """Temporally consistent augmentation of one crop ``x`` (T, D) -> (T, D) float32.

    Parameters are drawn once per crop and applied to every frame. ``kind="joints"``: the first
    ``2 * num_joints`` inputs are (x, y) pairs, rotated by one angle in [-rotation, rotation]
    degrees, scaled by one factor in [1 - scale, 1 + scale], shifted by one vector in
    [-shift, shift]^2, plus per-frame Gaussian jitter; other inputs (visibility) are kept.
    ``kind="features"``: contrast ``mean + s (x - mean)`` with one s in [1 - scale, 1 + scale],
    one dropout mask (dimensions set to their mean), and per-frame noise ``noise * std``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be (T, D), got shape {x.shape}")
    out = x.copy()
    if kind == "joints":
        if num_joints < 1 or 2 * num_joints > x.shape[1]:
            raise ValueError(f"num_joints={num_joints} does not fit inputs of size D={x.shape[1]}")
        c = out[:, : 2 * num_joints].reshape(x.shape[0], num_joints, 2)
        a = math.radians(rng.uniform(-rotation, rotation))
        rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=np.float32)
        s = rng.uniform(1 - scale, 1 + scale)
        t = rng.uniform(-shift, shift, size=2).astype(np.float32)
        c = s * c @ rot.T + t
        if jitter > 0:
            c = c + rng.normal(0.0, jitter, size=c.shape).astype(np.float32)
        out[:, : 2 * num_joints] = c.reshape(x.shape[0], -1)
        return out
    if kind != "features":
        raise ValueError(f"kind must be 'joints' or 'features', got {kind!r}")
    m = np.zeros(x.shape[1], np.float32) if mean is None else np.asarray(mean, np.float32)
    sd = np.ones(x.shape[1], np.float32) if std is None else np.asarray(std, np.float32)
    out = m + rng.uniform(1 - scale, 1 + scale) * (out - m)
    if dropout > 0:
        drop = rng.random(x.shape[1]) < dropout
        out[:, drop] = m[drop]
    if noise > 0:
        out = out + noise * sd * rng.normal(0.0, 1.0, size=out.shape).astype(np.float32)
    return out.astype(np.float32)


def make_batches(
    clips: Sequence[Any],
    epoch: int,
    *,
    seed: int,
    num_frames: int,
    batch_videos: int = 2,
    crop_min: float = 0.5,
    kind: str = "features",
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
) -> list[dict[str, Tensor]]:
    """One epoch of training batches, a pure function of ``(seed, epoch)``.

    Videos are shuffled and grouped ``batch_videos`` at a time (a last group smaller than 2 is
    merged into the previous one); each video gives 2 crops. A batch is a dict with ``x``
    (V, T, D_in) float32, ``idx`` (V, T) original frame indices (float32), ``video`` (V,) int64
    (position of the video in ``clips``) and ``num_frames`` (V,) source lengths, V = 2 x videos.
    """
    rng = np.random.default_rng([int(seed), int(epoch), 7919])
    order = rng.permutation(len(clips)).tolist()
    groups = [order[i : i + batch_videos] for i in range(0, len(order), batch_videos)]
    if len(groups) > 1 and len(groups[-1]) < 2:
        groups[-2].extend(groups.pop())
    batches = []
    for group in groups:
        xs, idxs, vids, nfs = [], [], [], []
        for v in group:
            clip = clips[v]
            x = clip.features
            for _ in range(2):
                idx = sample_view(x.shape[0], num_frames, crop_min, rng)
                view = np.asarray(x[idx])
                if augment is not None:
                    view = augment(view, rng)
                xs.append(view)
                idxs.append(idx)
                vids.append(v)
                nfs.append(x.shape[0])
        batches.append(
            {
                "x": torch.from_numpy(np.stack(xs).astype(np.float32)),
                "idx": torch.from_numpy(np.stack(idxs).astype(np.float32)),
                "video": torch.tensor(vids, dtype=torch.long),
                "num_frames": torch.tensor(nfs, dtype=torch.float32),
            }
        )
    return batches
