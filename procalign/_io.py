"""Atomic file writes: a reader never sees a half-written file, a killed job leaves none behind."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save_npy(path: str | Path, array: np.ndarray) -> None:
    """``np.save`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_save_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` to ``path`` through a temporary file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(path)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def npy_problem(path: str | Path, exc: BaseException) -> str:
    """Why ``np.load(path)`` failed, in words a user can act on (numpy's own message for a
    file that is not .npy suggests ``allow_pickle``, which is never the fix here)."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(6)
    except OSError as err:
        return f"cannot be opened ({err.strerror or err})"
    if not head:
        return "it is empty (0 bytes)"
    if head != b"\x93NUMPY":
        return "it is not a NumPy .npy file (no .npy header; write arrays with numpy.save)"
    if "pickle" in str(exc).lower() or "object" in str(exc).lower():
        return "it holds Python objects, not a numeric array (save a float array)"
    return f"{type(exc).__name__}: {exc}"
