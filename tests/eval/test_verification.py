"""Sequence verification: AUC / EER / WDR against scipy, sklearn and hand computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_curve

from procalign.eval import (
    step_edit_distance,
    verification_auc,
    verification_eer,
    wrong_distance_ratio,
)


def _random_pairs(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    same[:2] = [True, False]
    distances = rng.normal(size=n) + np.where(same, -0.8, 0.0)
    return distances, same


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_mann_whitney(seed: int) -> None:
    d, s = _random_pairs(seed)
    # U statistic of negatives vs positives = #(d_neg > d_pos) + 0.5 #(ties)
    u = mannwhitneyu(d[~s], d[s]).statistic
    assert verification_auc(d, s) == pytest.approx(u / (s.sum() * (~s).sum()))


def test_auc_hand_counts_with_ties() -> None:
    d = [0.2, 0.5, 0.5, 0.9]
    s = [1, 1, 0, 0]
    # positives {0.2, 0.5} vs negatives {0.5, 0.9}: wins 0.2<0.5, 0.2<0.9, 0.5<0.9; one tie
    assert verification_auc(d, s) == pytest.approx((3 + 0.5) / 4)


def test_auc_sign_is_fixed_small_distance_means_same() -> None:
    same = np.array([True, True, False, False])
    assert verification_auc([0.1, 0.2, 0.8, 0.9], same) == 1.0
    assert verification_auc([0.8, 0.9, 0.1, 0.2], same) == 0.0


def test_auc_accepts_tensors_and_01_floats() -> None:
    d = torch.tensor([0.1, 0.4, 0.3, 0.9])
    s = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert verification_auc(d, s) == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [[0.2, 0.9, 0.1, 0.5], [0, 1, 2, 1], [-1, 1, 0, 1]])
def test_same_must_be_boolean(bad: list) -> None:
    with pytest.raises(ValueError, match="same must be boolean or 0/1"):
        verification_auc([0.1, 0.2, 0.3, 0.4], bad)


def test_nan_distance_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"distances contains NaN at index 1"):
        verification_auc([0.1, float("nan"), 0.3], [1, 0, 1])
    with pytest.raises(ValueError, match="distances contains NaN"):
        verification_eer(np.array([0.1, np.nan]), [True, False])


def test_inf_distance_is_rejected() -> None:
    with pytest.raises(ValueError, match="infinite"):
        verification_auc([0.1, np.inf, 0.3], [1, 0, 1])


def test_single_class_and_shape_errors() -> None:
    with pytest.raises(ValueError, match="both classes"):
        verification_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match=r"same length.*\(3,\).*\(2,\)"):
        verification_auc([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match=r"distances must have 1 dimension.*\(2, 2\)"):
        verification_auc(np.zeros((2, 2)), [1, 0])


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_eer_matches_brentq_reference(seed: int) -> None:
    d, s = _random_pairs(seed, n=80)
    fpr, tpr, _ = roc_curve(s, -d)
    reference = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert verification_eer(d, s) == pytest.approx(reference, abs=1e-9)


def test_eer_hand_cases() -> None:
    # perfectly separable -> 0
    assert verification_eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    # all distances tied: the ROC is the diagonal, EER 1/2
    assert verification_eer([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == pytest.approx(0.5)
    # fully reversed -> 1
    assert verification_eer([0.8, 0.9, 0.1, 0.2], [1, 1, 0, 0]) == pytest.approx(1.0)


def _lcs(a: list, b: list) -> int:
    table = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        if a[i - 1] == b[j - 1]:
            table[i, j] = table[i - 1, j - 1] + 1
        else:
            table[i, j] = max(table[i - 1, j], table[i, j - 1])
    return int(table[-1, -1])


@pytest.mark.parametrize(
    "a,b",
    [
        ([1, 2, 3], [1, 2, 3]),
        ([1, 2, 3], [3, 2, 1]),
        (["pour", "stir"], ["stir"]),
        ([], [4, 5]),
        ([1, 2, 3, 4, 5], [2, 9, 4, 5, 1]),
        ([10, 11, 12], [13]),
    ],
)
def test_edit_distance_is_indel_distance(a: list, b: list) -> None:
    # substitution 2 = delete + insert, so the distance is len(a) + len(b) - 2 LCS
    assert step_edit_distance(a, b) == len(a) + len(b) - 2 * _lcs(a, b)


def test_edit_distance_multi_character_tokens_are_atoms() -> None:
    assert step_edit_distance(["12", "3"], ["1", "23"]) == 4
    with pytest.raises(TypeError, match="sequence of step ids"):
        step_edit_distance("123", [1, 2, 3])


def test_wdr_hand_computed() -> None:
    d = [1.0, 3.0, 0.5, 6.0]
    same = [1, 0, 1, 0]
    s1 = [[1, 2, 3], [1, 2, 3], [4], [1, 2]]
    s2 = [[1, 2, 3], [1, 3, 2], [4], [5, 6]]
    # negatives: 3.0 / 2 = 1.5 and 6.0 / 4 = 1.5 -> 1.5; positives mean 0.75 -> WDR 2.0
    assert wrong_distance_ratio(d, same, s1, s2) == pytest.approx(2.0)


def test_wdr_errors() -> None:
    with pytest.raises(ValueError, match="pair 1 is negative.*identical"):
        wrong_distance_ratio([1.0, 2.0], [1, 0], [[1], [2, 3]], [[1], [2, 3]])
    with pytest.raises(ValueError, match="one step list per pair"):
        wrong_distance_ratio([1.0, 2.0], [1, 0], [[1]], [[1], [2]])
    with pytest.raises(ValueError, match="mean distance of positive pairs is 0"):
        wrong_distance_ratio([0.0, 2.0], [1, 0], [[1], [2]], [[1], [3]])
