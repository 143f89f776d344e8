"""Evaluation protocols: pair choice, controls that catch a frame-index shortcut, EER threshold."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.metrics import roc_curve

from procalign.data.records import PairRecord
from procalign.eval import protocols as P


def _videos(n: int = 4, T: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        phases = np.sort(rng.integers(0, 4, size=T))
        x = np.eye(4)[phases] + 0.05 * rng.normal(size=(T, 4))
        out.append(SimpleNamespace(video_id=f"v{i}", label="a", task="t", features=x,
                                   phases=phases))
    return out


def test_controls_keep_shapes_static_repeats_one_frame_shuffled_permutes():
    xs = [v.features for v in _videos()]
    static = P.control_inputs(xs, "static")
    shuffled = P.control_inputs(xs, "shuffled")
    for x, s, h in zip(xs, static, shuffled):
        assert s.shape == x.shape and np.all(s == s[0]) and np.array_equal(s[0], x[len(x) // 2])
        assert h.shape == x.shape and np.allclose(np.sort(h, 0), np.sort(x, 0))
    with pytest.raises(ValueError, match="control must be one of"):
        P.control_inputs(xs, "reversed")


def test_a_frame_index_reader_has_no_gap_to_static_input_and_a_content_model_has_one():
    test = _videos(4, seed=1)
    train = _videos(4, seed=2)
    position = lambda xs: [np.arange(len(x), dtype=float)[:, None] * np.ones((1, 2)) for x in xs]  # noqa: E731
    content = lambda xs: [np.asarray(x) for x in xs]  # noqa: E731
    res = P.frame_alignment(["a"], {"a": test}, {"a": train}, {"a": position},
                            {"a": 4}, normalize=False, ks=(), classifiers=())["a"]
    assert res["kendalls_tau[tau_a]"] > 0.9  # counting frames aligns perfectly...
    assert abs(res["kendalls_tau[tau_a]@gap_static"]) < 1e-9  # ...with or without the frames
    res = P.frame_alignment(["a"], {"a": test}, {"a": train}, {"a": content},
                            {"a": 4}, normalize=False, ks=(), classifiers=())["a"]
    assert res["kendalls_tau[tau_a]@gap_static"] > 0.3


def test_evaluation_pairs_use_the_dataset_list_unless_asked_and_say_so():
    videos = [SimpleNamespace(video_id=f"v{i}", label="ab"[i % 2], task="t") for i in range(8)]
    own = [PairRecord("v0", "v2", True), PairRecord("v0", "v1", False)]
    pairs, source, notes = P.evaluation_pairs(videos, own)
    assert pairs == own and "own list (2 pairs)" in source
    assert any("only 2 evaluation pairs" in n for n in notes)
    pairs, source, notes = P.evaluation_pairs(videos, own, "sampled", 20)
    assert len(pairs) == 20 and "sampled" in source
    assert any("ignores the dataset's own list of 2 pairs" in n for n in notes)
    with pytest.raises(ValueError, match="eval.pairs=dataset"):
        P.evaluation_pairs(videos, [], "dataset")
    with pytest.raises(ValueError, match="auto, dataset or sampled"):
        P.evaluation_pairs(videos, own, "all")


def test_eer_threshold_is_where_false_accepts_meet_false_rejects():
    rng = np.random.default_rng(0)
    same = rng.random(400) < 0.5
    d = rng.normal(size=400) + 1.5 * ~same
    thr = P.eer_threshold(d, same)
    far = np.mean(d[~same] <= thr)
    frr = np.mean(d[same] > thr)
    fpr, tpr, _ = roc_curve(same, -d)
    best = np.min(np.abs(fpr - (1 - tpr)))
    assert abs(far - frr) <= best + 1.0 / same.sum() + 1e-9


def test_centre_clip_and_threshold_record():
    from sklearn.metrics import roc_auc_score

    assert P.centre_clip([0.25, 0.5, 0.75]) == 1 and P.centre_clip([0.1, 0.9, 0.45]) == 2
    rng = np.random.default_rng(3)
    same = np.arange(40) % 2 == 0
    d = rng.normal(size=40) + np.where(same, 0.0, 1.0)
    rec = P.threshold_record(d, same, "cpa", 3)
    assert rec["train_auc"] == pytest.approx(roc_auc_score(same, -d))
    assert rec["threshold"] == P.eer_threshold(d, same) and "40 training pairs (20 positive)" in rec["chosen_on"]
    assert rec["positive_mean"] < rec["negative_mean"]
