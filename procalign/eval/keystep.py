"""Key-step localization (Elhamifar & Huynh, ECCV 2020): frame scores after Hungarian matching.

Unsupervised key-step ids are arbitrary, so each task's predicted key-steps are first matched
one-to-one to its ground-truth key-steps. The matching is computed **once per task over all test
videos of that task** (not per video), maximizing the total number of overlapping frames with
``scipy.optimize.linear_sum_assignment``; background frames (``background`` label, in the
prediction or the ground truth) take no part in the matching.

All scores count **frames**, not detections (the paper's Sec. 3.1):

* recall = frames whose predicted key-step is matched to their true key-step
  / frames with a true key-step (non-background);
* precision = the same numerator / frames predicted as any key-step (non-background), matched or
  not, so surplus predicted key-steps cost precision;
* F1 = harmonic mean of that task's precision and recall;
* MoF = frames whose matched prediction equals their label, background frames included (a
  background frame is right when predicted as background) / all frames; MoF restricted to
  key-step frames is the recall;
* IoU = mean over the task's true key-steps of the Jaccard index between the frames of that
  key-step and the frames of the predicted key-step matched to it (0 when unmatched).

Every undefined ratio (0 / 0, e.g. a task whose frames are all background) is 0, following
scikit-learn's ``zero_division=0``. Dataset scores are unweighted means over tasks.

The sufficient statistics are per-task joint counts of (predicted, true) labels, so results of
several processes can be merged by adding counts (see :class:`procalign.eval.KeystepMeter`).

Shapes: B videos, each ``(T_b,)`` integer labels for prediction and ground truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from procalign.eval._checks import labels_array, same_length, to_numpy, video_list

__all__ = ["keystep_scores", "task_accuracy"]

KEYSTEP_METRICS = ("recall", "precision", "f1", "mof", "iou")

Counts = dict[Hashable, Counter]


def _task_ids(x: Any, name: str, n: int | None) -> list[Hashable]:
    if hasattr(x, "detach") or isinstance(x, np.ndarray):
        arr = to_numpy(x, name)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D (B,), got shape {tuple(arr.shape)}")
        items = arr.tolist()
    elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        items = list(x)
    else:
        raise TypeError(f"{name} must be a sequence of task ids, one per video")
    if n is not None and len(items) != n:
        raise ValueError(f"{name} has {len(items)} entries but there are {n} videos")
    for i, t in enumerate(items):
        if not isinstance(t, Hashable) or isinstance(t, float) and np.isnan(t):
            raise TypeError(f"{name}[{i}] = {t!r} is not a usable task id")
    return items


def _keystep_counts(
    pred: Sequence[Any], true: Sequence[Any], tasks: Sequence[Hashable] | None
) -> Counts:
    """Per-task Counter of (predicted label, true label) -> number of frames."""
    p_list = video_list(pred, "pred")
    t_list = video_list(true, "true")
    if len(p_list) != len(t_list):
        raise ValueError(f"pred has {len(p_list)} videos but true has {len(t_list)}")
    task_of = ["all"] * len(p_list) if tasks is None else _task_ids(tasks, "tasks", len(p_list))
    counts: Counts = {}
    for v, (p, t) in enumerate(zip(p_list, t_list)):
        p = labels_array(p, f"pred[{v}]")
        t = labels_array(t, f"true[{v}]")
        same_length(p, t, f"pred[{v}]", f"true[{v}]")
        pairs, n = np.unique(np.stack([p, t], axis=1), axis=0, return_counts=True)
        bucket = counts.setdefault(task_of[v], Counter())
        for (a, b), c in zip(pairs.tolist(), n.tolist()):
            bucket[(a, b)] += c
    return counts


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def _task_scores(counter: Counter, background: int) -> dict[str, Any]:
    """Scores of one task from its joint label counts."""
    from scipy.optimize import linear_sum_assignment

    pred_ids = sorted({p for p, _ in counter if p != background})
    true_ids = sorted({g for _, g in counter if g != background})
    row_total: Counter = Counter()  # frames predicted p (any truth)
    col_total: Counter = Counter()  # frames truly g (any prediction)
    total = 0
    for (p, g), c in counter.items():
        row_total[p] += c
        col_total[g] += c
        total += c
    overlap = np.zeros((len(pred_ids), len(true_ids)))
    p_index = {p: i for i, p in enumerate(pred_ids)}
    g_index = {g: j for j, g in enumerate(true_ids)}
    for (p, g), c in counter.items():
        if p != background and g != background:
            overlap[p_index[p], g_index[g]] = c
    matching: dict[int, int] = {}
    if overlap.size:
        rows, cols = linear_sum_assignment(overlap, maximize=True)
        matching = {int(pred_ids[r]): int(true_ids[c]) for r, c in zip(rows, cols)}
    tp = float(sum(overlap[p_index[p], g_index[g]] for p, g in matching.items()))
    n_true = sum(col_total[g] for g in true_ids)
    n_pred = sum(row_total[p] for p in pred_ids)
    recall, precision = _ratio(tp, n_true), _ratio(tp, n_pred)
    f1 = _ratio(2 * precision * recall, precision + recall)
    mof = _ratio(tp + counter.get((background, background), 0), total)
    matched_pred = {g: p for p, g in matching.items()}
    ious = []
    for g in true_ids:
        p = matched_pred.get(g)
        if p is None:
            ious.append(0.0)
            continue
        inter = overlap[p_index[p], g_index[g]]
        ious.append(_ratio(inter, row_total[p] + col_total[g] - inter))
    iou = float(np.mean(ious)) if ious else 0.0
    return {
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "mof": mof,
        "iou": iou,
        "matching": matching,
        "frames": int(total),
    }


def _keystep_compute(counts: Counts, background: int) -> dict[str, Any]:
    if not counts:
        raise ValueError("no videos were given: key-step scores need at least one")
    per_task = {task: _task_scores(c, background) for task, c in counts.items()}
    out: dict[str, Any] = {
        m: float(np.mean([s[m] for s in per_task.values()])) for m in KEYSTEP_METRICS
    }
    out["per_task"] = per_task
    return out


def task_accuracy(pred_tasks: Sequence[Hashable], true_tasks: Sequence[Hashable]) -> float:
    """Task classification accuracy over videos: ``mean(pred_tasks[v] == true_tasks[v])``.

    Args:
        pred_tasks: (B,) predicted task ids (ints or strings).
        true_tasks: (B,) true task ids.

    >>> task_accuracy(["tea", "car", "tea"], ["tea", "tea", "tea"])
    0.6666666666666666
    """
    t = _task_ids(true_tasks, "true_tasks", None)
    if not t:
        raise ValueError("true_tasks is empty")
    p = _task_ids(pred_tasks, "pred_tasks", len(t))
    return float(np.mean([a == b for a, b in zip(p, t)]))


def keystep_scores(
    pred: Sequence[Any],
    true: Sequence[Any],
    tasks: Sequence[Hashable] | None = None,
    *,
    background: int = -1,
    pred_tasks: Sequence[Hashable] | None = None,
) -> dict[str, Any]:
    """Key-step localization scores with per-task Hungarian matching (see the module docstring).

    Args:
        pred: B videos, each (T_b,) integer predicted key-step ids; ``background`` marks frames
            assigned to no key-step.
        true: B videos, each (T_b,) integer true key-step ids, ``background`` likewise.
        tasks: (B,) task id of each video (ints or strings); ``None`` puts every video in one
            task named ``"all"``. Matching is done per task, over all its videos.
        background: the background label, shared by ``pred`` and ``true`` (default -1).
        pred_tasks: optional (B,) predicted task ids; adds ``"task_accuracy"`` (needs ``tasks``).

    Returns:
        ``{"recall", "precision", "f1", "mof", "iou"}``: means over tasks (floats in [0, 1]);
        ``"per_task"``: ``{task: {the same five, "matching": {pred id: true id}, "frames"}}``;
        ``"task_accuracy"`` when ``pred_tasks`` is given.

    >>> pred = [[5, 5, 7, 7, -1], [7, 7, 5, -1, -1]]
    >>> true = [[1, 1, 2, 2, 2], [2, 2, -1, -1, 1]]
    >>> s = keystep_scores(pred, true)
    >>> s["per_task"]["all"]["matching"]
    {5: 1, 7: 2}
    >>> round(s["recall"], 4), round(s["precision"], 4), s["mof"]
    (0.75, 0.8571, 0.7)
    """
    counts = _keystep_counts(pred, true, tasks)
    out = _keystep_compute(counts, background)
    if pred_tasks is not None:
        if tasks is None:
            raise ValueError("pred_tasks needs tasks (the true task of each video) to be scored")
        out["task_accuracy"] = task_accuracy(pred_tasks, tasks)
    return out
