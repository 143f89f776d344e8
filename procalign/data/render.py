"""Render step sequences as real short videos (coloured moving shapes), written with PyAV.

Each step id ``s`` gets a colour (golden-ratio hue spacing), a shape (disc, square, ring, bar) and a
straight trajectory across the frame; within a step the shape moves along its trajectory as the
step's own progress goes from 0 to 1, so motion and colour encode the step and its phase. Frames
labelled background (step id 0) show an empty scene. Per-video nuisance (background tint, a global
shift, pixel noise) is drawn from the seed, so two videos of the same procedure look alike but not
identical. The point is to exercise the real video path end to end: render -> decode ->
``tiny_cnn`` features.
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

#: container extension -> PyAV encoder used by :func:`write_video`.
CODECS = {
    ".mp4": "libx264",
    ".mkv": "libx264",
    ".avi": "mpeg4",
    ".webm": "libvpx",
    ".mov": "libx264",
}

_GOLDEN = 0.6180339887498949


def step_colour(step: int, hue_shift: float = 0.0) -> np.ndarray:
    """RGB colour of a step id as float array (3,) in [0, 255] (hue rotated by ``hue_shift``)."""
    hue = (step * _GOLDEN + hue_shift) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95)) * 255.0


def render_frames(
    steps: np.ndarray,
    step_progress: np.ndarray,
    *,
    size: int = 32,
    seed: int = 0,
    noise: float = 6.0,
    style: str = "plain",
) -> np.ndarray:
    """Draw one frame per entry of ``steps``.

    Args:
        steps: int array (T,), step id per frame; 0 means background (empty scene).
        step_progress: float array (T,), progress inside the current step, in [0, 1].
        size: frame side in pixels (even, >= 8).
        seed: per-video nuisance seed (tint, shift, noise).
        noise: std of the additive pixel noise (0-255 scale).
        style: ``"plain"`` (each step has its own colour, shape and trajectory; a flat tinted
            background) or ``"cluttered"``: the colour of every step is shifted by a per-video
            random hue (so colour no longer tells the steps apart: their shape and motion do),
            over a per-video striped background with random brightness and contrast, as
            lighting and scenes differ between real recordings.

    Returns:
        uint8 array (T, size, size, 3).
    """
    steps = np.asarray(steps)
    step_progress = np.asarray(step_progress, dtype=np.float64)
    if steps.ndim != 1 or step_progress.shape != steps.shape:
        raise ValueError(
            f"steps and step_progress must both have shape (T,), got {steps.shape} and "
            f"{step_progress.shape}"
        )
    if not isinstance(size, int) or size < 8 or size % 2:
        raise ValueError(f"size must be an even int >= 8, got {size!r}")
    if style not in ("plain", "cluttered"):
        raise ValueError(f"style must be 'plain' or 'cluttered', got {style!r}")
    rng = np.random.default_rng(seed)
    tint = 40.0 + rng.uniform(-20, 20, size=3)
    shift = rng.uniform(-0.08, 0.08, size=2) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    hue = 0.0
    gain, offset = 1.0, 0.0
    scene = np.broadcast_to(tint, (size, size, 3))
    if style == "cluttered":
        hue = float(rng.uniform(0, 1))
        gain, offset = float(rng.uniform(0.6, 1.3)), float(rng.uniform(-30, 30))
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(0.15, 0.4) * size
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period
        colours = rng.uniform(30, 200, size=(2, 3))
        mix = (0.5 + 0.5 * np.sin(phase))[..., None]
        scene = colours[0] * mix + colours[1] * (1 - mix)
    radius = size / 6.0
    out = np.empty((len(steps), size, size, 3), dtype=np.uint8)
    for t, (s, u) in enumerate(zip(steps.tolist(), step_progress.tolist())):
        img = np.array(scene, dtype=np.float64)
        if s > 0:
            angle = 2 * np.pi * ((s * _GOLDEN * 3.1) % 1.0)
            direction = np.array([np.cos(angle), np.sin(angle)])
            centre = size / 2 + shift + (u - 0.5) * 0.5 * size * direction
            dy, dx = yy - centre[0], xx - centre[1]
            kind = s % 4
            if kind == 0:
                mask = dy**2 + dx**2 <= radius**2
            elif kind == 1:
                mask = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
            elif kind == 2:
                r2 = dy**2 + dx**2
                mask = (r2 <= radius**2) & (r2 >= (0.5 * radius) ** 2)
            else:
                mask = (np.abs(dy) <= 0.5 * radius) & (np.abs(dx) <= 1.6 * radius)
            img[mask] = step_colour(s, hue) * (0.75 + 0.25 * u)
        img = img * gain + offset + rng.normal(0.0, noise, size=img.shape)
        out[t] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_video(
    path: str | Path, frames: np.ndarray, *, fps: int = 8, codec: str | None = None
) -> Path:
    """Encode frames (T, H, W, 3) uint8 into ``path``; the codec follows the extension.

    mp4/mkv/mov use libx264, avi mpeg4, webm libvpx (see :data:`CODECS`). H and W must be even.
    The file appears complete or not at all (written to a temporary name, then renamed).
    """
    import os

    import av

    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}"
        )
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(
            f"frame height and width must be even for yuv420p, got {frames.shape[1:3]}"
        )
    ext = path.suffix.lower()
    codec = codec or CODECS.get(ext)
    if codec is None:
        raise ValueError(f"unknown video extension {ext!r} for {path}; use one of {sorted(CODECS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{ext}")
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "veryfast"}
            for arr in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def render_video(
    path: str | Path,
    steps: np.ndarray,
    step_progress: np.ndarray,
    *,
    size: int = 32,
    fps: int = 8,
    seed: int = 0,
    style: str = "plain",
) -> Path:
    """:func:`render_frames` then :func:`write_video`. Returns the written path."""
    frames = render_frames(steps, step_progress, size=size, seed=seed, style=style)
    return write_video(path, frames, fps=fps)
