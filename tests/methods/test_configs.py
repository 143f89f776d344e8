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
