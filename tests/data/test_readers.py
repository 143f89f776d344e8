"""Every dataset reader on tiny fixtures written in the benchmark's exact on-disk format."""

from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest
import scipy.io as sio

import procalign.data as data
from procalign.data.readers._common import DatasetWarning
from procalign.data.records import MatchingQuery, PairRecord
from tests.data import fixtures_readers as fx


def load_quiet(name, root, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return data.load(name, root, **kw)


def dataset_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, DatasetWarning)]


# ---------------------------------------------------------------- registry


def test_every_registered_dataset_has_a_fixture_writer():
    assert sorted(fx.WRITERS) == data.DATASETS.names()


@pytest.mark.parametrize("name", sorted(fx.WRITERS))
def test_every_reader_loads_its_fixture(name, tmp_path):
    ds = load_quiet(name, fx.WRITERS[name](tmp_path / name))
    assert isinstance(ds, data.Dataset) and ds.name == name and len(ds) > 0
    assert len(set(ds.ids)) == len(ds)
    for rec in ds:
        if rec.frame_labels is not None:
            assert rec.frame_labels.ndim == 1
        if rec.steps is not None:
            assert isinstance(rec.steps, tuple)
        assert rec.path is None or rec.path.exists()
    for pair in ds.pairs or []:
        assert pair.video_id_1 in ds and pair.video_id_2 in ds


def test_unknown_name_is_keyerror_listing_known(tmp_path):
    with pytest.raises(KeyError, match="known: .*svip-csv"):
        data.load("svip-nope", tmp_path)


def test_missing_root_is_filenotfound_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        data.load("folder", tmp_path / "does-not-exist")


def test_unknown_option_is_typeerror_listing_accepted(tmp_path):
    root = fx.write_breakfast(tmp_path / "b")
    with pytest.raises(TypeError, match=r"option\(s\) \['folds'\]; accepted: fold, missing"):
        data.load("breakfast", root, folds=2)


def test_split_argument_filters_and_rejects_unknown(tmp_path):
    root = fx.write_svip_coin(tmp_path / "coin")
    val = load_quiet("svip-coin", root, split="val")
    assert {r.split for r in val} == {"val"} and len(val) == 2
    assert [(p.video_id_1, p.split) for p in val.pairs] == [("DDD", "val")]
    with pytest.raises(ValueError, match="unknown split 'dev'; available: test, train, val"):
        load_quiet("svip-coin", root, split="dev")


def test_dataset_accessors(tmp_path):
    ds = load_quiet("svip-csv", fx.write_svip_csv(tmp_path / "csv"))
    assert ds.get("1.2/cai").label == "1.2"
    assert ds[0].video_id == ds.ids[0]
    with pytest.raises(KeyError, match="1.9/nobody"):
        ds.get("1.9/nobody")
    assert ds.labels == ["1.1", "1.2", "2.1"] and ds.splits == ["test", "train"]
    assert [r.video_id for r in ds.by_label()["2.1"]] == ["2.1/dan", "2.1/eve"]
    only = ds.filter(label="2.1")
    assert len(only) == 2 and [(p.video_id_1, p.video_id_2) for p in only.pairs] == [
        ("2.1/dan", "2.1/eve")
    ]
    assert len(ds.filter(where=lambda r: r.meta.get("file", "").endswith(".MP4"))) == 3
    assert "svip-csv" in repr(ds) and "pairs=4" in repr(ds)


def test_dataset_rejects_duplicate_ids(tmp_path):
    rec = data.load("svip-diving", fx.write_svip_diving(tmp_path / "d")).records[0]
    with pytest.raises(ValueError, match="duplicate video id"):
        data.Dataset("x", tmp_path, [rec, rec])


# ---------------------------------------------------------------- SVIP


def test_svip_csv_ids_steps_tasks_pairs_and_one_junk_warning(tmp_path):
    root = fx.write_svip_csv(tmp_path / "CSV")
    with pytest.warns(DatasetWarning) as record:
        ds = data.load("svip-csv", root)
    msgs = dataset_warnings(record)
    assert len(msgs) == 1
    assert "skipped 3 entries" in msgs[0] and "macOS '._'" in msgs[0] and "malformed" in msgs[0]
    assert ds.meta["skipped"] == {
        "blank lines in train_split.txt": 1,
        "macOS '._' entries in train_split.txt": 1,
        "malformed trailing lines in train_split.txt": 1,
    }
    # names are unique only within a label: the id carries it, as in the pair lists
    assert ds.ids == ["1.1/anna", "1.1/bo", "1.2/anna", "1.2/cai", "2.1/dan", "2.1/eve", "1.1/fei"]
    anna = ds.get("1.2/anna")
    assert anna.steps == tuple(fx.CSV_BANK["1.2"]) and anna.task == "1" and anna.split == "train"
    assert anna.meta["file"] == "anna.mp4" and ds.get("2.1/dan").meta["file"] == "dan.MP4"
    assert [p.same for p in ds.pairs] == [True, True, True, False]
    assert ds.pairs[3] == PairRecord("2.1/dan", "1.1/fei", False, "2.1", "1.1", "test")
    assert ds.meta["label_bank"]["2.1"] == ("open the lid", "close the lid", "open the lid")


def test_svip_root_may_be_the_parent_and_frames_are_found(tmp_path):
    root = fx.write_svip_csv(tmp_path / "svip" / "CSV")
    (root / "1.1" / "anna").mkdir(parents=True)  # official: frame folders under the data root
    (root / "videos" / "2.1").mkdir(parents=True)
    (root / "videos" / "2.1" / "eve.MP4").write_bytes(b"x")
    ds = load_quiet("svip-csv", tmp_path / "svip")
    assert ds.root == root
    assert ds.get("1.1/anna").path == root / "1.1" / "anna"
    assert ds.get("2.1/eve").path == root / "videos" / "2.1" / "eve.MP4"
    assert ds.get("1.1/bo").path is None


def test_svip_coin_missing_bank_labels_warn_once(tmp_path):
    with pytest.warns(DatasetWarning, match=r"2 labels \(3 videos\) have no entry") as record:
        ds = data.load("svip-coin", fx.write_svip_coin(tmp_path / "coin"))
    assert len(dataset_warnings(record)) == 1
    assert ds.get("AAA_111").steps is None and ds.get("DDD").steps == ("a", "b")
    assert ds.get("AAA_111").task == "12" and ds.splits == ["test", "train", "val"]
    assert ds.meta["labels_without_steps"] == ["12.0", "13.0"]


def test_svip_diving_has_no_task_and_four_step_attributes(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean official layout raises no warning
        ds = data.load("svip-diving", fx.write_svip_diving(tmp_path / "d"))
    assert ds.get("-mm_00001").task is None
    assert all(len(r.steps) == 4 for r in ds)
    assert ds.pairs[1].same is False


def test_svip_malformed_line_in_the_middle_is_an_error(tmp_path):
    root = fx.write_svip_csv(tmp_path / "csv")
    (root / "test_split.txt").write_text("dan.MP4 2.1\nbroken\neve.MP4 2.1\n")
    with pytest.raises(ValueError, match=r"test_split.txt:2: expected 2 fields"):
        load_quiet("svip-csv", root)


def test_svip_pair_with_unknown_video_or_wrong_label_is_an_error(tmp_path):
    root = fx.write_svip_csv(tmp_path / "csv")
    (root / "test_pairs.txt").write_text("2.1/dan 2.1 2.1/nobody 2.1\n")
    with pytest.raises(ValueError, match=r"test_pairs.txt:1: video '2.1/nobody' is not in"):
        load_quiet("svip-csv", root)
    (root / "test_pairs.txt").write_text("2.1/dan 2.1 2.1/eve 2.1\n2.1/dan 1.1 2.1/eve 2.1\n")
    with pytest.raises(ValueError, match=r"test_pairs.txt:2: video '2.1/dan' has label '1.1'"):
        load_quiet("svip-csv", root)


def test_svip_label_bank_missing_or_corrupt(tmp_path):
    root = fx.write_svip_csv(tmp_path / "csv")
    (root / "label_bank.json").write_text('{"1.1": ["a",]')
    with pytest.raises(ValueError, match=r"label_bank.json:1: invalid JSON"):
        load_quiet("svip-csv", root)
    (root / "label_bank.json").write_text('{"1.1": "a"}')
    with pytest.raises(ValueError, match="must be a list of step strings"):
        load_quiet("svip-csv", root)
    (root / "label_bank.json").unlink()
    with pytest.raises(FileNotFoundError, match="label bank not found: .*label_bank.json"):
        load_quiet("svip-csv", root)
    with pytest.raises(FileNotFoundError, match="no \\*_split.txt"):
        data.load("svip-csv", tmp_path)


# ---------------------------------------------------------------- CSV-Matching


def test_csv_matching_queries_answers_and_junk(tmp_path):
    root = fx.write_csv_matching(tmp_path / "CSV")
    with pytest.warns(DatasetWarning, match="1 queries offering a macOS '._' entry") as record:
        ds = data.load("csv-matching", root)
    assert len(dataset_warnings(record)) == 1
    assert [q.answer for q in ds.queries] == [0, 2, 4]
    assert ds.queries[1] == MatchingQuery(
        "1.2", ("1.1/anna", "2.1/cai", "1.2/bo", "2.1/eve", "1.1/fei"), 2
    )
    assert "1.2/._dan" not in ds and ds.get("2.1/gus").steps == tuple(fx.CSV_BANK["2.1"])
    assert {r.split for r in ds} == {"test"} and ds.get("1.1/fei").label == "1.1"


def test_csv_matching_undetermined_answer_and_bad_candidate(tmp_path):
    root = fx.write_csv_matching(tmp_path / "CSV")
    path = root / "weaksvr_splits" / "text_matching.txt"
    path.write_text("1.1 1.1/a 1.1/b 2.1/c 2.1/d 2.1/e\n1.2 1.1/a 1.1/b 2.1/c 2.1/d 2.1/e\n")
    ds = data.load("csv-matching", root)
    assert [q.answer for q in ds.queries] == [None, None]
    path.write_text("1.1 1.1/a 1.1/b 2.1/c 2.1/d nolabel\n")
    with pytest.raises(ValueError, match=r"text_matching.txt:1: candidate 'nolabel'"):
        data.load("csv-matching", root)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="text_matching.txt not found"):
        data.load("csv-matching", root)


# ---------------------------------------------------------------- Penn Action


def test_pennaction_joints_visibility_split_and_frames(tmp_path):
    ds = data.load("pennaction", fx.write_pennaction(tmp_path / "Penn_Action"))
    assert ds.ids == ["0001", "0002", "0003"]
    assert ds.labels == ["baseball_pitch", "squat"]
    assert [r.split for r in ds] == ["train", "test", "train"]
    r2 = ds.get("0002")
    assert r2.meta["joints"].shape == (7, 13, 2) and r2.meta["joints"].dtype == np.float32
    assert r2.meta["visibility"].dtype == bool and r2.meta["bbox"].shape == (7, 4)
    assert r2.meta["pose"] == "back" and r2.meta["dimensions"] == (360, 480, 7)
    mat = sio.loadmat(str(tmp_path / "Penn_Action" / "labels" / "0002.mat"))
    np.testing.assert_allclose(r2.meta["joints"][..., 1], mat["y"].astype(np.float32))
    assert ds.get("0001").path == tmp_path / "Penn_Action" / "frames" / "0001"
    # root may also be the labels folder itself
    assert len(data.load("pennaction", tmp_path / "Penn_Action" / "labels")) == 3


def test_pennaction_bad_files(tmp_path):
    root = fx.write_pennaction(tmp_path / "p", n=1)
    path = root / "labels" / "0001.mat"
    mat = sio.loadmat(str(path))
    sio.savemat(str(path), {**{k: v for k, v in mat.items() if not k.startswith("__")},
                            "train": np.array([[0]])})
    with pytest.raises(ValueError, match=r"0001.mat: 'train' flag is 0"):
        data.load("pennaction", root)
    sio.savemat(str(path), {**{k: v for k, v in mat.items() if not k.startswith("__")},
                            "x": np.zeros((2, 13))})
    with pytest.raises(ValueError, match=r"0001.mat: 'x' has shape \(2, 13\), expected \(6, 13\)"):
        data.load("pennaction", root)
    path.write_bytes(b"garbage, not a MATLAB file")
    with pytest.raises(ValueError, match="0001.mat: cannot read MATLAB file"):
        data.load("pennaction", root)
    with pytest.raises(FileNotFoundError, match="labels folder not found"):
        data.load("pennaction", tmp_path)


# ---------------------------------------------------------------- MS-TCN / Breakfast


@pytest.mark.parametrize("style", ["original", "plain"])
def test_breakfast_bundles_labels_transcripts(tmp_path, style):
    root = fx.write_breakfast(tmp_path / "breakfast", style)
    with pytest.warns(DatasetWarning, match="1 videos listed in the fold-1 bundles") as record:
        ds = data.load("breakfast", root)
    assert len(dataset_warnings(record)) == 1
    assert ds.meta["classes"] == fx.BREAKFAST_CLASSES
    r = ds.get("P01_cam01_P01_cereals")
    assert r.frame_labels.tolist() == [0, 0, 1, 1, 1, 2, 2, 0] and r.frame_labels.dtype == np.int64
    assert r.steps == ("pour_cereals", "pour_milk") and r.label == "cereals" and r.split == "train"
    assert r.path == root / "features" / "P01_cam01_P01_cereals.npy"
    assert ds.get("P02_webcam01_P02_cereals").steps == ("pour_cereals", "pour_milk", "stir_cereals")
    missing = ds.get("P04_cam01_P04_tea")
    assert missing.frame_labels is None and missing.steps is None and missing.split == "test"
    assert ds.meta["missing_ground_truth"] == ["P04_cam01_P04_tea"]


def test_breakfast_missing_policy_and_generic_mstcn(tmp_path):
    root = fx.write_breakfast(tmp_path / "b")
    assert "P04_cam01_P04_tea" not in load_quiet("breakfast", root, missing="drop")
    with pytest.raises(FileNotFoundError, match="ground truth not found: .*P04_cam01_P04_tea.txt"):
        data.load("breakfast", root, missing="error")
    with pytest.raises(ValueError, match="missing must be"):
        data.load("breakfast", root, missing="ignore")
    generic = load_quiet("mstcn", root)
    assert generic.get("P03_cam01_P03_tea").label is None
    assert load_quiet("mstcn", root, label_from_name=True).get("P03_cam01_P03_tea").label == "tea"
    with pytest.raises(FileNotFoundError, match="split2.bundle"):
        data.load("breakfast", root, fold=2)


def test_mstcn_without_splits_reads_every_ground_truth_file(tmp_path):
    root = fx.write_breakfast(tmp_path / "b")
    for bundle in (root / "splits").iterdir():
        bundle.unlink()
    (root / "splits").rmdir()
    ds = data.load("mstcn", root)
    assert len(ds) == 3 and ds.splits == [] and ds.meta["fold"] is None
    with pytest.raises(ValueError, match="has no splits"):
        data.load("mstcn", root, split="train")


def test_mstcn_bad_files(tmp_path):
    root = fx.write_breakfast(tmp_path / "b")
    gt = root / "groundTruth" / "P03_cam01_P03_tea.txt"
    gt.write_text("SIL\ntake_cup\nmake_tea\n")
    with pytest.raises(ValueError, match=r"P03_cam01_P03_tea.txt:3: class 'make_tea' is not in"):
        load_quiet("breakfast", root)
    gt.write_text("SIL\n\ntake_cup\n")
    with pytest.raises(ValueError, match=r"P03_cam01_P03_tea.txt:2: expected one class name"):
        load_quiet("breakfast", root)
    (root / "mapping.txt").write_text("0 SIL\none take_cup\n")
    with pytest.raises(ValueError, match=r"mapping.txt:2: expected '<id> <name>'"):
        load_quiet("breakfast", root)
    (root / "mapping.txt").write_text("0 SIL\n2 take_cup\n")
    with pytest.raises(ValueError, match=r"mapping.txt: class ids must be 0..1"):
        load_quiet("breakfast", root)
    (root / "mapping.txt").unlink()
    with pytest.raises(FileNotFoundError, match="class mapping not found"):
        load_quiet("breakfast", root)


# ---------------------------------------------------------------- CrossTask


def test_crosstask_tasks_segments_frames_and_val_split(tmp_path):
    root = fx.write_crosstask(tmp_path)
    with pytest.warns(DatasetWarning, match="1 primary-task videos have no file") as record:
        ds = data.load("crosstask", root)
    assert len(dataset_warnings(record)) == 1
    assert ds.ids == ["vidA", "vidB", "vidC"]  # related task 99999 not read by default
    a = ds.get("vidA")
    assert a.steps == ("pour water", "pour jello powder", "stir mixture")
    assert a.meta["segments"] == [(1, 0.5, 2.1), (2, 3.2, 5.0), (3, 5.5, 7.9)]
    assert a.frame_labels.tolist() == [1, 1, 1, 2, 2, 3, 3, 3, 0, 0]  # 10 feature rows, 1 fps
    assert a.path.name == "vidA.npy" and a.label == a.task == "23521" and a.split == "train"
    c = ds.get("vidC")
    assert c.split == "val" and c.steps == ("cut shelf",) and c.frame_labels is None
    assert ds.get("vidB").steps is None
    assert ds.meta["task_steps"]["59684"] == ("cut shelf", "drill shelf")
    related = load_quiet("crosstask", root / "crosstask_release", include_related=True)
    assert related.get("vidR").meta["primary"] is False and related.get("vidR").steps is None
    assert load_quiet("crosstask", root, fps=2.0).get("vidA").frame_labels[:6].tolist() == [
        0, 1, 1, 1, 1, 0
    ]


def test_crosstask_bad_files(tmp_path):
    root = fx.write_crosstask(tmp_path)
    rel = root / "crosstask_release"
    (rel / "annotations" / "23521_vidA.csv").write_text("1,0.5,2.1\n4,3.0,4.0\n")
    with pytest.raises(ValueError, match=r"23521_vidA.csv:2: bad segment"):
        load_quiet("crosstask", root)
    (rel / "annotations" / "23521_vidA.csv").write_text("1,zero,2.1\n")
    with pytest.raises(ValueError, match=r"23521_vidA.csv:1: expected '<step>,<start>,<end>'"):
        load_quiet("crosstask", root)
    (rel / "tasks_primary.txt").write_text("23521\nMake Jello Shots\nhttp://x\n3\na,b\n\n")
    with pytest.raises(ValueError, match=r"tasks_primary.txt:5: task 23521 declares 3 steps"):
        load_quiet("crosstask", root)
    (rel / "videos.csv").unlink()
    (rel / "tasks_primary.txt").write_text("23521\nMake Jello Shots\nhttp://x\n2\na,b\n\n")
    with pytest.raises(FileNotFoundError, match="video list not found: .*videos.csv"):
        load_quiet("crosstask", root)


# ---------------------------------------------------------------- ProceL


@pytest.mark.parametrize("as_struct", [False, True])
def test_procel_grammar_frame_labels_and_readme(tmp_path, as_struct):
    ds = data.load("procel", fx.write_procel(tmp_path, as_struct=as_struct))
    assert ds.ids == ["assemble_clarinet_01", "assemble_clarinet_02"]
    v1 = ds.get("assemble_clarinet_01")
    # step 3 at frames 1-2 and 8-9, step 1 at 3-5 (1-based, inclusive); 12 frames (superframes)
    assert v1.frame_labels.tolist() == [3, 3, 1, 1, 1, 0, 0, 3, 3, 0, 0, 0]
    assert v1.steps == ("wet the reed", "attach the barrel", "wet the reed")
    assert v1.label == v1.task == "assemble_clarinet" and v1.split is None
    assert v1.meta["trim"] == (10.0, 100.0) and v1.meta["url"].endswith("aaa")
    v2 = ds.get("assemble_clarinet_02")
    assert v2.frame_labels.tolist() == [0, 2, 2, 0, 0, 1, 1, 0]
    assert ds.meta["grammar"]["assemble_clarinet"] == tuple(fx.PROCEL_GRAMMAR)


def test_procel_partition_csv(tmp_path):
    root = fx.write_procel(tmp_path)
    (root / "partition.csv").write_text(
        "task,video_id,split\nassemble_clarinet,assemble_clarinet_02,test\n"
    )
    ds = data.load("procel", root)
    assert [r.split for r in ds] == [None, "test"] and len(data.load("procel", root, "test")) == 1
    other = tmp_path / "mine.csv"
    other.write_text("video_id,split\nassemble_clarinet_07,train\n")
    with pytest.raises(ValueError, match=r"mine.csv:2: unknown video id 'assemble_clarinet_07'"):
        data.load("procel", root, partition=other)
    other.write_text("video,fold\n")
    with pytest.raises(ValueError, match="header needs 'video_id' and 'split'"):
        data.load("procel", root, partition=other)


def test_procel_bad_files(tmp_path):
    root = fx.write_procel(tmp_path)
    mat = root / "assemble_clarinet" / "data.mat"
    sio.savemat(str(mat), {"grammar": fx._cell(fx.PROCEL_GRAMMAR)})
    with pytest.raises(ValueError, match="data.mat: no 'key_steps_frame'"):
        data.load("procel", root)
    sio.savemat(
        str(mat),
        {"grammar": fx._cell(fx.PROCEL_GRAMMAR), "key_steps_frame": fx._cell([fx._cell([[]])])},
    )
    with pytest.raises(ValueError, match="data.mat: video 1 has 1 key-step cells, grammar has 3"):
        data.load("procel", root)
    mat.write_bytes(b"not matlab")
    with pytest.raises(ValueError, match="data.mat: cannot read MATLAB file"):
        data.load("procel", root)
    with pytest.raises(FileNotFoundError, match="no <task>/data.mat"):
        data.load("procel", root / "assemble_clarinet")


# ---------------------------------------------------------------- FineDiving


def test_finediving_steps_splits_scores(tmp_path):
    ds = data.load("finediving", fx.write_finediving(tmp_path))
    first = ds.get("FINADivingWorldCup2021_Men3m_final_r1/0")
    assert first.steps == ("Forward", "35som.Pike", "Entry") and first.label == "107B"
    assert first.frame_labels.tolist() == [0, 0, 1, 1, 1, 2]
    assert first.meta["steps_transit_frames"].tolist() == [2, 5]
    assert first.meta["dive_score"] == 80.0 and first.split == "train"
    frames = tmp_path / "FINADiving_MTL_256s"
    assert first.path == frames / "FINADivingWorldCup2021_Men3m_final_r1" / "0"
    last = ds.get("FullMenSynchronised10mPlatform_Tokyo2020Replays_2/16")
    assert last.split == "test" and last.steps == ("Forward", "Entry")
    assert ds.meta["sub_action_types"] == fx.FINE_SUBACTIONS


def test_finediving_bad_files(tmp_path):
    root = fx.write_finediving(tmp_path)
    with (root / "train_test_split" / "test_split.pkl").open("wb") as f:
        pickle.dump([("NoSuchEvent", 1)], f)
    with pytest.raises(ValueError, match=r"test_split.pkl: \('NoSuchEvent', 1\) has no entry"):
        data.load("finediving", root)
    with (root / "train_test_split" / "test_split.pkl").open("wb") as f:
        pickle.dump([("NoSuchEvent", "first")], f)
    with pytest.raises(ValueError, match=r"test_split.pkl: entries must be \(event, index\) pairs"):
        data.load("finediving", root)
    (root / "train_test_split" / "test_split.pkl").write_bytes(b"\x80garbage")
    with pytest.raises(ValueError, match="test_split.pkl: cannot unpickle"):
        data.load("finediving", root)
    (root / "train_test_split" / "test_split.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="test_split.pkl not found"):
        data.load("finediving", root)


# ---------------------------------------------------------------- TCC / LAV phases


def test_tcc_phases_records(tmp_path):
    ds = data.load("tcc-phases", fx.write_tcc(tmp_path))
    assert ds.ids == [
        "baseball_pitch/0005", "pouring/pouring_001", "pouring/pouring_002", "pouring/pouring_017"
    ]
    p = ds.get("pouring/pouring_001")
    assert p.frame_labels.tolist() == [0, 0, 1, 2, 3, 4, 4] and p.split == "train"
    assert p.steps == ("phase 0", "phase 1", "phase 2", "phase 3", "phase 4")
    assert p.path == tmp_path / "train" / "pouring" / "pouring_001"
    assert p.meta["num_phases"] == 5 and ds.get("pouring/pouring_017").split == "val"


def test_tcc_phases_bad_files(tmp_path):
    root = fx.write_tcc(tmp_path)
    np.save(root / "npyrecords" / "pouring_val.npy", {"v": {"labels": np.array([0, 5])}})
    with pytest.raises(ValueError, match=r"pouring_val.npy: video 'v' has phase labels 0..5"):
        data.load("tcc-phases", root)
    np.save(root / "npyrecords" / "pouring_val.npy", {"v": {"frames": np.array([0])}})
    with pytest.raises(ValueError, match=r"pouring_val.npy: video 'v' has no 'labels'"):
        data.load("tcc-phases", root)
    np.save(root / "npyrecords" / "pouring_val.npy", np.arange(3))
    with pytest.raises(ValueError, match="pouring_val.npy: expected a saved dict"):
        data.load("tcc-phases", root)
    (root / "npyrecords" / "pouring_val.npy").unlink()
    np.save(root / "npyrecords" / "pouring_dev.npy", {})
    with pytest.raises(ValueError, match="pouring_dev.npy: file name should be"):
        data.load("tcc-phases", root)


# ---------------------------------------------------------------- folder


def test_folder_layout(tmp_path):
    root = fx.write_folder(tmp_path / "mine")
    ds = data.load("folder", root)
    v1, v2, v3, v4 = ds.records
    assert v1.path == root / "features" / "v1.npy"  # features win over a video file
    assert v2.path == root / "features" / "v2.npy"
    assert v3.path == root / "videos" / "v3.webm" and v4.path == root / "frames" / "v4"
    assert v1.steps == ("take", "pour", "put") and v1.task == "chem" and v1.split == "train"
    assert v1.frame_labels.tolist() == [0, 0, 1, 2] and v1.frame_labels.dtype == np.int64
    assert v1.meta == {"source": "synth", "num_frames": 4, "feature_dim": 3}
    assert v3.steps == ("stir, slowly",) and v3.frame_labels.tolist() == ["stir", "stir"]
    assert v4.label is None and v4.split is None and v4.steps is None and v4.task is None
    assert ds.pairs == [
        PairRecord("v1", "v2", True, "pour", "pour", None),
        PairRecord("v2", "v3", False, "pour", "stir", "test"),
    ]
    assert ds.meta["info"] == {"feature_dim": 3, "source": "test"}
    assert len(data.load("folder", root, split="test")) == 2


def test_folder_missing_media_reported_together(tmp_path):
    root = fx.write_folder(tmp_path / "mine")
    (root / "videos" / "v3.webm").unlink()
    (root / "frames" / "v4" / "000001.jpg").unlink()
    with pytest.raises(FileNotFoundError) as err:
        data.load("folder", root)
    msg = str(err.value)
    assert "2 videos of" in msg and "v3 (index.csv line 4)" in msg and "features/v3.npy" in msg
    assert "v4 (index.csv line 5)" in msg and "has no .jpg or .png frames" in msg
    ds = data.load("folder", root, check_files=False)
    assert ds.get("v3").path is None
    (root / "index.csv").unlink()
    with pytest.raises(FileNotFoundError, match="index not found: .*index.csv"):
        data.load("folder", root)


@pytest.mark.parametrize(
    ("relpath", "text", "match"),
    [
        ("index.csv", "video_id,label\nv1,a\n", r"index.csv:1: header lacks \['split'\]"),
        ("index.csv", "video_id,label,split\nv1,a,train\nv1,b,test\n", r"index.csv:3: .*repeats"),
        ("index.csv", "video_id,label,split\nv1,a\n", r"index.csv:2: expected 3 fields"),
        ("index.csv", "video_id,label,split\n../v1,a,train\n", r"index.csv:2: invalid video_id"),
        ("labels/v1.txt", "0\n1\n", r"v1.txt: 2 labels but the features have 4 frames"),
        ("labels/v1.txt", "0\n\n1\n2\n", r"v1.txt:2: blank line inside per-frame labels"),
        ("pairs.csv", "video_id_1,video_id_2,same\nv1,v9,1\n", r"pairs.csv:2: video 'v9'"),
        ("pairs.csv", "video_id_1,video_id_2,same\nv1,v2,yes\n", r"pairs.csv:2: 'same' must be"),
        ("meta.json", "{oops", r"meta.json:1: invalid JSON"),
    ],
)
def test_folder_bad_files(tmp_path, relpath, text, match):
    root = fx.write_folder(tmp_path / "mine")
    (root / relpath).write_text(text)
    with pytest.raises(ValueError, match=match):
        data.load("folder", root)


def test_folder_bad_features(tmp_path):
    root = fx.write_folder(tmp_path / "mine")
    np.save(root / "features" / "v1.npy", np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"v1.npy: features should be a \(T, D\) array"):
        data.load("folder", root)
    (root / "features" / "v1.npy").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="v1.npy: cannot read features"):
        data.load("folder", root)


def test_folder_round_trips_what_a_writer_of_the_layout_produces(tmp_path):
    root = tmp_path / "synth"
    (root / "features").mkdir(parents=True)
    rows = ["video_id,label,split,steps"]
    for i in range(6):
        feats = np.random.default_rng(i).normal(size=(5 + i, 4)).astype(np.float32)
        np.save(root / "features" / f"s{i}.npy", feats)
        (root / "labels").mkdir(exist_ok=True)
        (root / "labels" / f"s{i}.txt").write_text("\n".join(["1"] * (5 + i)) + "\n")
        rows.append(f"s{i},p{i % 2},{'train' if i < 4 else 'test'},a;b")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    (root / "meta.json").write_text(json.dumps({"generator": "test"}))
    ds = data.load("folder", root)
    assert [r.meta["num_frames"] for r in ds] == [5, 6, 7, 8, 9, 10]
    assert ds.filter(split="test").ids == ["s4", "s5"] and ds.pairs is None
    assert np.load(ds.get("s3").path).shape == (8, 4)
