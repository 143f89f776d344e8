"""Kendall's tau, cycle-consistency and DTW-alignment accuracy against scipy, tslearn and loops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from procalign.eval import (
    cycle_consistency,
    dtw_alignment_accuracy,
    kendalls_tau,
    mean_kendalls_tau,
)


def _brute_nn(query: np.ndarray, cand: np.ndarray) -> np.ndarray:
    out = []
    for q in query:
        best, best_d = 0, np.inf
        for j, c in enumerate(cand):
            dist = float(((q - c) ** 2).sum())
            if dist < best_d:  # strict: first index wins ties
                best, best_d = j, dist
        out.append(best)
    return np.array(out)


def _brute_tau_a(order: np.ndarray) -> float:
    n = len(order)
    conc = disc = 0
    for i, j in itertools.combinations(range(n), 2):
        if order[j] > order[i]:
            conc += 1
        elif order[j] < order[i]:
            disc += 1
    return (conc - disc) / (n * (n - 1) / 2)


_PROJECTION = np.array([[1.0, -0.5, 0.8], [0.3, 1.2, -0.7]])  # shared by all videos


def _noisy_progress(rng: np.random.Generator, n: int, noise: float = 0.3) -> np.ndarray:
    """(n, 3) embeddings of a smooth progress curve plus noise: roughly alignable videos."""
    t = np.linspace(0, 1, n)[:, None]
    clean = np.hstack([t, np.sin(3 * t)]) @ _PROJECTION
    return clean + noise * rng.normal(size=(n, 3))


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_tcc_variant_matches_scipy_on_brute_force_neighbours(stride: int) -> None:
    rng = np.random.default_rng(stride)
    a, b = _noisy_progress(rng, 23), _noisy_progress(rng, 31)
    nn = _brute_nn(a[::stride], b[::stride])
    expected = kendalltau(np.arange(len(nn)), nn).statistic
    assert kendalls_tau(a, b, stride=stride) == pytest.approx(expected)


@pytest.mark.parametrize("seed", [0, 1])
def test_tau_a_matches_pair_counting(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _noisy_progress(rng, 17, noise=0.6), _noisy_progress(rng, 9, noise=0.6)
    nn = _brute_nn(a, b)
    assert len(set(nn)) < len(nn)  # ties among neighbours: tau-a and tau-b differ here
    assert kendalls_tau(a, b, variant="tau_a") == pytest.approx(_brute_tau_a(nn))
    assert kendalls_tau(a, b, variant="tau_a") != pytest.approx(kendalls_tau(a, b))


def test_tau_perfect_reversed_and_collapsed() -> None:
    a = np.arange(10.0)[:, None]
    assert kendalls_tau(a, a + 0.2) == pytest.approx(1.0)
    assert kendalls_tau(a, a[::-1]) == pytest.approx(-1.0)
    collapsed = np.zeros((4, 1))
    assert np.isnan(kendalls_tau(a, collapsed))  # tau-b undefined, reported as NaN
    assert kendalls_tau(a, collapsed, variant="tau_a") == 0.0


def test_tau_cosine_distance_and_tensors() -> None:
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    b = torch.tensor([[2.0, 0.1], [0.1, 3.0]])
    # by angle: a0 -> b0, a1 (45 deg) -> b0 (42 deg away vs 43), a2 -> b1; one tied pair of 3
    assert kendalls_tau(a, b, distance="cosine", variant="tau_a") == pytest.approx(2 / 3)


def test_mean_tau_averages_ordered_pairs() -> None:
    rng = np.random.default_rng(5)
    videos = [_noisy_progress(rng, n) for n in (12, 15, 9)]
    expected = np.mean(
        [kendalls_tau(videos[i], videos[j], 2) for i, j in itertools.permutations(range(3), 2)]
    )
    assert mean_kendalls_tau(videos, stride=2) == pytest.approx(expected)


def test_tau_errors() -> None:
    a = np.zeros((5, 2))
    with pytest.raises(ValueError, match="keeps 1 frame"):
        kendalls_tau(a, a, stride=5)
    with pytest.raises(ValueError, match="feature size 3"):
        kendalls_tau(a, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="variant must be one of"):
        kendalls_tau(a, a, variant="carl")
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        kendalls_tau(a, a, stride=0)
    with pytest.raises(ValueError, match=r"emb_a contains NaN at index \(1, 0\)"):
        kendalls_tau(np.array([[0.0, 0.0], [np.nan, 1.0]]), a)
    with pytest.raises(ValueError, match="at least 2"):
        mean_kendalls_tau([a])


def _brute_cycle(chain: list[np.ndarray], tolerance: int) -> float:
    hits = 0
    for i in range(len(chain[0])):
        idx = i
        for src, dst in zip(chain, chain[1:] + chain[:1]):
            idx = int(_brute_nn(src[idx : idx + 1], dst)[0])
        hits += abs(idx - i) <= tolerance
    return hits / len(chain[0])


@pytest.mark.parametrize("tolerance", [0, 1])
def test_cycle_consistency_two_and_three_way(tolerance: int) -> None:
    rng = np.random.default_rng(7)
    a, b, c = (_noisy_progress(rng, n, noise=0.5) for n in (14, 11, 16))
    assert cycle_consistency(a, b, tolerance=tolerance) == pytest.approx(
        _brute_cycle([a, b], tolerance)
    )
    assert cycle_consistency(a, b, c, tolerance=tolerance) == pytest.approx(
        _brute_cycle([a, b, c], tolerance)
    )


def test_cycle_consistency_stride_and_errors() -> None:
    rng = np.random.default_rng(8)
    a, b = _noisy_progress(rng, 20), _noisy_progress(rng, 18)
    assert cycle_consistency(a, b, stride=3) == pytest.approx(_brute_cycle([a[::3], b[::3]], 0))
    with pytest.raises(ValueError, match="tolerance"):
        cycle_consistency(a, b, tolerance=-1)


def _all_paths(n: int, m: int) -> list[list[tuple[int, int]]]:
    """Every monotone path (down, right, diagonal) from (0, 0) to (n-1, m-1): the oracle."""
    if (n, m) == (1, 1):
        return [[(0, 0)]]
    out = []
    for di, dj in ((1, 1), (1, 0), (0, 1)):
        if n - di >= 1 and m - dj >= 1:
            out += [p + [(n - 1, m - 1)] for p in _all_paths(n - di, m - dj)]
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dtw_accuracy_matches_enumerated_best_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = _noisy_progress(rng, 6, noise=0.4), _noisy_progress(rng, 5, noise=0.4)
    la = np.array([0, 0, 1, 1, 2, 2])
    lb = np.array([0, 1, 1, 2, 2])
    cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    best = min(_all_paths(6, 5), key=lambda p: sum(cost[i, j] for i, j in p))
    expected = np.mean([la[i] == lb[j] for i, j in best])
    assert dtw_alignment_accuracy(a, b, la, lb) == pytest.approx(expected)


def test_dtw_accuracy_hand_case_and_errors() -> None:
    a = np.array([[0.0], [1.0], [2.0]])
    # identical sequences align on the diagonal: labels shifted by one frame disagree once
    assert dtw_alignment_accuracy(a, a, [0, 1, 1], [0, 0, 1]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match=r"same length.*\(3, 1\).*\(2,\)"):
        dtw_alignment_accuracy(a, a, [0, 1], [0, 1, 1])
    with pytest.raises(TypeError, match="integer labels"):
        dtw_alignment_accuracy(a, a, [0.5, 1, 1], [0, 1, 1])
