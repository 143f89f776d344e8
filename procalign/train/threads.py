"""The one thread and device policy of every command: ``with compute(threads, device): ...``.

torch (OpenMP) and numba (OpenMP, the compiled DP kernels) keep separate thread pools. On a small
or shared CPU, two pools of N threads each fight for the cores: measured on a busy 2-core
machine, a CPA epoch took 22 s with 2 + 2 threads and 1.4 s with 1 + 1. So the policy is one knob,
``train.threads``, applied to both pools for the duration of a command and restored afterwards;
``None`` leaves the process's settings alone (all cores: fastest on an idle many-core machine).
"""

from __future__ import annotations

from contextlib import contextmanager
from collections.abc import Iterator

import torch


def set_threads(n: int) -> tuple[int, int | None]:
    """Set torch's and numba's thread counts to ``n`` (>= 1); returns the previous pair."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    saved_numba = None
    try:
        import numba

        saved_numba = numba.get_num_threads()
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except ImportError:  # pragma: no cover - numba is a core dependency
        pass
    saved = torch.get_num_threads()
    torch.set_num_threads(n)
    return saved, saved_numba


def resolve_device(device: str | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"`` (CUDA when present) -> a torch device.

    A CUDA device that is not available is an error naming it, not a silent fallback.
    """
    name = (device or "cpu").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"train.device={device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={device!r}, but no CUDA device is available here")
    return dev


@contextmanager
def compute(threads: int | None) -> Iterator[None]:
    """Apply the thread policy inside a ``with`` block and restore the previous counts."""
    if threads is None:
        yield
        return
    saved, saved_numba = set_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
        if saved_numba is not None:
            import numba

            numba.set_num_threads(saved_numba)
