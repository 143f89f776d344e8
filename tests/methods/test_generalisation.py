"""Generalisation machinery of the methods: a validation split that keeps the best epoch,
full-resolution baselines and the verdict in every CPA report, per-clip input normalisation,
the nuisance generator, and LRProp's class-agnostic mode on test labels unseen in training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from procalign.cli.main import main
from procalign.config import load_config
from procalign.data.featureset import DataConfig, load_featureset
from procalign.data.synthetic import PRESETS, SynthConfig, make_dataset
from procalign.eval.fullres import FULLRES
from procalign.methods import cpa
from procalign.models.cpa import CPAModel

TINY = [
    "data.synthetic={num_tasks: 2, procedures_per_task: 4, videos_per_procedure: 6, "
    "num_frames: 24, dim: 16, steps_per_task: 6, steps_per_procedure: 4, seed: 0}",
    "data.num_frames=8", "data.pairs_per_epoch=16", "train.batch_size=8", "eval.pairs=sampled",
    "eval.num_pairs=24", "data.threshold_pairs=24", "model.steps=4", "eval.steps_sweep=[]",
    "model.temporal_args={dim: 16, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "eval.val_pairs=24",
]


def test_validation_split_selects_the_best_epoch_and_reports_baselines(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "cpa", *TINY, "train.epochs=4", "train.val_fraction=0.3", "train.patience=2",
            "--out", str(run), "--quiet"]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    part = summary["parts"][0]
    assert part["selected"]["metric"] == "val_auc" and 1 <= part["selected"]["epoch"] <= 4
    history = json.loads((run / "history.json").read_text())
    assert all("eval/val_auc" in h for h in history)
    best = max(h["eval/val_auc"] for h in history)
    assert part["selected"]["value"] == pytest.approx(best)
    assert "held out as 'val'" in summary["data"]
    # the validation videos are held out of the training split (here by video: the test
    # procedures are seen in training), the same ones every time the run's data is loaded
    data = RECIPE_DATA(run)
    val = {v.video_id for v in data.split("val")}
    assert len(val) >= 2 and val.isdisjoint({v.video_id for v in data.split("train")})
    assert val == {v.video_id for v in RECIPE_DATA(run).split("val")}
    capsys.readouterr()
    assert main(["eval", "cpa", "--run", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    report = json.loads((run / "eval.json").read_text())
    kinds = {r["distance"] for r in report["metrics"]}
    assert set(FULLRES) <= kinds
    assert set(report["baselines"]["chosen"]) == set(FULLRES)
    v = report["verdict"]
    assert v["method"] == "cpa" and v["best_baseline"].split(",")[0].startswith(("fullres", "raw"))
    assert f"verdict: {v['line']}" in err


def RECIPE_DATA(run):
    from procalign.methods import load_recipes
    from procalign.train.runner import load_run

    recipe = load_recipes().build("cpa")
    cfg, _, _ = load_run(recipe, run)
    return recipe.load_data(cfg, None, False)


def test_baselines_can_be_left_out_and_bad_names_are_named():
    cfg = load_config(cpa.CPAConfig, None, [*TINY, "eval.fullres=[]"])
    cpa.CPARecipe().validate(cfg)
    with pytest.raises(ValueError, match="eval.fullres entries"):
        cpa.CPARecipe().validate(load_config(cpa.CPAConfig, None, [*TINY, "eval.fullres=[dtw]"]))
    with pytest.raises(ValueError, match="model.input_norm"):
        cpa.CPARecipe().validate(load_config(cpa.CPAConfig, None, [*TINY, "model.input_norm=x"]))
    with pytest.raises(ValueError, match="train.val_fraction"):
        cpa.CPARecipe().validate(load_config(cpa.CPAConfig, None, [*TINY, "train.val_fraction=1"]))


@pytest.mark.parametrize("norm", ["center", "standardize"])
def test_input_norm_makes_the_embedding_blind_to_a_per_video_offset(norm):
    torch.manual_seed(0)
    m = CPAModel(6, steps=2, input_norm=norm,
                 temporal_args={"dim": 8, "layers": 1, "heads": 2, "dropout": 0.0}).eval()
    x = torch.randn(2, 10, 6)
    shifted = x + torch.randn(2, 1, 6) * 5
    with torch.no_grad():
        a, b = m.embed(x), m.embed(shifted)
    assert torch.allclose(a, b, atol=1e-4)
    m0 = CPAModel(6, steps=2, temporal_args={"dim": 8, "layers": 1, "heads": 2, "dropout": 0.0})
    with torch.no_grad():
        assert not torch.allclose(m0.eval().embed(x), m0.embed(shifted), atol=1e-2)
    # padded frames do not move the statistics of the valid ones
    lengths = torch.tensor([10, 6])
    with torch.no_grad():
        full = m.embed(x[1:, :6])
        padded = m.embed(torch.cat([x[1:, :6], torch.randn(1, 4, 6) * 100], 1), lengths[1:])
    assert torch.allclose(full, padded[:, :6], atol=1e-4)


def test_nuisance_preset_has_unseen_test_procedures_and_shared_steps():
    ds = make_dataset(SynthConfig(**{**PRESETS["nuisance"], "videos_per_procedure": 4}))
    train = {v.record.label for v in ds.videos if v.record.split == "train"}
    test = {v.record.label for v in ds.videos if v.record.split == "test"}
    assert test and train.isdisjoint(test)
    tasks_of = {}
    for v in ds.videos:
        for s in v.record.steps:
            tasks_of.setdefault(s, set()).add(v.record.task)
    assert any(s.startswith("shared-step") and len(t) > 1 for s, t in tasks_of.items())
    for v in ds.videos:  # the time warp keeps every step and the order of the script
        seen = [p for i, p in enumerate(v.phases) if p >= 0 and (i == 0 or v.phases[i - 1] != p)]
        assert seen == list(range(len(v.record.steps)))
    fs = load_featureset(DataConfig(synthetic={"preset": "nuisance", "videos_per_procedure": 4,
                                               "seed": 2}))
    assert "seed 2" in fs.description
    with pytest.raises(ValueError, match="unknown synthetic preset"):
        load_featureset(DataConfig(synthetic={"preset": "easy"}))
    with pytest.raises(ValueError, match="shared_steps"):
        SynthConfig(shared_steps=6, steps_per_task=6)


def test_distractor_lives_in_one_shared_subspace():
    base = dict(num_tasks=1, procedures_per_task=2, videos_per_procedure=3, dim=16, noise=0.0,
                video_nuisance=0.0, mixing=0.0, drift=0.0, seed=4)
    clean = make_dataset(SynthConfig(**base))
    noisy = make_dataset(SynthConfig(**base, distractor=2.0, distractor_rank=3))
    diff = np.concatenate([n.features - c.features for n, c in zip(noisy.videos, clean.videos)])
    s = np.linalg.svd(diff, compute_uv=False)
    assert s[2] > 1.0 and s[3] < 1e-3 * s[0]  # rank 3, shared by every video


def test_lrprop_class_agnostic_evaluates_labels_unseen_in_training(tmp_path, capsys):
    run = tmp_path / "lr"
    data = ("data.synthetic={num_tasks: 1, procedures_per_task: 4, videos_per_procedure: 4, "
            "num_frames: 20, dim: 8, split_by: procedure, test_fraction: 0.5, seed: 0}")
    args = ["train", "lrprop", data, "model.class_agnostic=true", "data.num_frames=8",
            "model.dim=16", "model.layers=1", "model.heads=2", "train.epochs=1",
            "train.batch_size=2", "--out", str(run), "--quiet"]
    assert main(args) == 0
    assert (run / "model.safetensors").is_file() and not (run / "classes").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert set(meta["eval_classes"]).isdisjoint(meta["train_classes"])
    capsys.readouterr()
    assert main(["eval", "lrprop", "--run", str(run), "--quiet"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["classes"] == sorted(meta["eval_classes"])
    taus = [r for r in report["metrics"] if r["metric"] == "kendalls_tau" and r["model"] == "lrprop"]
    assert taus and all(np.isfinite(r["value"]) for r in taus)
    assert any("class_agnostic_model" in r["variant"] for r in report["metrics"])


def test_lrprop_validation_split_selects_the_best_epoch_on_held_out_labels(tmp_path):
    """``train.val_fraction`` with a class-agnostic LRProp: whole training labels are held out
    (the test labels are unseen), every epoch is scored by DTW-alignment accuracy on their
    pairs, and the run keeps the best epoch's weights."""
    from procalign.methods import lrprop
    from procalign.train.runner import load_run, train_run

    recipe = lrprop.LRPropRecipe()
    cfg = load_config(lrprop.LRPropConfig, None, [
        "data.synthetic={num_tasks: 1, procedures_per_task: 8, videos_per_procedure: 4, "
        "num_frames: 20, dim: 8, split_by: procedure, test_fraction: 0.25, seed: 0}",
        "model.class_agnostic=true", "data.num_frames=8", "model.dim=16", "model.layers=1",
        "model.heads=2", "model.local=3", "model.input_norm=standardize", "train.epochs=3",
        "train.batch_size=2", "train.val_fraction=0.34", "train.threads=1",
        "loss.use_same=false", "loss.use_sdtw=false"])
    data = recipe.load_data(cfg, None, False)
    val, train = data.split("val"), data.split("train")
    assert len(val) >= 2 and {v.label for v in val}.isdisjoint({v.label for v in train})
    train_run(recipe, cfg, tmp_path, progress=False)
    history = json.loads((tmp_path / "history.json").read_text())
    scores = [h["eval/val_dtw_alignment_accuracy"] for h in history
              if "eval/val_dtw_alignment_accuracy" in h]
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    summary = json.loads((tmp_path / "summary.json").read_text())
    selected = summary["parts"][0]["selected"]
    assert selected["metric"] == "val_dtw_alignment_accuracy"
    assert selected["value"] == pytest.approx(max(scores))
    # the kept weights are the selected epoch's: validation recomputed on them matches
    cfg2, info, models = load_run(recipe, tmp_path)
    again = recipe._validation(cfg2, recipe.load_data(cfg2, None, False))(models[""], 0)
    assert again["val_dtw_alignment_accuracy"] == pytest.approx(max(scores), abs=1e-6)
    with pytest.raises(ValueError, match="train.val_fraction.*class_agnostic"):
        recipe.validate(load_config(lrprop.LRPropConfig, None, ["train.val_fraction=0.2"]))


def test_weaksvr_reports_the_same_baselines_on_its_own_pairs_and_a_verdict(tmp_path, capsys):
    from tests.methods.test_contract import TINY as CONTRACT

    run = tmp_path / "w"
    assert main(["train", "weaksvr", *CONTRACT["weaksvr"], "train.epochs=1",
                 "eval.val_pairs=24", "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "weaksvr", "--run", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err
    report = json.loads((run / "eval.json").read_text())
    rows = [r for r in report["metrics"] if r["metric"] == "auc"]
    kinds = {r["distance"] for r in rows}
    assert {"weaksvr", *FULLRES} <= kinds
    assert set(report["baselines"]["chosen"]) == set(FULLRES)
    assert "never on the test pairs" in report["baselines"]["validation"]
    v = report["verdict"]
    assert v["method"] == "weaksvr" and v["line"] in err
    best = max((r for r in rows if r["distance"].startswith(("fullres_", "raw_"))),
               key=lambda r: r["value"])
    weak = next(r for r in rows if r["distance"] == "weaksvr")
    assert v["margin"] == pytest.approx(weak["value"] - best["value"])
    # and they can be left out, a bad name is refused with the key
    assert main(["eval", "weaksvr", "--run", str(run), "--quiet", "eval.fullres=[]"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert not any(r["distance"].startswith("fullres_") for r in report["metrics"])
    assert main(["eval", "weaksvr", "--run", str(run), "--quiet", "eval.fullres=[dtw]"]) != 0
    assert "eval.fullres" in capsys.readouterr().err


def test_weaksvr_validation_split_selects_the_best_epoch(tmp_path):
    """train.val_fraction for WeakSVR: validation AUC of the video embedding on pairs of
    held-out training videos every epoch, the best epoch's weights kept (recomputed on the
    loaded run, it matches)."""
    from procalign.methods import load_recipes
    from procalign.train.runner import load_run
    from tests.methods.test_contract import TINY as CONTRACT

    run = tmp_path / "w"
    assert main(["train", "weaksvr", *CONTRACT["weaksvr"], "train.epochs=3",
                 "train.val_fraction=0.3", "eval.val_pairs=24", "--out", str(run), "--quiet"]) == 0
    history = json.loads((run / "history.json").read_text())
    scores = [h["eval/val_auc"] for h in history if "eval/val_auc" in h]
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    selected = json.loads((run / "summary.json").read_text())["parts"][0]["selected"]
    assert selected["metric"] == "val_auc" and selected["value"] == pytest.approx(max(scores))
    recipe = load_recipes().build("weaksvr")
    cfg, info, models = load_run(recipe, run)
    data = recipe.load_data(cfg, run, False)
    assert data.split("val") and {v.video_id for v in data.split("val")}.isdisjoint(
        {v.video_id for v in data.split("train")})
    spec = recipe.trainer(cfg, data, info, "", models[""])
    assert spec.select == "val_auc"
    assert spec.eval_fn(models[""], 0)["val_auc"] == pytest.approx(max(scores), abs=1e-6)


def test_sspl_validation_split_selects_the_epoch_of_the_best_key_step_f1(tmp_path):
    """train.val_fraction for multi-task procedure learning: the held-out training videos'
    key-steps (of their true task) scored by frame F1 every epoch, the best epoch's weights
    (teacher centres included) kept: recomputed on the loaded run, the score matches."""
    from procalign.methods import load_recipes
    from procalign.train.runner import load_run
    from tests.methods.test_contract import TINY as CONTRACT

    run = tmp_path / "s"
    assert main(["train", "sspl", *CONTRACT["sspl"], "train.epochs=4", "train.val_fraction=0.3",
                 "--out", str(run), "--quiet"]) == 0
    history = json.loads((run / "history.json").read_text())
    scores = [h["eval/val_f1"] for h in history if "eval/val_f1" in h]
    assert len(scores) == 4 and all(0 <= s <= 1 for s in scores)
    assert all(0 <= h["eval/val_task_acc"] <= 1 for h in history)
    part = json.loads((run / "summary.json").read_text())["parts"][0]
    assert part["selected"]["metric"] == "val_f1"
    assert part["selected"]["value"] == pytest.approx(max(scores))
    recipe = load_recipes().build("sspl")
    cfg, info, models = load_run(recipe, run)
    data = recipe.load_data(cfg, run, False)
    val = {v.video_id for v in data.split("val")}
    assert part["val_videos"] == len(val) >= 2
    assert val.isdisjoint({v.video_id for v in data.split("train")})
    spec = recipe.trainer(cfg, data, info, "", models[""])
    assert spec.select == "val_f1"
    assert spec.eval_fn(models[""], 0)["val_f1"] == pytest.approx(max(scores), abs=1e-9)
