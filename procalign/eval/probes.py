"""Linear probes on frozen frame embeddings: phase classification and phase progression.

Both train a small scikit-learn model on the embeddings of *training* videos and score it on
*test* videos, as TCC, LAV, CARL and LRProp do. The label fraction is a fraction of training
**videos** (not frames): the first ``max(1, int(fraction * B))`` videos in the given order, as in
the TCC and LAV evaluation code, or a seeded random subset with ``seed=``.

Shapes: per video ``(T_b, D)`` embeddings and ``(T_b,)`` labels; ``B`` videos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from procalign.eval._checks import (
    check_choice,
    embeddings_and_labels,
    float_array,
    labels_array,
    same_length,
    video_list,
)

__all__ = [
    "CLASSIFIERS",
    "DEFAULT_FRACTIONS",
    "phase_classification",
    "phase_progression",
    "progress_targets",
]

DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)

#: ``"linear_svm"``: ``SVC(kernel="linear", decision_function_shape="ovo")``.
#: ``"rbf_svm"``: ``SVC(decision_function_shape="ovo")`` with scikit-learn's default RBF kernel,
#: which is what the public TCC, LAV and CARL code actually fits under the name "SVM".
#: ``"logistic"``: multinomial ``LogisticRegression(solver="lbfgs", max_iter=100000)``, TCC's
#: "linear" model.
CLASSIFIERS = ("linear_svm", "rbf_svm", "logistic")


def _make_classifier(name: str):
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(solver="lbfgs", max_iter=100000)
    from sklearn.svm import SVC

    if name == "linear_svm":
        return SVC(kernel="linear", decision_function_shape="ovo")
    return SVC(decision_function_shape="ovo")


def _check_fractions(fractions: Sequence[float]) -> list[float]:
    out = []
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) or not 0 < f <= 1:
            raise ValueError(f"fractions must lie in (0, 1], got {f!r}")
        out.append(float(f))
    if not out:
        raise ValueError("fractions is empty")
    return out


def _subset(num_videos: int, fraction: float, seed: int | None) -> np.ndarray:
    used = max(1, int(fraction * num_videos))
    if seed is None:
        return np.arange(used)
    return np.random.default_rng(seed).permutation(num_videos)[:used]


def phase_classification(
    train_embs: Sequence[Any],
    train_labels: Sequence[Any],
    test_embs: Sequence[Any],
    test_labels: Sequence[Any],
    *,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    classifier: str = "linear_svm",
    seed: int | None = None,
) -> dict[float, float]:
    """Per-frame phase classification accuracy of a classifier trained on frozen embeddings.

    Definition: for each fraction ``f``, fit ``classifier`` on all frames of the first
    ``max(1, int(f * B_train))`` training videos (or a random subset of that size when ``seed``
    is an int), predict every test frame, and report the accuracy over all test frames pooled
    (``sklearn.metrics.accuracy_score`` on the concatenated frames), as TCC and LAV do.

    Args:
        train_embs: B_train videos, each (T_b, D) embeddings.
        train_labels: B_train videos, each (T_b,) integer phase labels.
        test_embs, test_labels: the same for the test videos.
        fractions: label fractions in (0, 1]; default 10/25/50/75/100 %.
        classifier: ``"linear_svm"`` (default), ``"rbf_svm"`` (what the TCC/LAV/CARL code calls
            SVM) or ``"logistic"`` (see ``CLASSIFIERS``).
        seed: ``None`` takes the first videos in order; an int draws a random subset.

    Returns:
        ``{fraction: accuracy}`` in the order of ``fractions``. A training subset with a single
        phase raises ``ValueError`` (no classifier can be fit).

    >>> import numpy as np
    >>> embs = [np.array([[0.0], [0.1], [1.0], [1.1]]), np.array([[0.05], [0.9], [1.2], [1.3]])]
    >>> labels = [np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])]
    >>> phase_classification(embs, labels, embs, labels, fractions=(0.5, 1.0))
    {0.5: 1.0, 1.0: 1.0}
    """
    from sklearn.metrics import accuracy_score

    check_choice(classifier, "classifier", CLASSIFIERS)
    fracs = _check_fractions(fractions)
    tr_e, tr_l = embeddings_and_labels(train_embs, train_labels, "train_embs", "train_labels")
    te_e, te_l = embeddings_and_labels(test_embs, test_labels, "test_embs", "test_labels")
    if te_e[0].shape[1] != tr_e[0].shape[1]:
        raise ValueError(
            f"test_embs have feature size {te_e[0].shape[1]}, train_embs {tr_e[0].shape[1]}"
        )
    x_test, y_test = np.concatenate(te_e), np.concatenate(te_l)
    out: dict[float, float] = {}
    for f in fracs:
        chosen = _subset(len(tr_e), f, seed)
        x = np.concatenate([tr_e[i] for i in chosen])
        y = np.concatenate([tr_l[i] for i in chosen])
        if np.unique(y).size < 2:
            raise ValueError(
                f"the training videos used at fraction {f} ({chosen.size} of {len(tr_e)}) hold a "
                f"single phase label ({y[0]}); a classifier needs at least two"
            )
        model = _make_classifier(classifier).fit(x, y)
        out[f] = float(accuracy_score(y_test, model.predict(x_test)))
    return out


def progress_targets(labels: Any, num_phases: int) -> np.ndarray:
    """Phase-progression regression targets of one video, from its per-frame phase labels.

    Definition (TCC / LAV "event completion"): phases are ``0 .. num_phases-1`` in temporal order.
    For each of the ``num_phases - 1`` transitions, let ``e_k`` be the last frame labelled ``k``;
    the target is ``(t - e_k) / T`` for every frame ``t`` of a ``T``-frame video. A phase absent
    from the video gets ``e_k = -1`` (LAV's convention; TCC would drop the column).

    Args:
        labels: (T,) integer phase labels in ``[0, num_phases)``.
        num_phases: number of phases of the action class, >= 2.

    Returns:
        (T, num_phases - 1) float targets.

    >>> progress_targets([0, 0, 1, 1], num_phases=2)[:, 0].tolist()
    [-0.25, 0.0, 0.25, 0.5]
    """
    lab = labels_array(labels, "labels")
    if isinstance(num_phases, bool) or not isinstance(num_phases, (int, np.integer)):
        raise TypeError(f"num_phases must be an int, got {num_phases!r}")
    if num_phases < 2:
        raise ValueError(f"num_phases must be >= 2, got {num_phases}")
    if lab.size == 0:
        raise ValueError("labels is empty (shape (0,))")
    if lab.min() < 0 or lab.max() >= num_phases:
        raise ValueError(
            f"labels must lie in [0, {num_phases}) for num_phases={num_phases}, "
            f"got range [{lab.min()}, {lab.max()}]"
        )
    t = np.arange(lab.size, dtype=np.float64)
    cols = []
    for k in range(num_phases - 1):
        hits = np.flatnonzero(lab == k)
        last = hits[-1] if hits.size else -1
        cols.append((t - last) / lab.size)
    return np.stack(cols, axis=1)


def phase_progression(
    train_embs: Sequence[Any],
    train_targets: Sequence[Any],
    test_embs: Sequence[Any],
    test_targets: Sequence[Any],
    *,
    fraction: float = 1.0,
    seed: int | None = None,
) -> float:
    """Phase progression: R^2 of a linear regression from embeddings onto progress targets.

    Definition: fit ``sklearn.linear_model.LinearRegression`` on the frames of the training
    videos used (see ``fraction``) mapping embeddings to their targets (for instance
    :func:`progress_targets`); report the coefficient of determination on all test frames pooled,
    averaged uniformly over the target columns (``r2_score(..., multioutput="uniform_average")``,
    which equals TCC/LAV's mean of per-column scores).

    Args:
        train_embs: B_train videos, each (T_b, D).
        train_targets: B_train videos, each (T_b,) or (T_b, E) float targets.
        test_embs, test_targets: the same for the test videos.
        fraction: fraction of training videos used, in (0, 1] (first videos unless ``seed``).
        seed: ``None`` for the first videos; an int for a random subset.

    Returns:
        R^2 (at most 1; can be negative).

    >>> import numpy as np
    >>> embs = [np.arange(5.0)[:, None], np.arange(4.0)[:, None]]
    >>> targets = [np.arange(5.0) / 5, np.arange(4.0) / 5]
    >>> round(phase_progression(embs, targets, embs, targets), 6)
    1.0
    """
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    (f,) = _check_fractions([fraction])

    def _pairs(embs: Sequence[Any], targets: Sequence[Any], prefix: str):
        e_list = video_list(embs, f"{prefix}_embs")
        t_list = video_list(targets, f"{prefix}_targets")
        if len(e_list) != len(t_list):
            raise ValueError(
                f"{prefix}_embs has {len(e_list)} videos but {prefix}_targets has {len(t_list)}"
            )
        es, ts = [], []
        for i, (e, t) in enumerate(zip(e_list, t_list)):
            e = float_array(e, f"{prefix}_embs[{i}]", 2)
            t = np.asarray(t.detach().cpu().numpy() if hasattr(t, "detach") else t)
            t = float_array(t.reshape(-1, 1) if t.ndim == 1 else t, f"{prefix}_targets[{i}]", 2)
            same_length(e, t, f"{prefix}_embs[{i}]", f"{prefix}_targets[{i}]")
            es.append(e)
            ts.append(t)
        if len({e.shape[1] for e in es}) > 1 or len({t.shape[1] for t in ts}) > 1:
            raise ValueError(f"{prefix} videos disagree on the feature or target size")
        return es, ts

    tr_e, tr_t = _pairs(train_embs, train_targets, "train")
    te_e, te_t = _pairs(test_embs, test_targets, "test")
    if tr_e[0].shape[1] != te_e[0].shape[1] or tr_t[0].shape[1] != te_t[0].shape[1]:
        raise ValueError("train and test disagree on the feature size or the number of targets")
    chosen = _subset(len(tr_e), f, seed)
    model = LinearRegression().fit(
        np.concatenate([tr_e[i] for i in chosen]), np.concatenate([tr_t[i] for i in chosen])
    )
    y_test = np.concatenate(te_t)
    return float(
        r2_score(y_test, model.predict(np.concatenate(te_e)), multioutput="uniform_average")
    )
