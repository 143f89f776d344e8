"""Every shipped config (configs/<method>_*.yaml) loads into its method's dataclass and passes
the method's validation: a typo in a documented config fails here, not in a user's run."""

from __future__ import annotations

from pathlib import Path

import pytest

from procalign.config import load_config
from procalign.methods import METHOD_NAMES, load_recipes

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))


def test_every_config_belongs_to_a_method():
    assert CONFIGS
    for path in CONFIGS:
        assert path.name.split("_")[0] in METHOD_NAMES, path.name


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads_and_validates(path, monkeypatch):
    monkeypatch.setenv("PROCALIGN_DATA", "/nonexistent")  # ${PROCALIGN_DATA} expands; not read
    recipe = load_recipes().build(path.name.split("_")[0])
    cfg = load_config(recipe.config_cls, str(path), [])
    recipe.validate(cfg)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_overriding_one_key_keeps_the_recipes_own_section_defaults(name):
    """``train.epochs=5`` alone must not reset a recipe's other train / optim defaults to the
    shared section classes' generic ones (it did: WeakSVR's batch 32 became 16)."""
    import dataclasses

    recipe = load_recipes().build(name)
    base = load_config(recipe.config_cls, None, [])
    for section, key, value in (("train", "epochs", 5), ("optim", "lr", 0.123)):
        cfg = load_config(recipe.config_cls, None, [f"{section}.{key}={value}"])
        got, want = getattr(cfg, section), dataclasses.replace(getattr(base, section), **{key: value})
        assert got == want, (section, got, want)


def test_picking_another_module_drops_the_default_modules_settings():
    """CPA's default ``temporal_args`` (a transformer's layers / heads) must not follow the
    config to another temporal module (they did: ``temporal: conv`` failed on ``heads``), while
    a partial ``temporal_args`` for the default module still keeps its other defaults."""
    from procalign.methods.cpa import CPAConfig, build_model

    recipe = load_recipes().build("cpa")
    cfg = load_config(CPAConfig, None, ["model.temporal=conv", "model.temporal_args={dim: 32}"])
    assert cfg.model.temporal_args == {"dim": 32}
    recipe.validate(cfg)
    assert type(build_model(cfg, in_dim=8, num_classes=3).temporal).__name__ == "TemporalConv"
    default = load_config(CPAConfig, None, []).model.temporal_args
    cfg = load_config(CPAConfig, None, ["model.temporal_args.layers=3"])
    assert cfg.model.temporal_args == {**default, "layers": 3}
