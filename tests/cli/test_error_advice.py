"""Errors say what is wrong and give advice that works (found by a new-user review)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.train.runner import RunConflict
from procalign.train.threads import compute
from tests.methods.test_contract import TINY

# the contract test's tiny CPA run, without its extra distance
TINY_CPA = [o for o in TINY["cpa"] if not o.startswith("eval.distances")]


def test_a_text_file_named_npy_is_called_what_it_is(tmp_path, capsys):
    good = tmp_path / "a.npy"
    np.save(good, np.zeros((6, 3)))
    text = tmp_path / "b.npy"
    text.write_text("0.1 0.2 0.3\n0.4 0.5 0.6\n")
    empty = tmp_path / "c.npy"
    empty.write_bytes(b"")
    objects = tmp_path / "d.npy"
    np.save(objects, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    for bad, why in ((text, "not a NumPy .npy file"), (empty, "empty (0 bytes)"),
                     (objects, "holds Python objects")):
        assert main(["align", str(good), str(bad)]) == 2
        err = capsys.readouterr().err
        assert why in err and "allow_pickle" not in err, err


def test_feature_files_of_a_dataset_name_the_problem(tmp_path):
    from procalign.data.features import load_features

    f = tmp_path / "v.npy"
    f.write_text("hello")
    with pytest.raises(ValueError, match="not a NumPy .npy file") as info:
        load_features(f)
    assert "allow_pickle" not in str(info.value)


def test_train_into_a_run_of_another_method_names_it(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "meta.json").write_text(json.dumps({"method": "cpa", "in_dim": 12}))
    (run / "config.yaml").write_text("data:\n  num_frames: 8\nmodel:\n  steps: 3\n")
    assert main(["train", "lrprop", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert "is a 'cpa' run, not 'lrprop'" in err and "unknown config key" not in err, err
    assert f"procalign train cpa --out {run}" in err


def test_an_index_without_rows_says_so(tmp_path, capsys):
    root = tmp_path / "mydata"
    root.mkdir()
    (root / "index.csv").write_text("video_id,label,split\n")
    code = main(["train", "cpa", "--out", str(tmp_path / "run"), "data.dataset=folder",
                 f"data.root={root}"])
    err = capsys.readouterr().err
    assert code == 2 and "index.csv lists no videos" in err, err


def test_demo_refuses_a_changed_run_with_demo_advice(tmp_path):
    from procalign.cli.demo import _train
    from procalign.config import load_config
    from procalign.methods import load_recipes

    recipe = load_recipes().build("cpa")
    cfg = lambda epochs: load_config(recipe.config_cls, None, [*TINY_CPA, f"train.epochs={epochs}"])  # noqa: E731
    args = argparse.Namespace(no_resume=False)
    with compute(1):
        _train(recipe, cfg(1), tmp_path / "run", args, None)
        with pytest.raises(RunConflict) as info:
            _train(recipe, cfg(2), tmp_path / "run", args, None)
    msg = str(info.value)
    assert "train.epochs" in msg and "--no-resume" in msg and "--config" not in msg, msg
