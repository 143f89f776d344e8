"""Text-to-video matching (WeakSVR's CSV-Matching): pick the right video among C candidates.

Each query (a paragraph of step sentences) comes with ``C`` candidate videos of the same task, one
of which shows exactly the described procedure (CSV-Matching: C = 5). A method gives a *score*
per (query, candidate), higher = better match. Convert distances at the boundary
(``scores = -distances``).

Shapes: ``B`` queries, ``C`` candidates per query; ``scores`` is ``(B, C)``, ``correct`` is
``(B,)`` integer indices into the candidates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from procalign.eval._checks import float_array, labels_array

__all__ = ["matching_auc", "matching_topk", "text_video_matching"]


def _inputs(scores: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    s = float_array(scores, "scores", 2)
    c = labels_array(correct, "correct")
    if c.shape[0] != s.shape[0]:
        raise ValueError(
            f"correct has shape {tuple(c.shape)} but scores has {s.shape[0]} queries "
            f"(shape {tuple(s.shape)})"
        )
    if s.shape[1] < 2:
        raise ValueError(f"scores must have at least 2 candidates per query, got {tuple(s.shape)}")
    if c.min() < 0 or c.max() >= s.shape[1]:
        raise ValueError(
            f"correct must index the {s.shape[1]} candidates, got range [{c.min()}, {c.max()}]"
        )
    return s, c


def _ranks(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank of the correct candidate: ties are ranked against it."""
    right = s[np.arange(s.shape[0]), c]
    return (s >= right[:, None]).sum(axis=1)


def matching_topk(scores: Any, correct: Any, k: int = 1) -> float:
    """Share of queries whose correct candidate is among the ``k`` best-scored ones.

    Definition: the rank of the correct candidate is the number of candidates scoring at least as
    high as it (itself included), so a tie with a wrong candidate counts against the method;
    top-k accuracy is ``mean(rank <= k)``. ``k = 1`` is CSV-Matching's accuracy.

    Args:
        scores: (B, C) match scores, higher = better. correct: (B,) index of the right candidate.
        k: 1 <= k <= C.

    >>> scores = [[0.9, 0.1, 0.2], [0.3, 0.5, 0.4], [0.2, 0.2, 0.1]]
    >>> matching_topk(scores, [0, 2, 0], k=1), matching_topk(scores, [0, 2, 0], k=2)
    (0.3333333333333333, 1.0)
    """
    s, c = _inputs(scores, correct)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= s.shape[1]:
        raise ValueError(f"k must be an integer in [1, {s.shape[1]}], got {k!r}")
    return float(np.mean(_ranks(s, c) <= k))


def matching_auc(scores: Any, correct: Any) -> float:
    """ROC-AUC of match scores, pooled over all (query, candidate) pairs.

    Definition: ``roc_auc_score(y, scores.ravel())`` with ``y`` = 1 for the correct candidate of
    each query and 0 for the others: the probability that a right (query, video) pair scores
    higher than a wrong one, across queries (ties count one half).

    Args:
        scores: (B, C) match scores, higher = better. correct: (B,) index of the right candidate.

    >>> matching_auc([[0.9, 0.1, 0.2], [0.3, 0.5, 0.4]], [0, 2])
    0.875
    """
    from sklearn.metrics import roc_auc_score

    s, c = _inputs(scores, correct)
    y = np.zeros(s.shape, dtype=bool)
    y[np.arange(s.shape[0]), c] = True
    return float(roc_auc_score(y.ravel(), s.ravel()))


def text_video_matching(scores: Any, correct: Any, ks: Sequence[int] = (1, 2, 3)) -> dict[str, Any]:
    """All CSV-Matching numbers at once: accuracy (top-1), top-k for each ``k`` and pooled AUC.

    Args:
        scores: (B, C) match scores, higher = better. correct: (B,) index of the right candidate.
        ks: the k of the top-k accuracies (each in [1, C]).

    Returns:
        ``{"accuracy": float, "top_k": {k: float}, "auc": float}``.

    >>> text_video_matching([[0.9, 0.1], [0.3, 0.5]], [0, 0], ks=(1,))
    {'accuracy': 0.5, 'top_k': {1: 0.5}, 'auc': 0.75}
    """
    return {
        "accuracy": matching_topk(scores, correct, 1),
        "top_k": {int(k): matching_topk(scores, correct, k) for k in ks},
        "auc": matching_auc(scores, correct),
    }
