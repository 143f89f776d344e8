"""The own-videos path of docs/own-videos.md, end to end through the CLI, on rendered videos:

folder of videos + index.csv -> ``procalign extract`` (pretrained encoder) -> ``procalign train cpa
--config configs/cpa_folder.yaml data.root=...`` -> ``procalign eval`` -> ``procalign verify a b``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from procalign.cli.main import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "cpa_folder.yaml"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    data = tmp_path_factory.mktemp("own") / "mydata"
    code = main(
        ["synth", str(data), "--tasks", "1", "--procedures", "3", "--videos-per-procedure", "6",
         "--frames", "16", "--dim", "8", "--render-videos", "--render-style", "cluttered",
         "--video-size", "48", "--no-progress"]
    )
    assert code == 0
    return data


def test_folder_of_videos_to_a_verdict(rendered, tmp_path, capsys):
    data = rendered
    feats = tmp_path / "feats"
    # 2. extract with the default (pretrained) encoder: no random-weight warning
    assert main(["extract", str(data), str(feats), "--size", "48", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "random weights" not in out.out + out.err
    manifest = json.loads((feats / "manifest.json").read_text())
    assert manifest["settings"]["random_weights"] is False
    assert manifest["settings"]["extractor"] == "efficientnet_lite0"
    with open(data / "index.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert set(manifest["videos"]) == {r["video_id"] for r in rows}

    # 3. train CPA with the folder config: only the data paths and a tiny schedule are given
    run = tmp_path / "run"
    code = main(
        ["train", "cpa", "--config", str(CONFIG), "--out", str(run), "--no-progress",
         f"data.root={data}", f"data.features_dir={feats / 'features'}", "data.video_size=48",
         "data.num_frames=8", "data.pairs_per_epoch=32", "model.steps=3", "train.epochs=2",
         "train.batch_size=8", "train.threads=1", "model.temporal_args.dim=32"]
    )
    assert code == 0, capsys.readouterr().err
    assert (run / "model.safetensors").is_file()
    capsys.readouterr()

    # 4. evaluate: the folder's test pairs, an AUC for CPA and its baselines
    assert main(["eval", "cpa", "--run", str(run), "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "random weights" not in out.out + out.err
    report = json.loads((run / "eval.json").read_text())
    pairs = list(csv.DictReader(open(data / "pairs.csv", newline="")))
    assert report["num_pairs"] == len(pairs) > 0  # the folder's own test pairs
    auc = {m["variant"].split(",")[0]: m["value"] for m in report["metrics"] if m["metric"] == "auc"}
    assert {"cpa", "dtw", "video_l2"} <= set(auc), auc
    assert all(0.0 <= v <= 1.0 for v in auc.values()), auc

    # 5. verify two raw videos (encoded on the fly with the run's encoder)
    test_ids = [r["video_id"] for r in csv.DictReader(open(data / "index.csv", newline=""))
                if r["split"] == "test"]
    videos = sorted((data / "videos").iterdir())
    by_id = {v.stem: v for v in videos}
    a, b = by_id[test_ids[0]], by_id[test_ids[1]]
    code = main(["verify", str(a), str(b), "--run", str(run)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "random weights" not in out.err
    assert ("SAME" in out.out) != ("DIFFERENT" in out.out), out.out


def test_align_two_videos_without_a_run(rendered, tmp_path, capsys):
    """`procalign align A.mp4 B.mp4`: encoded with the pretrained default encoder, no run needed;
    a video aligned with itself costs nothing, with another video more."""
    videos = sorted((rendered / "videos").iterdir())
    a, b = videos[0], videos[-1]
    js, png = tmp_path / "self.json", tmp_path / "pair.png"
    assert main(["align", str(a), str(a), "-k", "3", "--json", str(js)]) == 0
    out = capsys.readouterr()
    assert "random weights" not in out.err
    same = json.loads(js.read_text())
    assert same["dtw_distance"] == pytest.approx(0.0, abs=1e-6)
    assert main(["align", str(a), str(b), "-k", "3", "--json", str(js), "--plot", str(png)]) == 0
    capsys.readouterr()
    assert json.loads(js.read_text())["dtw_distance"] > 1e-3
    assert png.read_bytes()[:4] == b"\x89PNG"
