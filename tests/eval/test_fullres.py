"""Full-resolution baselines: normalisation, smoothing, settings chosen on validation pairs only,
validation splits that look like the test split, and the verdict line."""

from __future__ import annotations

from types import SimpleNamespace as V

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from procalign.data.records import PairRecord
from procalign.eval import fullres as F


def test_prepare_removes_offsets_smooths_and_caps():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    shifted = x + rng.normal(size=(1, 6)) * 10
    assert np.allclose(F.prepare(x, "center", 1), F.prepare(shifted, "center", 1), atol=1e-5)
    z = F.prepare(x * 3 + 1, "standardize", 1)
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-4)
    s = F.prepare(x, None, 5)
    assert s.shape == x.shape and s.std() < x.std()  # a moving average shrinks white noise
    assert np.allclose(s[10], x[8:13].mean(0), atol=1e-5)
    assert F.prepare(rng.normal(size=(1000, 2)), None, 1, max_frames=100).shape == (100, 2)


@pytest.mark.parametrize(
    "args, match",
    [((np.zeros((0, 3)), None, 1), "L >= 1"), ((np.zeros(4), None, 1), r"\(L, D\)"),
     ((np.zeros((4, 2)), "zscore", 1), "norm must be"), ((np.zeros((4, 2)), None, 0), "width")],
)
def test_prepare_bad_input_names_the_problem(args, match):
    with pytest.raises(ValueError, match=match):
        F.prepare(*args)


def test_distances_are_zero_on_identical_videos_and_order_aware():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(20, 4)).astype(np.float32)
    b = a[::-1].copy()
    for kind in ("fullres_dtw", "fullres_soft_dtw"):
        same, rev = F.fullres_distances(kind, [a, a], [a, b])
        assert same == pytest.approx(0.0, abs=1e-4) and rev > same + 0.1
    # the bag of frames cannot see order
    d = F.fullres_distances("fullres_mean", [a], [b])
    assert d[0] == pytest.approx(0.0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown full-resolution baseline"):
        F.fullres_distances("dtw", [a], [a])


def _videos(n_labels=4, per=6, length=30, seed=0, offset=5.0):
    """Procedures = orders of 3 step prototypes, plus a big per-video offset and noise."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(3, 8))
    orders = [(0, 1, 2), (1, 0, 2), (0, 2, 1), (2, 1, 0)][:n_labels]
    feats, vids = {}, []
    for li, order in enumerate(orders):
        for j in range(per):
            steps = np.repeat(np.array(order), length // 3)
            x = protos[steps] + rng.normal(size=(1, 8)) * offset + rng.normal(size=(len(steps), 8))
            vid = f"{li}_{j}_{seed}"
            feats[vid] = x
            vids.append(V(video_id=vid, label=str(li), task="t"))
    return feats, vids


def _prepared(feats, pairs, norm, width):
    """Both sides of ``pairs``, each video prepared as the baselines prepare it."""
    return ([F.prepare(feats[p.video_id_1], norm, width) for p in pairs],
            [F.prepare(feats[p.video_id_2], norm, width) for p in pairs])


def _val_aucs(feats, val, kind, widths, fractions=(None,)):
    """sklearn's AUC of ``kind`` on ``val`` at every (norm, width[, fraction]) setting."""
    same = np.array([p.same for p in val])
    aucs = {}
    for norm in F.NORMS:
        for w in widths:
            xs, ys = _prepared(feats, val, norm, w)
            for frac in fractions:
                d = F.fullres_distances(kind, xs, ys, fraction=frac or 1.0)
                aucs[(norm, w) if frac is None else (norm, w, frac)] = roc_auc_score(same, -d)
    return aucs


def _all_pairs(vids):
    return [PairRecord(a.video_id, b.video_id, a.label == b.label)
            for i, a in enumerate(vids) for b in vids[i + 1:]]


def test_settings_are_chosen_on_validation_pairs_never_on_test_pairs():
    feats, val_v = _videos(seed=0)
    feats_t, test_v = _videos(seed=1)
    feats.update(feats_t)
    val, test = _all_pairs(val_v), _all_pairs(test_v)
    out = F.fullres_baselines(feats.__getitem__, val, test, kinds=["fullres_dtw"], widths=(1, 5))
    chosen = out["chosen"]["fullres_dtw"]
    # the chosen setting is the argmax of the validation AUC (sklearn's), recomputed here
    aucs = _val_aucs(feats, val, "fullres_dtw", (1, 5))
    best = max(aucs.values())
    assert chosen["val_auc"] == pytest.approx(best)
    assert aucs[(chosen["norm"], chosen["width"])] == pytest.approx(best)
    # centring beats the raw offsets here, and the test AUC is reported at the chosen setting
    assert chosen["norm"] in F.NORMS
    auc_row = next(r for r in out["metrics"] if r["metric"] == "auc")
    assert f"{chosen['norm']},w={chosen['width']}" in auc_row["variant"]
    # scrambling the test videos changes the test AUC, never the chosen setting
    scrambled = {k: (np.random.default_rng(3).normal(size=v.shape) if k in feats_t else v)
                 for k, v in feats.items()}
    out2 = F.fullres_baselines(scrambled.__getitem__, val, test, kinds=["fullres_dtw"],
                               widths=(1, 5))
    assert out2["chosen"] == out["chosen"]
    assert next(r for r in out2["metrics"] if r["metric"] == "auc")["value"] != auc_row["value"]


def test_validation_pairs_need_both_classes():
    feats, vids = _videos(n_labels=1)
    with pytest.raises(ValueError, match="both same and different"):
        F.fullres_baselines(feats.__getitem__, _all_pairs(vids), _all_pairs(vids))


def test_validation_split_by_procedure_and_by_video():
    vids = [V(video_id=f"{t}{lab}_{i}", label=f"{t}{lab}", task=t)
            for t in "xy" for lab in range(5) for i in range(4)]
    keep, held = F.validation_split(vids, 0.4, "procedure", seed=2)
    held_labels = {v.label for v in held}
    assert held_labels.isdisjoint({v.label for v in keep})
    for t in "xy":  # every task keeps two procedures or more and gives two
        assert len({v.label for v in keep if v.task == t}) >= 2
        assert len({v.label for v in held if v.task == t}) == 2
    keep, held = F.validation_split(vids, 0.5, "video", seed=2)
    assert {v.label for v in held} == {v.label for v in vids}  # every label, 2 videos each
    assert all(sum(v.label == lab for v in held) == 2 for lab in {v.label for v in vids})
    assert F.validation_split(vids, 0.4, "procedure", 2) == F.validation_split(vids, 0.4,
                                                                               "procedure", 2)
    test_unseen = [V(video_id="z", label="new", task="x")]
    assert F.split_rule(vids, test_unseen) == "procedure"
    assert F.split_rule(vids, vids[:1]) == "video"
    with pytest.raises(ValueError, match="fraction"):
        F.validation_split(vids, 1.0)


def test_verdict_compares_with_the_best_model_free_baseline():
    rows = [
        {"metric": "auc", "variant": "cpa,x", "value": 0.80, "higher_is_better": True,
         "distance": "cpa"},
        {"metric": "auc", "variant": "dtw,x", "value": 0.95, "higher_is_better": True,
         "distance": "dtw"},  # over the model's embeddings: a variant, not a baseline
        {"metric": "auc", "variant": "raw_dtw,x", "value": 0.70, "higher_is_better": True,
         "distance": "raw_dtw"},
        {"metric": "auc", "variant": "fullres_dtw,center,w=5", "value": 0.84,
         "higher_is_better": True, "distance": "fullres_dtw"},
    ]
    v = F.verdict(rows, "cpa")
    assert v["best_baseline"] == "fullres_dtw,center,w=5" and not v["beats"]
    assert v["margin"] == pytest.approx(-0.04) and "does NOT beat" in v["line"]
    rows[0]["value"] = 0.9
    assert F.verdict(rows, "cpa")["beats"]
    assert F.verdict(rows[:1], "cpa") is None


def test_a_dataset_too_small_for_validation_pairs_gets_a_warning_not_a_crash():
    from types import SimpleNamespace as NS

    feats, vids = _videos(n_labels=2, per=2)
    vids = [NS(**{**vars(v), "split": "train"}) for v in vids]
    data = NS(split=lambda name, label=None: [v for v in vids if v.split == name],
              get=lambda i: NS(features=feats[i]))
    cfg = NS(eval=NS(fullres=list(F.FULLRES), val_fraction=0.2, val_pairs=20,
                     fullres_max_frames=None, gamma=0.1),
             data=NS(train_split="train", test_split="test", negatives="any"),
             train=NS(seed=0))
    report = {"metrics": []}
    F.add_baselines(report, data, cfg, _all_pairs(vids), "cpa")
    assert "baselines" not in report
    assert "full-resolution baselines left out" in report["warnings"][0]


def test_window_fraction_is_chosen_on_validation_pairs_with_norm_and_width():
    feats, val_v = _videos(seed=0)
    feats_t, test_v = _videos(seed=1)
    feats.update(feats_t)
    val, test = _all_pairs(val_v), _all_pairs(test_v)
    out = F.fullres_baselines(feats.__getitem__, val, test, kinds=["fullres_dtw_window"],
                              widths=(1, 3), fractions=(0.1, 0.5))
    chosen = out["chosen"]["fullres_dtw_window"]
    aucs = _val_aucs(feats, val, "fullres_dtw_window", (1, 3), (0.1, 0.5))
    assert chosen["val_auc"] == pytest.approx(max(aucs.values()))
    assert aucs[(chosen["norm"], chosen["width"], chosen["fraction"])] == pytest.approx(
        max(aucs.values()))
    auc_row = next(r for r in out["metrics"] if r["metric"] == "auc")
    assert auc_row["variant"] == (f"fullres_dtw_window,{chosen['norm']},w={chosen['width']},"
                                  f"frac={chosen['fraction']:g},chosen_on_val")
    # fraction 1 is the whole-path mean: the window baseline at 1 is fullres_dtw
    xs, ys = _prepared(feats, test, "center", 1)
    np.testing.assert_allclose(F.fullres_distances("fullres_dtw_window", xs, ys, fraction=1.0),
                               F.fullres_distances("fullres_dtw", xs, ys), atol=1e-6)
