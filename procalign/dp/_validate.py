"""Input checks shared by the public DP entry points (errors name the argument and shapes)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_BACKENDS = ("auto", "numba", "torch")
#: |value| x cells per example must stay below this: far from the kernels' "impossible" marker
#: NEG = -1e30, and small enough that float64 path sums keep the ~1e-4 relative precision the
#: marginals need (exp(alpha + beta - Z) loses it when |path value| reaches ~1e12; found by fuzzing)
MAX_PATH_SUM = 1e11


def check_tensor(x: object, name: str, ndim: int, letters: str, finite: bool = True) -> Tensor:
    """Check type, rank, floating dtype and finiteness of ``x``; return it unchanged."""
    return check_tensor_bound(x, name, ndim, letters, finite)[0]


def check_tensor_bound(
    x: object, name: str, ndim: int, letters: str, finite: bool = True
) -> tuple[Tensor, float]:
    """``check_tensor``, also returning max |x| from the same pass (``inf`` when ``finite`` is
    False). A tensor marked by ``mark_finite`` and not written since skips the pass."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({letters}), got {type(x).__name__}")
    if x.dim() != ndim:
        raise ValueError(
            f"{name} must have shape ({letters}) ({ndim} dims), got shape {tuple(x.shape)}"
        )
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    if any(s == 0 for s in x.shape):
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if not finite:
        return x, math.inf
    # Path and block sums must stay far from the kernels' "impossible" marker (-1e30) and
    # from overflow; a value this large is a units or masking mistake, not a score.
    cells = math.prod(x.shape[1:])
    mark = getattr(x, "_procalign_finite", None)
    if mark is not None and mark[0] == x._version and mark[1] * cells <= MAX_PATH_SUM:
        return x, mark[1]
    # One pass: min and max are NaN/inf whenever an element is; only then pay for the count.
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~torch.isfinite(x.detach())).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s) (shape {tuple(x.shape)})")
    big = max(-lo, hi)
    if big * cells > MAX_PATH_SUM:
        raise ValueError(
            f"{name} has values up to {big:.3g}: too large for the DP (|value| x "
            f"{cells} cells per example must stay below {MAX_PATH_SUM:.0e}); rescale the input"
        )
    return x, big


def mark_finite(x: Tensor, bound: float) -> Tensor:
    """Record that ``x`` (as it is now: its version counter) is finite with |x| <= ``bound``, so
    that ``check_tensor`` need not scan it again: for outputs whose finiteness follows from
    checked inputs (``pairwise_costs``). Writing into ``x`` or any view of it bumps the version
    and voids the mark; a new tensor made from ``x`` (a slice, a copy) carries no mark. Writes
    that bypass the version counter (through ``x.data`` or ``x.numpy()``) are not seen: a NaN
    put there reaches the kernels, whose output is then NaN, not an error."""
    x._procalign_finite = (x._version, float(bound))
    return x


def check_lengths(lengths: object, name: str, batch: int, max_len: int, like: Tensor) -> Tensor:
    """Return int64 lengths (B,) on ``like``'s device; None means every example is full length."""
    if lengths is None:
        return torch.full((batch,), max_len, dtype=torch.long, device=like.device)
    if not isinstance(lengths, Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except Exception as exc:  # noqa: BLE001 - report any conversion failure the same way
            raise TypeError(f"{name} must be a 1-D integer tensor of shape (B,)") from exc
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.is_complex():
        raise TypeError(f"{name} must hold integers, got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"{name} must have shape (B,)=({batch},), got {tuple(lengths.shape)}")
    if lengths.device != like.device:
        raise ValueError(f"{name} is on {lengths.device} but the input is on {like.device}")
    if batch and (int(lengths.min()) < 1 or int(lengths.max()) > max_len):
        raise ValueError(
            f"{name} must lie in [1, {max_len}], got min {int(lengths.min())}, max {int(lengths.max())}"
        )
    return lengths.long()


def check_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    return backend


def check_gamma(gamma: object) -> float:
    try:
        g = float(gamma)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"gamma must be a positive number, got {gamma!r}") from exc
    if not (g > 0 and g < float("inf")):
        raise ValueError(f"gamma must be a positive finite number, got {gamma!r}")
    return g


def same_device_dtype(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} is {a.dtype} but {name_b} is {b.dtype}; use one dtype")
    if a.device != b.device:
        raise ValueError(f"{name_a} is on {a.device} but {name_b} is on {b.device}")


def use_numba(backend: str, x: Tensor, supported: bool) -> bool:
    """Pick the compiled CPU kernels for ``auto`` when the input is on CPU and supported."""
    if backend == "numba":
        if x.device.type != "cpu":
            raise ValueError(f"backend='numba' runs on CPU tensors only, got device {x.device}")
        if not supported:
            raise ValueError("backend='numba' supports only the log and max semirings")
        return True
    if backend == "torch":
        return False
    return supported and x.device.type == "cpu"
