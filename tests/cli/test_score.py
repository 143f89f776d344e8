"""``procalign score``: sharded, resumable, atomic pair scoring with a trained run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.config import load_config
from procalign.data.records import PairRecord
from procalign.eval import scoring as S
from procalign.methods import load_recipes
from procalign.train.runner import load_run, train_run
from procalign.train.threads import compute
from tests.methods.test_contract import TINY

CPA = [*TINY["cpa"][:-1], "eval.distances=[cpa]", "train.epochs=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    recipe = load_recipes().build("cpa")
    run = tmp_path_factory.mktemp("score") / "run"
    with compute(1):
        train_run(recipe, load_config(recipe.config_cls, None, CPA), run, progress=False)
        cfg, meta, models = load_run(recipe, run)
        data = recipe.load_data(cfg, run, False)
    ids = [v.video_id for v in data.videos]
    return recipe, run, (cfg, meta, models, data), ids


def _pairs_csv(path, ids, missing=("ghost",)):
    rng = np.random.default_rng(0)
    rows = [(ids[i], ids[j]) for i, j in rng.integers(0, len(ids), (11, 2))]
    rows.insert(4, (ids[0], missing[0]))
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["video_id_1", "video_id_2", "same"])
        # the label: 1 for the even rows, 0 for the odd ones, empty for the last (not a verdict)
        w.writerows([(a, b, "" if k == len(rows) - 1 else int(k % 2 == 0))
                     for k, (a, b) in enumerate(rows)])
    return rows


def test_shards_merge_resume_and_missing_videos(trained, tmp_path, capsys):
    recipe, run, (cfg, meta, models, data), ids = trained
    pairs = tmp_path / "pairs.csv"
    rows = _pairs_csv(pairs, ids)
    out = tmp_path / "scores"
    with compute(1):
        assert main(["score", str(pairs), "--run", str(run), "--out", str(out), "--shard", "0/3",
                     "--quiet"]) == 0
        # merging before every shard is there: one line naming the missing shards
        assert main(["score", str(pairs), "--out", str(out), "--merge"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "2 of 3 shard(s) missing (1/3, 2/3)" in err[0]
        for i in (1, 2):
            assert main(["score", str(pairs), "--run", str(run), "--out", str(out), "--shard",
                         f"{i}/3", "--quiet"]) == 0
        err = capsys.readouterr().err
        assert "pair 4 (ghost)" in err  # the shard holding it names the missing video
        first = S.shard_path(out, 0, 3).read_bytes()
        # a rerun skips finished shards (the file is not rewritten)
        assert main(["score", str(pairs), "--run", str(run), "--out", str(out), "--shards", "3",
                     "--quiet"]) == 0
        assert "0 shard(s) scored (0 pairs), 3 already done" in capsys.readouterr().out
        assert S.shard_path(out, 0, 3).read_bytes() == first
    got = S.read_shard(out / "scores.csv")
    assert [(r["video_id_1"], r["video_id_2"]) for r in got] == rows
    assert got[4]["distance"] == "" and got[4]["missing"] == "ghost" and got[4]["verdict"] == ""
    # the pair list's labels are copied through, untouched by the run's verdicts
    assert [r["same"] for r in got] == ["" if k == len(rows) - 1 else str(int(k % 2 == 0))
                                        for k in range(len(rows))]
    ok = [i for i in range(len(rows)) if i != 4]
    want = recipe.pair_distances(cfg, data, models, meta,
                                 [PairRecord(rows[i][0], rows[i][1], False) for i in ok])
    assert np.allclose([float(got[i]["distance"]) for i in ok], want, atol=1e-5)
    thr = json.loads((run / "threshold.json").read_text())["threshold"]
    assert [got[i]["verdict"] for i in ok] == [str(int(d <= thr)) for d in want]
    assert not list(out.glob(".*tmp*"))  # atomic writes leave no temporary files
    # round trip: `eval verification` scores the run against the pair list's labels (the
    # unlabelled last row dropped; the ghost row is left out by its `missing` column)
    labelled = tmp_path / "labelled.csv"
    with labelled.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(S.COLUMNS))
        w.writeheader()
        w.writerows(got[:-1])
    assert main(["eval", "verification", "--pairs", str(labelled), "--out",
                 str(tmp_path / "ev.json")]) == 0
    assert "1 pair(s) left out" in capsys.readouterr().err
    rep = json.loads((tmp_path / "ev.json").read_text())
    auc = next(m["value"] for m in rep["metrics"] if m["metric"] == "auc")
    keep = [i for i in ok if i != len(rows) - 1]
    from sklearn.metrics import roc_auc_score
    assert auc == pytest.approx(roc_auc_score([int(got[i]["same"]) for i in keep],
                                              [-float(got[i]["distance"]) for i in keep]))


def test_one_call_scores_every_shard_and_another_list_is_refused(trained, tmp_path, capsys):
    _, run, _, ids = trained
    pairs = tmp_path / "pairs.csv"
    rows = _pairs_csv(pairs, ids)
    out = tmp_path / "scores"
    with compute(1):
        assert main(["score", str(pairs), "--run", str(run), "--out", str(out), "--shards", "2",
                     "--quiet"]) == 0
        assert len(S.read_shard(out / "scores.csv")) == len(rows)
        other = tmp_path / "other.csv"
        other.write_text("video_id_1,video_id_2\n" + f"{ids[0]},{ids[1]}\n")
        assert main(["score", str(other), "--run", str(run), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "holds scores of another job" in err


def test_pair_list_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("video_id_1,video_id_2,same\na,b,2\n")
    with pytest.raises(ValueError, match=r"bad.csv:2: 'same' must be 0, 1 or empty"):
        S.read_pair_list(bad)
    bad.write_text("a,b\nx,y\n")
    with pytest.raises(ValueError, match="no 'video_id_1' column"):
        S.read_pair_list(bad)


def test_an_older_shard_whose_same_was_the_verdict_is_refused(tmp_path):
    old = tmp_path / "shard.csv"
    old.write_text("pair_id,video_id_1,video_id_2,distance,same,missing\n0,a,b,0.5,1,\n")
    with pytest.raises(ValueError, match=r"shard.csv: columns .* older procalign"):
        S.read_shard(old)
