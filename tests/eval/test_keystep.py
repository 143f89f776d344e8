"""Key-step localization against scipy's Hungarian matching, sklearn's metrics and hand counts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import accuracy_score, confusion_matrix, jaccard_score, recall_score

from procalign.eval import keystep_scores, task_accuracy

BG = -1


def _random_task(rng: np.random.Generator, n_videos: int, k_true: int, k_pred: int):
    """Truth with background; predictions relabel the truth with arbitrary ids, plus noise."""
    ids = rng.permutation(k_pred) + 10
    pred, true = [], []
    for _ in range(n_videos):
        n = int(rng.integers(15, 30))
        t = rng.integers(-1, k_true, size=n)
        p = np.where(t >= 0, ids[t % k_pred], BG)
        noisy = rng.random(n) < 0.35
        p = np.where(noisy, rng.choice(np.append(ids, BG), size=n), p)
        pred.append(p)
        true.append(t)
    return pred, true


def _sklearn_reference(pred: list, true: list) -> dict[str, float]:
    """Match with scipy on sklearn's confusion matrix, then score the relabelled frames."""
    p, t = np.concatenate(pred), np.concatenate(true)
    p = np.where(p == BG, BG, p + 1000)  # disjoint id spaces for one confusion matrix
    p_ids = sorted(set(p.tolist()) - {BG})
    t_ids = sorted(set(t.tolist()) - {BG})
    cm = confusion_matrix(t, p, labels=t_ids + p_ids)[: len(t_ids), len(t_ids) :]  # true x pred
    rows, cols = linear_sum_assignment(cm.T, maximize=True)
    mapping = {p_ids[r]: t_ids[c] for r, c in zip(rows, cols)}
    unmatched = max(t_ids + p_ids) + 100
    mapped = np.array([BG if x == BG else mapping.get(x, unmatched) for x in p])
    recall = recall_score(t, mapped, labels=t_ids, average="micro", zero_division=0)
    tp = recall * np.isin(t, t_ids).sum()
    precision = tp / (p != BG).sum()
    return {
        "recall": recall,
        "precision": precision,
        "f1": 2 * precision * recall / (precision + recall),
        "mof": accuracy_score(t, mapped),
        "iou": float(
            np.mean(jaccard_score(t, mapped, labels=t_ids, average=None, zero_division=0))
        ),
    }


@pytest.mark.parametrize("seed,k_true,k_pred", [(0, 3, 3), (1, 4, 6), (2, 5, 3), (3, 2, 2)])
def test_single_task_matches_sklearn_reference(seed: int, k_true: int, k_pred: int) -> None:
    rng = np.random.default_rng(seed)
    pred, true = _random_task(rng, 4, k_true, k_pred)
    got = keystep_scores(pred, true, background=BG)
    ref = _sklearn_reference(pred, true)
    for name in ("recall", "precision", "f1", "mof", "iou"):
        assert got[name] == pytest.approx(ref[name]), name


def test_precision_counts_unmatched_predicted_keysteps() -> None:
    # 3 predicted key-steps, 2 true ones: key-step 9 cannot be matched but its frames count
    pred = [[1, 1, 2, 2, 9, 9]]
    true = [[0, 0, 1, 1, 1, 1]]
    s = keystep_scores(pred, true)
    assert s["per_task"]["all"]["matching"] == {1: 0, 2: 1}
    assert s["recall"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(4 / 6)
    # IoU: key-step 0 <-> 1: 2/2; key-step 1 <-> 2: 2/4
    assert s["iou"] == pytest.approx((1.0 + 0.5) / 2)


def test_matching_is_over_all_videos_of_a_task() -> None:
    # Per video, the best matching would swap the ids of video 2; over the task it cannot.
    pred = [[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 2, 2], [2, 2, 1, 1, 1, 1]]
    true = [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]]
    s = keystep_scores(pred, true)
    assert s["per_task"]["all"]["matching"] == {1: 0, 2: 1}
    # frames right under the global matching: 6 + 6 + 0
    assert s["recall"] == pytest.approx(12 / 18)
    per_video = np.mean([keystep_scores([p], [t])["recall"] for p, t in zip(pred, true)])
    assert per_video == pytest.approx(1.0)  # what a per-video matching would wrongly report


def test_brute_force_matching_maximises_overlap() -> None:
    rng = np.random.default_rng(4)
    pred, true = _random_task(rng, 3, 4, 4)
    s = keystep_scores(pred, true)
    p, t = np.concatenate(pred), np.concatenate(true)
    p_ids, t_ids = sorted(set(p) - {BG}), sorted(set(t) - {BG})
    best = max(
        sum(int(np.sum((p == a) & (t == b))) for a, b in zip(perm, t_ids))
        for perm in itertools.permutations(p_ids, len(t_ids))
    )
    assert s["recall"] * np.isin(t, t_ids).sum() == pytest.approx(best)


def test_several_tasks_are_matched_separately_and_averaged() -> None:
    pred = [[3, 3, 4, 4], [3, 3, 4, 4]]
    true = [[0, 0, 1, 1], [1, 1, 0, 0]]  # same predicted ids, opposite meaning per task
    s = keystep_scores(pred, true, tasks=["a", "b"])
    assert s["per_task"]["a"]["matching"] == {3: 0, 4: 1}
    assert s["per_task"]["b"]["matching"] == {3: 1, 4: 0}
    assert s["recall"] == 1.0 and s["f1"] == 1.0
    mixed = keystep_scores(pred, true)  # one task: one matching for both videos
    assert mixed["recall"] == pytest.approx(0.5)


def test_edge_one_segment() -> None:
    s = keystep_scores([[7, 7, 7, 7]], [[0, 0, 0, 0]])
    assert (s["recall"], s["precision"], s["f1"], s["mof"], s["iou"]) == (1.0, 1.0, 1.0, 1.0, 1.0)


def test_edge_missing_class() -> None:
    # true key-step 2 never predicted: it stays unmatched and scores IoU 0
    s = keystep_scores([[5, 5, 6, 6, 6, 6]], [[0, 0, 1, 1, 2, 2]])
    assert s["recall"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(4 / 6)
    assert s["iou"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)


def test_edge_all_background() -> None:
    # all-background truth: nothing to recall (0 by the zero_division=0 rule)
    s = keystep_scores([[1, 1, -1]], [[-1, -1, -1]])
    assert (s["recall"], s["precision"], s["f1"], s["iou"]) == (0.0, 0.0, 0.0, 0.0)
    assert s["mof"] == pytest.approx(1 / 3)
    # all-background prediction
    s = keystep_scores([[-1, -1, -1]], [[0, 0, -1]])
    assert (s["recall"], s["precision"], s["f1"]) == (0.0, 0.0, 0.0)
    assert s["mof"] == pytest.approx(1 / 3)
    # both all background: nothing is wrong, nothing to find
    s = keystep_scores([[-1, -1]], [[-1, -1]])
    assert s["mof"] == 1.0 and s["recall"] == 0.0


def test_edge_ties_in_matching_give_the_same_scores() -> None:
    # key-steps 1 and 2 overlap both true key-steps equally: either matching scores the same
    s = keystep_scores([[1, 2, 1, 2]], [[0, 0, 1, 1]])
    assert s["recall"] == pytest.approx(0.5)
    assert sorted(s["per_task"]["all"]["matching"].values()) == [0, 1]


def test_custom_background_label() -> None:
    s = keystep_scores([[0, 3, 3]], [[0, 8, 8]], background=0)
    assert s["recall"] == 1.0 and s["mof"] == 1.0


def test_task_accuracy() -> None:
    pred = [[1, 1], [1, 1], [2, 2]]
    true = [[0, 0], [0, 0], [0, 0]]
    s = keystep_scores(pred, true, tasks=["tea", "tea", "car"], pred_tasks=["tea", "car", "car"])
    assert s["task_accuracy"] == pytest.approx(2 / 3)
    assert task_accuracy([1, 2, 3], [1, 2, 4]) == pytest.approx(
        accuracy_score([1, 2, 4], [1, 2, 3])
    )


def test_keystep_errors() -> None:
    with pytest.raises(ValueError, match=r"same length.*\(3,\).*\(2,\)"):
        keystep_scores([[1, 1, 1]], [[0, 0]])
    with pytest.raises(ValueError, match="pred has 2 videos but true has 1"):
        keystep_scores([[1], [1]], [[0]])
    with pytest.raises(TypeError, match="integer labels"):
        keystep_scores([[1.5, 1]], [[0, 0]])
    with pytest.raises(ValueError, match="pred_tasks needs tasks"):
        keystep_scores([[1]], [[0]], pred_tasks=["a"])
    with pytest.raises(ValueError, match="tasks has 1 entries but there are 2 videos"):
        keystep_scores([[1], [1]], [[0], [0]], tasks=["a"])
