"""The feature cache: extract once, read memory-mapped at training time.

Layout of an output folder::

    out/features/<video_id>.npy     (T, D) float32, one per video
    out/manifest.json               settings, their hash ("key"), one entry per video, failures
    out/manifest.shard-I-of-N.json  instead of manifest.json when run with shard=(I, N)

The manifest is keyed by a hash of the extraction settings (extractor name, weights id, fps,
frame size/resize policy, sampling policy, output dim): :func:`settings_key`. Extraction is

- *resumable*: a video whose ``.npy`` already exists is skipped (every file is written to a
  temporary name and renamed, so an existing file is a complete one), and a folder holding a
  manifest with a different key is refused unless ``overwrite=True``;
- *shardable*: ``shard=(i, n)`` processes the videos with ``crc32(video_id) % n == i``, so
  machines that list the inputs in different orders still split the work exactly;
- *failure tolerant*: a video that cannot be decoded is recorded under ``failures`` in the
  manifest and the run goes on.

Training reads the cache through :func:`procalign.data.featureset.load_featureset`
(``data.features_dir``), one lazily opened file per video; :func:`load_features` reads one file.
This module holds the layout (settings key, sources, shards, manifests, reading); the streaming
extraction that writes it is :mod:`procalign.data.extraction` (its names are importable from
here too).
"""

from __future__ import annotations

import csv
import hashlib
import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from procalign._io import atomic_write_text, npy_problem
from procalign.data.sampling import SamplingPolicy
from procalign.data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, ResizePolicy

MANIFEST_FORMAT = "procalign-features/1"


# ----------------------------------------------------------------------------- settings and key


def extraction_settings(
    extractor: str,
    weights_id: str,
    sampling: SamplingPolicy,
    resize: ResizePolicy,
    dim: int | None,
) -> dict[str, Any]:
    """The settings a cached feature depends on, as a JSON-ready dict."""
    return {
        "format": MANIFEST_FORMAT,
        "extractor": extractor,
        "weights": weights_id,
        "fps": sampling.fps,
        "size": resize.to_dict(),
        "sampling": sampling.to_dict(),
        "dim": dim,
    }


def settings_key(settings: Mapping[str, Any]) -> str:
    """A 16-hex-digit SHA-256 of the canonical JSON of ``settings`` (order of keys ignored).

    >>> settings_key({"a": 1, "b": 2}) == settings_key({"b": 2, "a": 1})
    True
    """
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Source:
    """One input to extract: its id, path and kind (``"video"``, ``"frames"``, ``"features"``)."""

    video_id: str
    path: Path
    kind: str


def _kind_of(path: Path) -> str | None:
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return "video"
        if path.suffix.lower() == ".npy":
            return "features"
        return None
    if path.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in path.iterdir()):
        return "frames"
    return None


def discover_sources(root: str | Path, prefer: str = "frames") -> list[Source]:
    """List the inputs under ``root``, sorted by video id.

    - A ``folder``-layout dataset (``root/index.csv``): for each ``video_id``,
      ``videos/<video_id>.<ext>``, else the frame folder ``frames/<video_id>/`` (or
      ``videos/<video_id>/``), else ``features/<video_id>.npy``; with ``prefer="features"`` (for
      the ``identity`` encoder) ``features/<video_id>.npy`` comes first. An id with none of them
      becomes a source that fails (missing file) and is recorded as such.
    - Otherwise: every video file (id = file stem), frame folder (id = folder name) and ``.npy``
      file (id = stem) directly inside ``root``.

    Args:
        root: the input folder (or one input).
        prefer: ``"frames"`` or ``"features"``, the encoder's ``input_kind``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        ValueError: ``root`` holds no input, two inputs share an id, or ``prefer`` is unknown.
    """
    if prefer not in ("frames", "features"):
        raise ValueError(f"prefer must be 'frames' or 'features', got {prefer!r}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input folder {str(root)!r} does not exist")
    sources: list[Source] = []
    index = root / "index.csv"
    if index.is_file():
        with open(index, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "video_id" not in reader.fieldnames:
                raise ValueError(f"{index} has no 'video_id' column (header: {reader.fieldnames})")
            ids = [row["video_id"] for row in reader if row.get("video_id")]
        for vid in ids:
            found = None
            videos = root / "videos"
            npy = root / "features" / f"{vid}.npy"
            if prefer == "features" and npy.is_file():
                found = Source(vid, npy, "features")
            for ext in VIDEO_EXTENSIONS:
                cand = videos / f"{vid}{ext}"
                if found is None and cand.is_file():
                    found = Source(vid, cand, "video")
                    break
            for folder in (root / "frames" / vid, videos / vid):
                if found is None and folder.is_dir():
                    found = Source(vid, folder, "frames")
            if found is None and npy.is_file():
                found = Source(vid, npy, "features")
            sources.append(found or Source(vid, root / "videos" / vid, "video"))
    elif root.is_file():
        kind = _kind_of(root)
        if kind is None:
            raise ValueError(f"{str(root)!r} is not a video, frame folder or .npy file")
        sources.append(Source(root.stem, root, kind))
    else:
        for path in sorted(root.iterdir()):
            if path.name.startswith("."):
                continue
            kind = _kind_of(path)
            if kind is not None:
                sources.append(Source(path.stem if path.is_file() else path.name, path, kind))
    if not sources:
        raise ValueError(
            f"no videos ({', '.join(VIDEO_EXTENSIONS)}), frame folders or .npy files found "
            f"in {root}"
        )
    seen: dict[str, Path] = {}
    for s in sources:
        if s.video_id in seen:
            raise ValueError(
                f"two inputs share the id {s.video_id!r}: {seen[s.video_id]} and {s.path}"
            )
        seen[s.video_id] = s.path
    return sorted(sources, key=lambda s: s.video_id)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``.

    >>> parse_shard("1/4")
    (1, 4)
    """
    try:
        i_text, n_text = str(text).split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"shard must look like 'i/n' (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need n >= 1 and 0 <= i < n")
    return i, n


def shard_of(video_id: str, num_shards: int) -> int:
    """The shard (in ``0 .. num_shards - 1``) that owns ``video_id``: crc32 modulo n."""
    return zlib.crc32(video_id.encode("utf-8")) % num_shards


# ----------------------------------------------------------------------------- manifest


def manifest_name(shard: tuple[int, int] = (0, 1)) -> str:
    i, n = shard
    return "manifest.json" if n == 1 else f"manifest.shard-{i}-of-{n}.json"


def _write_json_atomic(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    """Read and merge every manifest (``manifest.json`` and shard manifests) of ``out_dir``.

    Returns:
        ``{"key", "settings", "videos": {id: entry}, "failures": {id: entry}}``.

    Raises:
        FileNotFoundError: no manifest in ``out_dir``.
        ValueError: manifests with different keys (different settings) in one folder.
    """
    out_dir = Path(out_dir)
    paths = sorted(out_dir.glob("manifest*.json"))
    if not paths:
        raise FileNotFoundError(f"no manifest.json in {out_dir}: extract features there first")
    merged: dict[str, Any] = {"key": None, "settings": None, "videos": {}, "failures": {}}
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        if merged["key"] is None:
            merged["key"], merged["settings"] = data["key"], data["settings"]
        elif data["key"] != merged["key"]:
            raise ValueError(
                f"{out_dir} mixes manifests of different settings: {paths[0].name} has key "
                f"{merged['key']}, {path.name} has key {data['key']}"
            )
        merged["videos"].update(data.get("videos", {}))
        merged["failures"].update(data.get("failures", {}))
    for vid in merged["videos"]:
        merged["failures"].pop(vid, None)
    return merged


def load_features(path: str | Path, *, mmap: bool = True) -> np.ndarray:
    """Load one cached feature file as (T, D), memory-mapped (read-only) by default.

    The array is float32, or float16 for a cache written with ``dtype="float16"``. A memory map
    holds an open file descriptor until it is garbage collected: to keep many videos at hand
    (thousands, beyond ``ulimit -n``), use :func:`lazy_features` instead.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a 2-D array.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file {str(path)!r} does not exist")
    try:
        arr = np.load(path, mmap_mode="r" if mmap else None)
    except (OSError, EOFError, ValueError) as exc:  # zero-byte, truncated, not .npy, pickled
        raise ValueError(
            f"feature file {str(path)!r} is not a readable .npy array: {npy_problem(path, exc)}"
        ) from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"feature file {str(path)!r} is not a single .npy array")
    if arr.ndim != 2:
        raise ValueError(f"feature file {str(path)!r} holds shape {arr.shape}, expected (T, D)")
    return arr


class LazyFeatures:
    """A (T, D) ``.npy`` feature file that is opened only while it is read.

    Only the header is read up front (shape, dtype); ``arr[i]``, ``arr[a:b]``, ``np.asarray(arr)``
    and ``torch.as_tensor(np.asarray(arr))`` open the file, copy the rows and close it again, so
    any number of them can be held at once without running out of file descriptors (a
    memory-mapped array keeps one open each: 1,100 videos under ``ulimit -n 1024`` fail with
    ``OSError: [Errno 24] Too many open files``).

    Attributes:
        path, shape, dtype, ndim.
    """

    __slots__ = ("dtype", "path", "shape")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"feature file {str(self.path)!r} does not exist")
        try:
            with open(self.path, "rb") as fh:
                fmt = np.lib.format
                version = fmt.read_magic(fh)
                read_header = (
                    fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                )
                shape, _fortran, dtype = read_header(fh)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"feature file {str(self.path)!r} is not a readable .npy ({exc})"
            ) from exc
        if len(shape) != 2:
            raise ValueError(
                f"feature file {str(self.path)!r} holds shape {shape}, expected (T, D)"
            )
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        arr = np.load(self.path, mmap_mode="r")
        try:
            return np.array(arr[index])
        finally:
            del arr

    def __array__(self, dtype=None, copy=None):
        out = np.load(self.path)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __repr__(self) -> str:
        return f"LazyFeatures({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


def lazy_features(path: str | Path) -> LazyFeatures:
    """A :class:`LazyFeatures` view of one cached feature file (no file stays open)."""
    return LazyFeatures(path)


def feature_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / "features" / f"{video_id}.npy"


def manifest_random_weights(location: str | Path | Mapping[str, Any]) -> bool:
    """True when a feature cache was made by an encoder with random weights (e.g. ``tiny_cnn``).

    ``verify`` and ``eval`` print :func:`procalign.models.encoders.random_weights_warning` when
    this holds: such features say nothing about what the videos show.

    Args:
        location: an extraction folder (holding ``manifest*.json``), its ``features/`` folder, a
            feature file inside it, or an already-read manifest / settings dict.

    Returns:
        the manifest's ``settings["random_weights"]`` (older manifests: inferred from the
        recorded weights id); False when no manifest is found (features made elsewhere).
    """
    from procalign.models.encoders import is_random_weights

    if isinstance(location, Mapping):
        settings = location.get("settings", location)
    else:
        path = Path(location)
        folder = path.parent if path.is_file() else path
        settings = None
        for cand in (folder, folder.parent, folder.parent.parent):
            if any(cand.glob("manifest*.json")):
                settings = read_manifest(cand)["settings"]
                break
        if settings is None:
            return False
    if "random_weights" in settings:
        return bool(settings["random_weights"])
    return is_random_weights(str(settings.get("weights", "")))


# ----------------------------------------------------------------------------- extraction


#: the extraction's public names, importable from this module as before the split
_EXTRACTION = ("DEFAULT_FPS", "PIPELINE", "ExtractionReport", "auto_batch_size", "encode_video",
               "extract_features", "iter_encoded")


def __getattr__(name: str) -> Any:
    if name in _EXTRACTION:
        from procalign.data import extraction

        return getattr(extraction, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
