"""Checkpoints: weights as safetensors plus a resumable training state, written atomically.

Layout under a run folder::

    checkpoints/epoch_0003/model.safetensors   weights (loadable without pickle)
    checkpoints/epoch_0003/state.pt            optimizer, scheduler, RNG, epoch, history, extras
    checkpoints/LATEST                         name of the newest complete checkpoint
    model.safetensors                          final weights (copied at the end of training)

A checkpoint folder is written under a temporary name and renamed when complete, and ``LATEST`` is
replaced atomically, so a run killed at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from procalign._io import atomic_write_text


def save_weights(model: torch.nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``model.state_dict()`` to a safetensors file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(_canonical(save(tensors, metadata=metadata or {})))
    os.replace(tmp, path)


def _canonical(blob: bytes) -> bytes:
    """safetensors writes ``__metadata__`` in a per-process random (hash map) order; sort it so
    equal weights and metadata give equal bytes (a resumed run is byte-identical to a fresh one)."""
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    return blob[:8] + text.ljust(n) + blob[8 + n :] if len(text) <= n else blob


def load_weights(model: torch.nn.Module, path: str | Path, strict: bool = True) -> torch.nn.Module:
    """Load a safetensors file into ``model``; a clear error names missing or extra keys."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no weights file at {path}")
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if strict and (missing or unexpected):
        raise ValueError(f"{path} does not fit the model: missing keys {missing}, unexpected keys {unexpected}")
    return model


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


class Checkpointer:
    """Saves and restores the full training state of one run folder."""

    def __init__(self, run_dir: str | Path, keep: int = 2) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "checkpoints"
        self.keep = keep

    def latest(self) -> Path | None:
        marker = self.dir / "LATEST"
        if not marker.exists():
            return None
        path = self.dir / marker.read_text().strip()
        return path if (path / "state.pt").exists() and (path / "model.safetensors").exists() else None

    def save(self, model: torch.nn.Module, state: dict[str, Any], name: str, metadata: dict[str, str] | None = None) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / name
        tmp = self.dir / f".{name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_weights(model, tmp / "model.safetensors", metadata)
        torch.save(state, tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(self.dir / "LATEST", name)
        self._prune(keep_name=name)
        return final

    def load(self, model: torch.nn.Module, path: Path | None = None) -> dict[str, Any]:
        path = path or self.latest()
        if path is None:
            raise FileNotFoundError(f"no complete checkpoint under {self.dir}")
        load_weights(model, path / "model.safetensors")
        return torch.load(path / "state.pt", weights_only=False)

    def _prune(self, keep_name: str) -> None:
        ckpts = sorted(p for p in self.dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        for old in ckpts[: max(0, len(ckpts) - self.keep)]:
            if old.name != keep_name:
                shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2, default=str))
