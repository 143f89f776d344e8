"""Pair and batch sampling over video records, deterministic given a seed.

- :class:`PairSampler`: positive pairs (same procedure label) and negatives, either from the same
  task but a different procedure (``negatives="same_task"``, the hard SVIP-style case), from any
  other procedure (``"any"``), or same-task when the task has another procedure and any other
  otherwise (``"prefer_same_task"``).
- :func:`resolve_pairs`: an official pair list (``PairRecord``) -> index pairs into the records.
- :class:`ProcedureBatchSampler`: a ``batch_sampler`` for ``torch.utils.data.DataLoader`` that
  fills each batch with P procedures x K videos, so every batch holds positives and negatives.
- :class:`PairDataset` + :func:`pair_collate`: a pair list over any per-video dataset (such as
  :class:`procalign.data.features.FeatureDataset`) giving padded (B, T, D) tensors per side.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

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


class ProcedureBatchSampler(Sampler[list[int]]):
    """Batches of ``procedures_per_batch`` labels x ``videos_per_procedure`` videos each.

    Use as ``DataLoader(dataset, batch_sampler=ProcedureBatchSampler(labels, ...))``. Videos of
    a label are drawn without replacement when it has enough, with replacement otherwise. Epoch
    ``e`` is a deterministic function of (seed, e); the epoch advances by one after each full
    iteration, or is set with :meth:`set_epoch`.

    Args:
        labels: one label per dataset item (any hashable; None items are never drawn).
        procedures_per_batch: P, distinct labels per batch (capped at the number of labels).
        videos_per_procedure: K, videos per label.
        num_batches: batches per epoch; default ``len(labels) // (P * K)`` (at least 1).
        seed: base seed.
    """

    def __init__(
        self,
        labels: Sequence[Any],
        procedures_per_batch: int = 4,
        videos_per_procedure: int = 2,
        num_batches: int | None = None,
        seed: int = 0,
    ) -> None:
        if procedures_per_batch < 1 or videos_per_procedure < 1:
            raise ValueError(
                f"procedures_per_batch and videos_per_procedure must be >= 1, got "
                f"{procedures_per_batch}, {videos_per_procedure}"
            )
        groups: dict[Any, list[int]] = defaultdict(list)
        for i, label in enumerate(labels):
            if label is not None:
                groups[label].append(i)
        if not groups:
            raise ValueError("ProcedureBatchSampler got no labelled items")
        self.groups = [groups[k] for k in sorted(groups, key=str)]
        self.p = min(procedures_per_batch, len(self.groups))
        self.k = videos_per_procedure
        self.num_batches = num_batches or max(1, len(labels) // (self.p * self.k))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for _ in range(self.num_batches):
            batch: list[int] = []
            for g in rng.choice(len(self.groups), size=self.p, replace=False):
                members = self.groups[int(g)]
                pick = rng.choice(len(members), size=self.k, replace=len(members) < self.k)
                batch.extend(members[int(m)] for m in pick)
            yield batch


class PairDataset(Dataset):
    """Pairs over a per-video dataset: item ``n`` is ``(dataset[i], dataset[j], same)``.

    Args:
        dataset: any indexable dataset (e.g. ``FeatureDataset``) returning per-video dicts.
        pairs: ``(i, j, same)`` triples, e.g. from :func:`resolve_pairs`.
    """

    def __init__(self, dataset: Any, pairs: Sequence[tuple[int, int, bool]]) -> None:
        n = len(dataset)
        bad = [p for p in pairs if not (0 <= p[0] < n and 0 <= p[1] < n)]
        if bad:
            raise ValueError(
                f"{len(bad)} pairs index outside the dataset of {n} items, e.g. {bad[:3]}"
            )
        self.dataset = dataset
        self.pairs = [(int(i), int(j), bool(s)) for i, j, s in pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Any, Any, bool]:
        i, j, same = self.pairs[index]
        return self.dataset[i], self.dataset[j], same


def pair_collate(items: Sequence[tuple[dict, dict, bool]]) -> dict[str, Any]:
    """Collate :class:`PairDataset` items: ``{"a": batch, "b": batch, "same": (B,) bool}``.

    Each side is :func:`procalign.data.features.pad_collate` of its videos: ``features``
    (B, T, D) zero-padded, ``lengths`` (B,), ``mask`` (B, T), ...
    """
    from procalign.data.features import pad_collate

    return {
        "a": pad_collate([a for a, _, _ in items]),
        "b": pad_collate([b for _, b, _ in items]),
        "same": torch.tensor([s for _, _, s in items], dtype=torch.bool),
    }
