from __future__ import annotations

import pytest

from tests.fuzz import _guard


@pytest.fixture(scope="module", autouse=True)
def _fuzz_stats():
    yield
    _guard.dump_stats()
