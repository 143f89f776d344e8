"""Pair and batch sampling over video records, deterministic given a seed.

- :class:`PairSampler`: positive pairs (same procedure label) and negatives, either from the same
  task but a different procedure (``negatives="same_task"``, the hard SVIP-style case), from any
  other procedure (``"any"``), or same-task when the task has another procedure and any other
  otherwise (``"prefer_same_task"``).
- :func:`resolve_pairs`: an official pair list (``PairRecord``) -> index pairs into the records.

Methods turn sampled pairs into batches themselves (e.g. :func:`procalign.methods.cpa.make_batches`)
over a :class:`procalign.data.featureset.FeatureSet`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from procalign.data.records import PairRecord, VideoRecord

NEGATIVE_MODES = ("same_task", "any", "prefer_same_task")


def _default_task(record: VideoRecord) -> str | None:
    return record.task


class PairSampler:
    """Draw verification pairs from labelled records.

    Args:
        records: videos with ``label`` set (records without a label are ignored).
        negatives: ``"same_task"``, ``"any"`` or ``"prefer_same_task"`` (see module docstring).
        seed: all draws come from ``numpy.random.default_rng(seed)``, in call order.
        task_of: how to read a record's task; default ``record.task``.

    Raises:
        ValueError: fewer than two labelled records, an unknown mode, or ``"same_task"`` with
            records whose task is None.

    >>> recs = [VideoRecord(f"v{i}", label=l, task="1") for i, l in enumerate("aabb")]
    >>> [(p.video_id_1, p.video_id_2, p.same) for p in PairSampler(recs, seed=0).per_video()][:2]
    [('v0', 'v1', True), ('v0', 'v3', False)]
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        negatives: str = "same_task",
        seed: int = 0,
        task_of: Callable[[VideoRecord], str | None] = _default_task,
    ) -> None:
        if negatives not in NEGATIVE_MODES:
            raise ValueError(f"negatives must be one of {NEGATIVE_MODES}, got {negatives!r}")
        self.records = [r for r in records if r.label is not None]
        if len(self.records) < 2:
            raise ValueError(f"PairSampler needs >= 2 labelled records, got {len(self.records)}")
        self.negatives = negatives
        self.rng = np.random.default_rng(seed)
        self.tasks = [task_of(r) for r in self.records]
        if negatives == "same_task" and any(t is None for t in self.tasks):
            n = sum(t is None for t in self.tasks)
            raise ValueError(
                f"negatives='same_task' needs a task on every record; {n} records have task=None "
                "(pass task_of=..., or use negatives='any')"
            )
        self.by_label: dict[str, list[int]] = defaultdict(list)
        self.labels_of_task: dict[Any, set[str]] = defaultdict(set)
        for i, (r, t) in enumerate(zip(self.records, self.tasks)):
            self.by_label[r.label].append(i)
            self.labels_of_task[t].add(r.label)

    def _pair(self, i: int, j: int) -> PairRecord:
        a, b = self.records[i], self.records[j]
        return PairRecord(a.video_id, b.video_id, a.label == b.label, a.label, b.label)

    def positive_for(self, i: int) -> int | None:
        """Index of another video with the same label as record ``i`` (None if it has none)."""
        same = [j for j in self.by_label[self.records[i].label] if j != i]
        return int(same[self.rng.integers(len(same))]) if same else None

    def negative_for(self, i: int) -> int | None:
        """Index of a video with another label, following the ``negatives`` mode (None if none)."""
        label, task = self.records[i].label, self.tasks[i]
        candidates: list[str] = []
        if self.negatives != "any" and task is not None:
            candidates = sorted(self.labels_of_task[task] - {label})
        if not candidates and self.negatives != "same_task":
            candidates = sorted(set(self.by_label) - {label})
        if not candidates:
            return None
        other = candidates[int(self.rng.integers(len(candidates)))]
        pool = self.by_label[other]
        return int(pool[self.rng.integers(len(pool))])

    def per_video(self, positives: int = 1, negatives: int = 1) -> list[PairRecord]:
        """For every record in order, ``positives`` positive and ``negatives`` negative pairs.

        Records without a possible partner simply get fewer pairs; a pair already drawn (in
        either order) is not repeated.
        """
        out = []
        seen: set[frozenset[int]] = set()
        for i in range(len(self.records)):
            for j in [self.positive_for(i) for _ in range(positives)] + [
                self.negative_for(i) for _ in range(negatives)
            ]:
                if j is not None and frozenset((i, j)) not in seen:
                    seen.add(frozenset((i, j)))
                    out.append(self._pair(i, j))
        return out

    def sample(self, num_pairs: int, positive_fraction: float = 0.5) -> list[PairRecord]:
        """``num_pairs`` pairs with anchors drawn uniformly; about ``positive_fraction`` positive.

        Raises:
            ValueError: no label has two videos (no positive possible) while positives are asked
                for, or no negative is possible while negatives are asked for.
        """
        if num_pairs < 0 or not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(
                f"need num_pairs >= 0 and positive_fraction in [0, 1], got {num_pairs}, "
                f"{positive_fraction}"
            )
        pos_anchors = [
            i for i in range(len(self.records)) if len(self.by_label[self.records[i].label]) > 1
        ]
        out: list[PairRecord] = []
        for _ in range(num_pairs):
            if self.rng.random() < positive_fraction:
                if not pos_anchors:
                    raise ValueError("no label has two videos: cannot draw a positive pair")
                i = pos_anchors[int(self.rng.integers(len(pos_anchors)))]
                j = self.positive_for(i)
            else:
                for _attempt in range(100):
                    i = int(self.rng.integers(len(self.records)))
                    j = self.negative_for(i)
                    if j is not None:
                        break
                else:
                    raise ValueError(f"no negative pair possible with negatives={self.negatives!r}")
            out.append(self._pair(i, j))  # type: ignore[arg-type]
        return out


def resolve_pairs(
    pairs: Sequence[PairRecord], records: Sequence[VideoRecord]
) -> list[tuple[int, int, bool]]:
    """Map an official pair list to ``(index_1, index_2, same)`` into ``records``.

    Raises:
        ValueError: a pair names a video id absent from ``records`` (the first few are listed).
    """
    where = {r.video_id: i for i, r in enumerate(records)}
    missing = sorted({v for p in pairs for v in (p.video_id_1, p.video_id_2) if v not in where})
    if missing:
        raise ValueError(
            f"{len(missing)} video ids of the pair list are not among the {len(records)} records, "
            f"e.g. {missing[:5]}"
        )
    return [(where[p.video_id_1], where[p.video_id_2], bool(p.same)) for p in pairs]
