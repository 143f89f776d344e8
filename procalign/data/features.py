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
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from procalign._io import atomic_save_npy, atomic_write_text
from procalign.data.sampling import SamplingPolicy
from procalign.data.video import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    ResizePolicy,
    VideoDecodeError,
    read_video,
)

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
    """Load one cached feature file as (T, D) float32, memory-mapped (read-only) by default.

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
        raise ValueError(f"feature file {str(path)!r} is not a readable .npy array: {exc}") from exc
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"feature file {str(path)!r} is not a single .npy array")
    if arr.ndim != 2:
        raise ValueError(f"feature file {str(path)!r} holds shape {arr.shape}, expected (T, D)")
    return arr


def feature_path(out_dir: str | Path, video_id: str) -> Path:
    return Path(out_dir) / "features" / f"{video_id}.npy"



# ----------------------------------------------------------------------------- extraction


@dataclass
class ExtractionReport:
    """What one :func:`extract_features` run did."""

    key: str
    manifest: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_in_shard: int = 0


def _encode(
    source: Source,
    encoder: torch.nn.Module,
    sampling: SamplingPolicy,
    resize: ResizePolicy,
    batch_size: int,
    device: torch.device,
) -> tuple[np.ndarray, dict[str, Any]]:
    kind = getattr(encoder, "input_kind", "frames")
    if source.kind == "features":
        if kind != "features":
            raise VideoDecodeError(
                source.path, f"a .npy feature file cannot feed the {kind} encoder"
            )
        try:
            arr = np.load(source.path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise VideoDecodeError(source.path, f"unreadable .npy: {exc}") from exc
        if arr.ndim != 2 or len(arr) == 0:
            raise VideoDecodeError(
                source.path, f"expected a (T, D) array with T >= 1, got shape {arr.shape}"
            )
        if sampling.mode == "all" and sampling.fps is not None:
            raise VideoDecodeError(
                source.path, "fps resampling needs a video; .npy inputs have no fps"
            )
        dim = getattr(encoder, "dim", None)
        if dim is not None and arr.shape[1] != dim:
            raise VideoDecodeError(
                source.path, f"holds (T, D) = {arr.shape}, but the encoder expects D = {dim}"
            )
        idx = sampling.indices(len(arr))[0]
        x = torch.from_numpy(np.ascontiguousarray(arr[idx], dtype=np.float32))[None].to(device)
        out = encoder(x)[0]
        policy = {
            "source": str(source.path),
            "source_kind": "features",
            "num_source_frames": int(len(arr)),
            "sampling": sampling.to_dict(),
        }
        return out.float().cpu().numpy(), policy
    if kind != "frames":
        raise VideoDecodeError(source.path, f"a {source.kind} input cannot feed the {kind} encoder")
    decoded = read_video(source.path, sampling, resize)
    frames = decoded.frames[0]  # (T, H, W, 3)
    chunks = []
    for start in range(0, len(frames), batch_size):
        chunk = torch.from_numpy(frames[start : start + batch_size]).permute(0, 3, 1, 2)
        chunks.append(encoder(chunk[None].to(device))[0].float().cpu())
    return torch.cat(chunks).numpy(), decoded.policy


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
) -> ExtractionReport:
    """Encode every source of this shard to ``out_dir/features/<video_id>.npy`` (T, D) float32.

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
        progress: show a tqdm bar.

    Returns:
        :class:`ExtractionReport`: ``done``, ``skipped`` (already cached) and ``failed`` ids.

    Raises:
        ValueError: a random or multi-clip sampling policy, a bad shard, or an output folder
            holding features of other settings (without ``overwrite``).
    """
    from tqdm.auto import tqdm

    sampling = sampling or SamplingPolicy(mode="all")
    resize = resize or ResizePolicy()
    if sampling.mode not in ("all", "eval"):
        raise ValueError(
            f"extract_features caches one deterministic (T, D) array per video: sampling mode must "
            f"be 'all' or 'eval', got {sampling.mode!r} (sample train clips from the cache instead)"
        )
    i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dim = getattr(encoder, "dim", None)
    settings = extraction_settings(
        extractor, getattr(encoder, "weights_id", extractor), sampling, resize, dim
    )
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
    with (
        torch.no_grad(),
        tqdm(total=len(mine), desc="extract", unit="video", disable=not progress) as bar,
    ):
        try:
            for source in mine:
                target = feature_path(out_dir, source.video_id)
                if target.is_file() and not overwrite:
                    if source.video_id not in manifest["videos"]:
                        # finished before the manifest was last saved (run killed)
                        arr = np.load(target, mmap_mode="r")
                        manifest["videos"][source.video_id] = {
                            "file": str(target.relative_to(out_dir)),
                            "shape": list(arr.shape),
                            "source": str(source.path),
                        }
                    report.skipped.append(source.video_id)
                    bar.update(1)
                    continue
                try:
                    feats, policy = _encode(source, encoder, sampling, resize, batch_size, dev)
                except VideoDecodeError as exc:
                    manifest["failures"][source.video_id] = {
                        "source": str(source.path),
                        "error": str(exc),
                    }
                    report.failed[source.video_id] = str(exc)
                    bar.set_postfix(failed=len(report.failed))
                    bar.update(1)
                    continue
                feats = np.ascontiguousarray(feats, dtype=np.float32)
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
        finally:
            _write_json_atomic(manifest_path, manifest)
    return report
