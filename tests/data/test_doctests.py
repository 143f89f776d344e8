"""Every ``>>>`` example in procalign.data (readers included) and the encoders runs as shown."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import procalign.data
import procalign.data.readers

MODULES = sorted(
    ["procalign.data", "procalign.data.readers", "procalign.models.encoders"]
    + [f"procalign.data.{m.name}" for m in pkgutil.iter_modules(procalign.data.__path__)]
    + [
        f"procalign.data.readers.{m.name}"
        for m in pkgutil.iter_modules(procalign.data.readers.__path__)
    ]
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


def test_the_main_modules_have_examples() -> None:
    for name in ("registry", "features", "sampling", "pairs", "video", "synthetic"):
        module = importlib.import_module(f"procalign.data.{name}")
        assert doctest.DocTestFinder().find(module) and any(
            t.examples for t in doctest.DocTestFinder().find(module)
        ), f"procalign.data.{name} has no >>> example"
