"""Every ``>>>`` example in procalign.eval (and the eval CLI) runs and gives what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import procalign.eval

MODULES = sorted(
    [f"procalign.eval.{m.name}" for m in pkgutil.iter_modules(procalign.eval.__path__)]
    + ["procalign.eval"]
)


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


# ``Meter`` is the abstract base; ``all_gather`` needs a process group (tested in test_meters).
NO_EXAMPLE = {"Meter", "all_gather"}


def test_every_public_callable_has_an_example() -> None:
    missing = [
        name
        for name in procalign.eval.__all__
        if callable(getattr(procalign.eval, name))
        and name not in NO_EXAMPLE
        and ">>>" not in (getattr(procalign.eval, name).__doc__ or "")
    ]
    assert missing == [], f"public callables without a >>> example: {missing}"
