"""Streaming feature extraction into the cache of :mod:`procalign.data.features`.

Decode -> sample -> resize -> batch -> encode, one video at a time, with a producer thread that
decodes the next frames while the encoder runs; every ``.npy`` is written to a temporary name and
renamed, and the manifest is rewritten after each video, so a killed run loses at most the video
it was on (:func:`extract_features`). :func:`encode_video` is the same path for one video held in
memory (``procalign verify`` on raw videos).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from procalign._io import atomic_save_npy
from procalign.data.features import (
    MANIFEST_FORMAT,
    Source,
    _write_json_atomic,
    extraction_settings,
    feature_path,
    load_features,
    manifest_name,
    read_manifest,
    settings_key,
    shard_of,
)
from procalign.data.sampling import SamplingPolicy
from procalign.data.video import ResizePolicy, VideoDecodeError, _Stopped

#: default target frame rate of ``procalign extract`` for video files.
DEFAULT_FPS = 8.0
#: version of the decode -> sample -> resize -> batch path (recorded in the settings).
PIPELINE = "stream/1"


def auto_batch_size(resize: ResizePolicy, pixels: int = 64 * 80 * 80) -> int:
    """Frames per encoder call for a frame size: about ``pixels`` pixels per batch, in [8, 128]
    (100 at 64 px, 8 at 224 px), so encoder activations stay small at large sizes (at 224 px,
    batches of 16 took the peak of a 5,400-frame extraction from 435 to 525 MB on 2 cores).

    >>> auto_batch_size(ResizePolicy("shorter_side", 64, 64)), auto_batch_size(ResizePolicy(
    ...     "shorter_side", 224, 224))
    (100, 8)
    """
    if resize.mode == "none":
        return 32
    if resize.mode == "fixed":
        h, w = resize.size  # type: ignore[misc]
    else:
        h = w = resize.crop or int(resize.size * 4 / 3)  # type: ignore[operator]
    return int(min(128, max(8, pixels // (h * w))))


@dataclass
class ExtractionReport:
    """What one :func:`extract_features` run did."""

    key: str
    manifest: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_in_shard: int = 0
    frames: int = 0
    seconds: float = 0.0


def _npy_input(source: Source, encoder: torch.nn.Module, sampling: SamplingPolicy):
    kind = getattr(encoder, "input_kind", "frames")
    if kind != "features":
        raise VideoDecodeError(source.path, f"a .npy feature file cannot feed the {kind} encoder")
    try:
        arr = np.load(source.path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise VideoDecodeError(source.path, f"unreadable .npy: {exc}") from exc
    if arr.ndim != 2 or len(arr) == 0:
        raise VideoDecodeError(
            source.path, f"expected a (T, D) array with T >= 1, got shape {arr.shape}"
        )
    if sampling.mode == "all" and sampling.fps is not None:
        raise VideoDecodeError(source.path, "fps resampling needs a video; .npy inputs have no fps")
    dim = getattr(encoder, "dim", None)
    if dim is not None and arr.shape[1] != dim:
        raise VideoDecodeError(
            source.path, f"holds (T, D) = {arr.shape}, but the encoder expects D = {dim}"
        )
    idx = sampling.indices(len(arr))[0]
    x = np.ascontiguousarray(arr[idx], dtype=np.float32)
    policy = {
        "source": str(source.path),
        "source_kind": "features",
        "num_source_frames": len(arr),
        "sampling": sampling.to_dict(),
    }
    return x, policy


class _Producer:
    """Decode threads: each takes the next source, streams its sampled frames in batches into
    one bounded queue (``prefetch`` batches), so decoding overlaps encoding and memory stays
    bounded whatever the length of a video."""

    def __init__(
        self,
        sources: Sequence[Source],
        encoder: torch.nn.Module,
        sampling: SamplingPolicy,
        folder_sampling: SamplingPolicy,
        resize: ResizePolicy,
        batch_size: int,
        workers: int,
        prefetch: int,
        allow_truncated: bool,
    ) -> None:
        import queue
        import threading

        self.sources = list(sources)
        self.encoder, self.sampling, self.folder_sampling = encoder, sampling, folder_sampling
        self.resize, self.batch_size, self.allow_truncated = resize, batch_size, allow_truncated
        from procalign.data.video import BufferPool

        self.queue: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self.stop = threading.Event()
        # queued batches + one being filled per worker + one being encoded, reused throughout
        self.pool = BufferPool(max(1, prefetch) + 2 * max(1, workers) + 1, stop=self.stop)
        self._next = iter(range(len(self.sources)))
        self._lock = threading.Lock()
        self._alive = self.num_threads = max(1, min(workers, len(self.sources)))
        self.threads = [
            threading.Thread(target=self._work, name=f"procalign-decode-{w}", daemon=True)
            for w in range(self._alive)
        ]

    def __enter__(self) -> _Producer:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        import queue

        self.stop.set()
        for t in self.threads:  # unblock producers waiting on a full queue
            while t.is_alive():
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    t.join(timeout=0.05)

    def _put(self, item) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _one(self, k: int) -> None:
        from procalign.data.video import RESTART, StreamedVideo, stream_frames

        source = self.sources[k]
        if source.kind == "features":
            x, policy = _npy_input(source, self.encoder, self.sampling)
            self._put(("features", k, x))
            self._put(("done", k, policy))
            return
        enc_kind = getattr(self.encoder, "input_kind", "frames")
        if enc_kind != "frames":
            raise VideoDecodeError(
                source.path, f"a {source.kind} input cannot feed the {enc_kind} encoder"
            )
        sampling = self.folder_sampling if source.kind == "frames" else self.sampling
        for item in stream_frames(
            source.path,
            sampling,
            self.resize,
            batch_size=self.batch_size,
            allow_truncated=self.allow_truncated,
            pool=self.pool,
        ):
            if self.stop.is_set():
                return
            if item is RESTART:
                self._put(("restart", k, None))
            elif isinstance(item, StreamedVideo):
                self._put(("done", k, item.policy))
            else:
                self._put(("batch", k, item))

    def _work(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                k = next(self._next, None)
            if k is None:
                break
            try:
                self._one(k)
            except _Stopped:
                return
            except VideoDecodeError as exc:
                self._put(("error", k, exc))
            except BaseException as exc:  # a bug or MemoryError: stop the run, re-raised there
                self._put(("fatal", k, exc))
                return
        with self._lock:
            self._alive -= 1
            last = self._alive == 0
        if last:
            self._put(("end", None, None))

    def items(self):
        """(kind, source index, payload) until every source is finished."""
        while True:
            item = self.queue.get()
            if item[0] == "end":
                return
            yield item


def iter_encoded(
    sources: Sequence[Source],
    encoder: torch.nn.Module,
    *,
    sampling: SamplingPolicy | None = None,
    resize: ResizePolicy | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    workers: int = 1,
    prefetch: int = 4,
    frame_folder_sampling: SamplingPolicy | None = None,
    allow_truncated: bool = False,
    on_frames=None,
):
    """Stream, batch and encode every source: yields ``(source, features (T, D) float32 | None,
    policy | VideoDecodeError)`` as each one finishes (in completion order).

    ``workers`` decode threads fill a queue of at most ``prefetch`` batches of ``batch_size``
    frames while the calling thread encodes, so peak memory is bounded by those batches plus
    the features (T, D) of the videos in progress. ``on_frames(n)`` is called after each batch.
    """
    sampling = sampling or SamplingPolicy(mode="all")
    resize = resize or ResizePolicy()
    folder_sampling = frame_folder_sampling or sampling
    dev = torch.device(device)
    chunks: dict[int, list[np.ndarray]] = {}
    _cap_malloc_arenas()  # before the decode threads start (each would get an arena)
    producer = _Producer(
        sources,
        encoder,
        sampling,
        folder_sampling,
        resize,
        batch_size,
        workers,
        prefetch,
        allow_truncated,
    )

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return encoder(x[None].to(dev))[0].float().cpu().numpy()

    # the decode threads take a core each: give the encoder the rest, not more (oversubscribed
    # OpenMP threads stall at every barrier and made the whole pipeline 1.6x slower on 2 cores)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        spare = (os.cpu_count() or 1) - producer.num_threads
        torch.set_num_threads(max(1, min(threads, spare)))
    try:
        yield from _consume(producer, run, chunks, encoder, on_frames)
    finally:
        torch.set_num_threads(threads)


def _malloc_trim():
    """glibc's ``malloc_trim(0)`` (a no-op elsewhere): hands freed heap pages back to the OS.

    Frames decoded in one thread and tensors freed in another leave free memory scattered over
    glibc's per-thread arenas, so the resident size creeps up with the number of batches; a trim
    every few dozen batches keeps it flat.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


_TRIM_EVERY = 32  # batches
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _cap_malloc_arenas(n: int = 2) -> None:
    """Let glibc create at most ``n`` malloc arenas from now on (a no-op off glibc).

    Every thread that allocates can get its own arena (up to 8 per core), and freed batches
    stay resident in them; on 2 cores at 224 px this took the peak from 517 to 457 MB with no
    loss of speed (benchmarks/extract.py). Process-wide, like ``MALLOC_ARENA_MAX``, which wins
    when the user set it.
    """
    import ctypes
    import ctypes.util
    import os

    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_ARENA_MAX, n)


def _consume(producer, run, chunks, encoder, on_frames):
    trim = _malloc_trim()
    batches = 0
    with producer:
        for kind, k, payload in producer.items():
            source = producer.sources[k]
            if kind == "batch":
                chunks.setdefault(k, []).append(run(torch.from_numpy(payload).permute(0, 3, 1, 2)))
                producer.pool.put(payload)  # the encoder is done with it: reuse the buffer
                batches += 1
                if batches % _TRIM_EVERY == 0:
                    trim()
                if on_frames is not None:
                    on_frames(len(payload))
            elif kind == "features":
                chunks.setdefault(k, []).append(run(torch.from_numpy(payload)))
            elif kind == "restart":
                chunks.pop(k, None)
            elif kind == "error":
                chunks.pop(k, None)
                yield source, None, payload
            elif kind == "fatal":
                raise payload
            else:  # done
                parts = chunks.pop(k, [])
                dim = getattr(encoder, "dim", None) or 0
                feats = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
                yield source, feats, payload


def encode_video(
    path: str | Path,
    encoder: torch.nn.Module,
    *,
    sampling: SamplingPolicy | None = None,
    resize: ResizePolicy | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, dict[str, Any]]:
    """One video file or frame folder -> ((T, D) float32 features, policy), streamed like
    :func:`extract_features` (a decode thread, bounded memory). Default sampling: every frame.

    Raises:
        VideoDecodeError: the input cannot be read.
    """
    path = Path(path)
    kind = "frames" if path.is_dir() else ("features" if path.suffix == ".npy" else "video")
    source = Source(path.stem if path.is_file() else path.name, path, kind)
    encoder = encoder.to(torch.device(device)).eval()
    for _src, feats, policy in iter_encoded(
        [source],
        encoder,
        sampling=sampling or SamplingPolicy(mode="all"),
        resize=resize,
        batch_size=batch_size,
        device=device,
    ):
        if isinstance(policy, VideoDecodeError):
            raise policy
        return feats, policy
    raise VideoDecodeError(path, "nothing was decoded")  # pragma: no cover


def extract_features(
    sources: Sequence[Source],
    out_dir: str | Path,
    encoder: torch.nn.Module,
    *,
    extractor: str,
    sampling: SamplingPolicy | None = None,
    resize: ResizePolicy | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    shard: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: bool = True,
    workers: int = 1,
    prefetch: int = 4,
    dtype: str = "float32",
    frame_folder_sampling: SamplingPolicy | None = None,
    allow_truncated: bool = False,
) -> ExtractionReport:
    """Encode every source of this shard to ``out_dir/features/<video_id>.npy`` (T, D).

    Videos are streamed: decode -> sample -> resize (one swscale call per kept frame, at the
    target size) -> batches of ``batch_size`` -> encode, with ``workers`` decode threads feeding
    at most ``prefetch`` batches ahead of the encoder. Memory stays bounded by those batches and
    the (T, D) features of the videos in progress, however long the videos are.

    Args:
        sources: inputs, e.g. from :func:`discover_sources`.
        out_dir: output folder (created).
        encoder: a frame encoder from :mod:`procalign.models.encoders` (frames (B, T, 3, H, W) or,
            for ``identity``, features (B, T, D) -> (B, T, D)).
        extractor: the encoder's registry name (recorded and hashed).
        sampling: ``"all"`` (every frame, optionally at ``fps``) or ``"eval"`` (T fixed-offset
            frames). Random (``"train"``) and multi-clip sampling are refused: cache frames, sample
            later. Default: all frames.
        resize: frame resize policy (default shorter side 64, centre crop 64).
        batch_size: frames per encoder call.
        shard: ``(i, n)``: only videos with ``crc32(id) % n == i``.
        overwrite: re-extract everything, replacing a manifest with other settings.
        progress: show a tqdm bar (videos, with frames/s).
        workers: decode threads (videos decoded at once).
        prefetch: decoded batches allowed to wait for the encoder.
        dtype: ``"float32"`` or ``"float16"`` (half the disk; read back as float16).
        frame_folder_sampling: sampling for frame folders, which have no frame rate (default:
            ``sampling``, so an fps there is a per-folder failure).
        allow_truncated: keep videos that decode fewer frames than their header promises.

    Returns:
        :class:`ExtractionReport`: ``done``, ``skipped`` (already cached) and ``failed`` ids,
        ``frames`` encoded and ``seconds`` spent.

    Raises:
        ValueError: a random or multi-clip sampling policy, a bad shard, or an output folder
            holding features of other settings (without ``overwrite``).
    """
    from procalign._progress import bar as tqdm

    from procalign.models.encoders import is_random_weights

    sampling = sampling or SamplingPolicy(mode="all")
    resize = resize or ResizePolicy()
    for pol in (sampling, frame_folder_sampling):
        if pol is not None and pol.mode not in ("all", "eval"):
            raise ValueError(
                "extract_features caches one deterministic (T, D) array per video: sampling "
                f"mode must be 'all' or 'eval', got {pol.mode!r} (sample train clips from the "
                "cache instead)"
            )
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    for name, value in (("batch_size", batch_size), ("workers", workers), ("prefetch", prefetch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dim = getattr(encoder, "dim", None)
    settings = extraction_settings(
        extractor, getattr(encoder, "weights_id", extractor), sampling, resize, dim
    )
    settings["random_weights"] = is_random_weights(encoder)
    settings["pipeline"] = PIPELINE
    if dtype != "float32":
        settings["dtype"] = dtype
    if frame_folder_sampling is not None:
        settings["frame_folder_sampling"] = frame_folder_sampling.to_dict()
    key = settings_key(settings)
    manifest_path = out_dir / manifest_name(shard)

    previous: dict[str, Any] = {"videos": {}, "failures": {}}
    if any(out_dir.glob("manifest*.json")):
        try:
            previous = read_manifest(out_dir)
        except ValueError:
            if not overwrite:
                raise
        no_work = not previous.get("videos") and not any((out_dir / "features").glob("**/*.npy"))
        if previous.get("key") not in (None, key) and not no_work:
            if not overwrite:
                raise ValueError(
                    f"{out_dir} holds features extracted with other settings (key "
                    f"{previous['key']}, now {key}); use another output folder or overwrite=True "
                    "(--overwrite)"
                )
            previous = {"videos": {}, "failures": {}}
        if overwrite or (no_work and previous.get("key") not in (None, key)):
            previous = {"videos": {}, "failures": {}}
            for old in out_dir.glob("manifest*.json"):
                old.unlink()
    elif any((out_dir / "features").glob("**/*.npy")):
        # .npy files without a manifest were not written by extraction (e.g. OUT_DIR is a folder
        # dataset whose features/ came with it): never take them for cached outputs.
        raise ValueError(
            f"{out_dir / 'features'} holds .npy files but {out_dir} has no manifest.json, so they "
            "were not written by extraction (not even --overwrite replaces them); choose another "
            "output folder"
        )
    own = {Path(s.path).resolve() for s in sources}
    clash = [s.video_id for s in sources if feature_path(out_dir, s.video_id).resolve() in own]
    if clash:
        raise ValueError(
            f"extracting into {out_dir} would overwrite the input files of {clash[:3]}; choose "
            "another output folder"
        )

    mine = [s for s in sources if shard_of(s.video_id, n) == i]
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "key": key,
        "settings": settings,
        "shard": [i, n],
        "videos": {v: e for v, e in previous["videos"].items() if shard_of(v, n) == i},
        "failures": {},
    }
    report = ExtractionReport(
        key=key, manifest=manifest_path, not_in_shard=len(sources) - len(mine)
    )
    dev = torch.device(device)
    encoder = encoder.to(dev).eval()
    # Record the key before any feature is written, so the .npy files of a killed run are never
    # taken for features of other settings; flush again on any exit (KeyboardInterrupt too).
    _write_json_atomic(manifest_path, manifest)
    last_flush = time.monotonic()
    todo: list[Source] = []
    with tqdm(total=len(mine), desc="extract", unit="video", disable=not progress) as bar:
        try:
            for source in mine:
                target = feature_path(out_dir, source.video_id)
                if target.is_file() and not overwrite:
                    if source.video_id not in manifest["videos"]:
                        # finished before the manifest was last saved (run killed)
                        arr = load_features(target)
                        manifest["videos"][source.video_id] = {
                            "file": str(target.relative_to(out_dir)),
                            "shape": list(arr.shape),
                            "source": str(source.path),
                        }
                        del arr
                    report.skipped.append(source.video_id)
                    bar.update(1)
                else:
                    todo.append(source)
            start = time.perf_counter()

            def count(frames: int) -> None:
                report.frames += frames
                elapsed = time.perf_counter() - start
                if elapsed > 0:
                    bar.set_postfix_str(f"{report.frames / elapsed:.0f} frames/s", refresh=False)

            for source, feats, policy in iter_encoded(
                todo,
                encoder,
                sampling=sampling,
                resize=resize,
                batch_size=batch_size,
                device=dev,
                workers=workers,
                prefetch=prefetch,
                frame_folder_sampling=frame_folder_sampling,
                allow_truncated=allow_truncated,
                on_frames=count,
            ):
                if isinstance(policy, VideoDecodeError):
                    manifest["failures"][source.video_id] = {
                        "source": str(source.path),
                        "error": str(policy),
                    }
                    report.failed[source.video_id] = str(policy)
                    bar.set_postfix_str(f"{len(report.failed)} failed", refresh=False)
                    bar.update(1)
                    continue
                target = feature_path(out_dir, source.video_id)
                feats = np.ascontiguousarray(feats, dtype=np.dtype(dtype))
                atomic_save_npy(target, feats)
                manifest["videos"][source.video_id] = {
                    "file": str(target.relative_to(out_dir)),
                    "shape": list(feats.shape),
                    "source": str(source.path),
                    "policy": policy,
                }
                report.done.append(source.video_id)
                bar.update(1)
                if time.monotonic() - last_flush > 5.0:
                    _write_json_atomic(manifest_path, manifest)
                    last_flush = time.monotonic()
            report.seconds = time.perf_counter() - start
        finally:
            _write_json_atomic(manifest_path, manifest)
    return report
