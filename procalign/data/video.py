"""Video input: decode files with PyAV or read frame folders, sample T frames, resize.

Everything returns frames as uint8 arrays of shape (C, T, H, W, 3) (C clips of T frames, RGB)
together with a ``policy`` dict that records the source, the sampling and the resize choices, so
no preprocessing decision goes unrecorded.

Any problem with one input (missing, empty, corrupt, truncated, unreadable image) raises
:class:`VideoDecodeError`, a ``ValueError`` that names the file and the cause. Batch callers use
:func:`read_many`, which records the failure and goes on with the next file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from procalign.data.sampling import SamplingPolicy

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class VideoDecodeError(ValueError):
    """A video or frame folder could not be read. ``path`` and ``cause`` say which and why."""

    def __init__(self, path: str | Path, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(f"cannot read video {self.path!r}: {cause}")

    def __reduce__(self):  # keep (path, cause) across processes (DataLoader workers, pools)
        return (type(self), (self.path, self.cause))


class VideoNotFoundError(VideoDecodeError, FileNotFoundError):
    """The input does not exist (also a ``FileNotFoundError``)."""


@dataclass(frozen=True)
class ResizePolicy:
    """How frames are resized; recorded with every output.

    Attributes:
        mode: ``"shorter_side"`` (scale so the shorter side is ``size``, then centre-crop to
            ``crop`` x ``crop`` when ``crop`` is set), ``"fixed"`` (resize to ``size = (H, W)``,
            ignoring aspect ratio) or ``"none"``.
        size: an int for ``"shorter_side"``, a (H, W) pair (or an int for a square) for ``"fixed"``.
        crop: centre-crop side for ``"shorter_side"``; None keeps the whole resized frame.
    """

    mode: str = "shorter_side"
    size: int | tuple[int, int] | None = 64
    crop: int | None = 64

    def __post_init__(self) -> None:
        if self.mode not in ("shorter_side", "fixed", "none"):
            raise ValueError(
                f"resize mode must be 'shorter_side', 'fixed' or 'none', got {self.mode!r}"
            )
        if self.mode == "shorter_side" and (not isinstance(self.size, int) or self.size < 1):
            raise ValueError(
                f"resize mode 'shorter_side' needs an int size >= 1, got {self.size!r}"
            )
        if self.mode == "fixed":
            size = (self.size, self.size) if isinstance(self.size, int) else self.size
            if size is None or len(size) != 2 or min(size) < 1:
                raise ValueError(f"resize mode 'fixed' needs size=(H, W) >= 1, got {self.size!r}")
            object.__setattr__(self, "size", (int(size[0]), int(size[1])))
        if self.crop is not None and (not isinstance(self.crop, int) or self.crop < 1):
            raise ValueError(f"crop must be None or an int >= 1, got {self.crop!r}")

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(H, W) of a resized frame from a (height, width) source."""
        if self.mode == "none":
            return height, width
        if self.mode == "fixed":
            return self.size  # type: ignore[return-value]
        scale = self.size / min(height, width)  # type: ignore[operator]
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        if self.crop is not None:
            h, w = min(h, self.crop), min(w, self.crop)
        return h, w

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Resize one RGB frame (H, W, 3) uint8 -> (H', W', 3) uint8 (bilinear)."""
        if self.mode == "none":
            return frame
        from PIL import Image

        height, width = frame.shape[:2]
        if self.mode == "fixed":
            h, w = self.size  # type: ignore[misc]
        else:
            scale = self.size / min(height, width)  # type: ignore[operator]
            h, w = max(1, round(height * scale)), max(1, round(width * scale))
        if (h, w) != (height, width):
            frame = np.asarray(Image.fromarray(frame).resize((w, h), Image.BILINEAR))
        if self.mode == "shorter_side" and self.crop is not None:
            ch, cw = min(h, self.crop), min(w, self.crop)
            top, left = (h - ch) // 2, (w - cw) // 2
            frame = frame[top : top + ch, left : left + cw]
        return np.ascontiguousarray(frame)

    def to_dict(self) -> dict:
        size = list(self.size) if isinstance(self.size, tuple) else self.size
        return {"mode": self.mode, "size": size, "crop": self.crop}


@dataclass
class DecodedVideo:
    """Frames sampled from one video.

    Attributes:
        frames: uint8 array (C, T, H, W, 3), C clips of T RGB frames.
        indices: int64 array (C, T), source frame index of every kept frame.
        num_source_frames: L, frames in the source.
        fps: source frame rate (None for frame folders).
        policy: the JSON-ready record of source, sampling and resize.
    """

    frames: np.ndarray
    indices: np.ndarray
    num_source_frames: int
    fps: float | None
    policy: dict[str, Any] = field(default_factory=dict)


def _natural_key(name: str) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files (jpg, png) of a frame folder, in natural order (2.jpg before 10.jpg)."""
    folder = Path(folder)
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def is_video_input(path: str | Path) -> bool:
    """True for a video file with a known extension or a folder holding at least one image."""
    path = Path(path)
    if path.is_file():
        return path.suffix.lower() in VIDEO_EXTENSIONS
    if path.is_dir():
        return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir())
    return False


def _count_packets(path: Path) -> tuple[int, float | None, int]:
    """Demux once (no decoding): number of video packets, fps, frames the header promises."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream in the file")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        promised = int(stream.frames or 0)
        if promised == 0 and container.duration and fps:
            promised = int(round(container.duration / 1_000_000 * fps))
        packets = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
    return packets, fps, promised


def _decode_selected(path: Path, wanted: set[int], resize: ResizePolicy) -> tuple[dict, int]:
    """Decode every frame once, keeping the resized RGB arrays whose index is in ``wanted``."""
    import av

    kept: dict[int, np.ndarray] = {}
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if count in wanted:
                kept[count] = resize.apply(frame.to_ndarray(format="rgb24"))
            count += 1
    return kept, count


def _read_video_file(
    path: Path, sampling: SamplingPolicy, resize: ResizePolicy, rng: Any, allow_truncated: bool
) -> DecodedVideo:
    import av

    try:
        packets, fps, promised = _count_packets(path)
        if packets == 0:
            raise VideoDecodeError(path, "the video stream holds no frames (empty or truncated)")
        indices = sampling.indices(packets, rng, source_fps=fps)
        kept, decoded = _decode_selected(path, set(indices.ravel().tolist()), resize)
        if decoded == 0:
            raise VideoDecodeError(path, "no frame could be decoded (corrupt or truncated)")
        if decoded != packets:
            # Packet count was a guess (rare codecs): sample again on the true count.
            indices = sampling.indices(decoded, rng, source_fps=fps)
            kept, decoded = _decode_selected(path, set(indices.ravel().tolist()), resize)
    except VideoDecodeError:
        raise
    except av.error.FFmpegError as exc:
        raise VideoDecodeError(
            path, f"FFmpeg: {exc.strerror or exc} (corrupt or truncated)"
        ) from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # PyAV can fail decoding its message
        raise VideoDecodeError(path, f"{type(exc).__name__}: {exc}") from exc
    if (
        promised
        and not allow_truncated
        and decoded < promised - max(1, int(np.ceil(0.02 * promised)))
    ):
        raise VideoDecodeError(
            path, f"truncated: the header promises {promised} frames but only {decoded} decode"
        )
    frames = np.stack([np.stack([kept[int(i)] for i in clip]) for clip in indices])
    return DecodedVideo(frames, indices, decoded, fps, {})


def _read_frame_folder(
    path: Path, sampling: SamplingPolicy, resize: ResizePolicy, rng: Any
) -> DecodedVideo:
    from PIL import Image, UnidentifiedImageError

    files = list_frame_files(path)
    if not files:
        raise VideoDecodeError(path, f"frame folder holds no {'/'.join(IMAGE_EXTENSIONS)} images")
    if sampling.mode == "all" and sampling.fps is not None:
        raise VideoDecodeError(
            path, "fps resampling needs a video file; a frame folder has no fps (use --frames)"
        )
    indices = sampling.indices(len(files), rng)
    cache: dict[int, np.ndarray] = {}
    for i in sorted(set(indices.ravel().tolist())):
        try:
            with Image.open(files[i]) as img:
                cache[i] = resize.apply(np.asarray(img.convert("RGB")))
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise VideoDecodeError(files[i], f"unreadable image: {exc}") from exc
    shapes = {a.shape for a in cache.values()}
    if len(shapes) > 1:
        raise VideoDecodeError(path, f"frames differ in size after resizing: {sorted(shapes)}")
    frames = np.stack([np.stack([cache[int(i)] for i in clip]) for clip in indices])
    return DecodedVideo(frames, indices, len(files), None, {})


def read_video(
    path: str | Path,
    sampling: SamplingPolicy | None = None,
    resize: ResizePolicy | None = None,
    *,
    rng: np.random.Generator | int | None = None,
    allow_truncated: bool = False,
) -> DecodedVideo:
    """Decode a video file (mp4, avi, webm, mkv, ...) or a frame folder (jpg, png).

    Args:
        path: a video file or a folder of frame images (natural filename order).
        sampling: which frames to keep; default: T=16, fixed offset 1/2 per segment.
        resize: how to resize; default: shorter side 64, centre crop 64.
        rng: generator or seed used when ``sampling.mode == "train"``.
        allow_truncated: accept files that decode fewer frames than their header promises
            (by more than max(1, 2%)); by default they raise.

    Returns:
        :class:`DecodedVideo` with ``frames`` (C, T, H, W, 3) uint8 and ``policy``.

    Raises:
        VideoDecodeError: missing (also a FileNotFoundError), empty, corrupt or truncated input.
    """
    sampling = sampling or SamplingPolicy()
    resize = resize or ResizePolicy()
    path = Path(path)
    if not path.exists():
        raise VideoNotFoundError(path, "no such file or folder")
    if path.is_dir():
        out = _read_frame_folder(path, sampling, resize, rng)
        kind = "frames"
    else:
        if path.stat().st_size == 0:
            raise VideoDecodeError(path, "empty file (0 bytes)")
        out = _read_video_file(path, sampling, resize, rng, allow_truncated)
        kind = "video"
    out.policy = {
        "source": str(path),
        "source_kind": kind,
        "num_source_frames": out.num_source_frames,
        "source_fps": out.fps,
        "sampling": sampling.to_dict(),
        "resize": resize.to_dict(),
        "frame_shape": list(out.frames.shape[2:]),
    }
    return out


def read_many(
    paths: Iterable[str | Path],
    sampling: SamplingPolicy | None = None,
    resize: ResizePolicy | None = None,
    *,
    rng: np.random.Generator | int | None = None,
) -> Iterator[tuple[Path, DecodedVideo | VideoDecodeError]]:
    """Decode many inputs; a failing one yields its :class:`VideoDecodeError` instead of raising.

    >>> for path, result in read_many(["missing.mp4"]):
    ...     print(type(result).__name__, result.cause)
    VideoNotFoundError no such file or folder
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    for p in paths:
        try:
            yield Path(p), read_video(p, sampling, resize, rng=gen)
        except VideoDecodeError as exc:
            yield Path(p), exc
