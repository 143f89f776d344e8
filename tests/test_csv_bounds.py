"""benchmarks/csv_bounds.py: the ideal-encoder features and CPA's lattice over padded batches."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from procalign.data.synthetic import from_svip, write_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
spec = importlib.util.spec_from_file_location("csv_bounds", ROOT / "benchmarks" / "csv_bounds.py")
csv_bounds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(csv_bounds)

SCRIPTS = {
    "1.1": ["take the tube", "shake the tube", "pour the flask", "close the lid"],
    "1.2": ["take the tube", "pour the flask", "close the lid", "stir"],
    "1.3": ["shake the tube", "take the tube", "pour the flask", "close the lid"],
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("svip") / "CSV"
    root.mkdir()
    (root / "label_bank.json").write_text(json.dumps(SCRIPTS))
    (root / "train_split.txt").write_text("a.mp4 1.1\nb.mp4 1.2\n")
    test = [(f"{label.replace('.', '')}{i}", label) for label in SCRIPTS for i in range(3)]
    (root / "test_split.txt").write_text("".join(f"{n}.mp4 {lab}\n" for n, lab in test))
    pairs = [f"{la}/{a} {la} {lb}/{b} {lb}\n" for i, (a, la) in enumerate(test)
             for b, lb in test[i + 1:]]
    (root / "test_pairs.txt").write_text("".join(pairs))
    return write_folder(from_svip(root, num_frames=20, dim=12, seed=3), root.parent / "sim")


def test_features_are_the_folder_the_clean_signal_and_the_true_steps(folder):
    feats, pairs, same, scripts = csv_bounds.features_by_input(folder)
    assert len(pairs) == 36 and same.sum() == 9  # 3 same-label pairs per label
    vid = pairs[0].video_id_1
    raw = np.load(folder / "features" / f"{vid}.npy")
    x = feats["noisy"][vid]
    assert x.shape == raw.shape and np.allclose(x.mean(0), 0, atol=1e-5)
    assert np.allclose(x.std(0), 1, atol=1e-4)
    labels = (folder / "labels" / f"{vid}.txt").read_text().split("\n")
    onehot = feats["onehot"][vid]
    assert (onehot.sum(1) == 1).all() and len(onehot) == len(raw)
    steps_only = feats["onehot_steps"][vid]
    assert len(steps_only) == sum(s != "background" for s in labels if s)
    keep = np.array([s != "background" for s in labels if s])
    # the background-free noisy / clean inputs are the standardised whole videos' step frames
    assert np.array_equal(feats["noisy_steps"][vid], x[keep])
    assert np.array_equal(feats["clean_steps"][vid], feats["clean"][vid][keep])
    # frames showing the same step share a column, background and steps never do
    names = [s for s in labels if s]
    for i in range(len(names)):
        for j in range(len(names)):
            assert (onehot[i] == onehot[j]).all() == (names[i] == names[j])
    assert scripts[vid] == tuple(SCRIPTS[vid.split("/")[0]])
    # the clean signal is not the noisy one, and it has no per-frame noise inside a step
    assert not np.allclose(feats["clean"][vid], x)


def test_lattice_distances_over_padded_batches_are_each_pairs_own(folder):
    from procalign.models.cpa import CPAModel

    feats, pairs, _, _ = csv_bounds.features_by_input(folder)
    f = feats["clean"]
    got = csv_bounds.cpa_lattice_distances(f, pairs, K=3, scale=2.0, frames=None, batch=7)
    model = CPAModel(12, steps=3, temporal="mlp", eval_step_features="center").eval()
    for k in (0, 5, 35):  # one pair at a time, unpadded
        p = pairs[k]
        a = torch.from_numpy(f[p.video_id_1])[None].float() * 2.0
        b = torch.from_numpy(f[p.video_id_2])[None].float() * 2.0
        want = float(model.pair(a, b, K=3)["distance"][0])
        assert got[k] == pytest.approx(want, rel=1e-4, abs=1e-5)
    clipped = csv_bounds.cpa_lattice_distances(f, pairs[:4], K=3, scale=1.0, frames=8)
    assert clipped.shape == (4,) and np.isfinite(clipped).all()


def test_bounds_scores_every_input_and_the_scripts(folder, monkeypatch):
    monkeypatch.setattr(csv_bounds, "KS", (3,))
    monkeypatch.setattr(csv_bounds, "SCALES", (1.0, 4.0))
    res = csv_bounds.bounds(folder, train_frames=10)
    assert res["scripts_auc"] == 1.0  # no two labels share a script
    for kind in csv_bounds.INPUTS:
        row = res[kind]
        assert set(row["cpa_grid"]) == {f"T={t},K=3,scale={s:g}" for t in (10, "full")
                                        for s in (1.0, 4.0)}
        assert row["cpa_best"] == max(row["cpa_grid"].values())
        assert 0.0 <= row["dtw"] <= 1.0 and len(row["dtw_window"]) == 3
    # with the true steps, a same-label pair costs DTW nothing beyond background mismatch:
    # the one-hot inputs separate the pairs at least as well as the noisy ones
    assert res["onehot"]["dtw"] >= res["noisy"]["dtw"]
    # without background frames, same-script pairs cost DTW nothing: every pair is separated
    assert res["onehot_steps"]["dtw"] == 1.0 and res["onehot_steps"]["cpa_grid"]
    # the variants' K (15-25) exceed these 10-frame clips: none scored, none invented
    assert res["onehot_steps"]["variants"] == {} and res["clean"]["variants"] == {}


def test_a_folder_that_is_not_csv_scripted_is_refused(tmp_path):
    from procalign.data.synthetic import SynthConfig, make_dataset

    out = write_folder(make_dataset(SynthConfig(num_tasks=1, procedures_per_task=2,
                                                videos_per_procedure=2, num_frames=16, dim=8)),
                       tmp_path / "gen")
    with pytest.raises(ValueError, match="not a CSV-scripted folder"):
        csv_bounds.features_by_input(out)


def test_bounds_reuse_finished_cells_and_skip_infeasible_k(folder, monkeypatch):
    monkeypatch.setattr(csv_bounds, "KS", (3, 500))  # 500 steps exceed every clip: skipped
    monkeypatch.setattr(csv_bounds, "SCALES", (1.0,))
    done = {"noisy": {"cpa_grid": {"T=10,K=3,scale=1": 0.123}}}
    res = csv_bounds.bounds(folder, train_frames=10, done=done)
    assert res["noisy"]["cpa_grid"]["T=10,K=3,scale=1"] == 0.123  # reused, not recomputed
    assert set(res["noisy"]["cpa_grid"]) == {"T=10,K=3,scale=1", "T=full,K=3,scale=1"}
    assert res["clean"]["cpa_grid"]["T=10,K=3,scale=1"] != 0.123


def test_variants_change_one_lattice_setting_and_reuse_the_default_cells(folder, monkeypatch):
    from procalign.models.cpa import CPAModel

    monkeypatch.setattr(csv_bounds, "KS", (3,))
    monkeypatch.setattr(csv_bounds, "SCALES", (1.0,))
    monkeypatch.setattr(csv_bounds, "VARIANT_KS", (3, 500))  # 500: infeasible, skipped
    monkeypatch.setattr(csv_bounds, "VARIANT_SCALES", (1.0, 2.0))
    res = csv_bounds.bounds(folder, train_frames=10)
    assert "variants" not in res["noisy"] and "variants" not in res["onehot"]
    for kind in csv_bounds.VARIANT_INPUTS:
        v = res[kind]["variants"]
        assert set(v) == {csv_bounds.DEFAULT, *csv_bounds.VARIANTS} and len(v) >= 6
        for row in v.values():
            assert set(row["grid"]) == {"T=10,K=3,scale=1", "T=10,K=3,scale=2"}
            assert row["best"] == max(row["grid"].values())
        # the default's cell is the main grid's
        assert v[csv_bounds.DEFAULT]["grid"]["T=10,K=3,scale=1"] == \
            res[kind]["cpa_grid"]["T=10,K=3,scale=1"]
    # every variant is a CPAModel option that changes the distance on some pair
    feats, pairs, _, _ = csv_bounds.features_by_input(folder)
    f = feats["clean"]
    base = csv_bounds.cpa_lattice_distances(f, pairs, K=3, scale=2.0, frames=10)
    for name, settings in csv_bounds.VARIANTS.items():
        CPAModel(12, steps=3, temporal="mlp", **{**csv_bounds.LATTICE, **settings})
        d = csv_bounds.cpa_lattice_distances(f, pairs, K=3, scale=2.0, frames=10, **settings)
        assert d.shape == base.shape and np.isfinite(d).all()
        assert not np.allclose(d, base), name
    with pytest.raises(ValueError, match="unknown lattice settings"):
        csv_bounds.cpa_lattice_distances(f, pairs, K=3, scale=1.0, frames=10, blocks="mean")
