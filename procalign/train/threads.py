"""The one thread and device policy of every command: ``with compute(threads, device): ...``.

torch (OpenMP) and numba (OpenMP, the compiled DP kernels) keep separate thread pools. On a small
or shared CPU, two pools of N threads each fight for the cores: measured on a busy 2-core
machine, a CPA epoch took 22 s with 2 + 2 threads and 1.4 s with 1 + 1. So the policy is one knob,
``train.threads``, applied to both pools for the duration of a command and restored afterwards:

* an integer N: N threads in each pool (the default, 1, is what every shipped config runs with);
* ``"auto"``: the cores this process may use that are not already busy (the CPU affinity set
  minus the 1-minute load average, at least 1), decided once when the command starts;
* ``None``: the process's settings are left alone.

:func:`resolve_threads` is that rule, the only place it is written; every recipe reaches it
through :func:`compute` (``procalign.train.runner``), the demo and the benchmarks likewise.
Measured per training step in ``benchmarks/train_step.py`` (docs/performance.md): on the 2-core
VM, 2 + 2 threads made a CPA step 1.3x faster on a quiet machine but slower as soon as one other
busy process shared the cores, and never helped LRProp's small steps, hence the default 1.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from collections.abc import Iterator

import torch

#: ``train.threads`` value that picks the idle cores at the start of a command
AUTO = "auto"


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | str | None) -> int | None:
    """The thread policy: ``train.threads`` -> threads per pool (torch and numba), or None.

    >>> resolve_threads(2), resolve_threads(None)
    (2, None)
    >>> 1 <= resolve_threads("auto") <= usable_cores()
    True
    """
    if threads is None:
        return None
    if isinstance(threads, str):
        if threads.strip().lower() != AUTO:
            raise ValueError(f"threads must be an integer >= 1, {AUTO!r} or None, got {threads!r}")
        cores = usable_cores()
        try:
            busy = os.getloadavg()[0]
        except (AttributeError, OSError):  # pragma: no cover - not Unix
            busy = 0.0
        return max(1, min(cores, cores - int(round(busy))))
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be an integer >= 1, {AUTO!r} or None, got {threads!r}")
    return threads


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
def compute(threads: int | str | None) -> Iterator[None]:
    """Apply the thread policy (:func:`resolve_threads`) inside a ``with`` block and restore the
    previous counts."""
    n = resolve_threads(threads)
    if n is None:
        yield
        return
    saved, saved_numba = set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
        if saved_numba is not None:
            import numba

            numba.set_num_threads(saved_numba)
