"""Settings chosen from the data (``auto``): frames per clip from the video lengths, K from the
``steps`` column, recorded in the run's config, refused where the data has no evidence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from procalign.cli.main import main
from procalign.methods import auto

TINY = [
    "data.synthetic={num_tasks: 2, procedures_per_task: 3, videos_per_procedure: 8, "
    "num_frames: 24, dim: 16, steps_per_task: 6, steps_per_procedure: 4, seed: 0}",
    "data.pairs_per_epoch=16", "train.batch_size=8", "eval.pairs=sampled",
    "eval.num_pairs=24", "data.threshold_pairs=24", "eval.steps_sweep=[]",
    "model.temporal_args={dim: 16, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "train.epochs=1",
]


def test_frames_per_clip_is_the_10th_percentile_clipped():
    lengths = list(range(20, 120))
    t, why = auto.frames_per_clip(lengths, lo=8, hi=64)
    assert t == int(np.percentile(lengths, 10)) and "10th percentile" in why
    assert auto.frames_per_clip([3, 4, 5], lo=8)[0] == 8
    assert auto.frames_per_clip([500, 600], hi=64)[0] == 64
    with pytest.raises(ValueError, match="no training videos"):
        auto.frames_per_clip([])


def test_steps_per_video_is_the_median_script_length():
    assert auto.steps_per_video([("a",) * 3, ("a",) * 5, ("a",) * 9])[0] == 5
    assert auto.steps_per_video([None, ()])[0] is None


def test_cpa_auto_settings_are_chosen_from_the_data_and_recorded(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "cpa", *TINY, "data.num_frames=auto", "model.steps=auto",
                 "--out", str(run), "--quiet"]) == 0
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    summary = json.loads((run / "summary.json").read_text())
    T, K = cfg["data"]["num_frames"], cfg["model"]["steps"]
    assert isinstance(T, int) and isinstance(K, int)
    # generator: 24 +- 25 % frames, 4 steps per script
    assert 18 <= T <= 24 and K == 4
    assert summary["auto"]["data.num_frames"]["value"] == T
    assert "steps" in summary["auto"]["model.steps"]["why"]
    # the rerun (same "auto" config) resumes the run instead of refusing it
    assert main(["train", "cpa", *TINY, "data.num_frames=auto", "model.steps=auto",
                 "--out", str(run), "--quiet"]) == 0
    assert main(["eval", "cpa", "--run", str(run), "--quiet"]) == 0


def test_auto_steps_without_a_steps_column_is_refused_by_name(tmp_path):
    from procalign.data.featureset import FeatureSet
    from procalign.methods import load_recipes
    from procalign.methods.cpa import CPAConfig

    recipe = load_recipes().build("cpa")
    cfg = CPAConfig()
    cfg.model.steps = "auto"
    videos = [type("V", (), {"steps": None, "features": np.zeros((30, 4)), "split": "train"})()
              for _ in range(3)]
    data = type("D", (), {"split": lambda self, name: videos})()
    with pytest.raises(ValueError, match=r"model\.steps=auto .* give model\.steps=K"):
        recipe.resolve(cfg, data)
    del FeatureSet


@pytest.mark.parametrize("bad", ["atuo", 0, 2.5])
def test_a_value_that_is_neither_an_int_nor_auto_is_refused(tmp_path, capsys, bad):
    rc = main(["train", "cpa", *TINY, f"data.num_frames={bad}", "--out", str(tmp_path / "r"),
               "--quiet"])
    assert rc != 0 and "data.num_frames" in capsys.readouterr().err
    assert not (tmp_path / "r" / "config.yaml").exists()


def test_tune_on_val_chooses_eval_frames_and_steps_on_validation_pairs(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "cpa", *TINY, "data.num_frames=12", "model.steps=3",
                 "train.val_fraction=0.3", "eval.val_pairs=24", "eval.tune_on_val=true",
                 "--out", str(run), "--quiet"]) == 0
    meta = json.loads((run / "meta.json").read_text())
    setting = meta["eval_setting"]
    grid = setting["grid"]
    # every candidate was scored; the chosen one is the best validation AUC
    # T: 16, 32, the trained 12 and the validation videos' median length; K: 1, 1.5, 2, 3 x 3
    frames = {int(t.split(",")[0][2:]) for t in grid}
    assert {12, 16, 32} < frames and len(frames) == 4
    (median,) = frames - {12, 16, 32}
    from procalign.methods import load_recipes as _lr
    from procalign.train.runner import load_run as _load

    _cfg, _, _ = _load(_lr().build("cpa"), run)
    val = _lr().build("cpa").load_data(_cfg, None, False).split("val")
    assert median == int(np.median([len(v.features) for v in val]))
    assert set(grid) == {f"T={t},K={k}" for t in frames for k in (3, 4, 6, 9) if k <= t}
    assert setting["val_auc"] == max(grid.values())
    assert grid[f"T={setting['num_frames']},K={setting['steps']}"] == setting["val_auc"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["eval_setting"]["num_frames"] == setting["num_frames"]
    assert main(["eval", "cpa", "--run", str(run), "--quiet", "eval.fullres=[]"]) == 0
    report = json.loads((run / "eval.json").read_text())
    cpa_rows = [r for r in report["metrics"] if r["distance"] == "cpa"]
    assert cpa_rows and all(f"T={setting['num_frames']}" in r["variant"]
                            and f"K={setting['steps']}" in r["variant"] for r in cpa_rows)
    # verify uses the same setting
    from procalign.methods import load_recipes
    from procalign.train.runner import load_run

    recipe = load_recipes().build("cpa")
    cfg, info, models = load_run(recipe, run)
    x = np.random.default_rng(0).normal(size=(30, 16)).astype(np.float32)
    r = recipe.verify(cfg, models, info, x, x[::-1].copy(), None)
    assert (r["T"], r["K"]) == (setting["num_frames"], setting["steps"])


def test_sspl_folder_config_takes_k_from_steps_and_tasks_from_the_task_column(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["synth", str(data), "--tasks", "2", "--procedures", "2",
                 "--videos-per-procedure", "4", "--frames", "24", "--dim", "8",
                 "--steps-per-procedure", "4", "--quiet"]) == 0
    config = Path(__file__).resolve().parents[2] / "configs" / "sspl_folder.yaml"
    assert main(["train", "sspl", "--config", str(config), f"data.root={data}",
                 "model.num_states=8", "model.hidden=8", "train.epochs=1",
                 "teacher.kmeans_iter=5", "--out", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["auto"]["teacher.k"]["value"] == 4
    meta = json.loads((run / "meta.json").read_text())
    assert sorted(meta["classes"]) == ["1", "2"]  # the folder's tasks, not its 4 procedures


@pytest.mark.parametrize("bad", ["eval.tune_frames=[16,longest]", "eval.tune_frames=[]",
                                 "eval.tune_steps=[1.0,-2]", "eval.tune_steps=[]"])
def test_a_bad_evaluation_grid_is_refused_before_training(tmp_path, capsys, bad):
    rc = main(["train", "cpa", *TINY, "eval.tune_on_val=true", "train.val_fraction=0.3", bad,
               "--out", str(tmp_path / "r"), "--quiet"])
    key = bad.split("=")[0]
    assert rc != 0 and key in capsys.readouterr().err
    assert not (tmp_path / "r" / "config.yaml").exists()
