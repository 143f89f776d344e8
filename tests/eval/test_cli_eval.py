"""``procalign eval``: every family reads its documented file, prints a table, writes JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.eval import (
    average_precision_at_k,
    keystep_scores,
    mean_kendalls_tau,
    text_video_matching,
    verification_auc,
    wrong_distance_ratio,
)


def _run(argv: list[str], tmp_path: Path, capsys) -> tuple[dict, str]:
    out = tmp_path / "report.json"
    code = main(["eval", *argv, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["metrics"], "empty report"
    for row in report["metrics"]:
        assert set(row) == {"metric", "variant", "value", "higher_is_better"}
        assert row["variant"] and row["metric"] in printed and row["variant"] in printed
    return report, printed


def _values(report: dict) -> dict[str, float]:
    return {r["metric"]: r["value"] for r in report["metrics"]}


def test_verification_csv(tmp_path: Path, capsys) -> None:
    rows = [
        ("0.1", "1", "1 2 3", "1 2 3"),
        ("0.9", "0", "1 2 3", "1 3 2"),
        ("0.4", "true", "4 5", "4 5"),
        ("0.3", "false", "4 5", "4 6 7"),
    ]
    path = tmp_path / "pairs.csv"
    path.write_text("distance,same,steps_1,steps_2\n" + "\n".join(",".join(r) for r in rows))
    report, printed = _run(["verification", "--pairs", str(path)], tmp_path, capsys)
    assert report["family"] == "verification" and report["inputs"]["num_pairs"] == 4
    values = _values(report)
    d, same = [0.1, 0.9, 0.4, 0.3], [1, 0, 1, 0]
    assert values["auc"] == pytest.approx(verification_auc(d, same))
    steps = [r[2].split() for r in rows], [r[3].split() for r in rows]
    assert values["wdr"] == pytest.approx(wrong_distance_ratio(d, same, *steps))
    assert "auc" in printed.splitlines()[2]


def test_verification_without_steps_and_bad_input(tmp_path: Path, capsys) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("distance,same\n0.1,1\n0.5,0\n")
    report, _ = _run(["verification", "--pairs", str(path)], tmp_path, capsys)
    assert set(_values(report)) == {"auc", "eer"}
    for bad, line in (("0.2,1\nnan,1\n0.5,0\n", 3), ("inf,1\n0.5,0\n", 2)):
        path.write_text("distance,same\n" + bad)
        assert main(["eval", "verification", "--pairs", str(path)]) == 2
        assert f"line {line}: column distance" in capsys.readouterr().err
    path.write_bytes(b"distance,same\n\xff\xfe,1\n")
    assert main(["eval", "verification", "--pairs", str(path)]) == 2
    assert f"{path}: not a readable UTF-8 CSV" in capsys.readouterr().err
    path.write_text("dist,same\n0.1,1\n")
    assert main(["eval", "verification", "--pairs", str(path)]) == 2
    assert "missing column(s) distance" in capsys.readouterr().err
    path.write_text("distance,same\n0.1,maybe\n")
    assert main(["eval", "verification", "--pairs", str(path)]) == 2
    assert "line 2: column same" in capsys.readouterr().err


def test_verification_step_names_and_label_bank(tmp_path: Path, capsys) -> None:
    bank = {"1.1": ["take up the clamp", "screw it"], "1.2": ["screw it", "take up the clamp"]}
    d, same = [0.2, 0.6, 0.3, 0.9], [1, 0, 1, 0]
    labels = [("1.1", "1.1"), ("1.1", "1.2"), ("1.2", "1.2"), ("1.2", "1.1")]
    want = wrong_distance_ratio(d, same, [bank[a] for a, _ in labels], [bank[b] for _, b in labels])
    piped = tmp_path / "piped.csv"
    piped.write_text(
        "distance,same,steps_1,steps_2\n"
        + "\n".join(
            f"{x},{y},{'|'.join(bank[a])},{'|'.join(bank[b])}"
            for x, y, (a, b) in zip(d, same, labels)
        )
    )
    report, _ = _run(["verification", "--pairs", str(piped)], tmp_path, capsys)
    assert _values(report)["wdr"] == pytest.approx(want)
    by_label = tmp_path / "labels.csv"
    by_label.write_text(
        "distance,same,label_1,label_2\n"
        + "\n".join(f"{x},{y},{a},{b}" for x, y, (a, b) in zip(d, same, labels))
    )
    (tmp_path / "bank.json").write_text(json.dumps(bank))
    argv = ["verification", "--pairs", str(by_label), "--label-bank", str(tmp_path / "bank.json")]
    report, _ = _run(argv, tmp_path, capsys)
    assert _values(report)["wdr"] == pytest.approx(want)
    (tmp_path / "bank.json").write_text(json.dumps({"1.1": bank["1.1"]}))
    assert main(["eval", *argv]) == 2
    assert "no step list for label(s) ['1.2']" in capsys.readouterr().err
    for text, message in (("{", "not a valid JSON label bank"), ('{"1.1": "a b"}', "'1.1' maps")):
        (tmp_path / "bank.json").write_text(text)
        assert main(["eval", *argv]) == 2
        assert message in capsys.readouterr().err


def test_undefined_metric_is_null_in_the_json_report(tmp_path: Path, capsys) -> None:
    path = tmp_path / "scores.csv"
    path.write_text("pred,true\n5,1\n5,2\n5,4\n")  # constant predictions: Spearman undefined
    out = tmp_path / "report.json"
    assert main(["eval", "quality", "--scores", str(path), "--out", str(out)]) == 0
    assert "nan" in capsys.readouterr().out
    text = out.read_text()
    assert "NaN" not in text and _values(json.loads(text))["spearman_rho"] is None


def test_keystep_csv(tmp_path: Path, capsys) -> None:
    videos = {
        "v1": ("tea", "tea", [1, 1, 2, 2, -1], [0, 0, 1, 1, -1]),
        "v2": ("tea", "car", [2, 2, 1, 1], [1, 1, 0, 0]),
        "v3": ("car", "car", [7, 7, 7], [3, 3, 4]),
    }
    lines = ["video,task,pred_task,pred,true"]
    for name, (task, guess, pred, true) in videos.items():
        lines += [f"{name},{task},{guess},{p},{t}" for p, t in zip(pred, true)]
    path = tmp_path / "frames.csv"
    path.write_text("\n".join(lines) + "\n")
    report, _ = _run(["keystep", "--frames", str(path)], tmp_path, capsys)
    want = keystep_scores(
        [v[2] for v in videos.values()],
        [v[3] for v in videos.values()],
        tasks=[v[0] for v in videos.values()],
        pred_tasks=[v[1] for v in videos.values()],
    )
    values = _values(report)
    for name in ("recall", "precision", "f1", "mof", "iou", "task_accuracy"):
        assert values[name] == pytest.approx(want[name]), name
    assert report["per_task"]["tea"]["matching"] == {"1": 0, "2": 1}


def test_quality_csv(tmp_path: Path, capsys) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(
        "pred,true,pred_transitions,true_transitions\n"
        "80,85,10 20,10 30\n60,55,0 10,0 10\n70,75,5 9,0 4\n"
    )
    report, _ = _run(
        ["quality", "--scores", str(path), "--score-range", "0", "100"], tmp_path, capsys
    )
    values = _values(report)
    # IoUs 0.5, 1, 0 -> AIoU@0.5 = 2/3, @0.75 = 1/3; R-L2 = 100 * mean(0.05^2 * 3)
    assert values["aiou@0.5"] == pytest.approx(2 / 3)
    assert values["aiou@0.75"] == pytest.approx(1 / 3)
    assert values["relative_l2"] == pytest.approx(100 * 0.05**2)
    variants = {r["metric"]: r["variant"] for r in report["metrics"]}
    assert variants["relative_l2"] == "x100_dataset_range" and variants["aiou@0.5"] == "tsa"


def test_matching_npz(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    scores, correct = rng.normal(size=(8, 5)), rng.integers(0, 5, size=8)
    path = tmp_path / "m.npz"
    np.savez(path, scores=scores, correct=correct)
    report, _ = _run(["matching", "--scores", str(path), "--ks", "1", "2"], tmp_path, capsys)
    want = text_video_matching(scores, correct, ks=(1, 2))
    values = _values(report)
    assert values["accuracy"] == pytest.approx(want["accuracy"])
    assert values["top_k@2"] == pytest.approx(want["top_k"][2])
    assert values["auc"] == pytest.approx(want["auc"])


def _alignment_file(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v, t = 4, 16
    labels = np.repeat(np.arange(3), [5, 6, 5])[None].repeat(v, 0)
    time = np.linspace(0, 1, t)
    embs = np.stack([time, labels[0], np.sin(3 * time)], 1)[None] + 0.05 * rng.normal(
        size=(v, t, 3)
    )
    np.savez(path, embs=embs, labels=labels, lengths=np.array([16, 15, 14, 16]))


def test_alignment_npz(tmp_path: Path, capsys) -> None:
    _alignment_file(tmp_path / "test.npz", 0)
    _alignment_file(tmp_path / "train.npz", 1)
    argv = [
        "alignment",
        "--test",
        str(tmp_path / "test.npz"),
        "--train",
        str(tmp_path / "train.npz"),
        "--stride",
        "2",
        "--ks",
        "2",
        "--fractions",
        "0.5",
        "1.0",
        "--classifiers",
        "logistic",
    ]
    report, _ = _run(argv, tmp_path, capsys)
    names = [(r["metric"], r["variant"].split(",")[0]) for r in report["metrics"]]
    for expected in [
        ("kendalls_tau", "tcc"),
        ("kendalls_tau", "tau_a"),
        ("ap@2", "carl"),
        ("ap@2", "lav"),
        ("cycle_consistency", "two_way"),
        ("dtw_alignment_accuracy", "procalign.dp.dtw"),
        ("phase_classification@0.5", "logistic"),
        ("phase_progression", "tcc_event_completion_r2"),
    ]:
        assert expected in names
    for row in report["metrics"]:
        assert -1.0 <= row["value"] <= 1.0
    # values are the library's on the videos cut to their lengths (padding never scored)
    data = np.load(tmp_path / "test.npz")
    embs = [e[:n] for e, n in zip(data["embs"], data["lengths"])]
    labels = [lab[:n] for lab, n in zip(data["labels"], data["lengths"])]
    by_name = {(r["metric"], r["variant"]): r["value"] for r in report["metrics"]}
    tau = mean_kendalls_tau(embs, 2, variant="tau_a")
    assert by_name[("kendalls_tau", "tau_a,stride=2,sqeuclidean")] == pytest.approx(tau)
    ap = average_precision_at_k(embs, labels, 2, variant="lav", stride=2)
    assert by_name[("ap@2", "lav,stride=2,sqeuclidean")] == pytest.approx(ap)


def test_alignment_bad_files_are_named(tmp_path: Path, capsys) -> None:
    embs = np.random.default_rng(0).normal(size=(2, 6, 3))
    embs[1, 4, 0] = np.nan
    cases = {
        "nan.npz": (lambda p: np.savez(p, embs=embs), "embs[1, 4, 0] = nan"),
        "one.npz": (lambda p: np.save(open(p, "wb"), embs), "holds one array (.npy)"),
        "junk.npz": (lambda p: Path(p).write_bytes(b"PK\x03\x04junk"), "not a readable .npz"),
    }
    for name, (write, message) in cases.items():
        write(tmp_path / name)
        assert main(["eval", "alignment", "--test", str(tmp_path / name)]) == 2
        assert f"{tmp_path / name}: " in (err := capsys.readouterr().err) and message in err
    # NaN in the padding after a video's length is not scored, so it is fine
    np.savez(tmp_path / "pad.npz", embs=embs, lengths=np.array([6, 4]))
    assert main(["eval", "alignment", "--test", str(tmp_path / "pad.npz"), "--ks", "1", "--out", str(tmp_path)]) == 0


def test_eval_without_family_prints_help(capsys) -> None:
    assert main(["eval"]) == 2
    assert "verification" in capsys.readouterr().out
    assert main(["eval", "matching", "--scores", "/nonexistent.npz"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_report_is_always_written(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("distance,same\n0.1,1\n0.5,0\n0.2,1\n")
    # no --out: into the working directory
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "verification", "--pairs", str(path)]) == 0
    assert json.loads((tmp_path / "eval_verification.json").read_text())["family"] == "verification"
    # --out naming a folder: the report goes inside it
    folder = tmp_path / "reports"
    folder.mkdir()
    assert main(["eval", "verification", "--pairs", str(path), "--out", str(folder)]) == 0
    assert (folder / "eval_verification.json").exists()
    capsys.readouterr()
