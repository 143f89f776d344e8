"""Shared pieces of the fuzz tests: hypothesis settings, a per-example time limit, counters.

``PROCALIGN_FUZZ_EXAMPLES`` scales every fuzz test (default 60 per entry point, the CI setting);
``PROCALIGN_FUZZ_STATS=path.json`` makes each test add its case count to that file, which is how
docs/reliability.md's table was produced.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("PROCALIGN_FUZZ_EXAMPLES", "60"))
TIME_LIMIT_S = float(os.environ.get("PROCALIGN_FUZZ_TIME_LIMIT", "20"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)

#: readers and CLI verbs are fuzzed one test each (parametrized), each with this share of EXAMPLES
PER_READER = settings(FUZZ, max_examples=max(10, EXAMPLES // 3))

CASES: Counter[str] = Counter()
OUTCOMES: Counter[tuple[str, str]] = Counter()


class Hang(Exception):
    """An entry point ran past the per-example time limit: a fuzz failure."""


@contextlib.contextmanager
def time_limit(what: str, seconds: float = TIME_LIMIT_S):
    """Raise :class:`Hang` in the main thread when the body runs past ``seconds``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum, frame):
        raise Hang(f"{what} ran past {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def record(entry: str, outcome: str) -> None:
    CASES[entry] += 1
    OUTCOMES[(entry, outcome)] += 1


def dump_stats() -> None:
    path = os.environ.get("PROCALIGN_FUZZ_STATS")
    if not path or not CASES:
        return
    p = Path(path)
    old = json.loads(p.read_text()) if p.exists() else {}
    for entry, n in CASES.items():
        row = old.setdefault(entry, {"cases": 0, "outcomes": {}})
        row["cases"] += n
    for (entry, outcome), n in OUTCOMES.items():
        row = old[entry]["outcomes"]
        row[outcome] = row.get(outcome, 0) + n
    p.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    CASES.clear()
    OUTCOMES.clear()
