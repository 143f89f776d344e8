"""FeatureSet: one record for every method; every bad input named up front, by file and frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.data.featureset import DataConfig, DataError, load_featureset
from procalign.data.synthetic import make_dataset, write_folder

SMALL = {"num_tasks": 1, "procedures_per_task": 2, "videos_per_procedure": 6, "num_frames": 20,
         "dim": 8, "steps_per_procedure": 3, "seed": 0}
CPA_TINY = [
    "data.num_frames=8", "data.pairs_per_epoch=12", "train.batch_size=6", "model.steps=3",
    "data.threshold_pairs=16",
    "model.temporal_args={dim: 8, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "eval.distances=[cpa]", "train.epochs=1",
]


@pytest.fixture
def folder(tmp_path):
    ds = make_dataset(**SMALL)
    return write_folder(ds, tmp_path / "data"), ds


def test_synthetic_record_has_phases_and_step_positions():
    fs = load_featureset(DataConfig(synthetic=SMALL))
    v = fs.videos[0]
    assert v.features.shape[1] == 8 and v.phases.shape == (len(v.features),)
    assert np.all(np.diff(v.phases) >= 0)  # ordered event phases
    assert v.step_index.min() >= -1 and fs.pair_source == "generator's list" and fs.pairs
    assert fs.num_phases[v.label] == 4  # 3 steps + the phase before the first one


def test_every_bad_file_is_named_in_one_report(folder):
    import shutil

    root, ds = folder
    shutil.rmtree(root / "labels")  # label lengths are checked by the reader (test below)
    a, b, c = (root / "features" / f"{v.video_id}.npy" for v in ds.videos[:3])
    x = np.load(a)
    x[5, 2] = np.nan
    np.save(a, x)
    np.save(b, np.zeros((20, 9), np.float32))  # wrong D
    np.save(c, np.zeros((2, 8), np.float32))  # too short for K=3 (index.csv lengths are free)
    fs = load_featureset(DataConfig(dataset="folder", root=str(root)))
    with pytest.raises(DataError) as err:
        fs.validate(3, "K=3 steps")
    text = str(err.value)
    assert f"{a}: 1 frame(s) with NaN or infinite values, first at frame 5" in text
    assert f"{b}: D=9, but the other videos have D=8" in text
    assert f"{c}: 2 frame(s), fewer than 3 (K=3 steps)" in text
    assert text.startswith("3 problem(s)")


def test_training_on_bad_data_names_the_file_and_writes_nothing(folder, tmp_path, capsys):
    root, ds = folder
    bad = root / "features" / f"{ds.videos[1].video_id}.npy"
    x = np.load(bad)
    x[0, 0] = np.inf
    np.save(bad, x)
    run = tmp_path / "run"
    code = main(["train", "cpa", *CPA_TINY, "data.dataset=folder", f"data.root={root}",
                 "--out", str(run), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and "first at frame 0" in err
    assert not (run / "config.yaml").exists()


def test_skip_failed_leaves_out_what_extraction_recorded_as_failed(folder, tmp_path):
    root, ds = folder
    feats = tmp_path / "extract"
    (feats / "features").mkdir(parents=True)
    failed = ds.videos[0].video_id
    for v in ds.videos[1:]:
        np.save(feats / "features" / f"{v.video_id}.npy", v.features)
    (feats / "manifest.json").write_text(json.dumps({"failures": {failed: {"error": "corrupt"}}}))
    cfg = DataConfig(dataset="folder", root=str(root), features_dir=str(feats))
    with pytest.raises(FileNotFoundError, match="1 of them failed in `procalign extract`"):
        load_featureset(cfg)
    cfg.skip_failed = True
    with pytest.warns(UserWarning, match="1 video"):
        fs = load_featureset(cfg)
    assert failed not in fs.index and fs.skipped == [failed] and len(fs.videos) == len(ds) - 1


def test_label_files_of_the_wrong_length_are_all_named(folder):
    root, ds = folder
    for v in ds.videos[:2]:
        (root / "labels" / f"{v.video_id}.txt").write_text("1\n2\n")
    with pytest.raises(ValueError, match="2 unreadable or inconsistent file") as err:
        load_featureset(DataConfig(dataset="folder", root=str(root)))
    assert all(f"{v.video_id}.txt: 2 labels" in str(err.value) for v in ds.videos[:2])


def test_labels_npy_are_read_and_a_bad_one_is_an_error(folder):
    root, ds = folder
    vid = ds.videos[0].video_id
    txt = root / "labels" / f"{vid}.txt"
    if txt.exists():
        txt.unlink()
    (root / "labels").mkdir(exist_ok=True)
    n = len(ds.videos[0].features)
    np.save(root / "labels" / f"{vid}.npy", np.arange(n) % 3)
    fs = load_featureset(DataConfig(dataset="folder", root=str(root)))
    assert fs.get(vid).phases.tolist() == (np.arange(n) % 3).tolist()
    np.save(root / "labels" / f"{vid}.npy", np.arange(n + 1))
    with pytest.raises(ValueError, match=f"{vid}.npy: {n + 1} labels but the features have {n}"):
        load_featureset(DataConfig(dataset="folder", root=str(root)))
    (root / "labels" / f"{vid}.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot read per-frame labels"):
        load_featureset(DataConfig(dataset="folder", root=str(root)))


def test_eval_uses_the_folders_pairs_and_says_so(folder, tmp_path, capsys):
    root, ds = folder
    run = tmp_path / "run"
    args = [*CPA_TINY, "data.dataset=folder", f"data.root={root}"]
    assert main(["train", "cpa", *args, "--out", str(run), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "cpa", "--run", str(run)]) == 0
    err = capsys.readouterr().err
    assert "pairs: the dataset's own list" in err
    assert "evaluation pairs (< 50)" in err  # a tiny pair list is flagged
    report = json.loads((run / "eval.json").read_text())
    assert report["num_pairs"] == len(ds.pairs)
    assert not (run / "eval_cpa.json").exists()  # one report per evaluation, not two
    # asking for sampled pairs explicitly says that the dataset's own list is ignored
    assert main(["eval", "cpa", "--run", str(run), "eval.pairs=sampled", "eval.num_pairs=60"]) == 0
    assert "ignores the dataset's own list" in capsys.readouterr().err


def test_verify_refuses_a_video_shorter_than_k(folder, tmp_path, capsys):
    root, ds = folder
    run = tmp_path / "run"
    assert main(["train", "cpa", *CPA_TINY, "data.dataset=folder", f"data.root={root}",
                 "--out", str(run), "--quiet"]) == 0
    one = tmp_path / "one.npy"
    np.save(one, np.asarray(ds.videos[0].features[:1]))
    capsys.readouterr()
    assert main(["verify", str(one), str(root / "features" / f"{ds.videos[1].video_id}.npy"),
                 "--run", str(run)]) == 2
    assert "has 1 frame(s): K=3 steps need at least K frames" in capsys.readouterr().err


def test_ctrl_c_ends_with_one_line_and_code_130(monkeypatch, capsys):
    import procalign.train.runner as runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train_run", interrupted)
    assert main(["train", "cpa", *CPA_TINY, "--quiet"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "again to continue" in err[0]
