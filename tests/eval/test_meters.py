"""Meters: split-and-merge equals the one-shot functional result; state dicts round-trip."""

from __future__ import annotations

import pickle
from datetime import timedelta
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from procalign.eval import (
    KeystepMeter,
    MatchingMeter,
    MeanMeter,
    QualityMeter,
    VerificationMeter,
    aiou,
    all_gather,
    keystep_scores,
    relative_l2,
    spearman_rho,
    text_video_matching,
    verification_auc,
    verification_eer,
    wrong_distance_ratio,
)


def _split(n: int, parts: int) -> list[slice]:
    edges = np.linspace(0, n, parts + 1).astype(int)
    return [slice(a, b) for a, b in pairwise(edges)]


def _roundtrip(meter):
    """Simulate sending the state to another process."""
    fresh = type(meter).__new__(type(meter))
    fresh.__dict__.update(pickle.loads(pickle.dumps(meter.__dict__)))
    fresh.reset()
    return fresh.load_state_dict(pickle.loads(pickle.dumps(meter.state_dict())))


def _verification_data(n: int = 30):
    rng = np.random.default_rng(0)
    same = rng.random(n) < 0.5
    same[:2] = [True, False]
    d = rng.random(n) + np.where(same, 0.0, 0.5)
    steps_1 = [[1, 2, 3]] * n
    steps_2 = [[1, 2, 3] if s else [1, 3] for s in same]
    return d, same, steps_1, steps_2


def test_verification_meter_merge_equals_functional() -> None:
    d, same, s1, s2 = _verification_data()
    meters = []
    for sl in _split(len(d), 3):
        m = VerificationMeter()
        m.update(d[sl], same[sl], s1[sl], s2[sl])
        meters.append(_roundtrip(m))
    merged = meters[0].merge(meters[1]).merge(meters[2])
    got = merged.compute()
    assert got["auc"] == pytest.approx(verification_auc(d, same))
    assert got["eer"] == pytest.approx(verification_eer(d, same))
    assert got["wdr"] == pytest.approx(wrong_distance_ratio(d, same, s1, s2))
    rows = merged.report()
    assert [r["metric"] for r in rows] == ["auc", "eer", "wdr"]
    assert all(r["variant"] for r in rows)
    assert [r["higher_is_better"] for r in rows] == [True, False, True]


def test_verification_meter_drops_wdr_without_steps_and_rejects_nan() -> None:
    d, same, s1, s2 = _verification_data()
    m = VerificationMeter()
    m.update(d[:10], same[:10], s1[:10], s2[:10])
    m.update(d[10:], same[10:])
    assert set(m.compute()) == {"auc", "eer"}
    with pytest.raises(ValueError, match="distances contains NaN"):
        m.update([np.nan], [True])
    with pytest.raises(ValueError, match="both steps_1 and steps_2"):
        m.update([0.1], [True], steps_1=[[1]])


def test_keystep_meter_merges_counts_before_matching() -> None:
    pred = [[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 2, 2], [2, 2, 1, 1, 1, 1], [5, 5, -1], [6, 6, 6]]
    true = [[0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1], [3, 3, -1], [3, 4, 4]]
    tasks = ["a", "a", "a", "b", "b"]
    pred_tasks = ["a", "b", "a", "b", "b"]
    full = keystep_scores(pred, true, tasks, pred_tasks=pred_tasks)
    left, right = KeystepMeter(), KeystepMeter()
    left.update(pred[:2], true[:2], tasks[:2], pred_tasks[:2])
    right.update(pred[2:], true[2:], tasks[2:], pred_tasks[2:])
    merged = _roundtrip(left).merge(_roundtrip(right)).compute()
    for name in ("recall", "precision", "f1", "mof", "iou", "task_accuracy"):
        assert merged[name] == pytest.approx(full[name]), name
    assert merged["per_task"]["a"]["matching"] == full["per_task"]["a"]["matching"]
    with pytest.raises(ValueError, match="different settings"):
        KeystepMeter(background=0).merge(KeystepMeter(background=-1))


def test_quality_meter_merge_equals_functional() -> None:
    rng = np.random.default_rng(1)
    true = rng.uniform(0, 100, 12)
    pred = true + rng.normal(scale=10, size=12)
    starts = rng.integers(0, 20, size=(12, 1))
    pt = np.hstack([starts, starts + rng.integers(5, 30, size=(12, 1))])
    tt = np.hstack([starts + 2, starts + 20])
    a, b = QualityMeter(score_range=(0, 100)), QualityMeter(score_range=(0, 100))
    a.update(pred[:5], true[:5], pt[:5], tt[:5])
    b.update(pred[5:], true[5:], pt[5:], tt[5:])
    got = _roundtrip(a).merge(b).compute()
    assert got["spearman_rho"] == pytest.approx(spearman_rho(pred, true))
    assert got["relative_l2"] == pytest.approx(relative_l2(pred, true, (0, 100)))
    assert got["aiou"] == pytest.approx(aiou(pt, tt))
    names = [r["metric"] for r in a.merge(b).report()]
    assert names == ["spearman_rho", "relative_l2", "aiou@0.5", "aiou@0.75"]
    with pytest.raises(ValueError, match="different settings"):
        QualityMeter().merge(QualityMeter(score_range=(0, 1)))


def test_matching_and_mean_meters() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(size=(9, 5))
    correct = rng.integers(0, 5, 9)
    a, b = MatchingMeter(ks=(1, 3)), MatchingMeter(ks=(1, 3))
    a.update(scores[:4], correct[:4])
    b.update(scores[4:], correct[4:])
    got = _roundtrip(a).merge(b).compute()
    want = text_video_matching(scores, correct, ks=(1, 3))
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    assert got["auc"] == pytest.approx(want["auc"])
    assert got["top_k"] == pytest.approx(want["top_k"])
    with pytest.raises(ValueError, match="3 candidates per query; earlier batches had 5"):
        a.update(scores[:2, :3], [0, 1])
    m, n = MeanMeter("kendalls_tau", "tcc"), MeanMeter("kendalls_tau", "tcc")
    m.update([0.2, 0.4])
    n.update(1.0)
    assert _roundtrip(m).merge(n).compute() == {"kendalls_tau": pytest.approx(1.6 / 3)}
    assert m.report()[0]["variant"] == "tcc"
    with pytest.raises(ValueError, match="no values"):
        MeanMeter("x").compute()
    with pytest.raises(TypeError, match="cannot merge MeanMeter into MatchingMeter"):
        a.merge(m)
    with pytest.raises(ValueError, match="different settings"):
        m.merge(MeanMeter("kendalls_tau", "tau_a"))


def test_all_gather_without_process_group_is_a_copy() -> None:
    m = MeanMeter("x")
    m.update([1.0, 3.0])
    g = all_gather(m)
    assert g is not m and g.compute() == {"x": 2.0}


def _worker(rank: int, world: int, store_path: str) -> float:
    """One rank: its share of the pairs, merged over all ranks; returns the merged AUC."""
    dist.init_process_group(
        "gloo",
        store=dist.FileStore(store_path, world),
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=120),
    )
    try:
        m = VerificationMeter()
        d, same, _, _ = _verification_data()
        part = _split(len(d), world)[rank]
        m.update(d[part], same[part])
        return all_gather(m).compute()["auc"]
    finally:
        dist.destroy_process_group()


def _child(rank: int, world: int, store_path: str, out_path: str) -> None:
    Path(out_path).write_text(repr(_worker(rank, world, store_path)))


def test_all_gather_two_processes(tmp_path) -> None:
    # rank 1 in a spawned process, rank 0 here: one interpreter start instead of three
    out = tmp_path / "rank1.txt"
    child = mp.get_context("spawn").Process(
        target=_child, args=(1, 2, str(tmp_path / "store"), str(out))
    )
    child.start()
    try:
        got0 = _worker(0, 2, str(tmp_path / "store"))
    finally:
        child.join(timeout=120)
    assert child.exitcode == 0
    d, same, _, _ = _verification_data()
    assert got0 == pytest.approx(verification_auc(d, same))
    assert float(out.read_text()) == pytest.approx(got0)
