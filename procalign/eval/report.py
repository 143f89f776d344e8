"""The report schema every evaluation writes, and its plain-text table.

A report is a JSON object with at least ``metrics``: a list of rows, each

    {"metric": str, "variant": str, "value": float, "higher_is_better": bool, ...}

``variant`` names everything a reader needs to compare the number with another (protocol,
distance, clip count, K, ...). Rows may carry more keys (``distance``, ``control``, ``gap``).

>>> r = row("auc", 0.9, "svip_3clips", distance="cpa")
>>> check_report({"metrics": [r]}) is None
True
>>> print(format_table([r]))
metric  variant      value   better
------  -----------  ------  ------
auc     svip_3clips  0.9000  higher
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

ROW_KEYS = ("metric", "variant", "value", "higher_is_better")


def row(metric: str, value: float, variant: str = "", higher: bool = True, **extra: Any) -> dict:
    """One report row (``value`` as a float; NaN allowed, written as null)."""
    return {
        "metric": str(metric),
        "variant": str(variant),
        "value": float(value),
        "higher_is_better": bool(higher),
        **extra,
    }


def check_report(report: Mapping[str, Any]) -> None:
    """Raise ValueError naming the first row that does not follow the schema."""
    rows = report.get("metrics")
    if not isinstance(rows, list):
        raise ValueError("a report needs a 'metrics' list")
    for i, r in enumerate(rows):
        missing = [k for k in ROW_KEYS if k not in r]
        if missing:
            raise ValueError(f"report row {i} lacks {missing}: {r}")
        if not isinstance(r["value"], float) or not isinstance(r["higher_is_better"], bool):
            raise ValueError(f"report row {i} has a non-float value or non-bool direction: {r}")


def strict_json(x: Any) -> Any:
    """``x`` with NaN / inf floats replaced by None, so the report is valid JSON (null)."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: strict_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict_json(v) for v in x]
    return x


def format_table(metrics: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of report rows: metric, variant, value, direction."""
    header = ("metric", "variant", "value", "better")
    body = [
        (
            str(m["metric"]),
            str(m["variant"]),
            f"{m['value']:.4f}" if m["value"] is not None else "nan",
            "higher" if m["higher_is_better"] else "lower",
        )
        for m in metrics
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
