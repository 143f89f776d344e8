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


# ----------------------------------------------------------------------------- streaming

#: swscale interpolation used when videos are streamed (``stream_frames``); recorded in policies.
STREAM_INTERPOLATION = "area"


class _Restart(Exception):
    """The packet count was a guess: sample again on the true number of decoded frames."""

    def __init__(self, decoded: int) -> None:
        super().__init__(decoded)
        self.decoded = decoded


@dataclass
class StreamedVideo:
    """What :func:`stream_frames` knows once a video has been read to its end.

    Attributes:
        indices: int64 (T,), source frame index of every emitted frame, in emission order.
        num_source_frames: L, frames decoded from the source.
        fps: source frame rate (None for frame folders).
        policy: JSON-ready record of source, sampling and resize (as :func:`read_video`'s).
    """

    indices: np.ndarray
    num_source_frames: int
    fps: float | None
    policy: dict[str, Any] = field(default_factory=dict)


def _target_size(resize: ResizePolicy, height: int, width: int) -> tuple[int, int]:
    """(H, W) to scale a (height, width) frame to before the centre crop."""
    if resize.mode == "none":
        return height, width
    if resize.mode == "fixed":
        return resize.size  # type: ignore[return-value]
    scale = resize.size / min(height, width)  # type: ignore[operator]
    return max(1, round(height * scale)), max(1, round(width * scale))


def _centre_crop(arr: np.ndarray, resize: ResizePolicy) -> np.ndarray:
    if resize.mode != "shorter_side" or resize.crop is None:
        return arr
    h, w = arr.shape[-3:-1]
    ch, cw = min(h, resize.crop), min(w, resize.crop)
    top, left = (h - ch) // 2, (w - cw) // 2
    return arr[..., top : top + ch, left : left + cw, :]


class BufferPool:
    """A fixed number of reusable uint8 batch buffers shared by decode threads and the encoder.

    Reusing buffers (instead of allocating one per batch in a decode thread and freeing it in
    another) keeps the resident memory flat: glibc's per-thread arenas otherwise grow with the
    number of batches (a 5,400-frame video at 224 px went from 380 to 700 MB).

    Args:
        size: buffers in circulation (at most); ``get`` waits when all are in use.
        stop: an optional ``threading.Event``; ``get`` gives up (returns None) once it is set.
    """

    def __init__(self, size: int, stop=None) -> None:
        import queue
        import threading

        self.size, self.stop = max(1, size), stop
        self._free: queue.Queue = queue.Queue()
        self._made = 0
        self._lock = threading.Lock()

    def get(self, shape: tuple[int, ...]) -> np.ndarray | None:
        import queue

        while self.stop is None or not self.stop.is_set():
            try:
                buf = self._free.get(timeout=0.05)
            except queue.Empty:
                with self._lock:
                    if self._made < self.size:
                        self._made += 1
                        return np.empty(shape, dtype=np.uint8)
                continue
            if buf.shape == tuple(shape):
                return buf
            with self._lock:  # another frame size: let a buffer of the new shape be made
                self._made -= 1
        return None

    def put(self, array: np.ndarray) -> None:
        """Give back a batch from :func:`stream_frames` (or a view of one) once it is used."""
        while array.base is not None and isinstance(array.base, np.ndarray):
            array = array.base
        self._free.put(array)


class _Batcher:
    """Collects (H, W, 3) frames into (b, H, W, 3) uint8 batches of ``batch_size``."""

    def __init__(self, path: Path, batch_size: int, pool: BufferPool | None = None) -> None:
        self.path, self.batch_size, self.pool = path, batch_size, pool
        self.buf: np.ndarray | None = None
        self.shape: tuple[int, ...] | None = None
        self.n = 0

    def _new(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.pool is None:
            return np.empty(shape, dtype=np.uint8)
        buf = self.pool.get(shape)
        if buf is None:
            raise _Stopped
        return buf

    def add(self, frame: np.ndarray, times: int = 1) -> Iterator[np.ndarray]:
        for _ in range(times):
            if self.shape is None:
                self.shape = (self.batch_size, *frame.shape)
            elif self.shape[1:] != frame.shape:
                raise VideoDecodeError(
                    self.path,
                    f"frame size changes inside the video ({self.shape[1:3]} then "
                    f"{frame.shape[:2]} after resizing); use a resize with a crop or 'fixed'",
                )
            if self.buf is None:
                self.buf = self._new(self.shape)
            self.buf[self.n] = frame
            self.n += 1
            if self.n == self.batch_size:
                out, self.buf, self.n = self.buf, None, 0
                yield out

    def flush(self) -> Iterator[np.ndarray]:
        if self.n:
            out, n = self.buf, self.n
            self.buf, self.n = None, 0
            yield out[:n]


class _Stopped(Exception):
    """The pool's stop event was set: the consumer is gone."""


def _multiplicity(indices: np.ndarray) -> dict[int, int]:
    counts: dict[int, int] = {}
    for i in indices.tolist():
        counts[i] = counts.get(i, 0) + 1
    return counts


def _stream_video_file(
    path: Path,
    sampling: SamplingPolicy,
    resize: ResizePolicy,
    batch_size: int,
    allow_truncated: bool,
    length: int | None = None,
    pool: BufferPool | None = None,
) -> Iterator[np.ndarray | StreamedVideo]:
    import av
    from av.video.reformatter import Interpolation, VideoReformatter

    packets, fps, promised = _count_packets(path)
    if length is None:
        length = packets
    if length == 0:
        raise VideoDecodeError(path, "the video stream holds no frames (empty or truncated)")
    indices = sampling.indices(length, None, source_fps=fps)
    if indices.shape[0] != 1:
        raise ValueError("stream_frames reads one clip per video; sample clips from the cache")
    indices = indices[0]
    wanted = _multiplicity(indices)
    batcher = _Batcher(path, batch_size, pool)
    reformatter = VideoReformatter()  # one swscale context for the whole video: much faster
    interp = getattr(Interpolation, STREAM_INTERPOLATION.upper())
    decoded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        # one decoding thread per video: the encoder gets the other cores (FFmpeg's frame
        # threads compete with it); decode several videos at once with workers instead
        stream.thread_type = "NONE"
        for frame in container.decode(stream):
            times = wanted.get(decoded, 0)
            decoded += 1
            if not times:
                continue
            h, w = _target_size(resize, frame.height, frame.width)
            rgb = reformatter.reformat(frame, w, h, "rgb24", interpolation=interp).to_ndarray()
            yield from batcher.add(_centre_crop(rgb, resize), times)
    if decoded == 0:
        raise VideoDecodeError(path, "no frame could be decoded (corrupt or truncated)")
    if decoded != length:
        again = sampling.indices(decoded, None, source_fps=fps)[0]
        if not np.array_equal(again, indices):
            raise _Restart(decoded)  # before the last batch: the caller drops what it got
    if (
        promised
        and not allow_truncated
        and decoded < promised - max(1, int(np.ceil(0.02 * promised)))
    ):
        raise VideoDecodeError(
            path, f"truncated: the header promises {promised} frames but only {decoded} decode"
        )
    yield from batcher.flush()
    yield StreamedVideo(indices, decoded, fps)


def _stream_frame_folder(
    path: Path,
    sampling: SamplingPolicy,
    resize: ResizePolicy,
    batch_size: int,
    pool: BufferPool | None = None,
) -> Iterator[np.ndarray | StreamedVideo]:
    from PIL import Image, UnidentifiedImageError

    files = list_frame_files(path)
    if not files:
        raise VideoDecodeError(path, f"frame folder holds no {'/'.join(IMAGE_EXTENSIONS)} images")
    if sampling.mode == "all" and sampling.fps is not None:
        raise VideoDecodeError(
            path, "fps resampling needs a video file; a frame folder has no fps (use --frames)"
        )
    indices = sampling.indices(len(files), None)[0]
    batcher = _Batcher(path, batch_size, pool)
    for i, times in _multiplicity(indices).items():
        try:
            with Image.open(files[i]) as img:
                rgb = img.convert("RGB")
                h, w = _target_size(resize, rgb.height, rgb.width)
                if (h, w) != (rgb.height, rgb.width):
                    rgb = rgb.resize((w, h), Image.BILINEAR, reducing_gap=2.0)
                arr = np.asarray(rgb)
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            raise VideoDecodeError(files[i], f"unreadable image: {exc}") from exc
        yield from batcher.add(_centre_crop(arr, resize), times)
    yield from batcher.flush()
    yield StreamedVideo(indices, len(files), None)


def stream_frames(
    path: str | Path,
    sampling: SamplingPolicy | None = None,
    resize: ResizePolicy | None = None,
    *,
    batch_size: int = 64,
    allow_truncated: bool = False,
    pool: BufferPool | None = None,
) -> Iterator[np.ndarray | StreamedVideo]:
    """Decode a video (or frame folder) frame by frame, yielding sampled frames in batches.

    Unlike :func:`read_video` nothing but the current batch is held: frames are decoded one at
    a time, only the sampled ones are converted, and the RGB conversion and the resize happen in
    one swscale call at the target size (``area`` interpolation) with one reused context.

    Yields:
        uint8 arrays (b, H, W, 3), b <= ``batch_size``, in frame order; then, last, one
        :class:`StreamedVideo` with the indices, the frame count and the policy. With a ``pool``
        (:class:`BufferPool`) the batches are its buffers: ``pool.put(batch)`` when done with
        one. In the rare
        case that a container's packet count was wrong, :data:`RESTART` is yielded once: drop
        the batches received so far, the video starts again.

    Raises:
        VideoDecodeError: missing, empty, corrupt, wrong-codec or truncated input (possibly
            after some batches were yielded: drop them).
        ValueError: a sampling policy with several clips (``"clips"``).

    >>> from procalign.data.render import render_frames, write_video
    >>> import tempfile, os
    >>> p = write_video(os.path.join(tempfile.mkdtemp(), "a.mp4"),
    ...                 render_frames(np.ones(20, int), np.linspace(0, 1, 20), size=32))
    >>> items = list(stream_frames(p, SamplingPolicy("all"), ResizePolicy("fixed", 16),
    ...                            batch_size=8))
    >>> [b.shape[0] for b in items[:-1]], items[-1].num_source_frames
    ([8, 8, 4], 20)
    """
    import av

    sampling = sampling or SamplingPolicy(mode="all")
    resize = resize or ResizePolicy()
    if sampling.num_clips != 1:
        raise ValueError(
            f"stream_frames reads one clip per video, got sampling mode {sampling.mode!r}"
        )
    if sampling.mode == "train":
        raise ValueError("stream_frames is deterministic: use sampling mode 'all' or 'eval'")
    path = Path(path)
    if not path.exists():
        raise VideoNotFoundError(path, "no such file or folder")
    if path.is_dir():
        gen = _stream_frame_folder(path, sampling, resize, batch_size, pool)
        kind = "frames"
    else:
        if path.stat().st_size == 0:
            raise VideoDecodeError(path, "empty file (0 bytes)")
        kind = "video"
        gen = None
    info: StreamedVideo | None = None
    length: int | None = None
    for _attempt in range(2):
        if kind == "video":
            gen = _stream_video_file(
                path, sampling, resize, batch_size, allow_truncated, length, pool
            )
        try:
            for item in gen:  # type: ignore[union-attr]
                if isinstance(item, StreamedVideo):
                    info = item
                else:
                    yield item
            break
        except _Restart as restart:
            length = restart.decoded
            yield RESTART
        except VideoDecodeError:
            raise
        except av.error.FFmpegError as exc:
            raise VideoDecodeError(
                path, f"FFmpeg: {exc.strerror or exc} (corrupt or truncated)"
            ) from exc
        except (OSError, EOFError) as exc:
            raise VideoDecodeError(path, f"{type(exc).__name__}: {exc}") from exc
    if info is None:
        raise VideoDecodeError(path, "the number of decodable frames keeps changing")
    info.policy = {
        "source": str(path),
        "source_kind": kind,
        "num_source_frames": info.num_source_frames,
        "source_fps": info.fps,
        "sampling": sampling.to_dict(),
        "resize": resize.to_dict(),
    }
    if kind == "video":
        info.policy["interpolation"] = STREAM_INTERPOLATION
    yield info


#: yielded by :func:`stream_frames` (test with ``is``) when the frames so far must be dropped:
#: the demuxed packet count was wrong, so sampling starts again on the true count. Rare.
RESTART = np.empty((0, 0, 0, 3), dtype=np.uint8)
