"""Shared fixtures.

Real-data tests use the ``real_data`` fixture. It reads the folder named by ``PROCALIGN_DATA``
(the Makefile and ``.ci/run`` set it to ``../shared/data``). If the variable is set but the folder
is missing, the test fails: CI must never pass silently without the data. If the variable is not
set at all (a user's fresh clone without the shared data), the test is reported as skipped with a
reason naming the variable, so the absence is stated, never hidden.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def real_data() -> Path:
    value = os.environ.get("PROCALIGN_DATA")
    if not value:
        pytest.skip("real data absent: PROCALIGN_DATA is not set (point it at ../shared/data)")
    root = Path(value)
    if not root.is_dir():
        pytest.fail(f"PROCALIGN_DATA={value!r} is set but is not a directory")
    return root


@pytest.fixture(autouse=True)
def _seed() -> None:
    np.random.seed(0)
    torch.manual_seed(0)
