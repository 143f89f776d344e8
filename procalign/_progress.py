"""Progress bars that suit where stderr goes.

On a terminal: tqdm as usual. Into a log file or a pipe (a batch job, ``... 2> log``), tqdm's
carriage-return redraws would pile up on one ever longer line; there the bar writes one plain
line at most every :data:`LOG_INTERVAL_S` seconds (and its last state), so a log stays readable.
"""

from __future__ import annotations

import sys
from typing import Any

#: seconds between two progress lines when stderr is not a terminal
LOG_INTERVAL_S = 30.0


class _Lines:
    """A file-like stream that turns tqdm's ``\\r`` redraws into whole lines."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def _log_bar_class():
    from tqdm.auto import tqdm

    class LogBar(tqdm):
        """Redraws only on the interval: a new postfix / description (set every step by the
        training loop) waits for the next line instead of forcing one."""

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            super().set_postfix(ordered_dict, refresh=False, **kwargs)

        def set_postfix_str(self, s="", refresh=True):
            super().set_postfix_str(s, refresh=False)

        def set_description(self, desc=None, refresh=True):
            super().set_description(desc, refresh=False)

        def set_description_str(self, desc=None, refresh=True):
            super().set_description_str(desc, refresh=False)

    return LogBar


def bar(iterable: Any = None, **kwargs: Any):
    """``tqdm(iterable, **kwargs)`` on a terminal; line-per-interval output elsewhere."""
    from tqdm.auto import tqdm

    stream = kwargs.pop("file", None) or sys.stderr
    if not _is_tty(stream) and not kwargs.get("disable"):
        kwargs.update(file=_Lines(stream), mininterval=LOG_INTERVAL_S, dynamic_ncols=False,
                      ncols=100)
        kwargs.setdefault("maxinterval", LOG_INTERVAL_S)
        kwargs.setdefault("delay", LOG_INTERVAL_S)  # work shorter than that writes nothing
        return _log_bar_class()(iterable, **kwargs)
    kwargs["file"] = stream
    return tqdm(iterable, **kwargs)
