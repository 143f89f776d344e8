"""Quality assessment (Spearman, R-L2, AIoU) and text-to-video matching (top-k, AUC)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, rankdata, spearmanr

from procalign.eval import (
    aiou,
    matching_auc,
    matching_topk,
    relative_l2,
    segment_ious,
    spearman_rho,
    text_video_matching,
)

# ---------------------------------------------------------------------------------- quality


def test_spearman_matches_scipy_and_ranks() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(20, 100, size=30)
    pred = true + rng.normal(scale=15, size=30)
    pred[3] = pred[4]  # a tie
    assert spearman_rho(pred, true) == pytest.approx(spearmanr(pred, true).statistic)
    # by hand: Pearson correlation of the average ranks
    assert spearman_rho(pred, true) == pytest.approx(
        np.corrcoef(rankdata(pred), rankdata(true))[0, 1]
    )


def test_spearman_constant_is_nan_and_errors() -> None:
    assert np.isnan(spearman_rho([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="at least 2"):
        spearman_rho([1.0], [2.0])
    with pytest.raises(ValueError, match="pred contains NaN"):
        spearman_rho([1.0, np.nan], [2.0, 3.0])


def test_relative_l2_hand_computed() -> None:
    pred, true = [50.0, 80.0, 60.0], [60.0, 80.0, 40.0]
    # errors 10, 0, 20 over a range of 100: (0.01 + 0 + 0.04) / 3 * 100
    assert relative_l2(pred, true, score_range=(0.0, 100.0)) == pytest.approx(5 / 3)
    # default: range of the true scores (TSA code), here 40
    assert relative_l2(pred, true) == pytest.approx(100 * (0.0625 + 0 + 0.25) / 3)
    with pytest.raises(ValueError, match="max > min"):
        relative_l2(pred, true, score_range=(10.0, 10.0))
    with pytest.raises(ValueError, match="all scores equal"):
        relative_l2([1.0, 2.0], [3.0, 3.0])


def test_segment_ious_tsa_hand_computed() -> None:
    pred = [[10, 20], [0, 10], [5, 5], [30, 40]]
    true = [[10, 30], [0, 10], [5, 6], [0, 10]]
    # [10,20] vs [10,30]: 10/20; identical: 1; [5,5] vs [5,6]: 0/1; disjoint: 0
    np.testing.assert_allclose(segment_ious(pred, true), [0.5, 1.0, 0.0, 0.0])


def test_segment_ious_phases_hand_computed() -> None:
    # 10 frames, 3 phases; true [0,3) [3,7) [7,10); pred [0,4) [4,7) [7,10)
    ious = segment_ious([[4, 7]], [[3, 7]], variant="phases", lengths=[10])
    np.testing.assert_allclose(ious, [(3 / 4 + 3 / 4 + 1.0) / 3])
    # one segment (S = 2, transition at the very end): phase 1 is empty in both, an agreement
    one = segment_ious([[10]], [[10]], variant="phases", lengths=[10])
    np.testing.assert_allclose(one, [1.0])
    missed = segment_ious([[6]], [[10]], variant="phases", lengths=[10])
    np.testing.assert_allclose(missed, [(6 / 10 + 0.0) / 2])


def test_aiou_threshold_is_inclusive() -> None:
    pred = [[10, 20], [0, 10], [0, 3]]
    true = [[10, 30], [0, 10], [0, 4]]  # IoUs 0.5, 1, 0.75
    assert aiou(pred, true) == {0.5: 1.0, 0.75: pytest.approx(2 / 3)}
    assert aiou(pred, true, thresholds=(0.9,)) == {0.9: pytest.approx(1 / 3)}


def test_aiou_errors() -> None:
    with pytest.raises(ValueError, match="not in temporal order"):
        segment_ious([[20, 10]], [[10, 20]])
    with pytest.raises(ValueError, match="needs lengths"):
        segment_ious([[1, 2]], [[1, 2]], variant="phases")
    with pytest.raises(ValueError, match="at least 2 transitions"):
        segment_ious([[1]], [[1]])
    with pytest.raises(ValueError, match=r"\(1, 2\) and true_transitions \(1, 3\) differ"):
        segment_ious([[1, 2]], [[1, 2, 3]])
    with pytest.raises(ValueError, match=r"thresholds must lie in \[0, 1\]"):
        aiou([[1, 2]], [[1, 2]], thresholds=(1.5,))


# --------------------------------------------------------------------------------- matching


def _reference_rank(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """1-based rank of the right candidate by sorting (no ties in the data used)."""
    order = np.argsort(-scores, axis=1)
    return np.array([int(np.flatnonzero(o == c)[0]) + 1 for o, c in zip(order, correct)])


def test_topk_matches_sorting_reference() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(40, 5))
    correct = rng.integers(0, 5, size=40)
    scores[np.arange(40), correct] += 0.7
    ranks = _reference_rank(scores, correct)
    for k in range(1, 6):
        assert matching_topk(scores, correct, k) == pytest.approx(np.mean(ranks <= k))
    assert matching_topk(scores, correct, 5) == 1.0


def test_topk_ties_count_against_the_method() -> None:
    scores = [[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]]
    assert matching_topk(scores, [0, 2], k=1) == 0.0
    assert matching_topk(scores, [0, 2], k=2) == 1.0


def test_auc_matches_mann_whitney() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(25, 5))
    correct = rng.integers(0, 5, size=25)
    scores[np.arange(25), correct] += 1.0
    mask = np.zeros_like(scores, dtype=bool)
    mask[np.arange(25), correct] = True
    u = mannwhitneyu(scores[mask], scores[~mask]).statistic
    assert matching_auc(scores, correct) == pytest.approx(u / (mask.sum() * (~mask).sum()))


def test_text_video_matching_bundle_and_errors() -> None:
    scores = np.array([[3.0, 1.0, 2.0, 0.0, -1.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    out = text_video_matching(scores, [0, 1], ks=(1, 4))
    assert out["accuracy"] == 0.5 and out["top_k"] == {1: 0.5, 4: 1.0}
    assert out["auc"] == pytest.approx(matching_auc(scores, [0, 1]))
    with pytest.raises(ValueError, match="correct must index the 5 candidates"):
        matching_topk(scores, [0, 5])
    with pytest.raises(ValueError, match=r"correct has shape \(3,\) but scores has 2 queries"):
        matching_topk(scores, [0, 1, 2])
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 5\]"):
        matching_topk(scores, [0, 1], k=6)
    with pytest.raises(ValueError, match="scores contains NaN"):
        matching_auc([[np.nan, 1.0]], [0])
