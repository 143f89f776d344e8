"""Frame-alignment and video-level evaluation protocols (re-exported by
:mod:`procalign.eval.protocols`).

* :func:`frame_alignment` - per class: Kendall's tau, cycle consistency, AP@K, DTW-alignment
  accuracy, phase classification and progression of frame embeddings, each also on two
  controls (``static``: every frame replaced by one frame of the video; ``shuffled``: frames
  permuted) with the gap real - control.
* :func:`video_level` - nearest-neighbour retrieval and verification AUC across classes, with one
  label-blind embedding for every video.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations, permutations
from typing import Any

import numpy as np
import torch

from procalign.eval.report import row


CONTROLS = ("static", "shuffled")
#: the frame-alignment metrics that a control is computed for
_CONTROLLED = ("kendalls_tau[tau_a]", "kendalls_tau[tcc]", "cycle_consistency",
               "dtw_alignment_accuracy", "phase_progression")


def l2_normalise(embs: list[np.ndarray], normalize: bool) -> list[np.ndarray]:
    if not normalize:
        return [e.astype(np.float64) for e in embs]
    return [e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12) for e in embs]


def _pairs(n: int, ordered: bool, cap: int | None, seed: int = 0) -> list[tuple[int, int]]:
    pairs = list(permutations(range(n), 2) if ordered else combinations(range(n), 2))
    if cap is not None and len(pairs) > cap:
        keep = np.random.default_rng(seed).choice(len(pairs), size=cap, replace=False)
        pairs = [pairs[i] for i in np.sort(keep)]
    return pairs


def control_inputs(xs: Sequence[np.ndarray], control: str, seed: int = 0) -> list[np.ndarray]:
    """The inputs of a control: ``static`` repeats each video's middle frame L times;
    ``shuffled`` permutes each video's frames (fixed seed). Shapes are unchanged."""
    rng = np.random.default_rng(seed)
    if control == "static":
        return [np.repeat(np.asarray(x[len(x) // 2 : len(x) // 2 + 1]), len(x), 0) for x in xs]
    if control == "shuffled":
        return [np.asarray(x)[rng.permutation(len(x))] for x in xs]
    raise ValueError(f"control must be one of {CONTROLS}, got {control!r}")


def _class_metrics(
    E: Any,
    te: list[np.ndarray],
    labels: list[np.ndarray | None],
    tr: list[np.ndarray] | None,
    tr_labels: list[np.ndarray] | None,
    num_phases: int | None,
    *,
    stride: int,
    distance: str,
    ks: Sequence[int],
    fractions: Sequence[float],
    classifiers: Sequence[str],
    max_pairs: int | None,
    ap_variants: Sequence[str] = ("carl",),
) -> dict[str, float]:
    res: dict[str, float] = {}
    if len(te) >= 2:
        ordered = _pairs(len(te), True, max_pairs)
        for variant in ("tcc", "tau_a"):
            taus = np.array(
                [
                    E.kendalls_tau(te[a], te[b], stride, variant=variant, distance=distance)
                    for a, b in ordered
                ]
            )
            # tau-b is undefined (NaN) for a pair whose frames all share one neighbour
            undefined = int(np.isnan(taus).sum())
            res[f"kendalls_tau[{variant}]"] = (
                float(np.nanmean(taus)) if undefined < len(taus) else float("nan")
            )
            if variant == "tcc":
                res["kendalls_tau_undefined_pairs[tcc]"] = float(undefined)
        res["cycle_consistency"] = float(
            np.mean(
                [
                    E.cycle_consistency(te[a], te[b], stride=stride, distance=distance)
                    for a, b in ordered
                ]
            )
        )
    if all(x is not None for x in labels) and len(te) >= 2:
        for variant in ap_variants:
            for k in ks:
                try:
                    res[f"ap@{k}[{variant}]"] = E.average_precision_at_k(
                        te, labels, k, variant=variant, stride=stride, distance=distance
                    )
                except ValueError:
                    pass  # fewer candidate frames than K: AP@K undefined, not reported
        res["dtw_alignment_accuracy"] = float(
            np.mean(
                [
                    E.dtw_alignment_accuracy(te[a], te[b], labels[a], labels[b], distance=distance)
                    for a, b in _pairs(len(te), False, max_pairs)
                ]
            )
        )
        if tr is not None and tr_labels is not None:
            for clf in classifiers:
                try:
                    accs = E.phase_classification(
                        tr, tr_labels, te, labels, fractions=fractions, classifier=clf
                    )
                except ValueError:
                    continue  # a label fraction with a single phase
                for frac, acc in accs.items():
                    res[f"phase_classification@{frac:g}[{clf}]"] = acc
            if num_phases is not None and num_phases >= 2:
                res["phase_progression"] = E.phase_progression(
                    tr,
                    [E.progress_targets(x, num_phases) for x in tr_labels],
                    te,
                    [E.progress_targets(x, num_phases) for x in labels],
                )
    return res


def frame_alignment(
    classes: Sequence[str],
    test: Mapping[str, Sequence[Any]],
    train: Mapping[str, Sequence[Any]],
    embedders: Mapping[str, Callable[[list[np.ndarray]], list[np.ndarray]]],
    num_phases: Mapping[str, int] | None = None,
    *,
    stride: int = 1,
    distance: str = "sqeuclidean",
    normalize: bool = True,
    ks: Sequence[int] = (5, 10, 15),
    fractions: Sequence[float] = (0.1, 0.5, 1.0),
    classifiers: Sequence[str] = ("linear_svm",),
    max_pairs: int | None = None,
    controls: Sequence[str] = CONTROLS,
    ap_variants: Sequence[str] = ("carl",),
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Per class: frame-alignment metrics of ``embedders[label]`` on its test videos.

    ``test[label]`` / ``train[label]`` hold videos with ``features`` (L, D_in) and ``phases``
    (L,) or None. Metrics over pairs of test videos (all of them, or ``max_pairs`` drawn with a
    fixed seed): Kendall's tau (``tcc`` and ``tau_a``, ordered pairs), cycle consistency; with
    phase labels AP@K (``carl``), DTW-alignment accuracy, phase classification (probes fit on
    the training videos' embeddings) and phase progression. For each control in ``controls``
    the pair metrics are recomputed with the test inputs replaced by the control's
    (:func:`control_inputs`), as ``<metric>@<control>``, and ``<metric>@gap_<control>`` is real
    minus control: a model that reads the frame index, not the frames, keeps its tau on
    ``static`` input and has a gap near 0.

    Returns ``{label: {metric: value}}`` (plus ``eval_seconds``).
    """
    import procalign.eval as E
    from procalign.train.distributed import split_gather

    settings = dict(stride=stride, distance=distance, ks=ks, fractions=fractions,
                    classifiers=classifiers, max_pairs=max_pairs, ap_variants=ap_variants)
    classes = list(classes)

    def one(label: str) -> dict[str, float]:
        embed = embedders[label]
        t0 = time.perf_counter()
        te_v = list(test[label])
        labels = [v.phases for v in te_v]
        tr_v = list(train.get(label, []))
        have_tr = bool(tr_v) and all(v.phases is not None for v in tr_v)
        tr = l2_normalise(embed([v.features for v in tr_v]), normalize) if have_tr and all(
            x is not None for x in labels
        ) else None
        tr_labels = [v.phases for v in tr_v] if tr is not None else None
        n_ph = (num_phases or {}).get(label)
        xs = [np.asarray(v.features) for v in te_v]
        res = _class_metrics(E, l2_normalise(embed(xs), normalize), labels, tr, tr_labels,
                             n_ph, **settings)
        for control in controls:
            ctl = _class_metrics(
                E, l2_normalise(embed(control_inputs(xs, control)), normalize), labels, tr,
                tr_labels, n_ph, **{**settings, "classifiers": ()},
            )
            for name in _CONTROLLED:
                if name in res and name in ctl:
                    res[f"{name}@{control}"] = ctl[name]
                    res[f"{name}@gap_{control}"] = res[name] - ctl[name]
        res["eval_seconds"] = time.perf_counter() - t0
        if progress:
            print(f"  {label}: " + ", ".join(f"{k}={v:.3f}" for k, v in res.items()), flush=True)
        return res

    # under torchrun each rank evaluates a contiguous share of the classes, gathered in order
    results = split_gather(len(classes), lambda lo, hi: [one(c) for c in classes[lo:hi]],
                           "gathering the per-class alignment metrics")
    return dict(zip(classes, results))


def video_distances(query: np.ndarray, cands: list[np.ndarray], distance: str) -> np.ndarray:
    """Length-normalised DTW cost ``dtw / (N + M_b)`` (B,) between one video (N, D) and each
    candidate (M_b, D)."""
    from scipy.spatial.distance import cdist

    from procalign.dp import dtw

    lm = np.array([len(c) for c in cands])
    flat = cdist(query, np.concatenate(cands), metric=distance)  # (N, sum M_b)
    costs = np.zeros((len(cands), len(query), int(lm.max())))
    starts = np.concatenate([[0], np.cumsum(lm)[:-1]])
    for b, (s0, m) in enumerate(zip(starts, lm)):
        costs[b, :, :m] = flat[:, s0 : s0 + m]
    ln = np.full(len(cands), len(query))
    values = dtw(torch.from_numpy(costs), torch.from_numpy(ln), torch.from_numpy(lm)).values.numpy()
    return values / (ln + lm)


def video_level(
    queries: Sequence[Any],
    pool: Sequence[Any],
    embed: Callable[[list[np.ndarray]], list[np.ndarray]],
    *,
    distance: str = "sqeuclidean",
    normalize: bool = True,
    retrieval_ks: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Retrieval precision@K and verification AUC of ``queries`` against a candidate ``pool``.

    ``embed`` must not depend on a video's label: every video, query or candidate, goes through
    the same function (a test shuffles the labels and checks the scores' inputs do not move).
    Distances: length-normalised DTW ``dtw / (N + M)``. Per query label: mean precision@K
    (candidates of the query's label among the K nearest, the query itself left out) and the
    ROC-AUC of all (query, candidate) pairs, "same label" positive; plus the pooled AUC.
    """
    from procalign.eval import verification_auc

    pool = list(pool)
    where = {v.video_id: i for i, v in enumerate(pool)}
    extra = [q for q in queries if q.video_id not in where]
    everyone = pool + extra
    where.update({q.video_id: len(pool) + i for i, q in enumerate(extra)})
    embs = l2_normalise(embed([np.asarray(v.features) for v in everyone]), normalize)
    pool_labels = np.array([str(v.label) for v in pool])
    by_label: dict[str, dict[str, list]] = {}
    all_d, all_s = [], []
    for q in queries:
        qi = where[q.video_id]
        keep = [i for i in range(len(pool)) if i != qi]
        d = video_distances(embs[qi], [embs[i] for i in keep], distance)
        same = pool_labels[keep] == str(q.label)
        order = np.argsort(d, kind="stable")
        acc = by_label.setdefault(str(q.label), {"d": [], "s": [], **{k: [] for k in retrieval_ks}})
        for k in retrieval_ks:
            acc[k].append(float(same[order[:k]].mean()))
        acc["d"].append(d)
        acc["s"].append(same)
        all_d.append(d)
        all_s.append(same)
    per_label: dict[str, dict[str, float]] = {}
    for label, acc in by_label.items():
        res = {f"retrieval_precision@{k}": float(np.mean(acc[k])) for k in retrieval_ks}
        d, s = np.concatenate(acc["d"]), np.concatenate(acc["s"])
        if 0 < s.sum() < s.size:
            res["verification_auc"] = verification_auc(d, s)
        per_label[label] = res
    d, s = np.concatenate(all_d), np.concatenate(all_s)
    pooled = verification_auc(d, s) if 0 < s.sum() < s.size else float("nan")
    return {"per_label": per_label, "pooled_auc": pooled}


def _split_control(name: str) -> tuple[str, str]:
    for c in CONTROLS:
        for suffix in (f"@gap_{c}", f"@{c}"):
            if name.endswith(suffix):
                return name[: -len(suffix)], suffix[1:]
    return name, ""


def mean_rows(
    per_class: Mapping[str, Mapping[str, float]],
    variant_of: Callable[[str], str],
    count: bool = True,
) -> list[dict[str, Any]]:
    """Rows of per-class metrics averaged over classes.

    A name ``metric[variant]`` becomes metric and variant; ``...@static`` / ``...@gap_static``
    (see :func:`frame_alignment`) become rows with ``control`` set and ``control=...`` in the
    variant. ``variant_of(metric)`` adds the protocol settings.
    """
    rows = []
    names = sorted({k for r in per_class.values() for k in r} - {"eval_seconds"})
    for name in names:
        vals = [r[name] for r in per_class.values() if name in r]
        base, control = _split_control(name)
        metric, _, variant = base.partition("[")
        variant = variant.rstrip("]")
        if base == "kendalls_tau[tcc]":
            variant = "tcc,undefined_pairs_dropped"
        parts = [variant, variant_of(metric), f"control={control}" if control else ""]
        full = ",".join(x for x in parts if x)
        higher = not metric.endswith("undefined_pairs")
        extra = {"control": control} if control else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(np.nanmean(vals))
        suffix = f",mean_of_{len(vals)}_classes" if count else ""
        rows.append(row(metric, value, f"{full}{suffix}", higher, **extra))
    return rows


# =============================================================================================
