"""The synthetic procedural dataset: ground truth consistency, determinism, learnable-but-not-
trivial, folder layout, real SVIP scripts, rendering end to end, and the ``synth`` verb."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from procalign.cli.main import main
from procalign.data import synthetic
from procalign.data.features import load_features, read_manifest
from procalign.data.synthetic import SynthConfig, from_svip, make_dataset, read_folder, write_folder

SMALL = dict(num_tasks=2, procedures_per_task=3, videos_per_procedure=4, num_frames=24, dim=16)


def runs(values: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, start, end) of each maximal run."""
    out, start = [], 0
    for t in range(1, len(values) + 1):
        if t == len(values) or values[t] != values[start]:
            out.append((int(values[start]), start, t))
            start = t
    return out


@pytest.fixture(scope="module")
def small():
    return make_dataset(**SMALL, seed=3)


def test_ground_truth_is_consistent(small):
    vocab = small.vocabulary
    assert vocab[0] == "background"
    for features, step_ids, record in small:
        video = small.videos[small.records.index(record)]
        t = len(features)
        assert features.shape == (t, 16) and features.dtype == np.float32
        for arr in (step_ids, video.phases, video.progress, video.step_progress):
            assert arr.shape == (t,)
        assert np.isfinite(features).all()
        # phases visit the script in order, once each; step ids match the script
        phase_runs = [r for r in runs(video.phases) if r[0] >= 0]
        assert [p for p, _, _ in phase_runs] == list(range(len(record.steps)))
        for phase, start, end in phase_runs:
            assert set(step_ids[start:end].tolist()) == {vocab.index(record.steps[phase])}
        assert np.all(step_ids[video.phases < 0] == 0) and np.all(step_ids[video.phases >= 0] > 0)
        assert np.all(np.diff(video.progress) >= 0)
        assert 0 <= video.progress.min() and video.progress.max() <= 1
        on_step = video.phases >= 0
        assert np.all((video.step_progress[on_step] > 0) & (video.step_progress[on_step] <= 1))
        assert record.task == record.label.split(".")[0]
        assert np.array_equal(record.frame_labels, step_ids)


def test_procedures_are_hard_siblings(small):
    procs = small.procedures
    assert len(procs) == 6 and len({p.steps for p in procs}) == 6
    for task in ("1", "2"):
        mine = [p for p in procs if p.task == task]
        base = mine[0]
        assert base.edit == "base" and mine[1].edit == "swap"
        assert sorted(mine[1].steps) == sorted(base.steps) and mine[1].steps != base.steps
        for p in mine:
            assert len(p.steps) == 5
            assert all(s.startswith(f"t{task}-") for s in p.steps)


def test_lengths_jitter_and_splits(small):
    lengths = {len(v.features) for v in small.videos}
    assert len(lengths) > 1 and min(lengths) >= 18 and max(lengths) <= 30
    for proc in small.procedures:
        splits = [v.record.split for v in small.videos if v.record.label == proc.label]
        assert splits.count("test") == 1 and splits.count("train") == 3
    by_proc = make_dataset(**SMALL, split_by="procedure", test_fraction=0.34)
    for task in ("1", "2"):
        test_labels = {v.record.label for v in by_proc.split("test") if v.record.task == task}
        train_labels = {v.record.label for v in by_proc.split("train") if v.record.task == task}
        assert len(test_labels) == 1 and not test_labels & train_labels


def test_test_pairs_are_balanced_and_hard(small):
    by_id = {v.video_id: v.record for v in small.videos}
    assert small.pairs
    for p in small.pairs:
        a, b = by_id[p.video_id_1], by_id[p.video_id_2]
        assert a.split == b.split == "test" and p.same == (a.label == b.label)
        assert a.task == b.task


def test_deterministic_by_seed():
    a, b, c = (
        make_dataset(**SMALL, seed=1),
        make_dataset(**SMALL, seed=1),
        make_dataset(**SMALL, seed=2),
    )
    for va, vb in zip(a.videos, b.videos):
        assert va.video_id == vb.video_id
        np.testing.assert_array_equal(va.features, vb.features)
        np.testing.assert_array_equal(va.phases, vb.phases)
    assert [(p.video_id_1, p.video_id_2) for p in a.pairs] == [
        (p.video_id_1, p.video_id_2) for p in b.pairs
    ]
    assert not np.array_equal(a.videos[0].features[:5], c.videos[0].features[:5])
    # a video depends on (seed, id) only, not on how many others were generated
    more = make_dataset(**{**SMALL, "videos_per_procedure": 6}, seed=1)
    np.testing.assert_array_equal(more.videos[0].features, a.videos[0].features)


def _dtw(cost: np.ndarray) -> float:
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        row_prev, row = acc[i - 1], acc[i]
        for j in range(1, m + 1):
            row[j] = cost[i - 1, j - 1] + min(row_prev[j], row[j - 1], row_prev[j - 1])
    return acc[n, m] / (n + m)


def _unit(x: np.ndarray) -> np.ndarray:
    x = x - x.mean(0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_learnable_but_not_trivial():
    """On pairs of procedures with the same steps in another order, mean pooling is at chance
    while an order-aware comparison (DTW over centred frames) separates them."""
    ds = make_dataset(num_tasks=2, procedures_per_task=2, videos_per_procedure=10, seed=0)
    for p, q in zip(ds.procedures[::2], ds.procedures[1::2]):
        assert sorted(p.steps) == sorted(q.steps)  # k.1 and k.2 differ only in order
    videos = ds.videos
    same, mean_score, dtw_score = [], [], []
    for i, a in enumerate(videos):
        for b in videos[i + 1 : i + 8]:
            if a.record.task != b.record.task:
                continue
            same.append(a.record.label == b.record.label)
            mean_score.append(-np.linalg.norm(a.features.mean(0) - b.features.mean(0)))
            dtw_score.append(-_dtw(1.0 - _unit(a.features) @ _unit(b.features).T))
    assert 20 < sum(same) < len(same) - 20
    assert roc_auc_score(same, mean_score) < 0.65
    assert roc_auc_score(same, dtw_score) > 0.85


def test_folder_layout_roundtrip(small, tmp_path):
    root = write_folder(small, tmp_path / "ds")
    with open(root / "index.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["video_id", "label", "split", "steps", "task"]
    assert len(rows) == len(small) + 1
    first = small.videos[0]
    assert rows[1][:3] == [first.video_id, first.record.label, first.record.split]
    assert rows[1][3].split(";") == list(first.record.steps) and rows[1][4] == first.record.task
    with open(root / "pairs.csv", newline="") as fh:
        assert next(csv.reader(fh)) == ["video_id_1", "video_id_2", "same"]
    labels = (root / "labels" / f"{first.video_id}.txt").read_text().splitlines()
    assert labels == [small.vocabulary[s] for s in first.step_ids]
    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator"] == "procalign.data.synthetic" and meta["seed"] == 3
    assert meta["config"] == {**SynthConfig().__dict__, **SMALL, "seed": 3}
    assert meta["vocabulary"] == small.vocabulary
    back = read_folder(root)
    assert len(back) == len(small) and len(back.pairs) == len(small.pairs)
    for v, w in zip(small.videos, back.videos):
        np.testing.assert_array_equal(v.features, w.features)
        np.testing.assert_array_equal(v.step_ids, w.step_ids)
        np.testing.assert_array_equal(v.phases, w.phases)
        np.testing.assert_allclose(v.progress, w.progress, atol=1e-6)
        assert v.record.steps == w.record.steps and v.record.split == w.record.split
    # the dataset registry's folder reader reads the same files
    import procalign.data

    loaded = procalign.data.load("folder", root)
    assert [r.video_id for r in loaded.records] == [v.video_id for v in small.videos]
    assert loaded.records[0].steps == first.record.steps and loaded.pairs is not None


def _write_svip_fixture(root: Path) -> None:
    root.mkdir()
    bank = {
        "1.1": ["take up the clamp", "screw the clamp", "pour the flask"],
        "1.2": ["screw the clamp", "take up the clamp", "pour the flask"],
        "2.1": ["open lid", "stir", "stir", "close lid"],
    }
    (root / "label_bank.json").write_text(json.dumps(bank))
    (root / "train_split.txt").write_text(
        "ann.mp4 1.1\nbob.mp4 1.2\n._bob.mp4 1.2\ncid.mp4 2.1\n\n"
    )
    (root / "test_split.txt").write_text("dan.MP4 1.1\neve.MP4 1.2\nann.MP4 1.2\nfay.MP4 2.1\n")
    (root / "test_pairs.txt").write_text(
        "1.1/dan 1.1 1.2/eve 1.2\n1.2/eve 1.2 1.2/ann 1.2\n2.1/fay 2.1 9.9/ghost 9.9\n"
    )


def test_from_svip_keeps_ids_splits_and_pairs(tmp_path):
    root = tmp_path / "CSV"
    _write_svip_fixture(root)
    ds = from_svip(root, num_frames=16, dim=8, seed=0)
    ids = [v.video_id for v in ds.videos]
    assert ids == ["1.1/ann", "1.2/bob", "2.1/cid", "1.1/dan", "1.2/eve", "1.2/ann", "2.1/fay"]
    assert [v.record.split for v in ds.videos] == ["train"] * 3 + ["test"] * 4
    assert ds.meta["skipped_lines"] == 1 and ds.meta["dropped_pairs"] == 1
    assert [(p.video_id_1, p.video_id_2, p.same) for p in ds.pairs] == [
        ("1.1/dan", "1.2/eve", False),
        ("1.2/eve", "1.2/ann", True),
    ]
    fay = ds.videos[-1]
    assert fay.record.steps == ("open lid", "stir", "stir", "close lid") and fay.record.task == "2"
    assert [p for p, _, _ in runs(fay.phases) if p >= 0] == [0, 1, 2, 3]  # "stir" twice, in order
    out = write_folder(ds, tmp_path / "sim")
    assert (out / "features" / "1.1" / "ann.npy").is_file()
    assert read_folder(out).videos[3].video_id == "1.1/dan"
    with pytest.raises(FileNotFoundError, match="label_bank.json"):
        from_svip(tmp_path)
    with pytest.raises(ValueError, match="longest script"):
        from_svip(root, num_frames=4)


@pytest.mark.realdata
def test_from_svip_real_csv_keeps_the_official_test_pairs(real_data):
    root = real_data / "svip" / "CSV"
    ds = from_svip(root, splits=("test",), num_frames=40, dim=8, seed=0)
    assert len(ds) == 1038  # 1039 lines, one macOS "._" entry skipped
    assert ds.meta["skipped_lines"] == 1
    assert len(ds.pairs) == 1000 and ds.meta["dropped_pairs"] == 0
    assert sum(p.same for p in ds.pairs) == 500
    bank = json.loads((root / "label_bank.json").read_text())
    for v in ds.videos[:50]:
        assert list(v.record.steps) == bank[v.record.label]
        assert v.video_id.startswith(v.record.label + "/")


def test_config_validation():
    with pytest.raises(ValueError, match="procedures_per_task"):
        SynthConfig(procedures_per_task=1)
    with pytest.raises(ValueError, match="fewer than steps_per_procedure"):
        make_dataset(num_frames=4, steps_per_procedure=5)
    with pytest.raises(ValueError, match="split_by"):
        SynthConfig(split_by="task")
    with pytest.raises(ValueError, match="distinct procedures"):
        make_dataset(num_tasks=1, procedures_per_task=6, steps_per_task=2, steps_per_procedure=2)
    with pytest.raises(TypeError):
        make_dataset(unknown_setting=1)


def test_synth_render_extract_end_to_end(tmp_path, capsys):
    """synth --render-videos -> decode with PyAV -> tiny_cnn features, all through the CLI."""
    data = tmp_path / "synth"
    code = main(
        [
            "synth",
            str(data),
            "--tasks",
            "1",
            "--procedures",
            "2",
            "--videos-per-procedure",
            "2",
            "--frames",
            "16",
            "--dim",
            "8",
            "--render-videos",
            "--video-ext",
            "webm",
            "--no-progress",
        ]
    )
    assert code == 0 and "wrote 4 videos" in capsys.readouterr().out
    assert sorted(p.name for p in (data / "videos").iterdir()) == [
        "1.1_000.webm",
        "1.1_001.webm",
        "1.2_000.webm",
        "1.2_001.webm",
    ]
    feats = tmp_path / "feats"
    code = main(
        [
            "extract",
            str(data),
            str(feats),
            "--encoder",
            "tiny_cnn",
            "--all-frames",
            "--encoder-arg",
            "dim=8",
            "--encoder-arg",
            "width=4",
            "--size",
            "32",
            "--no-progress",
        ]
    )
    assert code == 0
    manifest = read_manifest(feats)
    assert set(manifest["videos"]) == {"1.1_000", "1.1_001", "1.2_000", "1.2_001"}
    for vid, entry in manifest["videos"].items():
        assert entry["policy"]["source_kind"] == "video"
        n_labels = len((data / "labels" / f"{vid}.txt").read_text().splitlines())
        assert load_features(feats / entry["file"]).shape == (n_labels, 8)


def test_synth_cli_from_svip(tmp_path, capsys):
    root = tmp_path / "CSV"
    _write_svip_fixture(root)
    out = tmp_path / "sim"
    assert (
        main(
            [
                "synth",
                str(out),
                "--from-svip",
                str(root),
                "--frames",
                "16",
                "--dim",
                "8",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "wrote 7 videos" in capsys.readouterr().out
    cut = ["--frames", "16", "--dim", "8", "--no-progress", "--max-videos", "1"]
    assert main(["synth", str(tmp_path / "cut"), "--from-svip", str(root), *cut]) == 0
    assert "no test pairs" in capsys.readouterr().err
    assert json.loads((out / "meta.json").read_text())["source"].startswith("svip:")
    assert main(["synth", str(tmp_path / "x"), "--procedures", "1", "--no-progress"]) == 2
    assert "procedures_per_task" in capsys.readouterr().err


def test_module_docstring_documents_the_layout():
    for name in (
        "index.csv",
        "features/<video_id>.npy",
        "labels/<video_id>.txt",
        "pairs.csv",
        "meta.json",
    ):
        assert name in synthetic.__doc__


def test_synth_cli_bad_arguments_name_the_problem(tmp_path, capsys):
    small = ["--tasks", "1", "--procedures", "2", "--frames", "12", "--dim", "4", "--no-progress"]
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    for args, message in [
        ([str(a_file)], "is a file"),
        ([str(full)], "is not empty"),
        ([str(tmp_path / "s"), "--seed", "-1"], "--seed must be >= 0"),
        ([str(tmp_path / "m"), "--max-videos", "3"], "only applies with --from-svip"),
        ([str(tmp_path / "v"), "--from-svip", str(tmp_path / "nowhere")], "label_bank.json"),
    ]:
        assert main(["synth", *args, *small]) == 2
        assert message in capsys.readouterr().err
    assert (full / "keep.txt").read_text() == "x" and sorted(full.iterdir()) == [full / "keep.txt"]
    assert main(["synth", str(tmp_path / "one"), "--videos-per-procedure", "1", *small]) == 0
    assert "no test videos" in capsys.readouterr().err


def test_disk_names_are_still_importable_from_synthetic():
    """from_svip / write_folder / read_folder moved to procalign.data.synthetic_io."""
    from procalign.data import synthetic, synthetic_io

    for name in synthetic._IO:
        assert getattr(synthetic, name) is getattr(synthetic_io, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        synthetic.no_such_name  # noqa: B018
