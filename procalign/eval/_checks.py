"""Input conversion and validation shared by the metric modules (plumbing, not public API).

Every metric accepts numpy arrays, torch tensors or plain sequences. These helpers turn them into
numpy arrays and raise ``ValueError`` / ``TypeError`` that name the argument and its shape, so a
wrong input fails loudly instead of producing a plausible-looking number.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Convert ``x`` (ndarray, torch tensor, list) to a numpy array without modifying it."""
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:  # ragged nested lists, objects
        raise TypeError(f"{name} could not be converted to an array: {exc}") from exc
    if arr.dtype == object:
        raise TypeError(f"{name} must be a rectangular numeric array, got ragged or object data")
    return arr


def float_array(x: Any, name: str, ndim: int, *, allow_empty: bool = False) -> np.ndarray:
    """A finite float64 array with exactly ``ndim`` dimensions."""
    arr = to_numpy(x, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(arr.shape)}")
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(arr.shape)})")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(arr[first]) else "an infinite value"
        raise ValueError(
            f"{name} contains {kind} at index {first if len(first) > 1 else first[0]} "
            f"({int(bad.sum())} non-finite of {arr.size}); metrics are undefined for it"
        )
    return arr


def binary_array(x: Any, name: str) -> np.ndarray:
    """A 1-D boolean array from booleans or numbers that are exactly 0 or 1."""
    arr = to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(arr.shape)}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be boolean or 0/1, got dtype {arr.dtype}")
    values = np.unique(arr)
    if not np.all(np.isin(values, (0, 1))):
        shown = ", ".join(repr(v.item()) for v in values[:5])
        raise ValueError(
            f"{name} must be boolean or 0/1 (1 = same procedure), got values {{{shown}}}; "
            "pass a label, not a score or a distance"
        )
    return arr.astype(bool)


def labels_array(x: Any, name: str) -> np.ndarray:
    """A 1-D integer label array (one label per frame)."""
    arr = to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (T,), got shape {tuple(arr.shape)}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError(f"{name} must hold integer labels, got non-integer floats")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def same_length(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same length, got shapes "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def video_list(xs: Any, name: str) -> list[Any]:
    """A non-empty list of per-video items (a sequence, not a single array)."""
    if isinstance(xs, np.ndarray) or hasattr(xs, "detach"):
        # a stacked (B, T, ...) array is fine: iterate over its first axis
        return [xs[i] for i in range(xs.shape[0])]
    if not isinstance(xs, Sequence) or isinstance(xs, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of per-video arrays, got {type(xs).__name__}")
    if len(xs) == 0:
        raise ValueError(f"{name} is empty: need at least one video")
    return list(xs)


def embeddings_and_labels(
    embs: Any, labels: Any, name_e: str, name_l: str
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-video (T_b, D) embeddings with matching (T_b,) labels, D equal across videos."""
    e_list = video_list(embs, name_e)
    l_list = video_list(labels, name_l)
    if len(e_list) != len(l_list):
        raise ValueError(f"{name_e} has {len(e_list)} videos but {name_l} has {len(l_list)}")
    out_e, out_l = [], []
    dim = None
    for i, (e, lab) in enumerate(zip(e_list, l_list)):
        e = float_array(e, f"{name_e}[{i}]", 2)
        lab = labels_array(lab, f"{name_l}[{i}]")
        same_length(e, lab, f"{name_e}[{i}]", f"{name_l}[{i}]")
        if dim is None:
            dim = e.shape[1]
        elif e.shape[1] != dim:
            raise ValueError(
                f"{name_e}[{i}] has feature size {e.shape[1]}, expected {dim} like {name_e}[0]"
            )
        out_e.append(e)
        out_l.append(lab)
    return out_e, out_l


def check_choice(value: str, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_stride(stride: Any) -> int:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    return int(stride)
