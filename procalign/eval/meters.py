"""Stateful accumulators ("meters") over the pure metric functions, mergeable across processes.

Each meter keeps the sufficient statistics of its metric family, nothing else:

* ``update(...)`` adds one batch (validated at once, so a bad batch fails where it enters);
* ``compute()`` returns the metric values, calling the functions of :mod:`procalign.eval`;
* ``report()`` returns the same values as rows ``{"metric", "variant", "value",
  "higher_is_better"}``, the form written by ``procalign eval``;
* ``merge(other)`` folds another meter of the same kind and settings into this one;
* ``state_dict()`` / ``load_state_dict()`` give a picklable snapshot, so a distributed run can
  gather the states (:func:`all_gather`) and merge them on every rank.

Meters never log, plot or read global configuration. Metrics that fit a probe or retrieve across
all videos (phase classification, progression, AP@K) need every embedding at once; gather the
embeddings and call the functions directly.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import numpy as np

from procalign.eval import keystep as _keystep
from procalign.eval._checks import binary_array, float_array, same_length
from procalign.eval.matching import matching_auc, matching_topk
from procalign.eval.quality import relative_l2, segment_ious, spearman_rho
from procalign.eval.verification import (
    _pairs,
    _wdr,
    step_edit_distance,
    verification_auc,
    verification_eer,
)

__all__ = [
    "KeystepMeter",
    "MatchingMeter",
    "MeanMeter",
    "Meter",
    "QualityMeter",
    "VerificationMeter",
    "all_gather",
]


class Meter:
    """Base class: subclasses set ``variants`` and ``higher_is_better`` per metric name."""

    variants: ClassVar[dict[str, str]] = {}
    higher_is_better: ClassVar[dict[str, bool]] = {}

    def _config(self) -> dict[str, Any]:
        """Constructor settings; two meters merge only when these agree."""
        return {}

    def reset(self) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> Meter:
        raise NotImplementedError

    def _merge_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def merge(self, other: Meter) -> Meter:
        """Fold ``other`` (same class and settings) into this meter; returns ``self``."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        if other._config() != self._config():
            raise ValueError(
                f"cannot merge {type(self).__name__}s with different settings: "
                f"{self._config()} vs {other._config()}"
            )
        self._merge_state(other.state_dict())
        return self

    def report(self) -> list[dict[str, Any]]:
        """The computed values as rows ``{"metric", "variant", "value", "higher_is_better"}``.

        Nested results (``{threshold: value}``) become one row per key, e.g. ``aiou@0.5``.
        """
        rows = []
        for name, value in self.compute().items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for key, v in items:
                rows.append(
                    {
                        "metric": name if key is None else f"{name}@{key}",
                        "variant": self.variants.get(name, "default"),
                        "value": float(v),
                        "higher_is_better": self.higher_is_better.get(name, True),
                    }
                )
        return rows


class MeanMeter(Meter):
    """Mean of per-item values, e.g. Kendall's tau or DTW accuracy per video pair.

    Args:
        metric: the name of the averaged metric (used in :meth:`report`).
        variant: the variant of that metric, e.g. ``"tcc"``.
        higher_is_better: direction of the metric.

    >>> m = MeanMeter("kendalls_tau", "tcc")
    >>> m.update([0.5, 1.0]); m.update(0.0)
    >>> m.compute()
    {'kendalls_tau': 0.5}
    """

    def __init__(self, metric: str, variant: str = "default", higher_is_better: bool = True):
        self.metric = metric
        self.variants = {metric: variant}
        self.higher_is_better = {metric: higher_is_better}
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {"metric": self.metric, "variants": self.variants}

    def reset(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, values: Any) -> None:
        """Add one value or a (N,) array of values (NaN is rejected)."""
        v = float_array(np.atleast_1d(np.asarray(values, dtype=np.float64)), "values", 1)
        self.total += float(v.sum())
        self.count += int(v.size)

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            raise ValueError(f"MeanMeter({self.metric!r}) has no values; call update() first")
        return {self.metric: self.total / self.count}

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> MeanMeter:
        self.total, self.count = float(state["total"]), int(state["count"])
        return self

    def _merge_state(self, state: dict[str, Any]) -> None:
        self.total += float(state["total"])
        self.count += int(state["count"])


class VerificationMeter(Meter):
    """Sequence verification over pairs: AUC, EER and (when step lists are given) WDR.

    Keeps every (distance, same) pair, plus each pair's step-edit distance when step lists are
    passed (WDR needs them for all pairs, or it is left out of :meth:`compute`).

    >>> m = VerificationMeter()
    >>> m.update([0.1, 0.9], [True, False], steps_1=[[1, 2], [1, 2]], steps_2=[[1, 2], [2, 1]])
    >>> other = VerificationMeter()
    >>> other.update([0.2, 0.8], [1, 0], steps_1=[[3], [3]], steps_2=[[3], [4]])
    >>> {k: round(v, 4) for k, v in m.merge(other).compute().items()}
    {'auc': 1.0, 'eer': 0.0, 'wdr': 2.8333}
    """

    variants: ClassVar[dict[str, str]] = {"auc": "svip", "eer": "roc_interpolated", "wdr": "svip"}
    higher_is_better: ClassVar[dict[str, bool]] = {"auc": True, "eer": False, "wdr": True}

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.distances: list[float] = []
        self.same: list[bool] = []
        self.edits: list[int] | None = []  # None once a batch came without steps

    def update(
        self,
        distances: Any,
        same: Any,
        steps_1: Sequence[Sequence[Hashable]] | None = None,
        steps_2: Sequence[Sequence[Hashable]] | None = None,
    ) -> None:
        """Add (B,) distances and (B,) booleans; optionally B step lists per side for WDR."""
        d = float_array(distances, "distances", 1)
        s = binary_array(same, "same")
        same_length(d, s, "distances", "same")
        if (steps_1 is None) != (steps_2 is None):
            raise ValueError("pass both steps_1 and steps_2, or neither")
        edits = None
        if steps_1 is not None:
            if len(steps_1) != d.size or len(steps_2) != d.size:
                raise ValueError(
                    f"steps_1/steps_2 must hold {d.size} step lists each, "
                    f"got {len(steps_1)} and {len(steps_2)}"
                )
            edits = [step_edit_distance(a, b) for a, b in zip(steps_1, steps_2)]
        self.distances.extend(d.tolist())
        self.same.extend(s.tolist())
        if edits is None or self.edits is None:
            self.edits = None
        else:
            self.edits.extend(edits)

    def compute(self) -> dict[str, float]:
        out = {
            "auc": verification_auc(self.distances, self.same),
            "eer": verification_eer(self.distances, self.same),
        }
        if self.edits is not None:
            d, s = _pairs(self.distances, self.same)
            out["wdr"] = _wdr(d, s, np.asarray(self.edits, dtype=np.float64))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "distances": list(self.distances),
            "same": list(self.same),
            "edits": None if self.edits is None else list(self.edits),
        }

    def load_state_dict(self, state: dict[str, Any]) -> VerificationMeter:
        self.reset()
        self._merge_state(state)
        return self

    def _merge_state(self, state: dict[str, Any]) -> None:
        self.distances.extend(float(x) for x in state["distances"])
        self.same.extend(bool(x) for x in state["same"])
        if state["edits"] is None or self.edits is None:
            self.edits = None
        else:
            self.edits.extend(int(e) for e in state["edits"])


class KeystepMeter(Meter):
    """Key-step localization: per-task joint label counts; see :func:`keystep_scores`.

    Counts add across batches and processes; the Hungarian matching runs in :meth:`compute`, over
    all videos of each task seen so far. :meth:`compute` returns the same dict as
    :func:`keystep_scores`.

    >>> m = KeystepMeter(background=-1)
    >>> m.update([[5, 5, -1]], [[1, 1, -1]], tasks=["tea"])
    >>> m.update([[5, 7, 7]], [[1, 2, 2]], tasks=["tea"])
    >>> m.compute()["recall"]
    1.0
    """

    variants: ClassVar[dict[str, str]] = {
        "recall": "sspl_frames_hungarian_per_task",
        "precision": "sspl_frames_hungarian_per_task",
        "f1": "sspl_frames_hungarian_per_task",
        "mof": "hungarian_per_task_with_background",
        "iou": "hungarian_per_task_keysteps",
        "task_accuracy": "videos",
    }

    def __init__(self, background: int = -1) -> None:
        self.background = int(background)
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {"background": self.background}

    def reset(self) -> None:
        self.counts: dict[Hashable, Counter] = {}
        self.task_correct = 0
        self.task_total = 0

    def update(
        self,
        pred: Sequence[Any],
        true: Sequence[Any],
        tasks: Sequence[Hashable] | None = None,
        pred_tasks: Sequence[Hashable] | None = None,
    ) -> None:
        """Add B videos: (T_b,) predicted and true labels each, (B,) task ids, (B,) predictions."""
        counts = _keystep._keystep_counts(pred, true, tasks)
        if pred_tasks is not None:
            if tasks is None:
                raise ValueError("pred_tasks needs tasks (the true task of each video)")
            truth = _keystep._task_ids(tasks, "tasks", None)
            guess = _keystep._task_ids(pred_tasks, "pred_tasks", len(truth))
            self.task_correct += sum(a == b for a, b in zip(guess, truth))
            self.task_total += len(truth)
        self._add_counts(counts)

    def _add_counts(self, counts: dict[Hashable, Counter]) -> None:
        for task, c in counts.items():
            self.counts.setdefault(task, Counter()).update(c)

    def compute(self) -> dict[str, Any]:
        out = _keystep._keystep_compute(self.counts, self.background)
        if self.task_total:
            out["task_accuracy"] = self.task_correct / self.task_total
        return out

    def report(self) -> list[dict[str, Any]]:
        values = {k: v for k, v in self.compute().items() if k != "per_task"}
        return [
            {"metric": k, "variant": self.variants[k], "value": float(v), "higher_is_better": True}
            for k, v in values.items()
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "counts": {t: [[p, g, n] for (p, g), n in c.items()] for t, c in self.counts.items()},
            "task_correct": self.task_correct,
            "task_total": self.task_total,
        }

    def load_state_dict(self, state: dict[str, Any]) -> KeystepMeter:
        self.reset()
        self._merge_state(state)
        return self

    def _merge_state(self, state: dict[str, Any]) -> None:
        self._add_counts(
            {
                t: Counter({(int(p), int(g)): int(n) for p, g, n in rows})
                for t, rows in state["counts"].items()
            }
        )
        self.task_correct += int(state["task_correct"])
        self.task_total += int(state["task_total"])


class QualityMeter(Meter):
    """Action quality: Spearman's rho, relative L2 and (with transitions) AIoU at thresholds.

    Args:
        score_range: ``(min, max)`` of the dataset's scores for R-L2 (``None``: from the true
            scores seen, as the TSA code does).
        thresholds: AIoU thresholds.
        aiou_variant: ``"tsa"`` or ``"phases"``, see :func:`procalign.eval.segment_ious`.

    >>> m = QualityMeter(score_range=(0.0, 100.0))
    >>> m.update([80.0, 60.0, 70.0], [85.0, 55.0, 75.0], [[10, 20]] * 3, [[10, 30]] * 3)
    >>> m.compute()["aiou"]
    {0.5: 1.0, 0.75: 0.0}
    """

    higher_is_better: ClassVar[dict[str, bool]] = {
        "spearman_rho": True,
        "relative_l2": False,
        "aiou": True,
    }

    def __init__(
        self,
        score_range: tuple[float, float] | None = None,
        thresholds: Sequence[float] = (0.5, 0.75),
        aiou_variant: str = "tsa",
    ) -> None:
        self.score_range = None if score_range is None else tuple(float(x) for x in score_range)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.aiou_variant = aiou_variant
        range_name = "dataset_range" if score_range is not None else "observed_range_tsa_code"
        self.variants = {
            "spearman_rho": "scipy",
            "relative_l2": f"x100_{range_name}",
            "aiou": self.aiou_variant,
        }
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {
            "score_range": self.score_range,
            "thresholds": self.thresholds,
            "aiou_variant": self.aiou_variant,
        }

    def reset(self) -> None:
        self.pred: list[float] = []
        self.true: list[float] = []
        self.ious: list[float] = []

    def update(
        self,
        pred: Any,
        true: Any,
        pred_transitions: Any = None,
        true_transitions: Any = None,
        lengths: Any = None,
    ) -> None:
        """Add (B,) predicted and true scores; optionally (B, S-1) transitions, (B,) lengths."""
        p = float_array(pred, "pred", 1)
        t = float_array(true, "true", 1)
        same_length(p, t, "pred", "true")
        if (pred_transitions is None) != (true_transitions is None):
            raise ValueError("pass both pred_transitions and true_transitions, or neither")
        ious: list[float] = []
        if pred_transitions is not None:
            ious = segment_ious(
                pred_transitions, true_transitions, variant=self.aiou_variant, lengths=lengths
            ).tolist()
            if len(ious) != p.size:
                raise ValueError(f"transitions describe {len(ious)} videos but pred has {p.size}")
        self.pred.extend(p.tolist())
        self.true.extend(t.tolist())
        self.ious.extend(ious)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "spearman_rho": spearman_rho(self.pred, self.true),
            "relative_l2": relative_l2(self.pred, self.true, self.score_range),
        }
        if self.ious:
            ious = np.asarray(self.ious)
            out["aiou"] = {d: float(np.mean(ious >= d)) for d in self.thresholds}
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"pred": list(self.pred), "true": list(self.true), "ious": list(self.ious)}

    def load_state_dict(self, state: dict[str, Any]) -> QualityMeter:
        self.reset()
        self._merge_state(state)
        return self

    def _merge_state(self, state: dict[str, Any]) -> None:
        self.pred.extend(float(x) for x in state["pred"])
        self.true.extend(float(x) for x in state["true"])
        self.ious.extend(float(x) for x in state["ious"])


class MatchingMeter(Meter):
    """Text-to-video matching: top-1 accuracy, top-k and pooled AUC over (B, C) score rows.

    >>> m = MatchingMeter(ks=(1, 2))
    >>> m.update([[0.9, 0.1, 0.2]], [0]); m.update([[0.3, 0.5, 0.4]], [2])
    >>> m.compute()
    {'accuracy': 0.5, 'top_k': {1: 0.5, 2: 1.0}, 'auc': 0.875}
    """

    variants: ClassVar[dict[str, str]] = {
        "accuracy": "pessimistic_ties",
        "top_k": "pessimistic_ties",
        "auc": "pooled_pairs",
    }
    higher_is_better: ClassVar[dict[str, bool]] = {"accuracy": True, "top_k": True, "auc": True}

    def __init__(self, ks: Sequence[int] = (1, 2, 3)) -> None:
        self.ks = tuple(int(k) for k in ks)
        self.reset()

    def _config(self) -> dict[str, Any]:
        return {"ks": self.ks}

    def reset(self) -> None:
        self.scores: list[list[float]] = []
        self.correct: list[int] = []

    def update(self, scores: Any, correct: Any) -> None:
        """Add (B, C) scores (higher = better) and (B,) indices of the right candidates."""
        s = float_array(scores, "scores", 2)
        matching_topk(s, correct, 1)  # validates shapes and indices
        if self.scores and s.shape[1] != len(self.scores[0]):
            raise ValueError(
                f"scores have {s.shape[1]} candidates per query; earlier batches had "
                f"{len(self.scores[0])}"
            )
        self.scores.extend(s.tolist())
        self.correct.extend(int(c) for c in np.asarray(correct).tolist())

    def compute(self) -> dict[str, Any]:
        if not self.scores:
            raise ValueError("MatchingMeter has no queries; call update() first")
        return {
            "accuracy": matching_topk(self.scores, self.correct, 1),
            "top_k": {k: matching_topk(self.scores, self.correct, k) for k in self.ks},
            "auc": matching_auc(self.scores, self.correct),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"scores": [list(r) for r in self.scores], "correct": list(self.correct)}

    def load_state_dict(self, state: dict[str, Any]) -> MatchingMeter:
        self.reset()
        self._merge_state(state)
        return self

    def _merge_state(self, state: dict[str, Any]) -> None:
        if state["scores"] and self.scores and len(state["scores"][0]) != len(self.scores[0]):
            raise ValueError("cannot merge MatchingMeters with different numbers of candidates")
        self.scores.extend([float(x) for x in r] for r in state["scores"])
        self.correct.extend(int(c) for c in state["correct"])


def all_gather(meter: Meter) -> Meter:
    """Merge the meters of every ``torch.distributed`` rank; returns a new meter on each rank.

    Uses ``all_gather_object`` on :meth:`Meter.state_dict`, so it works with any backend. Without
    an initialised process group it returns a copy of ``meter`` (single process).
    """
    merged = copy.deepcopy(meter)
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a dependency
        return merged
    if not (dist.is_available() and dist.is_initialized()):
        return merged
    states: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(states, meter.state_dict())
    merged.reset()
    for state in states:
        merged._merge_state(state)
    return merged
