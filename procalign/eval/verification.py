"""Sequence verification (SVIP protocol): is a pair of videos the same procedure?

A method gives one *distance* per video pair; a small distance means "same procedure". The
positive class is ``same == True``. ROC-based metrics are computed on the score ``-distance``, so
the sign convention lives here, once, and callers only ever pass distances and booleans.

Shapes: ``B`` is the number of pairs.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from procalign.eval._checks import binary_array, float_array, same_length

__all__ = [
    "step_edit_distance",
    "verification_auc",
    "verification_eer",
    "wrong_distance_ratio",
]


def _pairs(distances: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    d = float_array(distances, "distances", 1)
    s = binary_array(same, "same")
    same_length(d, s, "distances", "same")
    n_pos = int(s.sum())
    if n_pos == 0 or n_pos == s.size:
        only = "positive (same)" if n_pos else "negative (different)"
        raise ValueError(
            f"same holds only {only} pairs ({s.size} pairs); verification metrics need both classes"
        )
    return d, s


def verification_auc(distances: Any, same: Any) -> float:
    """Area under the ROC curve of pair distances, "same procedure" being the positive class.

    Definition: ``roc_auc_score(same, -distances)``, i.e. the probability that a random positive
    pair has a *smaller* distance than a random negative pair (ties count one half). A perfect
    method scores 1.0, chance 0.5. This is the AUC of SVIP / CAT, WeakSVR and CPA.

    Args:
        distances: (B,) finite distances, lower = more likely the same procedure. NaN or inf
            raises ``ValueError`` (a silently NaN-sorted ROC is the classic bug here).
        same: (B,) booleans, or numbers that are exactly 0/1; 1 = same procedure. Anything else
            (scores, distances passed by mistake) raises ``ValueError``.

    Returns:
        AUC in [0, 1].

    >>> verification_auc([0.1, 0.2, 0.9, 0.8], [True, True, False, False])
    1.0
    >>> verification_auc([0.1, 0.5, 0.4, 0.8], [1, 1, 0, 0])
    0.75
    """
    from sklearn.metrics import roc_auc_score

    d, s = _pairs(distances, same)
    return float(roc_auc_score(s, -d))


def verification_eer(distances: Any, same: Any) -> float:
    """Equal error rate: where the false-accept rate equals the false-reject rate.

    Definition: with ``fpr, tpr = roc_curve(same, -distances)`` and ``fnr = 1 - tpr``, the EER is
    the value at which the piecewise-linear ROC crosses ``fpr == fnr`` (linear interpolation
    between the two ROC points that bracket the crossing; exact when a point lies on it). Lower
    is better; 0 means some threshold separates the classes perfectly.

    Args:
        distances: (B,) finite distances, lower = same procedure.
        same: (B,) booleans or 0/1, 1 = same procedure.

    Returns:
        EER in [0, 1].

    >>> verification_eer([0.1, 0.2, 0.9, 0.8], [True, True, False, False])
    0.0
    >>> verification_eer([0.1, 0.5, 0.4, 0.8], [1, 1, 0, 0])
    0.5
    """
    from sklearn.metrics import roc_curve

    d, s = _pairs(distances, same)
    fpr, tpr, _ = roc_curve(s, -d, drop_intermediate=False)
    gap = fpr - (1.0 - tpr)  # non-decreasing from -1 (origin) to +1 (top right)
    i = int(np.searchsorted(gap, 0.0, side="left"))
    if gap[i] == 0.0 or i == 0:
        return float(fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def step_edit_distance(steps_1: Sequence[Hashable], steps_2: Sequence[Hashable]) -> int:
    """Edit distance between two ordered step lists: insert/delete cost 1, substitution cost 2.

    This is the SVIP weighting (a substitution costs as much as a deletion plus an insertion), so
    the distance equals ``len(a) + len(b) - 2 * LCS(a, b)``. Computed with
    ``rapidfuzz.distance.Levenshtein`` over lists of hashable step ids.

    Args:
        steps_1: ordered step ids (K1,), any hashables (ints, strings).
        steps_2: ordered step ids (K2,).

    >>> step_edit_distance([1, 2, 3], [1, 4, 3])
    2
    >>> step_edit_distance(["a", "b", "c"], ["a", "c"])
    1
    """
    from rapidfuzz.distance import Levenshtein

    for name, steps in (("steps_1", steps_1), ("steps_2", steps_2)):
        if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
            raise TypeError(
                f"{name} must be a sequence of step ids (e.g. a list), got {type(steps).__name__}; "
                "split a string into its steps first"
            )
    return int(Levenshtein.distance(list(steps_1), list(steps_2), weights=(1, 1, 2)))


def wrong_distance_ratio(
    distances: Any,
    same: Any,
    steps_1: Sequence[Sequence[Hashable]],
    steps_2: Sequence[Sequence[Hashable]],
) -> float:
    """Wrong Distance Ratio (WDR) of SVIP / CPA.

    Definition::

        WDR = mean_{negative pairs p} ( distance_p / edit(steps_1[p], steps_2[p]) )
              / mean_{positive pairs p} distance_p

    with ``edit`` the :func:`step_edit_distance` (substitution 2, insert/delete 1). A negative pair
    whose step lists differ more should be further apart, so higher is better.

    Args:
        distances: (B,) finite distances, lower = same procedure.
        same: (B,) booleans or 0/1, 1 = same procedure.
        steps_1, steps_2: B ordered step lists each (the procedures' step ids from the label
            bank). A negative pair with identical step lists (edit distance 0) raises
            ``ValueError``: its ratio is undefined and usually means mislabelled pairs.

    Returns:
        WDR (> 0). A mean positive distance of 0 raises ``ValueError``.

    >>> wrong_distance_ratio([1.0, 3.0, 4.0], [1, 0, 0],
    ...                      [[1, 2], [1, 2], [1, 2]], [[1, 2], [2, 1], [1, 3]])
    1.75
    """
    d, s = _pairs(distances, same)
    for name, steps in (("steps_1", steps_1), ("steps_2", steps_2)):
        if isinstance(steps, (str, bytes)) or len(steps) != d.size:
            got = len(steps) if not isinstance(steps, (str, bytes)) else "a string"
            raise ValueError(f"{name} must hold one step list per pair ({d.size}), got {got}")
    edits = np.zeros(d.size)
    for p in np.flatnonzero(~s):
        edits[p] = step_edit_distance(steps_1[p], steps_2[p])
    return _wdr(d, s, edits)


def _wdr(d: np.ndarray, s: np.ndarray, edits: np.ndarray) -> float:
    """WDR from validated (B,) distances, (B,) booleans and (B,) edit distances."""
    neg = np.flatnonzero(~s)
    zero = neg[edits[neg] == 0]
    if zero.size:
        raise ValueError(
            f"pair {int(zero[0])} is negative (same=0) but its step lists are identical "
            f"(edit distance 0; {zero.size} such pairs); WDR divides by the edit distance"
        )
    ratios = d[neg] / edits[neg]
    mean_pos = float(d[s].mean())
    if mean_pos == 0.0:
        raise ValueError("the mean distance of positive pairs is 0; WDR is undefined")
    return float(np.mean(ratios) / mean_pos)
