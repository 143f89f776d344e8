"""Every table in docs/results.md is the rendering of its raw rows in benchmarks/results/*.json
(benchmarks/tables.py); a hand-edited or stale table fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("tables", ROOT / "benchmarks" / "tables.py")
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)
BLOCKS = tables.blocks((ROOT / "docs" / "results.md").read_text())


def test_results_has_generated_tables():
    assert set(BLOCKS) >= {"cpa_sv", "cpa_ksweep", "cpa_quality", "lrprop_penn", "lrprop_synthetic"}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_table_matches_its_json(name):
    assert BLOCKS[name] == tables.render(name), (
        f"docs/results.md table {name!r} differs from benchmarks/results; run "
        "`python benchmarks/tables.py --write` after the benchmark"
    )


def test_a_table_that_was_edited_by_hand_is_caught(tmp_path):
    doc = tmp_path / "results.md"
    name = sorted(BLOCKS)[0]
    doc.write_text(f"<!-- table: {name} -->\n| edited |\n<!-- /table -->\n")
    assert tables.blocks(doc.read_text())[name] != tables.render(name)
    tables.write(doc)
    assert tables.blocks(doc.read_text())[name] == tables.render(name)
