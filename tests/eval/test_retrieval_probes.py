"""AP@K (CARL / LAV variants) and the linear probes, against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import SVC

from procalign.eval import (
    average_precision_at_k,
    phase_classification,
    phase_progression,
    progress_targets,
)


def _videos(seed: int, lengths=(12, 15, 10, 14), d: int = 4, noise: float = 0.5):
    """Videos whose embeddings drift with time and jump at three phase boundaries."""
    rng = np.random.default_rng(seed)
    embs, labels = [], []
    for n in lengths:
        cuts = np.sort(rng.choice(np.arange(1, n - 1), size=2, replace=False))
        lab = np.zeros(n, dtype=int)
        lab[cuts[0] :] = 1
        lab[cuts[1] :] = 2
        t = np.linspace(0, 1, n)
        base = np.stack([t, lab, np.cos(3 * t), lab * t], axis=1)[:, :d]
        embs.append(base + noise * rng.normal(size=(n, d)))
        labels.append(lab)
    return embs, labels


# ------------------------------------------------------------------------------------ AP@K


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_ap_carl_matches_sklearn_neighbours(k: int, stride: int) -> None:
    embs, labels = _videos(k + stride)
    embs_s = [e[::stride] for e in embs]
    labels_s = [lab[::stride] for lab in labels]
    per_video = []
    for v in range(len(embs_s)):
        cand = np.concatenate([e for u, e in enumerate(embs_s) if u != v])
        cand_l = np.concatenate([lab for u, lab in enumerate(labels_s) if u != v])
        idx = NearestNeighbors(n_neighbors=k).fit(cand).kneighbors(embs_s[v])[1]
        per_video.append(np.mean(cand_l[idx] == labels_s[v][:, None]))
    expected = float(np.mean(per_video))
    got = average_precision_at_k(embs, labels, k, variant="carl", stride=stride)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_ap_lav_matches_sklearn_neighbours_query_included(k: int) -> None:
    embs, labels = _videos(10 + k)
    per_video = []
    for e, lab in zip(embs, labels):
        idx = NearestNeighbors(n_neighbors=k).fit(e).kneighbors(e)[1]
        per_video.append(np.mean(lab[idx] == lab[:, None]))
    got = average_precision_at_k(embs, labels, k, variant="lav")
    assert got == pytest.approx(float(np.mean(per_video)))
    if k == 1:
        assert got == 1.0  # every frame retrieves itself first


def test_ap_hand_case_and_variants_differ() -> None:
    embs = [np.array([[0.0], [1.0], [10.0]]), np.array([[0.2], [9.0], [11.0]])]
    labels = [np.array([0, 1, 1]), np.array([0, 1, 1])]
    # CARL, K=1, video 0: 0->0.2 (0 ok), 1->0.2 (label 0, wrong), 10->9 (ok): 2/3;
    # video 1: 0.2->0 ok, 9->10 ok, 11->10 ok: 1. Mean 5/6.
    assert average_precision_at_k(embs, labels, 1) == pytest.approx(5 / 6)
    # LAV, K=2: video 0: {0,1}: 1/2, {1,0}: 1/2, {10,1}: 1 -> 2/3; video 1: 1/2, 1, 1 -> 5/6
    assert average_precision_at_k(embs, labels, 2, variant="lav") == pytest.approx(0.75)


def test_ap_errors() -> None:
    embs, labels = _videos(0, lengths=(5, 6))
    with pytest.raises(ValueError, match="k=7 exceeds the 6 candidate frames"):
        average_precision_at_k(embs, labels, 7)
    with pytest.raises(ValueError, match="other videos"):
        average_precision_at_k(embs[:1], labels[:1], 1)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        average_precision_at_k(embs, labels, 0)
    with pytest.raises(ValueError, match=r"same length.*\(5, 4\).*\(6,\)"):
        average_precision_at_k(embs, labels[::-1], 1)
    with pytest.raises(ValueError, match="variant must be one of"):
        average_precision_at_k(embs, labels, 1, variant="tcc")


# ------------------------------------------------------------------------ classification


def _reference_accuracy(model, train_e, train_l, test_e, test_l, used: int) -> float:
    model.fit(np.concatenate(train_e[:used]), np.concatenate(train_l[:used]))
    return float(model.score(np.concatenate(test_e), np.concatenate(test_l)))


def test_phase_classification_matches_sklearn_per_fraction() -> None:
    train_e, train_l = _videos(1, lengths=(12, 14, 11, 13, 12, 15, 10, 12, 14, 13))
    test_e, test_l = _videos(2, lengths=(12, 13, 11))
    fractions = (0.1, 0.25, 0.5, 0.75, 1.0)
    got = phase_classification(train_e, train_l, test_e, test_l, fractions=fractions)
    assert list(got) == list(fractions)
    for f, used in zip(fractions, (1, 2, 5, 7, 10)):  # max(1, int(f * 10)) first videos
        ref = SVC(kernel="linear", decision_function_shape="ovo")
        assert got[f] == pytest.approx(
            _reference_accuracy(ref, train_e, train_l, test_e, test_l, used)
        )
    logistic = phase_classification(
        train_e, train_l, test_e, test_l, fractions=(0.5,), classifier="logistic"
    )
    ref = LogisticRegression(solver="lbfgs", max_iter=100000)
    assert logistic[0.5] == pytest.approx(
        _reference_accuracy(ref, train_e, train_l, test_e, test_l, 5)
    )
    rbf = phase_classification(
        train_e, train_l, test_e, test_l, fractions=(1.0,), classifier="rbf_svm"
    )
    ref = SVC(decision_function_shape="ovo")
    assert rbf[1.0] == pytest.approx(_reference_accuracy(ref, train_e, train_l, test_e, test_l, 10))


def test_phase_classification_seeded_subset_and_missing_class() -> None:
    train_e, train_l = _videos(3, lengths=(12, 14, 11, 13))
    test_e, test_l = _videos(4, lengths=(12, 13))
    test_l = [np.where(lab == 2, 3, lab) for lab in test_l]  # class 3 never seen in training
    a = phase_classification(train_e, train_l, test_e, test_l, fractions=(0.5,), seed=0)
    b = phase_classification(train_e, train_l, test_e, test_l, fractions=(0.5,), seed=0)
    assert a == b
    frames_of_3 = sum(int((lab == 3).sum()) for lab in test_l)
    total = sum(lab.size for lab in test_l)
    assert a[0.5] <= 1 - frames_of_3 / total  # unseen-class frames are always wrong


def test_phase_classification_errors() -> None:
    train_e, train_l = _videos(5, lengths=(8, 8))
    one_phase = [np.zeros(8, dtype=int), train_l[1]]
    with pytest.raises(ValueError, match="single phase label"):
        phase_classification(train_e, one_phase, train_e, train_l, fractions=(0.5,))
    with pytest.raises(ValueError, match=r"fractions must lie in \(0, 1\]"):
        phase_classification(train_e, train_l, train_e, train_l, fractions=(0.0,))
    with pytest.raises(ValueError, match="classifier must be one of"):
        phase_classification(train_e, train_l, train_e, train_l, classifier="knn")
    with pytest.raises(ValueError, match="feature size"):
        phase_classification(train_e, train_l, [e[:, :2] for e in train_e], train_l)


# ------------------------------------------------------------------------------ progression


def test_progress_targets_hand_case_and_missing_phase() -> None:
    targets = progress_targets([0, 0, 1, 1, 2], num_phases=3)
    # last frame of phase 0 is 1, of phase 1 is 3; T = 5
    np.testing.assert_allclose(targets[:, 0], (np.arange(5) - 1) / 5)
    np.testing.assert_allclose(targets[:, 1], (np.arange(5) - 3) / 5)
    missing = progress_targets([0, 0, 2, 2], num_phases=3)  # phase 1 absent: e_1 = -1
    np.testing.assert_allclose(missing[:, 1], (np.arange(4) + 1) / 4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        progress_targets([0, 2], num_phases=2)
    with pytest.raises(ValueError, match="num_phases must be >= 2"):
        progress_targets([0, 0], num_phases=1)


def test_phase_progression_matches_per_column_linear_regression() -> None:
    train_e, train_l = _videos(6, lengths=(12, 14, 11, 13))
    test_e, test_l = _videos(7, lengths=(12, 13))
    train_t = [progress_targets(lab, 3) for lab in train_l]
    test_t = [progress_targets(lab, 3) for lab in test_l]
    x, y = np.concatenate(train_e), np.concatenate(train_t)
    xt, yt = np.concatenate(test_e), np.concatenate(test_t)
    per_column = [
        r2_score(yt[:, c], LinearRegression().fit(x, y[:, c]).predict(xt)) for c in range(2)
    ]
    got = phase_progression(train_e, train_t, test_e, test_t)
    assert got == pytest.approx(float(np.mean(per_column)))
    half = phase_progression(train_e, train_t, test_e, test_t, fraction=0.5)
    x2, y2 = np.concatenate(train_e[:2]), np.concatenate(train_t[:2])
    assert half == pytest.approx(r2_score(yt, LinearRegression().fit(x2, y2).predict(xt)))


def test_phase_progression_errors() -> None:
    e, lab = _videos(8, lengths=(6, 7))
    t = [progress_targets(x, 3) for x in lab]
    with pytest.raises(ValueError, match="same length"):
        phase_progression(e, t[::-1], e, t)
    with pytest.raises(ValueError, match="train_embs has 2 videos but train_targets has 1"):
        phase_progression(e, t[:1], e, t)
