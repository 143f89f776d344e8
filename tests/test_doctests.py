"""Every ``>>>`` example outside procalign.data and procalign.eval (which have their own doctest
files) runs as shown: dp, losses, methods, models, train, viz and the top-level modules."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import procalign

PACKAGES = ("dp", "losses", "methods", "models", "train", "viz")
MODULES = sorted(
    [f"procalign.{p}" for p in PACKAGES]
    + [
        f"procalign.{p}.{m.name}"
        for p in PACKAGES
        for m in pkgutil.iter_modules(importlib.import_module(f"procalign.{p}").__path__)
    ]
    + [
        f"procalign.{m.name}"
        for m in pkgutil.iter_modules(procalign.__path__)
        if not m.ispkg and m.name != "__main__"
    ]
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_the_contract_modules_have_examples() -> None:
    for name in ("procalign.masks", "procalign.config", "procalign.data.featureset",
                 "procalign.eval.report", "procalign.data.views"):
        tests = doctest.DocTestFinder().find(importlib.import_module(name))
        assert any(t.examples for t in tests), f"{name} has no >>> example"
