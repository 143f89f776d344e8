"""``procalign demo`` (the main job) end to end on its quick setting."""

from __future__ import annotations

import json

from procalign.cli.main import main


def test_demo_quick_writes_report_table_and_plots(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--quick"]) == 0
    text = (out / "report.md").read_text()
    assert "| method / distance | AUC | EER | WDR |" in text
    for row in (
        "CPA: step mining",
        "FSA only: uniform steps",
        "video-level: task loss only",
        "CPA embeddings + DTW",
        "input features + DTW",
    ):
        assert row in text, row
    assert "![positive](positive_pair.png)" in text and "![negative](negative_pair.png)" in text
    for name in ("positive_pair.png", "negative_pair.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    report = json.loads((out / "report.json").read_text())
    assert {"cpa", "fsa_only", "video", "mined_steps"} <= set(report)
    assert (out / "runs" / "cpa" / "threshold.json").is_file()
    # WeakSVR on the same videos and test pairs
    assert "## WeakSVR on the same data" in text and "matching_accuracy" in text
    weak = {r["metric"]: r["value"] for r in report["weaksvr"]["metrics"]}
    assert 0.0 <= weak["auc"] <= 1.0 and "matching_auc" in weak
    assert (out / "runs" / "weaksvr" / "threshold.json").is_file()
    printed = capsys.readouterr().out
    # the printed AUC is WeakSVR's own, not the last baseline row of its report
    own = next(r["value"] for r in report["weaksvr"]["metrics"]
               if r["metric"] == "auc" and r["distance"] == "weaksvr")
    assert f"weaksvr: AUC[weaksvr] {own:.3f}," in printed
    assert "procalign verify" in printed and f"HTML report (open it in a browser): {out / 'report.html'}" in printed
    assert (out / "report.html").read_text().count("<img") >= 4
