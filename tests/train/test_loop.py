"""Training infrastructure: resumable fit, checkpoints, configs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
import torch

from procalign.config import load_config, parse_overrides
from procalign.train import Checkpointer, JsonlLogger, fit, load_weights, save_weights


def _setup(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.9)
    return model, opt, sched


def _batches(epoch):
    g = torch.Generator().manual_seed(100 + epoch)
    return [(torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)) for _ in range(5)]


def _loss(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean(), {"noise": float(torch.rand(()))}


def test_resumed_run_ends_with_identical_weights(tmp_path):
    m1, o1, s1 = _setup()
    fit(m1, _loss, _batches, o1, 4, tmp_path / "full", scheduler=s1, progress=False, seed=3)
    m2, o2, s2 = _setup()
    r = fit(m2, _loss, _batches, o2, 4, tmp_path / "cut", scheduler=s2, progress=False, seed=3, stop_after_epoch=2)
    assert len(r.history) == 2
    # a fresh process: new objects, resume from disk
    m3, o3, s3 = _setup(seed=99)
    r3 = fit(m3, _loss, _batches, o3, 4, tmp_path / "cut", scheduler=s3, progress=False, seed=3)
    assert r3.resumed_from_epoch == 2 and len(r3.history) == 4
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    events = [e.get("event") for e in JsonlLogger(tmp_path / "cut" / "log.jsonl").read()]
    assert events.count("resume") == 1 and events.count("epoch") == 4


def test_nonfinite_loss_stops_with_clear_error_and_keeps_checkpoint(tmp_path):
    m, o, _ = _setup()
    calls = {"n": 0}

    def loss(model, batch):
        calls["n"] += 1
        value, logs = _loss(model, batch)
        return (value * float("nan") if calls["n"] > 7 else value), logs

    with pytest.raises(FloatingPointError, match="non-finite loss .* epoch 2, step 2"):
        fit(m, loss, _batches, o, 3, tmp_path, progress=False)
    assert Checkpointer(tmp_path).latest().name == "epoch_0001"


def test_weights_roundtrip_and_mismatch(tmp_path):
    m, _, _ = _setup()
    save_weights(m, tmp_path / "w.safetensors", {"method": "test"})
    m2, _, _ = _setup(seed=5)
    load_weights(m2, tmp_path / "w.safetensors")
    for a, b in zip(m.state_dict().values(), m2.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="does not fit the model"):
        load_weights(torch.nn.Linear(3, 3), tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="no weights file"):
        load_weights(m, tmp_path / "nope.safetensors")


@dataclass
class _Optim:
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclass
class _Cfg:
    name: str = "x"
    epochs: int = 2
    flag: bool = False
    k: int | None = None
    optim: _Optim = field(default_factory=_Optim)


def test_config_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\noptim:\n  lr: 0.5\n")
    c = load_config(_Cfg, f, ["optim.betas=[0.8, 0.9]", "flag=true", "k=3"])
    assert c == _Cfg(epochs=7, flag=True, k=3, optim=_Optim(lr=0.5, betas=(0.8, 0.9)))
    assert dataclasses.asdict(load_config(_Cfg))["optim"]["lr"] == 1e-3
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key\(s\) optim.lrr; known under optim.: betas, lr"):
        load_config(_Cfg, overrides=["optim.lrr=1"])
    with pytest.raises(ValueError, match="'epochs' must be an integer"):
        load_config(_Cfg, overrides=["epochs=two"])
    with pytest.raises(ValueError, match="must look like key=value"):
        load_config(_Cfg, overrides=["epochs"])
    with pytest.raises(FileNotFoundError, match="no config file"):
        load_config(_Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping at the top level"):
        load_config(_Cfg, bad)


def test_cli_overrides_may_follow_options():
    from procalign.cli.main import build_parser, main

    parser = build_parser()
    args, extra = parser.parse_known_args(["train", "cpa", "--config", "x.yaml", "a.b=1", "--quiet", "c=2"])
    assert args.config == "x.yaml" and args.quiet
    assert sorted([*args.overrides, *extra]) == ["a.b=1", "c=2"]
    with pytest.raises(SystemExit):
        main(["train", "cpa", "--config", "x.yaml", "--bogus-flag"])


def test_config_accepts_exponent_floats(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 1e-3\n")  # YAML 1.1 reads this as a string
    assert load_config(_Cfg, f).optim.lr == 1e-3
    assert load_config(_Cfg, overrides=["optim.lr=5e-4"]).optim.lr == 5e-4
    with pytest.raises(ValueError, match="'optim.lr' must be a number"):
        load_config(_Cfg, overrides=["optim.lr=fast"])


def _scripted_eval(values):
    def eval_fn(model, epoch):
        return {"val_auc": values[epoch - 1], "other": 0.0}

    return eval_fn


def test_select_keeps_the_best_epoch_and_patience_stops(tmp_path):
    values = [0.5, 0.7, 0.6, 0.65, 0.9, 0.95]
    m, o, s = _setup()
    r = fit(m, _loss, _batches, o, 6, tmp_path / "es", scheduler=s, progress=False,
            eval_fn=_scripted_eval(values), select="val_auc", patience=2)
    assert r.stopped_early and len(r.history) == 4  # epochs 3 and 4 did not beat epoch 2
    assert r.best == {"metric": "val_auc", "value": 0.7, "epoch": 2}
    # the run's weights are epoch 2's, not the last epoch's
    ref, o_ref, s_ref = _setup()  # the same training stopped after 2 epochs
    fit(ref, _loss, _batches, o_ref, 2, tmp_path / "two", scheduler=s_ref, progress=False,
        eval_fn=_scripted_eval(values))
    final, _, _ = _setup()
    load_weights(final, tmp_path / "es" / "model.safetensors")
    for a, b in zip(ref.state_dict().values(), final.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # a rerun of a stopped run trains nothing more
    m2, o2, s2 = _setup(seed=5)
    r2 = fit(m2, _loss, _batches, o2, 6, tmp_path / "es", scheduler=s2, progress=False,
             eval_fn=_scripted_eval(values), select="val_auc", patience=2)
    assert r2.stopped_early and len(r2.history) == 4 and r2.best["epoch"] == 2
    events = [e.get("event") for e in JsonlLogger(tmp_path / "es" / "log.jsonl").read()]
    assert events.count("early_stop") == 1 and events.count("epoch") == 4


def test_select_without_patience_trains_every_epoch_and_resumes_identically(tmp_path):
    values = [0.5, 0.9, 0.6, 0.65]
    m1, o1, s1 = _setup()
    r1 = fit(m1, _loss, _batches, o1, 4, tmp_path / "full", scheduler=s1, progress=False,
             eval_fn=_scripted_eval(values), select="val_auc")
    assert not r1.stopped_early and len(r1.history) == 4 and r1.best["epoch"] == 2
    m2, o2, s2 = _setup()
    fit(m2, _loss, _batches, o2, 4, tmp_path / "cut", scheduler=s2, progress=False,
        eval_fn=_scripted_eval(values), select="val_auc", stop_after_epoch=3)
    m3, o3, s3 = _setup(seed=9)
    r3 = fit(m3, _loss, _batches, o3, 4, tmp_path / "cut", scheduler=s3, progress=False,
             eval_fn=_scripted_eval(values), select="val_auc")
    assert r3.best == r1.best
    for a, b in zip(m1.state_dict().values(), m3.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_select_names_a_missing_metric(tmp_path):
    m, o, s = _setup()
    with pytest.raises(KeyError, match="val_auc"):
        fit(m, _loss, _batches, o, 2, tmp_path / "x", progress=False,
            eval_fn=lambda model, epoch: {"auc": 1.0}, select="val_auc")
