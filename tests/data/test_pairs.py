"""Pair and batch sampling: definitions of positives/negatives, determinism, DataLoader use."""

from __future__ import annotations


import numpy as np
import pytest

from procalign.data.pairs import (
    PairSampler,
    resolve_pairs,
)
from procalign.data.records import PairRecord, VideoRecord


def make_records() -> list[VideoRecord]:
    """Task 1: procedures 1.1, 1.2, 1.3; task 2: 2.1, 2.2; task 3: 3.1 (alone); 4 videos each."""
    labels = ["1.1", "1.2", "1.3", "2.1", "2.2", "3.1"]
    return [
        VideoRecord(f"{lab}_{i}", label=lab, task=lab.split(".")[0])
        for lab in labels
        for i in range(4)
    ]


def as_tuples(pairs):
    return [(p.video_id_1, p.video_id_2, p.same) for p in pairs]


def test_positive_and_same_task_negative_definitions():
    recs = make_records()
    by_id = {r.video_id: r for r in recs}
    pairs = PairSampler(recs, negatives="prefer_same_task", seed=0).sample(400)
    for p in pairs:
        a, b = by_id[p.video_id_1], by_id[p.video_id_2]
        assert p.same == (a.label == b.label) and p.label_1 == a.label and p.label_2 == b.label
        assert a.video_id != b.video_id
        if not p.same and a.task != "3":
            assert a.task == b.task  # hard negative: same task, other procedure
    share = np.mean([p.same for p in pairs])
    assert 0.4 < share < 0.6


def test_strict_same_task_skips_lonely_tasks_and_any_mode_crosses_tasks():
    recs = make_records()
    per_video = PairSampler(recs, negatives="same_task", seed=1).per_video(positives=1, negatives=1)
    lonely = [p for p in per_video if p.video_id_1.startswith("3.1") and not p.same]
    assert lonely == []  # task 3 has a single procedure: no same-task negative exists
    any_pairs = PairSampler(recs, negatives="any", seed=1).sample(300, positive_fraction=0.0)
    tasks = {(p.label_1.split(".")[0] != p.label_2.split(".")[0]) for p in any_pairs}
    assert tasks == {True, False}
    assert all(not p.same for p in any_pairs)


def test_per_video_has_no_repeated_pair():
    pairs = PairSampler(make_records(), seed=0).per_video(positives=3, negatives=3)
    keys = [frozenset((p.video_id_1, p.video_id_2)) for p in pairs]
    assert len(keys) == len(set(keys))


def test_deterministic_given_seed():
    recs = make_records()
    a = as_tuples(PairSampler(recs, seed=5).sample(50))
    b = as_tuples(PairSampler(recs, seed=5).sample(50))
    c = as_tuples(PairSampler(recs, seed=6).sample(50))
    assert a == b and a != c
    assert as_tuples(PairSampler(recs, seed=2).per_video()) == as_tuples(
        PairSampler(recs, seed=2).per_video()
    )


def test_sampler_errors():
    with pytest.raises(ValueError, match=">= 2 labelled"):
        PairSampler([VideoRecord("a", label="x")])
    with pytest.raises(ValueError, match="task=None"):
        PairSampler(
            [VideoRecord("a", label="x"), VideoRecord("b", label="y")], negatives="same_task"
        )
    with pytest.raises(ValueError, match="negatives must be"):
        PairSampler(make_records(), negatives="hard")
    singles = [VideoRecord(f"v{i}", label=str(i), task="t") for i in range(3)]
    with pytest.raises(ValueError, match="two videos"):
        PairSampler(singles, seed=0).sample(10, positive_fraction=1.0)


def test_resolve_official_pairs():
    recs = make_records()
    pairs = [PairRecord("1.1_0", "1.1_1", True), PairRecord("2.2_3", "1.3_0", False)]
    assert resolve_pairs(pairs, recs) == [(0, 1, True), (19, 8, False)]
    with pytest.raises(ValueError, match=r"not among the 24 records.*ghost"):
        resolve_pairs([PairRecord("1.1_0", "ghost", False)], recs)
