"""Settings chosen from the data: ``auto`` values of the folder configs.

A paper fixes the frames per clip (T) and the number of steps (K) for its benchmarks; a user's
folder of videos has neither. A config key set to ``auto`` is resolved once, from the training
videos, before anything is written, and the run's ``config.yaml`` records the value chosen (the
summary says why). Rules (documented in docs/generalisation.md):

* **T** (frames per clip): the 10th percentile of the training videos' lengths, clipped to
  ``[lo, hi]`` (8 and 64 by default): short enough that nine in ten videos give every TSN segment
  its own frame, long enough to keep the steps' order, and bounded for memory.
* **K** (steps): the median number of steps in the training videos' ``steps`` column (the
  folder layout's ``steps`` column, or a generator's scripts), clipped to ``[2, T]``. A dataset
  without steps has no such evidence: ``auto`` is refused there with a message saying to give K.

>>> frames_per_clip([40, 50, 60, 200], lo=8, hi=64)[0]
43
>>> steps_per_video([("a", "b", "c"), ("a", "b"), ("a", "c", "d", "e")])[0]
3
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

AUTO = "auto"


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == AUTO


def frames_per_clip(lengths: Sequence[int], lo: int = 8, hi: int = 64) -> tuple[int, str]:
    """(T, why) from the training videos' lengths (frames)."""
    if not len(lengths):
        raise ValueError("no training videos to choose the frames per clip from")
    p10 = float(np.percentile(np.asarray(lengths, dtype=float), 10))
    t = int(min(hi, max(lo, int(p10))))
    why = (f"10th percentile of {len(lengths)} training video lengths "
           f"({min(lengths)}..{max(lengths)} frames) = {p10:.0f}, clipped to [{lo}, {hi}]")
    return t, why


def steps_per_video(steps: Iterable[Sequence[str] | None]) -> tuple[int | None, str]:
    """(K, why) as the median script length; (None, why) when no video lists its steps."""
    counts = [len(s) for s in steps if s]
    if not counts:
        return None, "no training video lists its steps"
    k = int(round(float(np.median(counts))))
    return k, f"median number of steps of {len(counts)} training videos ({min(counts)}..{max(counts)})"


def resolve_frames(section: Any, key: str, videos: Sequence[Any], chosen: dict, *,
                   lo: int = 8, hi: int = 64) -> None:
    """Replace ``section.key == "auto"`` by :func:`frames_per_clip` of ``videos``."""
    if not is_auto(getattr(section, key)):
        return
    t, why = frames_per_clip([len(v.features) for v in videos], lo, hi)
    setattr(section, key, t)
    chosen[key] = {"value": t, "why": why}


def resolve_steps(section: Any, key: str, videos: Sequence[Any], chosen: dict, *,
                  name: str, upper: int | None = None, lo: int = 2) -> None:
    """Replace ``section.key == "auto"`` by :func:`steps_per_video` (clipped to [lo, upper])."""
    if not is_auto(getattr(section, key)):
        return
    k, why = steps_per_video(v.steps for v in videos)
    if k is None:
        raise ValueError(
            f"{name}=auto chooses K from the training videos' steps column, but {why}; "
            f"give {name}=K (about the number of steps of one procedure)"
        )
    k = max(lo, k if upper is None else min(upper, k))
    setattr(section, key, k)
    chosen[key] = {"value": k, "why": why + (f", clipped to [{lo}, {upper}]" if upper else "")}


def check_int_or_auto(value: Any, name: str, minimum: int = 1) -> None:
    """A config value that is an int >= ``minimum`` or ``"auto"``."""
    if is_auto(value):
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum} or 'auto', got {value!r}")
