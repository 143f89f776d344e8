"""Action quality assessment (FineDiving / TSA protocol): score regression and phase segmentation.

Shapes: ``B`` videos; ``S`` phases, described by ``S - 1`` transition frames per video (the first
frame of phases ``1 .. S-1``; phase 0 starts at frame 0).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from procalign.eval._checks import check_choice, float_array, same_length

__all__ = ["AIOU_VARIANTS", "aiou", "relative_l2", "segment_ious", "spearman_rho"]

#: ``"tsa"``: one interval per video, from the first to the last transition, IoU with continuous
#: lengths (``end - start``), as the FineDiving/TSA code does (for 3 phases: the flight phase).
#: ``"phases"``: every phase as a set of frames (needs video lengths); the video's IoU is the mean
#: of its S per-phase IoUs.
AIOU_VARIANTS = ("tsa", "phases")


def spearman_rho(pred: Any, true: Any) -> float:
    """Spearman's rank correlation between predicted and true scores.

    Definition: ``scipy.stats.spearmanr(pred, true).statistic`` (Pearson correlation of the
    average ranks). NaN when either input is constant (the correlation is undefined there).

    Args:
        pred: (B,) predicted scores. true: (B,) true scores; B >= 2.

    >>> round(spearman_rho([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 40.0, 30.0]), 6)
    0.8
    """
    from scipy.stats import spearmanr

    p = float_array(pred, "pred", 1)
    t = float_array(true, "true", 1)
    same_length(p, t, "pred", "true")
    if p.size < 2:
        raise ValueError(f"spearman_rho needs at least 2 scores, got shape {tuple(p.shape)}")
    if np.all(p == p[0]) or np.all(t == t[0]):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(spearmanr(p, t).statistic)


def relative_l2(pred: Any, true: Any, score_range: tuple[float, float] | None = None) -> float:
    """Relative L2 distance (R-L2), x100, as reported for AQA on FineDiving / MTL-AQA.

    Definition: ``100 * mean(((true - pred) / (score_max - score_min)) ** 2)``. Lower is better.

    Args:
        pred: (B,) predicted scores. true: (B,) true scores.
        score_range: ``(score_min, score_max)`` of the dataset. ``None`` uses the min and max of
            ``true``, which is what the public TSA code does on the test set; pass the dataset's
            range to follow the papers' wording.

    >>> round(relative_l2([1.0, 3.0], [2.0, 3.0], score_range=(0.0, 10.0)), 6)
    0.5
    """
    p = float_array(pred, "pred", 1)
    t = float_array(true, "true", 1)
    same_length(p, t, "pred", "true")
    lo, hi = (float(t.min()), float(t.max())) if score_range is None else map(float, score_range)
    if not np.isfinite([lo, hi]).all() or hi <= lo:
        raise ValueError(
            f"score_range must be (min, max) with max > min, got ({lo}, {hi})"
            + (" from true (all scores equal?)" if score_range is None else "")
        )
    return float(100.0 * np.mean(((t - p) / (hi - lo)) ** 2))


def _transitions(x: Any, name: str) -> np.ndarray:
    arr = float_array(x, name, 2)
    if arr.shape[1] < 1:
        raise ValueError(f"{name} must have at least one transition per video, got {arr.shape}")
    if np.any(np.diff(arr, axis=1) < 0):
        row = int(np.argwhere(np.diff(arr, axis=1) < 0)[0, 0])
        raise ValueError(f"{name}[{row}] = {arr[row].tolist()} is not in temporal order")
    return arr


def segment_ious(
    pred_transitions: Any,
    true_transitions: Any,
    *,
    variant: str = "tsa",
    lengths: Any = None,
) -> np.ndarray:
    """Per-video IoU between predicted and true phase segmentations (see ``AIOU_VARIANTS``).

    Definition:
        ``"tsa"``: with ``[s, e]`` the interval from the first to the last transition,
        ``IoU = max(0, min(e, e') - max(s, s')) / ((e - s) + (e' - s') - intersection)``
        (0 when the union is 0), as the FineDiving/TSA code computes it.
        ``"phases"``: phase ``k`` is frames ``[b_k, b_{k+1})`` with ``b_0 = 0`` and
        ``b_S = lengths``; the per-phase IoU is ``|pred ∩ true| / |pred ∪ true|`` over frames
        (1 when the phase is empty in both); the video's IoU is their mean over the S phases.

    Args:
        pred_transitions: (B, S-1) predicted transition frames, non-decreasing per row.
        true_transitions: (B, S-1) true transition frames.
        variant: ``"tsa"`` (default) or ``"phases"``.
        lengths: (B,) number of frames per video; required by ``"phases"``.

    Returns:
        (B,) IoUs in [0, 1].

    >>> segment_ious([[10, 20]], [[10, 30]]).tolist()
    [0.5]
    >>> segment_ious([[2]], [[4]], variant="phases", lengths=[8]).round(4).tolist()
    [0.5833]
    """
    check_choice(variant, "variant", AIOU_VARIANTS)
    p = _transitions(pred_transitions, "pred_transitions")
    t = _transitions(true_transitions, "true_transitions")
    if p.shape != t.shape:
        raise ValueError(
            f"pred_transitions {tuple(p.shape)} and true_transitions {tuple(t.shape)} differ"
        )
    if variant == "tsa":
        if p.shape[1] < 2:
            raise ValueError("variant 'tsa' needs at least 2 transitions per video (S >= 3)")
        ps, pe, ts, te = p[:, 0], p[:, -1], t[:, 0], t[:, -1]
        inter = np.clip(np.minimum(pe, te) - np.maximum(ps, ts), 0, None)
        union = (pe - ps) + (te - ts) - inter
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    if lengths is None:
        raise ValueError("variant 'phases' needs lengths (B,), the number of frames per video")
    n = float_array(lengths, "lengths", 1)
    if n.shape[0] != p.shape[0]:
        raise ValueError(f"lengths has shape {tuple(n.shape)}, expected ({p.shape[0]},)")
    if np.any(p[:, -1] > n) or np.any(t[:, -1] > n) or np.any(p[:, 0] < 0) or np.any(t[:, 0] < 0):
        raise ValueError("transitions must lie in [0, length] of their video")
    zeros = np.zeros((p.shape[0], 1))
    pb = np.concatenate([zeros, p, n[:, None]], axis=1)
    tb = np.concatenate([zeros, t, n[:, None]], axis=1)
    inter = np.clip(np.minimum(pb[:, 1:], tb[:, 1:]) - np.maximum(pb[:, :-1], tb[:, :-1]), 0, None)
    union = (pb[:, 1:] - pb[:, :-1]) + (tb[:, 1:] - tb[:, :-1]) - inter
    # a phase empty in both segmentations is an agreement, not a miss
    per_phase = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)
    return per_phase.mean(axis=1)


def aiou(
    pred_transitions: Any,
    true_transitions: Any,
    thresholds: Sequence[float] = (0.5, 0.75),
    *,
    variant: str = "tsa",
    lengths: Any = None,
) -> dict[float, float]:
    """Average IoU at thresholds (AIoU@d): share of videos whose segmentation IoU reaches ``d``.

    Definition: ``AIoU@d = mean_b [IoU_b >= d]`` with ``IoU_b`` from :func:`segment_ious` (the
    FineDiving/TSA convention, ``>=``). Report ``variant`` with the number. For CPA, first
    regroup the K predicted steps uniformly into the 3 annotated phases.

    Args:
        pred_transitions: (B, S-1) predicted transition frames.
        true_transitions: (B, S-1) true transition frames.
        thresholds: IoU thresholds in [0, 1]; default (0.5, 0.75).
        variant: ``"tsa"`` (default) or ``"phases"``; lengths: (B,) for ``"phases"``.

    Returns:
        ``{threshold: AIoU}`` with values in [0, 1].

    >>> aiou([[10, 20], [0, 5]], [[10, 30], [0, 5]])
    {0.5: 1.0, 0.75: 0.5}
    """
    ious = segment_ious(pred_transitions, true_transitions, variant=variant, lengths=lengths)
    out = {}
    for d in thresholds:
        if isinstance(d, bool) or not isinstance(d, (int, float, np.floating)) or not 0 <= d <= 1:
            raise ValueError(f"thresholds must lie in [0, 1], got {d!r}")
        out[float(d)] = float(np.mean(ious >= d))
    return out
