"""One entry point for every dataset reader: ``load(name, root, split=None)``.

Each reader turns one benchmark's *own* files (in its official layout) into a :class:`Dataset`:
a list of :class:`~procalign.data.records.VideoRecord`, plus the official pair list or matching
queries when the benchmark has them. Readers live in ``procalign/data/readers/`` (one module per
dataset family) and register themselves with ``@DATASETS.register("name")``.

>>> import procalign.data as data
>>> "svip-csv" in data.DATASETS and "folder" in data.DATASETS
True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procalign._registry import Registry
from procalign.data.records import MatchingQuery, PairRecord, VideoRecord

__all__ = ["DATASETS", "Dataset", "DatasetWarning", "load"]

DATASETS: Registry[Dataset] = Registry("dataset")


@dataclass
class Dataset:
    """The videos of one dataset, with its official pairs or queries when it has them.

    Attributes:
        name: registry name of the reader that built it (``"svip-csv"``, ``"folder"``, ...).
        root: the folder it was read from.
        records: one :class:`VideoRecord` per video; ids are unique.
        pairs: official verification pairs (SVIP pair lists, ``pairs.csv``), else None.
        queries: matching queries (CSV-Matching), else None.
        meta: dataset-level facts the reader knows (class names, label bank, counts of what it
            skipped, ...).
    """

    name: str
    root: Path
    records: list[VideoRecord]
    pairs: list[PairRecord] | None = None
    queries: list[MatchingQuery] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self._index: dict[str, int] = {}
        for i, rec in enumerate(self.records):
            if rec.video_id in self._index:
                raise ValueError(f"{self.name}: duplicate video id {rec.video_id!r} in {self.root}")
            self._index[rec.video_id] = i

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> VideoRecord:
        return self.records[index]

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._index

    def __repr__(self) -> str:
        extra = f", pairs={len(self.pairs)}" if self.pairs is not None else ""
        extra += f", queries={len(self.queries)}" if self.queries is not None else ""
        return f"Dataset({self.name!r}, {len(self)} videos{extra}, root={str(self.root)!r})"

    def get(self, video_id: str) -> VideoRecord:
        """The record with this id; KeyError naming the id otherwise."""
        if video_id not in self._index:
            raise KeyError(f"{self.name}: no video with id {video_id!r}")
        return self.records[self._index[video_id]]

    @property
    def ids(self) -> list[str]:
        return [rec.video_id for rec in self.records]

    @property
    def labels(self) -> list[str]:
        """Distinct video labels, sorted."""
        return sorted({rec.label for rec in self.records if rec.label is not None})

    @property
    def splits(self) -> list[str]:
        """Distinct split names present, sorted."""
        return sorted({rec.split for rec in self.records if rec.split is not None})

    def by_label(self) -> dict[str, list[VideoRecord]]:
        """Records grouped by label, labels sorted, records in dataset order."""
        groups: dict[str, list[VideoRecord]] = {label: [] for label in self.labels}
        for rec in self.records:
            if rec.label is not None:
                groups[rec.label].append(rec)
        return groups

    def filter(
        self,
        split: str | None = None,
        label: str | None = None,
        where: Callable[[VideoRecord], bool] | None = None,
    ) -> Dataset:
        """A new Dataset keeping the records that match every given condition.

        Pairs and queries are kept when all their videos are kept (and, for pairs that carry a
        split, when it equals ``split``). ``split`` must be one of :attr:`splits`.
        """
        if split is not None and split not in self.splits:
            known = ", ".join(self.splits) or "none (this dataset has no splits)"
            raise ValueError(f"{self.name}: unknown split {split!r}; available: {known}")
        keep = [
            rec
            for rec in self.records
            if (split is None or rec.split == split)
            and (label is None or rec.label == label)
            and (where is None or where(rec))
        ]
        kept = {rec.video_id for rec in keep}
        pairs = None
        if self.pairs is not None:
            pairs = [
                p
                for p in self.pairs
                if p.video_id_1 in kept
                and p.video_id_2 in kept
                and (split is None or p.split is None or p.split == split)
            ]
        queries = None
        if self.queries is not None:
            queries = [q for q in self.queries if all(v in kept for v in q.candidates)]
        return Dataset(self.name, self.root, keep, pairs, queries, dict(self.meta))


def load(name: str, root: str | Path, split: str | None = None, **options: Any) -> Dataset:
    """Read dataset ``name`` from ``root`` in its official layout.

    Args:
        name: a registered reader (``DATASETS.names()``); KeyError listing them otherwise.
        root: the dataset folder; FileNotFoundError naming it when it does not exist.
        split: keep only this split (``"train"``, ``"val"``, ``"test"``); ValueError listing the
            available ones when the dataset has no such split.
        **options: reader-specific settings, documented in each reader module.
    """
    reader = DATASETS.get(name)
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{name}: dataset root is not a directory: {path}")
    params = inspect.signature(reader).parameters
    unknown = sorted(set(options) - set(list(params)[1:]))
    if unknown:
        accepted = ", ".join(list(params)[1:]) or "none"
        raise TypeError(f"{name}: unknown option(s) {unknown}; accepted: {accepted}")
    dataset = reader(path, **options)
    return dataset if split is None else dataset.filter(split=split)


# Importing the readers registers them; kept last because they import DATASETS from here.
from procalign.data import readers as _readers  # noqa: E402,F401
from procalign.data.readers._common import DatasetWarning  # noqa: E402
