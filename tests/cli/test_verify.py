"""``procalign verify A B --run DIR`` on feature files and on real (rendered) videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.config import load_config
from procalign.data.featureset import synth_config, encode_video
from procalign.methods import cpa, load_recipes
from procalign.train.runner import train_run

TINY = [
    (
        "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 6, "
        "num_frames: 24, dim: 16, steps_per_procedure: 4, seed: 0}"
    ),
    "data.num_frames=8",
    "data.pairs_per_epoch=16",
    "eval.pairs=sampled",
    "eval.num_pairs=12",
    "data.threshold_pairs=24",
    "data.video_encoder=tiny_cnn",
    "data.video_encoder_args={dim: 16, width: 4, seed: 0}",
    "model.steps=4",
    "model.temporal_args={dim: 16, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "train.epochs=1",
    "eval.steps_sweep=[]",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("verify")
    cfg = load_config(cpa.CPAConfig, None, TINY)
    recipe = load_recipes().build("cpa")
    vs = recipe.load_data(cfg, None, False)
    train_run(recipe, cfg, root / "run", progress=False, data=vs)
    from procalign.data.synthetic import make_dataset

    ds = make_dataset(synth_config(cfg.data.synthetic))  # ground truth for rendering
    by_id = {v.video_id: v for v in ds.videos}
    test = [by_id[v.video_id] for v in sorted(vs.split("test"), key=lambda v: v.video_id)]
    paths = {}
    for v in test[:3]:
        paths[v.video_id] = root / f"{v.video_id}.npy"
        np.save(paths[v.video_id], v.features)
    return root, paths, test


def test_verify_feature_files(trained, capsys):
    root, paths, _ = trained
    a, b = list(paths.values())[:2]
    out_json = root / "v.json"
    png = root / "v.png"
    assert (
        main(
            [
                "verify",
                str(a),
                str(b),
                "--run",
                str(root / "run"),
                "--json",
                str(out_json),
                "--plot",
                str(png),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "distance (cpa, mean of 3 clips)" in text and "decision:" in text
    assert "threshold.json" in text and "most disagreeing first" in text
    r = json.loads(out_json.read_text())
    thr = json.loads((root / "run" / "threshold.json").read_text())["threshold"]
    assert r["same"] == (r["distance"] <= thr)
    assert len(r["clip_distances"]) == 3 and r["distance"] == pytest.approx(
        np.mean(r["clip_distances"])
    )
    assert sorted(r["most_disagreeing"]) == [1, 2, 3, 4] and len(r["steps"]) == 4
    costs = {s["step"]: s["cost"] for s in r["steps"]}
    assert [costs[k] for k in r["most_disagreeing"]] == sorted(costs.values(), reverse=True)
    assert png.read_bytes()[:4] == b"\x89PNG"
    # symmetric decision inputs: swapping A and B with a symmetric relational matrix is tested in
    # tests/methods; here an explicit threshold overrides the stored one
    assert main(["verify", str(a), str(b), "--run", str(root / "run"), "--threshold", "1e9"]) == 0
    assert "SAME procedure (threshold" in capsys.readouterr().out
    for bad in ("nan", "inf"):
        assert main(["verify", str(a), str(b), "--run", str(root / "run"), "--threshold",
                     bad]) == 2
        assert f"--threshold must be a finite number, got {float(bad)}" in capsys.readouterr().err


def test_verify_videos_decodes_and_encodes_with_the_runs_encoder(trained, capsys):
    from procalign.data.render import render_video
    from procalign.models.encoders import build_encoder

    root, _, test = trained
    vids = []
    for v in test[:2]:
        vids.append(
            render_video(root / f"{v.video_id}.mp4", v.step_ids, v.step_progress, size=32, seed=1)
        )
    js = root / "video.json"
    assert (
        main(["verify", str(vids[0]), str(vids[1]), "--run", str(root / "run"), "--json", str(js)])
        == 0
    )
    r = json.loads(js.read_text())
    err = capsys.readouterr().err  # the run's video encoder (tiny_cnn) has random weights
    assert "random weights" in err and "verdict carries no meaning" in err
    # the same numbers from the .npy features of the same encoder
    enc = build_encoder("tiny_cnn", dim=16, width=4, seed=0).eval()
    npys = []
    for p in vids:
        feats = encode_video(p, enc, 32)
        assert feats.shape == (len(test[len(npys)].step_ids), 16)
        npys.append(root / f"{p.stem}_enc.npy")
        np.save(npys[-1], feats)
    js2 = root / "npy.json"
    assert (
        main(["verify", str(npys[0]), str(npys[1]), "--run", str(root / "run"), "--json", str(js2)])
        == 0
    )
    assert json.loads(js2.read_text())["distance"] == pytest.approx(r["distance"], rel=1e-5)
    capsys.readouterr()


def test_verify_bad_inputs_give_clear_errors(trained, tmp_path, capsys):
    root, paths, _ = trained
    a = str(next(iter(paths.values())))
    run = str(root / "run")

    def err(*argv):
        assert main(["verify", *argv]) == 2
        return capsys.readouterr().err

    assert "no such file or folder" in err(a, str(tmp_path / "missing.npy"), "--run", run)
    np.save(tmp_path / "wide.npy", np.zeros((20, 7), dtype=np.float32))
    assert "D=7, but the run was trained on D=16" in err(
        a, str(tmp_path / "wide.npy"), "--run", run
    )
    np.save(tmp_path / "cube.npy", np.zeros((2, 20, 16), dtype=np.float32))
    assert "expected features of shape (L, D)" in err(a, str(tmp_path / "cube.npy"), "--run", run)
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert "not a readable .npy" in err(a, str(tmp_path / "junk.npy"), "--run", run)
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a .npy feature file, a video" in err(a, str(tmp_path / "notes.txt"), "--run", run)
    assert "K=50 steps cannot be mined from T=8" in err(a, a, "--run", run, "-k", "50")
    assert "not a run folder" in err(a, a, "--run", str(tmp_path))
    nan = np.full((20, 16), np.nan, dtype=np.float32)
    np.save(tmp_path / "nan.npy", nan)
    assert "NaN" in err(a, str(tmp_path / "nan.npy"), "--run", run)
