"""Readers against the real annotation files in ``$PROCALIGN_DATA`` (../shared/data).

The numbers asserted are facts of the official releases: the SVIP README tables, the Penn
Action paper, the Breakfast split-1 bundles. The data README counts CSV videos as lines of the
split files (901 / 1039); three of those lines are macOS ``._`` resource-fork entries that
duplicate a real video, so the readers return 899 / 1038 videos and say so in one warning.
"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

import procalign.data as data
from procalign.data.readers._common import DatasetWarning

pytestmark = pytest.mark.realdata


def _load(name, root):
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ds = data.load(name, root)
    return ds, [str(w.message) for w in record if issubclass(w.category, DatasetWarning)]


@pytest.fixture(scope="module")
def csv(real_data):
    return _load("svip-csv", real_data / "svip" / "CSV")


@pytest.fixture(scope="module")
def coin(real_data):
    return _load("svip-coin", real_data / "svip" / "COIN-SV")


@pytest.fixture(scope="module")
def diving(real_data):
    return _load("svip-diving", real_data / "svip")  # the parent folder works too


@pytest.fixture(scope="module")
def penn(real_data):
    return _load("pennaction", real_data / "pennaction")


@pytest.fixture(scope="module")
def breakfast(real_data):
    return _load("breakfast", real_data / "breakfast")


def _split_counts(ds):
    return {s: len(ds.filter(split=s)) for s in ds.splits}


def test_csv_procedures_videos_pairs(csv, real_data):
    ds, msgs = csv
    assert len(ds.meta["label_bank"]) == 70 and len(ds.labels) == 70
    folder = real_data / "svip" / "CSV"
    raw = {s: len((folder / f"{s}_split.txt").read_text().splitlines()) for s in ("train", "test")}
    assert raw == {"train": 901, "test": 1039}  # the data README's counts: lines of the files
    assert _split_counts(ds) == {"train": 899, "test": 1038}
    assert msgs == [
        "svip-csv: skipped 3 entries (1 macOS '._' entries in test_split.txt; "
        "2 macOS '._' entries in train_split.txt)"
    ]
    train, test = ds.filter(split="train"), ds.filter(split="test")
    assert len(train.labels) == 45 and len(test.labels) == 25
    assert not set(train.labels) & set(test.labels)  # test procedures are unseen in training
    assert len({r.task for r in ds}) == 14
    assert len(test.pairs) == 1000
    assert collections.Counter(p.same for p in test.pairs) == {True: 500, False: 500}
    assert len(train.pairs) == 8531 and all(p.same for p in train.pairs)
    assert all(r.steps == ds.meta["label_bank"][r.label] for r in ds)
    assert ds.get("1.2/chenyijun").meta["file"] == "chenyijun.MP4"


def test_coin_sv_splits_pairs_and_bank_gap(coin, real_data):
    ds, msgs = coin
    assert _split_counts(ds) == {"train": 1221, "val": 442, "test": 451}
    all_ids = (real_data / "svip" / "COIN-SV" / "all_ids.txt").read_text().split()
    assert set(ds.ids) == set(all_ids) and len(all_ids) == 2114
    assert collections.Counter(p.split for p in ds.pairs) == {
        "train": 21741, "val": 400, "test": 1000
    }
    assert len({r.task for r in ds}) == 36
    # the official bank covers val/test procedures only: every train label lacks steps
    assert len(msgs) == 1 and "37 labels (1221 videos) have no entry" in msgs[0]
    assert all((r.steps is None) == (r.split == "train") for r in ds)


def test_diving48_sv_splits_pairs_steps(diving):
    ds, msgs = diving
    assert msgs == []
    assert _split_counts(ds) == {"train": 6035, "val": 3024, "test": 7938}
    assert collections.Counter(p.split for p in ds.pairs) == {
        "train": 50000, "val": 400, "test": 1000
    }
    bank = ds.meta["label_bank"]
    assert len(bank) == 48 and {len(s) for s in bank.values()} == {4}
    assert len({step for steps in bank.values() for step in steps}) == 24
    test = ds.filter(split="test")
    assert collections.Counter(p.same for p in test.pairs) == {True: 500, False: 500}


def test_csv_matching_queries(real_data, csv):
    ds, msgs = _load("csv-matching", real_data / "svip" / "CSV")
    lines = (real_data / "svip" / "CSV" / "weaksvr_splits" / "text_matching.txt").read_text()
    assert len(lines.splitlines()) == 800
    assert len(ds.queries) == 798 and msgs == [
        "csv-matching: skipped 2 entries (2 queries offering a macOS '._' entry in "
        "text_matching.txt)"
    ]
    assert all(q.answer is not None for q in ds.queries)
    answers = collections.Counter(q.answer for q in ds.queries)
    assert answers == {0: 160, 1: 160, 2: 160, 3: 159, 4: 159}  # 160 each before the 2 skips
    assert len(ds.labels) == 25
    test = csv[0].filter(split="test")
    assert all(vid in test and test.get(vid).label == ds.get(vid).label for vid in ds.ids)


def test_pennaction_clips_joints_split(penn):
    ds, msgs = penn
    assert msgs == [] and len(ds) == 2326 and len(ds.labels) == 15
    assert _split_counts(ds) == {"train": 1258, "test": 1068}
    lengths = [r.meta["nframes"] for r in ds]
    assert min(lengths) == 18 and max(lengths) == 663
    for r in ds:
        t = r.meta["nframes"]
        assert r.meta["joints"].shape == (t, 13, 2) and r.meta["visibility"].shape == (t, 13)
        assert r.meta["dimensions"][2] == t
    short_bbox = [r.video_id for r in ds if len(r.meta["bbox"]) != r.meta["nframes"]]
    assert short_bbox == ["1154", "1865"]  # the two official files one bbox row short
    first = ds.get("0001")
    assert first.label == "baseball_pitch" and first.meta["pose"] == "back"
    assert np.isfinite(first.meta["joints"]).all()


def test_breakfast_split1(breakfast):
    ds, msgs = breakfast
    train, test = ds.filter(split="train"), ds.filter(split="test")
    assert len(train) == 1460 and len(test) == 252
    assert len(msgs) == 1 and msgs[0].startswith("breakfast: 252 videos listed in the fold-1")
    classes = ds.meta["classes"]
    assert len(classes) == 48 and classes[0] == "SIL"
    assert len(ds.labels) == 10 and "cereals" in ds.labels
    assert all(r.frame_labels is None for r in test)
    for r in train:
        assert r.frame_labels.dtype == np.int64 and len(r.frame_labels) > 0
        assert 0 <= r.frame_labels.min() and r.frame_labels.max() < 48
        assert r.steps and "SIL" not in r.steps
    assert train.get("P16_cam01_P16_cereals").steps == ("pour_cereals", "pour_milk")
