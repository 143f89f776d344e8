"""Progress bars: tqdm on a terminal, whole lines (no carriage returns) in logs and pipes."""

from __future__ import annotations

import io
import time

from procalign import _progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_whole_lines_not_carriage_returns(monkeypatch):
    monkeypatch.setattr(_progress, "LOG_INTERVAL_S", 0.0)
    log = io.StringIO()
    for _ in _progress.bar(range(5), desc="train", total=5, file=log, leave=True):
        time.sleep(0.01)
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n"), repr(text)
    lines = text.splitlines()
    assert len(lines) >= 2 and all(line.startswith("train") for line in lines), lines
    assert "5/5" in lines[-1], lines


def test_short_work_writes_nothing_to_a_log():
    log = io.StringIO()
    for _ in _progress.bar(range(1000), desc="eval", file=log, leave=False):
        pass
    assert log.getvalue() == ""


def test_per_step_postfixes_do_not_force_lines_into_a_log():
    """The training loop sets the loss on the bar every step: in a log that must not write a
    line per step."""
    log = io.StringIO()
    b = _progress.bar(range(200), desc="epoch 1/1", file=log, leave=False)
    for i in b:
        b.set_postfix(loss=float(i))
        b.set_description(f"epoch 1/1 step {i}")
    b.close()
    assert log.getvalue() == ""


def test_a_terminal_keeps_tqdm_redraws():
    tty = _Tty()
    for _ in _progress.bar(range(3), desc="eval", file=tty, leave=True, mininterval=0):
        pass
    assert "\r" in tty.getvalue()


def test_disabled_bars_write_nothing():
    log = io.StringIO()
    for _ in _progress.bar(range(3), file=log, disable=True):
        pass
    assert log.getvalue() == ""
