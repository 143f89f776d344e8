"""The method contract, for every registered method: tiny train -> kill -> resume -> identical
weights -> evaluate -> report rows in the shared schema -> verify two feature files.

A method registered without an entry in TINY fails here: every new method is covered the day it
is registered.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from procalign.cli.main import main
from procalign.config import load_config
from procalign.eval.report import ROW_KEYS
from procalign.methods import METHOD_NAMES, load_recipes
from procalign.train.runner import evaluate_run, load_run, train_run
from procalign.train.threads import compute

SYNTH = (
    "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 6, "
    "num_frames: 24, dim: 12, steps_per_procedure: 3, seed: 0}"
)
TINY = {
    "cpa": [
        SYNTH,
        "data.num_frames=8",
        "data.pairs_per_epoch=12",
        "train.batch_size=6",
        "eval.pairs=sampled",
        "eval.num_pairs=16",
        "data.threshold_pairs=16",
        "model.steps=3",
        "model.temporal_args={dim: 8, layers: 1, heads: 2, dropout: 0.0, positions: false}",
        "eval.distances=[cpa,dtw]",
    ],
    "lrprop": [
        SYNTH,
        "data.num_frames=8",
        "model.dim=8",
        "model.layers=1",
        "model.heads=2",
        "eval.max_queries=2",
        "eval.max_candidates=3",
        "eval.fractions=[1.0]",
        "eval.ks=[2]",
    ],
    "weaksvr": [
        SYNTH,
        "data.num_frames=6",
        "data.threshold_pairs=16",
        "model.text_encoder=hashing",
        "model.text_encoder_args={dim: 16}",
        "model.dim=8",
        "model.layers=1",
        "model.heads=2",
        "train.batch_size=4",
        "eval.pairs=sampled",
        "eval.num_pairs=16",
        "eval.matching=sampled",
        "eval.num_queries=4",
        "eval.candidates=2",
        "eval.topk=[1]",
    ],
    "sspl": [
        SYNTH.replace("num_tasks: 1", "num_tasks: 2"),  # its labels are tasks: two for verify
        "data.dataset=synthetic",
        "model.num_states=6",
        "model.hidden=8",
        "teacher.k=3",
        "teacher.kmeans_iter=5",
    ],
}


@pytest.fixture(autouse=True)
def _one_thread():
    with compute(1):
        yield


def _cfg(recipe, *extra: str):
    return load_config(recipe.config_cls, None, [*TINY[recipe.name], *extra])


def _weights(models: dict) -> dict[str, torch.Tensor]:
    return {f"{p}:{k}": v for p, m in models.items() for k, v in m.state_dict().items()}


def test_every_registered_method_has_a_contract_config():
    assert sorted(load_recipes().names()) == sorted(METHOD_NAMES)
    assert sorted(TINY) == sorted(METHOD_NAMES)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_train_kill_resume_evaluate_verify(name, tmp_path, capsys):
    recipe = load_recipes().build(name)
    cfg = _cfg(recipe, "train.epochs=3")
    full = train_run(recipe, cfg, tmp_path / "full", progress=False)
    assert full["finished"] and (tmp_path / "full" / "config.yaml").is_file()
    meta = json.loads((tmp_path / "full" / "meta.json").read_text())
    assert meta["method"] == name and meta["in_dim"] == 12

    # killed after epoch 1 (stop_after_epoch is a run-time key: not part of the run's identity)
    cut = train_run(recipe, _cfg(recipe, "train.epochs=3", "train.stop_after_epoch=1"),
                    tmp_path / "cut", progress=False)
    assert not cut["finished"]
    resumed = train_run(recipe, cfg, tmp_path / "cut", progress=False)
    assert resumed["finished"] and resumed["parts"][0]["resumed_from_epoch"] == 1
    a = _weights(load_run(recipe, tmp_path / "full")[2])
    b = _weights(load_run(recipe, tmp_path / "cut")[2])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    report = evaluate_run(recipe, tmp_path / "full", progress=False)
    assert report["method"] == name and report["metrics"]
    for r in report["metrics"]:
        assert set(ROW_KEYS) <= set(r), r
        assert isinstance(r["value"], float) and isinstance(r["higher_is_better"], bool)
    assert json.loads((tmp_path / "full" / "eval.json").read_text())["method"] == name

    # the same through the CLI, and verify on two feature files
    assert main(["eval", name, "--run", str(tmp_path / "full"), "--out", str(tmp_path / "e.json")]) == 0
    data = recipe.load_data(cfg, None, False)
    test = data.split("test")
    fa, fb = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(fa, np.asarray(test[0].features))
    np.save(fb, np.asarray(test[-1].features))
    out = tmp_path / "v.json"
    assert main(["verify", str(fa), str(fb), "--run", str(tmp_path / "full"), "--json", str(out),
                 "--threshold", "1e9"]) == 0
    v = json.loads(out.read_text())
    assert v["method"] == name and np.isfinite(v["distance"]) and v["same"] is True
    capsys.readouterr()

    # every method stores a threshold with the run, so verify decides without --threshold
    thr = json.loads((tmp_path / "full" / "threshold.json").read_text())
    assert np.isfinite(thr["threshold"]) and 0.0 <= thr["train_auc"] <= 1.0, thr
    assert main(["verify", str(fa), str(fb), "--run", str(tmp_path / "full"), "--json", str(out)]) == 0
    v = json.loads(out.read_text())
    assert v["same"] is (v["distance"] <= thr["threshold"]), (v, thr)
    printed = capsys.readouterr().out
    assert "decision: none" not in printed
    unit = "task" if name == "sspl" else "procedure"  # SSPL's labels and distance are of tasks
    assert f"SAME {unit}" in printed or f"DIFFERENT {unit}s" in printed, printed
