"""Writers of tiny datasets in each benchmark's exact on-disk format, for the reader tests.

Every writer takes a folder, writes the files and returns the root to pass to ``load``. They
mirror the official layouts documented in ``procalign/data/readers/*.py`` (CRLF endings, junk
entries and all, where the real files have them).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.io as sio

CSV_BANK = {
    "1.1": ["take up the tube", "pour the tube"],
    "1.2": ["pour the tube", "take up the tube"],
    "2.1": ["open the lid", "close the lid", "open the lid"],
}


def _write(path: Path, text: str, newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline=newline, encoding="utf-8") as f:
        f.write(text)
    return path


def write_svip_csv(root: Path) -> Path:
    """CSV layout: names with extensions, one '._' entry, a blank line, a garbled last line."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "label_bank.json").write_text(json.dumps(CSV_BANK, indent=4))
    _write(
        root / "train_split.txt",
        "anna.mp4 1.1\nbo.mp4 1.1\n._bo.mp4 1.1\n\nanna.mp4 1.2\ncai.mp4 1.2\nzz",
    )
    _write(root / "test_split.txt", "dan.MP4 2.1\neve.MP4 2.1\nfei.MP4 1.1\n")
    _write(root / "train_pairs.txt", "1.1/anna 1.1 1.1/bo 1.1\n1.2/anna 1.2 1.2/cai 1.2\n")
    _write(root / "test_pairs.txt", "2.1/dan 2.1 2.1/eve 2.1\n2.1/dan 2.1 1.1/fei 1.1\n")
    return root


def write_svip_coin(root: Path) -> Path:
    """COIN-SV layout: YouTube ids, train labels absent from the bank, three splits."""
    root.mkdir(parents=True, exist_ok=True)
    bank = {"12.1": ["a", "b"], "12.2": ["b", "a"], "13.1": ["x", "y", "z"]}
    (root / "label_bank.json").write_text(json.dumps(bank))
    _write(root / "train_split.txt", "AAA_111 12.0\nBBB-222 12.0\nCCC 13.0")
    _write(root / "val_split.txt", "DDD 12.1\nEEE 12.2\n")
    _write(root / "test_split.txt", "FFF 13.1\nGGG 13.1\nHHH 12.1\n")
    _write(root / "train_pairs.txt", "AAA_111 12.0 BBB-222 12.0\n")
    _write(root / "val_pairs.txt", "DDD 12.1 EEE 12.2\n")
    _write(root / "test_pairs.txt", "FFF 13.1 GGG 13.1\nFFF 13.1 HHH 12.1\n")
    return root


def write_svip_diving(root: Path) -> Path:
    """Diving48-SV layout: ``<yt>_<n>`` ids, integer labels, four attributes per label."""
    root.mkdir(parents=True, exist_ok=True)
    bank = {"0": ["Back", "15som", "05Twis", "FREE"], "1": ["Back", "15som", "15Twis", "FREE"]}
    (root / "label_bank.json").write_text(json.dumps(bank))
    _write(root / "train_split.txt", "-mm_00001 0\n-mm_00002 0\nzz_00003 1\n")
    _write(root / "val_split.txt", "vv_00001 1\n")
    _write(root / "test_split.txt", "tt_00001 0\ntt_00002 1\n")
    _write(root / "train_pairs.txt", "-mm_00001 0 -mm_00002 0\n")
    _write(root / "test_pairs.txt", "tt_00001 0 tt_00002 1\n")
    return root


def write_csv_matching(root: Path) -> Path:
    """WeakSVR layout: CRLF lines ``label v1..v5``; one query offers a '._' candidate."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "label_bank.json").write_text(json.dumps(CSV_BANK))
    lines = [
        "1.1 1.1/anna 1.2/bo 2.1/cai 1.2/dan 2.1/eve",
        "1.2 1.1/anna 2.1/cai 1.2/bo 2.1/eve 1.1/fei",
        "2.1 1.1/fei 1.2/dan 1.1/anna 1.2/bo 2.1/gus",
        "1.1 1.2/bo 1.2/._dan 2.1/cai 2.1/eve 1.1/fei",
    ]
    _write(root / "weaksvr_splits" / "text_matching.txt", "\r\n".join(lines) + "\r\n", newline="")
    return root


def write_pennaction(root: Path, n: int = 3) -> Path:
    """``labels/NNNN.mat`` files with the official variables; frames for the first clip."""
    actions = ["baseball_pitch", "squat", "baseball_pitch"]
    for i in range(1, n + 1):
        t = 5 + i
        rng = np.random.default_rng(i)
        mat = {
            "action": actions[(i - 1) % 3],
            "pose": "back",
            "x": rng.uniform(0, 480, (t, 13)),
            "y": rng.uniform(0, 360, (t, 13)),
            "visibility": (rng.uniform(size=(t, 13)) > 0.2).astype(np.uint8),
            "bbox": rng.uniform(0, 300, (t, 4)),
            "dimensions": np.array([[360, 480, t]], dtype=np.uint16),
            "train": np.array([[1 if i % 2 else -1]], dtype=np.int32),
            "nframes": np.array([[t]], dtype=np.uint8),
        }
        (root / "labels").mkdir(parents=True, exist_ok=True)
        sio.savemat(str(root / "labels" / f"{i:04d}.mat"), mat)
    (root / "frames" / "0001").mkdir(parents=True, exist_ok=True)
    return root


BREAKFAST_CLASSES = ["SIL", "pour_cereals", "pour_milk", "stir_cereals", "take_cup"]


def write_breakfast(root: Path, style: str = "original") -> Path:
    """MS-TCN layout; bundles in the original style (#bundle + paths) or plain names."""
    _write(root / "mapping.txt", "".join(f"{i} {c}\n" for i, c in enumerate(BREAKFAST_CLASSES)))
    gts = {
        "P01_cam01_P01_cereals": ["SIL"] * 2 + ["pour_cereals"] * 3 + ["pour_milk"] * 2 + ["SIL"],
        "P02_webcam01_P02_cereals": ["pour_cereals"] * 2 + ["SIL", "pour_milk", "stir_cereals"],
        "P03_cam01_P03_tea": ["SIL", "take_cup", "take_cup", "SIL"],
    }
    for video, labels in gts.items():
        _write(root / "groundTruth" / f"{video}.txt", "\n".join(labels) + "\n")
    train, test = ["P01_cam01_P01_cereals", "P02_webcam01_P02_cereals"], ["P03_cam01_P03_tea"]
    test = test + ["P04_cam01_P04_tea"]  # listed in the bundle, no ground truth
    if style == "original":
        fmt, head = "./data/groundTruth/{}.txt\n", "#bundle\n"
    else:
        fmt, head = "{}.txt\n", ""
    _write(root / "splits" / "train.split1.bundle", head + "".join(fmt.format(v) for v in train))
    _write(root / "splits" / "test.split1.bundle", head + "".join(fmt.format(v) for v in test))
    (root / "features").mkdir(exist_ok=True)
    np.save(root / "features" / "P01_cam01_P01_cereals.npy", np.zeros((4, 8), np.float32))
    return root


CROSSTASK_CARDS = [
    ("23521", "Make Jello Shots", 3, "pour water,pour jello powder,stir mixture"),
    ("59684", "Build Simple Floating Shelves", 2, "cut shelf,drill shelf"),
]


def write_crosstask(root: Path) -> Path:
    """crosstask_release/ (task cards, videos.csv, videos_val.csv, annotations) + features."""
    rel = root / "crosstask_release"
    cards = "".join(
        f"{tid}\n{title}\nhttp://www.wikihow.com/{tid}\n{k}\n{steps}\n\n"
        for tid, title, k, steps in CROSSTASK_CARDS
    )
    _write(rel / "tasks_primary.txt", cards)
    _write(rel / "tasks_related.txt", "99999\nRelated Task\nhttp://x\n1\nonly step\n\n")
    _write(
        rel / "videos.csv",
        "23521,vidA,https://www.youtube.com/watch?v=vidA\n"
        "23521,vidB,https://www.youtube.com/watch?v=vidB\n"
        "59684,vidC,https://www.youtube.com/watch?v=vidC\n"
        "99999,vidR,https://www.youtube.com/watch?v=vidR\n",
    )
    _write(rel / "videos_val.csv", "59684,vidC,https://www.youtube.com/watch?v=vidC\n")
    _write(rel / "annotations" / "23521_vidA.csv", "2,3.2,5.0\n1,0.5,2.1\n3,5.5,7.9\n")
    _write(rel / "annotations" / "59684_vidC.csv", "1,1.0,2.0\n")
    (root / "crosstask_features").mkdir(parents=True, exist_ok=True)
    np.save(root / "crosstask_features" / "vidA.npy", np.zeros((10, 6), np.float32))
    return root


PROCEL_GRAMMAR = ["attach the barrel", "attach the bell", "wet the reed"]


def _cell(items) -> np.ndarray:
    out = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        out[i, 0] = item
    return out


def write_procel(root: Path, as_struct: bool = False) -> Path:
    """<task>/data.mat (grammar, key_steps_frame, superframe_frame) and <task>/readme.txt."""
    task = root / "assemble_clarinet"
    task.mkdir(parents=True, exist_ok=True)
    video1 = [np.array([[3.0, 5.0]]), np.zeros((0, 0)), np.array([[1.0, 2.0], [8.0, 9.0]])]
    video2 = [np.array([[6.0, 7.0]]), np.array([[2.0, 3.0]]), np.zeros((0, 0))]
    data = {
        "grammar": _cell(PROCEL_GRAMMAR),
        "key_steps_frame": _cell([_cell(video1), _cell(video2)]),
        "superframe_frame": _cell([np.array([[1.0, 6.0], [7.0, 12.0]]), np.array([[1.0, 8.0]])]),
    }
    sio.savemat(str(task / "data.mat"), {"data": data} if as_struct else data)
    _write(
        task / "readme.txt",
        "https://www.youtube.com/watch?v=aaa 10 100\nhttps://www.youtube.com/watch?v=bbb 0 80\n",
    )
    return root


FINE_SUBACTIONS = {0: "Forward", 1: "35som.Pike", 2: "Entry"}


def write_finediving(root: Path) -> Path:
    """Annotations/ pickles (fine-grained, coarse, table) + train_test_split/ pickles + frames."""
    ann = root / "Annotations"
    ann.mkdir(parents=True, exist_ok=True)
    fine, coarse = {}, {}
    for key, labels, code in [
        (("FINADivingWorldCup2021_Men3m_final_r1", 0), [0, 0, 1, 1, 1, 2], "107B"),
        (("FINADivingWorldCup2021_Men3m_final_r1", 3), [0, 1, 1, 2, 2], "107B"),
        (("FullMenSynchronised10mPlatform_Tokyo2020Replays_2", 16), [0, 2, 2], "5253B"),
    ]:
        fine[key] = {
            "action_type": code,
            "dive_score": 80.0 + key[1],
            "difficulty": 3.0,
            "judge_scores": [8.0, 8.5, 9.0],
            "frames_labels": np.asarray(labels),
            "steps_transit_frames": np.flatnonzero(np.diff(labels)) + 1,
            "sub-action_types": {i: FINE_SUBACTIONS[i] for i in set(labels)},
            "start_frame": 100,
            "end_frame": 100 + len(labels),
        }
        coarse[key] = {k: fine[key][k] for k in ("action_type", "dive_score", "difficulty")}
    for name, obj in [
        ("FineDiving_fine-grained_annotation.pkl", fine),
        ("FineDiving_coarse_annotation.pkl", coarse),
        ("Sub_action_Types_Table.pkl", FINE_SUBACTIONS),
    ]:
        with (ann / name).open("wb") as f:
            pickle.dump(obj, f)
    keys = sorted(fine)
    split_dir = root / "train_test_split"
    split_dir.mkdir(exist_ok=True)
    for name, items in [("train_split.pkl", keys[:2]), ("test_split.pkl", keys[2:])]:
        with (split_dir / name).open("wb") as f:
            pickle.dump(list(items), f)
    (root / "FINADiving_MTL_256s" / keys[0][0] / str(keys[0][1])).mkdir(parents=True)
    return root


def write_tcc(root: Path) -> Path:
    """LAV layout: npyrecords/<action>_<split>.npy dicts + frame folders for one video."""
    rec = root / "npyrecords"
    rec.mkdir(parents=True, exist_ok=True)
    np.save(
        rec / "pouring_train.npy",
        {"pouring_001": {"labels": np.array([0, 0, 1, 2, 3, 4, 4])},
         "pouring_002": {"labels": np.array([0, 1, 1, 2, 3, 4])}},
    )
    np.save(rec / "pouring_val.npy", {"pouring_017": {"labels": np.array([0, 1, 2, 3, 4])}})
    np.save(rec / "baseball_pitch_val.npy", {"0005": np.array([0, 1, 2, 3, 3])})
    (root / "train" / "pouring" / "pouring_001").mkdir(parents=True)
    return root


def write_folder(root: Path) -> Path:
    """The ``folder`` layout with features, a video file, frames, labels, pairs and meta."""
    root.mkdir(parents=True, exist_ok=True)
    _write(
        root / "index.csv",
        "video_id,label,split,steps,task,source\n"
        "v1,pour,train,take;pour;put,chem,synth\n"
        "v2,pour,test,take;pour;put,chem,synth\n"
        'v3,stir,test,"stir, slowly",chem,cam\n'
        "v4,,,,,\n",
    )
    (root / "features").mkdir()
    np.save(root / "features" / "v1.npy", np.zeros((4, 3), np.float32))
    np.save(root / "features" / "v2.npy", np.zeros((3, 3), np.float32))
    (root / "videos").mkdir()
    (root / "videos" / "v2.mp4").write_bytes(b"not decoded by the reader")
    (root / "videos" / "v3.webm").write_bytes(b"x")
    (root / "frames" / "v4").mkdir(parents=True)
    (root / "frames" / "v4" / "000001.jpg").write_bytes(b"x")
    _write(root / "labels" / "v1.txt", "0\n0\n1\n2\n")
    _write(root / "labels" / "v3.txt", "stir\nstir\n")
    _write(root / "pairs.csv", "video_id_1,video_id_2,same\nv1,v2,1\nv2,v3,0\n")
    (root / "meta.json").write_text(json.dumps({"feature_dim": 3, "source": "test"}))
    return root


#: One writer per registered dataset name; tests check that no reader lacks one.
WRITERS = {
    "svip-csv": write_svip_csv,
    "svip-coin": write_svip_coin,
    "svip-diving": write_svip_diving,
    "csv-matching": write_csv_matching,
    "pennaction": write_pennaction,
    "breakfast": write_breakfast,
    "mstcn": write_breakfast,
    "crosstask": write_crosstask,
    "procel": write_procel,
    "finediving": write_finediving,
    "tcc-phases": write_tcc,
    "folder": write_folder,
}
