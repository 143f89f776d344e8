"""Shared by the feature-cache and extraction tests: a counting tiny encoder and a folder of
small videos (good, corrupt, empty). ``video_dir`` reaches the tests through tests/data/conftest.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from procalign.data.render import render_frames, write_video
from procalign.data.video import ResizePolicy
from procalign.models.encoders import build_encoder

SMALL = ResizePolicy("shorter_side", 16, 16)


class CountingEncoder(torch.nn.Module):
    """Wraps an encoder and counts forward calls (to see which videos were really encoded)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.dim, self.weights_id, self.input_kind = inner.dim, inner.weights_id, inner.input_kind
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def tiny(dim: int = 8) -> CountingEncoder:
    return CountingEncoder(build_encoder("tiny_cnn", dim=dim, width=4, seed=0))


@pytest.fixture()
def video_dir(tmp_path) -> Path:
    """6 good videos (two containers), one frame folder, one corrupt and one empty file."""
    root = tmp_path / "in"
    root.mkdir()
    for i in range(6):
        steps = np.repeat([i % 3 + 1, 0, (i + 1) % 3 + 1], 4)
        frames = render_frames(steps, np.tile(np.linspace(0, 1, 4), 3), size=16, seed=i)
        write_video(root / f"vid{i}.{'mp4' if i % 2 else 'webm'}", frames)
    folder = root / "framesA"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((16, 16, 3), 30 * i, np.uint8)).save(folder / f"{i}.png")
    (root / "corrupt.mp4").write_bytes(b"\x00\x01" * 300)
    (root / "empty.avi").write_bytes(b"")
    (root / "notes.txt").write_text("ignored")
    return root
