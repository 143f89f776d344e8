"""TSN-style segment sampling: which T of a video's L frames to keep.

A video of L frames is cut into T equal segments; one frame is taken from each segment. Segment
``k`` covers the real interval ``[k * L / T, (k + 1) * L / T)`` and the frame at relative position
``f`` in ``[0, 1)`` of it is

    index_k(f) = floor((k + f) * L / T)        k = 0 .. T-1,

which always lies inside the segment and inside ``[0, L - 1]``, also when ``L < T`` (frames then
repeat). Training draws ``f`` uniformly and independently per segment; evaluation uses fixed
offsets. SVIP's 3-clip protocol evaluates each video three times, at ``f = 1/4, 2/4, 3/4``.

``boundaries="svip"`` instead reproduces the reference SVIP code bit for bit: integer boundaries
``b = linspace(0, L - 2, T + 1)`` truncated to int, training index ``randint(b_k, b_{k+1})``
(``b_k`` when the segment is empty) and evaluation index ``b_k + floor((b_{k+1} - b_k) / 4) * c``
for clip ``c = 1, 2, 3``. It never samples the last frame. Use it when comparing with numbers
published by that code; the two differ by about one frame per segment.

Every sampler is described by a :class:`SamplingPolicy`, whose :meth:`SamplingPolicy.to_dict`
is stored next to every output so the choice is never lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from numbers import Real

import numpy as np

MODES = ("train", "eval", "clips", "all")
BOUNDARIES = ("even", "svip")
SVIP_OFFSETS = (0.25, 0.5, 0.75)


def _check_lengths(length: int, num_frames: int) -> None:
    if not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(
            f"length (number of frames in the video) must be an int >= 1, got {length!r}"
        )
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames (T) must be an int >= 1, got {num_frames!r}")


def _svip_boundaries(length: int, num_frames: int) -> np.ndarray:
    return np.linspace(0, max(length - 2, 0), num_frames + 1).astype(np.int64)


def segment_indices(
    length: int, num_frames: int, offset: float = 0.5, *, boundaries: str = "even"
) -> np.ndarray:
    """Fixed-offset indices: frame ``floor((k + offset) * L / T)`` of each of T segments.

    Args:
        length: L, frames in the video (>= 1).
        num_frames: T, frames to keep.
        offset: relative position inside each segment, in ``[0, 1)``.
        boundaries: ``"even"`` (formula above) or ``"svip"`` (reference SVIP code; then
            ``offset`` must be a multiple of 1/4 and means ``floor(width / 4) * 4 * offset``).

    Returns:
        int64 array of shape (T,), non-decreasing, values in ``[0, L - 1]``.

    >>> segment_indices(8, 4, 0.5).tolist()
    [1, 3, 5, 7]
    >>> segment_indices(3, 5, 0.0).tolist()
    [0, 0, 1, 1, 2]
    """
    _check_lengths(length, num_frames)
    if not 0.0 <= float(offset) < 1.0:
        raise ValueError(f"offset must be in [0, 1), got {offset!r}")
    if boundaries == "even":
        k = np.arange(num_frames, dtype=np.float64)
        idx = np.floor((k + float(offset)) * length / num_frames).astype(np.int64)
        return np.minimum(idx, length - 1)
    if boundaries == "svip":
        quarters = float(offset) * 4
        if abs(quarters - round(quarters)) > 1e-9:
            raise ValueError(
                f"boundaries='svip' needs offset in (0, 1/4, 2/4, 3/4), got {offset!r}"
            )
        b = _svip_boundaries(length, num_frames)
        return b[:-1] + ((b[1:] - b[:-1]) // 4) * int(round(quarters))
    raise ValueError(f"boundaries must be one of {BOUNDARIES}, got {boundaries!r}")


def train_indices(
    length: int,
    num_frames: int,
    rng: np.random.Generator | int | None = None,
    *,
    boundaries: str = "even",
) -> np.ndarray:
    """Random indices, one uniformly drawn frame per segment (TSN training).

    Args:
        length: L, frames in the video.
        num_frames: T, frames to keep.
        rng: a numpy Generator or a seed; None draws fresh entropy.
        boundaries: ``"even"`` or ``"svip"`` (see the module docstring).

    Returns:
        int64 array of shape (T,), non-decreasing, values in ``[0, L - 1]``.
    """
    _check_lengths(length, num_frames)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if boundaries == "even":
        k = np.arange(num_frames, dtype=np.float64)
        f = gen.random(num_frames)
        idx = np.floor((k + f) * length / num_frames).astype(np.int64)
        return np.minimum(idx, length - 1)
    if boundaries == "svip":
        b = _svip_boundaries(length, num_frames)
        lo, hi = b[:-1], b[1:]
        width = np.maximum(hi - lo, 1)
        return lo + np.minimum(np.floor(gen.random(num_frames) * width).astype(np.int64), width - 1)
    raise ValueError(f"boundaries must be one of {BOUNDARIES}, got {boundaries!r}")


def clip_indices(
    length: int,
    num_frames: int,
    offsets: Sequence[float] = SVIP_OFFSETS,
    *,
    boundaries: str = "even",
) -> np.ndarray:
    """One fixed-offset index set per offset; the default is SVIP's 3-clip protocol.

    Returns:
        int64 array of shape (C, T) with C = len(offsets).

    >>> clip_indices(16, 4).tolist()
    [[1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]
    """
    if len(offsets) == 0:
        raise ValueError("offsets must contain at least one value")
    return np.stack(
        [segment_indices(length, num_frames, o, boundaries=boundaries) for o in offsets]
    )


def fps_indices(length: int, source_fps: float, target_fps: float | None) -> np.ndarray:
    """Indices that resample a video from ``source_fps`` to ``target_fps`` (nearest earlier frame).

    ``target_fps=None`` keeps every frame. Returns int64 array of shape (T,).
    """
    _check_lengths(length, 1)
    if target_fps is None:
        return np.arange(length, dtype=np.int64)
    if not source_fps or source_fps <= 0 or target_fps <= 0:
        raise ValueError(
            f"fps must be positive: source_fps={source_fps!r}, target_fps={target_fps!r}"
        )
    duration = length / float(source_fps)
    count = max(1, int(np.floor(duration * target_fps + 1e-9)))
    idx = np.floor(np.arange(count) * float(source_fps) / float(target_fps) + 1e-9).astype(np.int64)
    return np.minimum(idx, length - 1)


@dataclass(frozen=True)
class SamplingPolicy:
    """How frames are chosen from a video; recorded with every decoded or extracted output.

    Attributes:
        mode: ``"train"`` (random offset per segment), ``"eval"`` (one fixed ``offset``),
            ``"clips"`` (one index set per value of ``offsets``; SVIP's 3-clip protocol by
            default) or ``"all"`` (every frame, optionally resampled to ``fps``).
        num_frames: T, frames per clip (ignored by ``"all"``).
        offset: the ``"eval"`` offset in ``[0, 1)``.
        offsets: the ``"clips"`` offsets.
        boundaries: ``"even"`` or ``"svip"``, see the module docstring.
        fps: target frame rate for ``"all"``; None keeps the source rate.
    """

    mode: str = "eval"
    num_frames: int = 16
    offset: float = 0.5
    offsets: tuple[float, ...] = field(default=SVIP_OFFSETS)
    boundaries: str = "even"
    fps: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"sampling mode must be one of {MODES}, got {self.mode!r}")
        if self.boundaries not in BOUNDARIES:
            raise ValueError(f"boundaries must be one of {BOUNDARIES}, got {self.boundaries!r}")
        if self.mode != "all" and (not isinstance(self.num_frames, int) or self.num_frames < 1):
            raise ValueError(f"num_frames must be an int >= 1, got {self.num_frames!r}")
        if self.fps is not None and not (isinstance(self.fps, Real) and self.fps > 0):
            raise ValueError(f"fps must be a positive number or None, got {self.fps!r}")
        object.__setattr__(self, "offsets", tuple(float(o) for o in self.offsets))

    @property
    def num_clips(self) -> int:
        return len(self.offsets) if self.mode == "clips" else 1

    def indices(
        self,
        length: int,
        rng: np.random.Generator | int | None = None,
        source_fps: float | None = None,
    ) -> np.ndarray:
        """Index sets for a video of ``length`` frames: int64 array of shape (C, T)."""
        if self.mode == "train":
            return train_indices(length, self.num_frames, rng, boundaries=self.boundaries)[None]
        if self.mode == "eval":
            return segment_indices(
                length, self.num_frames, self.offset, boundaries=self.boundaries
            )[None]
        if self.mode == "clips":
            return clip_indices(length, self.num_frames, self.offsets, boundaries=self.boundaries)
        if self.fps is not None and source_fps is None:
            raise ValueError("sampling mode 'all' with fps set needs the video's source_fps")
        return fps_indices(length, source_fps or 1.0, self.fps)[None]

    def to_dict(self) -> dict:
        """A JSON-ready description; only the fields that matter for ``mode`` are kept."""
        d = asdict(self)
        d["offsets"] = list(self.offsets)
        if self.mode == "all":
            keep = ("mode", "fps")
        elif self.mode == "train":
            keep = ("mode", "num_frames", "boundaries")
        elif self.mode == "eval":
            keep = ("mode", "num_frames", "offset", "boundaries")
        else:
            keep = ("mode", "num_frames", "offsets", "boundaries")
        return {k: d[k] for k in keep}
