"""The run-folder contract: a run is written only by the run that owns it.

One test per situation a user met (reliability issue): reruns with other settings are refused
with one line naming the keys and leave the run as it was; --extend really trains the extra
epochs; a rerun without --config resumes the run as it is.
"""

from __future__ import annotations

import json

import pytest
import torch

from procalign.cli.main import main
from procalign.config import load_config
from procalign.methods import load_recipes
from procalign.train.runner import RunConflict, evaluate_run, load_run, train_run
from procalign.train.threads import compute
from tests.methods.test_contract import TINY as CONTRACT_TINY

# the contract test's tiny CPA config, scored with the CPA distance only, 2 epochs
TINY = [*CONTRACT_TINY["cpa"][:-1], "eval.distances=[cpa]", "train.epochs=2"]
RECIPE = load_recipes().build("cpa")


@pytest.fixture(autouse=True)
def _one_thread():
    with compute(1):
        yield


@pytest.fixture
def finished(tmp_path):
    run = tmp_path / "run"
    train_run(RECIPE, load_config(RECIPE.config_cls, None, TINY), run, progress=False)
    return run


def _files(run):
    return {n: (run / n).read_bytes() for n in ("config.yaml", "meta.json", "threshold.json",
                                                 "model.safetensors")}


def _weights(run):
    return load_run(RECIPE, run)[2][""].state_dict()


def test_rerun_with_a_changed_setting_is_refused_and_leaves_the_run_alone(finished, capsys):
    before = _files(finished)
    code = main(["train", "cpa", *TINY, "model.steps=2", "optim.lr=5e-4", "--out", str(finished),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "model.steps: 3 -> 2" in err and "optim.lr: 0.001 -> 0.0005" in err
    assert "--out NEW" in err
    assert _files(finished) == before
    # a changed model width: same one-line refusal, and the run still evaluates
    assert main(["train", "cpa", *TINY, "model.temporal_args.dim=16", "--out", str(finished)]) == 2
    assert "model.temporal_args.dim: 8 -> 16" in capsys.readouterr().err
    assert _files(finished) == before
    assert evaluate_run(RECIPE, finished, progress=False)["metrics"]


def test_rerun_without_config_resumes_the_run_as_it_is(finished, capsys):
    before = _files(finished)
    assert main(["train", "cpa", "--out", str(finished), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parts"][0]["status"] == "already trained"
    assert _files(finished)["config.yaml"] == before["config.yaml"]
    assert _files(finished)["model.safetensors"] == before["model.safetensors"]


def test_more_epochs_needs_extend_and_then_really_trains(finished, tmp_path, capsys):
    more = [*TINY, "train.epochs=3"]
    assert main(["train", "cpa", *more, "--out", str(finished), "--quiet"]) == 2
    assert "train.epochs: 2 -> 3" in capsys.readouterr().err
    two = {k: v.clone() for k, v in _weights(finished).items()}
    assert main(["train", "cpa", *more, "--out", str(finished), "--extend", "--quiet"]) == 0
    three = _weights(finished)
    moved = max(float((three[k] - two[k]).abs().max()) for k in two)
    assert moved > 1e-4  # the rebuilt schedule has a non-zero learning rate for epoch 3
    saved = load_config(RECIPE.config_cls, finished / "config.yaml")
    assert saved.train.epochs == 3  # config.yaml describes the weights
    log = [json.loads(x) for x in (finished / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r.get("event") == "epoch"] == [1, 2, 3]


def test_a_run_of_another_method_or_on_other_data_is_refused(finished):
    lrprop = load_recipes().build("lrprop")
    with pytest.raises(RunConflict, match="is a 'cpa' run, not 'lrprop'"):
        train_run(lrprop, load_config(lrprop.config_cls, None, []), finished, progress=False)
    other = load_config(RECIPE.config_cls, None, [*TINY[1:], TINY[0].replace("dim: 12", "dim: 10")])
    with pytest.raises(RunConflict, match="other settings"):
        train_run(RECIPE, other, finished, progress=False)
    # --no-resume is the explicit way to start the folder over, on other data too
    train_run(RECIPE, other, finished, resume=False, progress=False)
    meta = json.loads((finished / "meta.json").read_text())
    assert meta["in_dim"] == 10
    assert [r["epoch"] for r in map(json.loads, (finished / "log.jsonl").read_text().splitlines())
            if r.get("event") == "epoch"] == [1, 2]  # the old run's log went with it


def test_no_resume_starts_over(finished):
    summary = train_run(RECIPE, load_config(RECIPE.config_cls, None, TINY), finished,
                        resume=False, progress=False)
    assert summary["parts"][0]["resumed_from_epoch"] == 0 and summary["finished"]


def test_kill_at_every_epoch_then_resume_is_bit_identical(tmp_path):
    cfg = load_config(RECIPE.config_cls, None, [*TINY, "train.epochs=3"])
    train_run(RECIPE, cfg, tmp_path / "ref", progress=False)
    ref = _weights(tmp_path / "ref")
    for stop in (1, 2):
        run = tmp_path / f"cut{stop}"
        cut = load_config(RECIPE.config_cls, None, [*TINY, "train.epochs=3",
                                                     f"train.stop_after_epoch={stop}"])
        train_run(RECIPE, cut, run, progress=False)
        train_run(RECIPE, cfg, run, progress=False)
        got = _weights(run)
        assert all(torch.equal(ref[k], got[k]) for k in ref), stop


def test_device_and_threads_are_one_policy_for_every_method(tmp_path):
    from procalign.train.threads import resolve_device

    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="not a torch device"):
        resolve_device("tpu:x")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            train_run(RECIPE, load_config(RECIPE.config_cls, None, [*TINY, "train.device=cuda"]),
                      tmp_path / "gpu", progress=False)
        assert not (tmp_path / "gpu").exists()
    for name in ("cpa", "lrprop"):
        cfg = load_config(load_recipes().build(name).config_cls, None, [])
        assert cfg.train.threads == 1 and cfg.train.device == "cpu"  # same keys, same defaults
    before = torch.get_num_threads()
    with compute(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_thread_policy_resolves_in_one_place():
    from procalign.train.threads import AUTO, resolve_threads, usable_cores

    assert resolve_threads(None) is None and resolve_threads(3) == 3
    assert 1 <= resolve_threads(AUTO) <= usable_cores()
    assert 1 <= resolve_threads("AUTO ") <= usable_cores()
    for bad in (0, -1, True, 1.5, "two"):
        with pytest.raises(ValueError, match="threads"):
            resolve_threads(bad)
    before = torch.get_num_threads()
    with compute(AUTO):
        assert 1 <= torch.get_num_threads() <= usable_cores()
    assert torch.get_num_threads() == before


def test_every_recipe_takes_the_same_threads_key():
    from procalign.config import validate_shared

    for name in ("cpa", "lrprop", "sspl", "weaksvr"):
        recipe = load_recipes().build(name)
        cfg = load_config(recipe.config_cls, None, ["train.threads=auto"])
        assert cfg.train.threads == "auto"
        validate_shared(cfg.optim, cfg.train)
        bad = load_config(recipe.config_cls, None, ["train.threads=two"])
        with pytest.raises(ValueError, match="train.threads"):
            validate_shared(bad.optim, bad.train)
    # the shipped configs leave the key to the one default
    from pathlib import Path

    for path in Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"):
        assert "threads:" not in path.read_text(), path


@pytest.mark.parametrize("name", ["adamw", "adam", "rmsprop"])
def test_the_multi_tensor_optimizer_is_bit_for_bit_the_loop(name):
    from types import SimpleNamespace

    from procalign.train.runner import _optimizer

    torch.manual_seed(0)
    ref = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    new = torch.nn.Sequential(torch.nn.Linear(7, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    new.load_state_dict(ref.state_dict())
    cfg = SimpleNamespace(name=name, lr=1e-2, weight_decay=1e-3)
    cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}[name]
    loop = cls(ref.parameters(), lr=1e-2, weight_decay=1e-3, foreach=False)
    multi = _optimizer(new, cfg)
    x = torch.randn(11, 7)
    for _ in range(4):
        for model, opt in ((ref, loop), (new, multi)):
            opt.zero_grad()
            model(x).square().sum().backward()
            opt.step()
    for a, b in zip(ref.parameters(), new.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_setting_the_model_refuses_leaves_no_run_folder_behind(tmp_path):
    """The model is built before config.yaml is written: a typo in a model setting must not
    leave a run folder that refuses the corrected command as 'other settings'."""
    TINY = CONTRACT_TINY
    recipe = load_recipes().build("cpa")
    run = tmp_path / "run"
    with compute(1), pytest.raises(KeyError, match="unknown temporal encoder 'foo'"):
        train_run(recipe, load_config(recipe.config_cls, None,
                                      [*TINY["cpa"], "model.temporal=foo"]), run, progress=False)
    assert not (run / "config.yaml").exists() and not (run / "meta.json").exists()
    with compute(1):  # the corrected command trains in the same folder
        train_run(recipe, load_config(recipe.config_cls, None, TINY["cpa"]), run, progress=False)
    assert (run / "config.yaml").is_file()


@pytest.mark.parametrize("name", ["lrprop", "cpa"])
def test_frames_per_clip_above_every_video_is_warned_about(name, tmp_path, capsys):
    """data.num_frames=40 on videos of 20-30 frames runs (clips repeat frames) but says so, on
    stderr and in summary.json; a fitting value says nothing."""
    recipe = load_recipes().build(name)
    over = [*CONTRACT_TINY[name], "train.epochs=1"]
    with compute(1):
        s = train_run(recipe, load_config(recipe.config_cls, None, [*over, "data.num_frames=40"]),
                      tmp_path / "long", progress=False)
    err = capsys.readouterr().err
    import re

    assert re.search(r"data\.num_frames=40 is more than the longest training video \(\d+ frames\)",
                     err), err
    assert "data.num_frames=auto" in err
    assert s["warnings"] == json.loads((tmp_path / "long" / "summary.json").read_text())["warnings"]
    with compute(1):
        s = train_run(recipe, load_config(recipe.config_cls, None, over), tmp_path / "fit",
                      progress=False)
    assert "warning" not in capsys.readouterr().err and "warnings" not in s
