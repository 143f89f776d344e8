"""The Ray path (procalign[ray]): extraction and scoring as Ray Data ``map_batches`` steps on
a local 2-CPU Ray instance started here; results equal the plain commands'."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray", reason="ray is not installed (pip install procalign[ray])")
pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install procalign[ray])")

from procalign.cli.main import main  # noqa: E402
from procalign.config import load_config  # noqa: E402
from procalign.eval import scoring as S  # noqa: E402
from procalign.methods import load_recipes  # noqa: E402
from procalign.train.runner import train_run  # noqa: E402
from procalign.train.threads import compute  # noqa: E402
from tests.methods.test_contract import TINY  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_scoring_equals_plain_scoring(tmp_path, capsys):
    recipe = load_recipes().build("cpa")
    run = tmp_path / "run"
    with compute(1):
        train_run(recipe, load_config(recipe.config_cls, None,
                                      [*TINY["cpa"][:-1], "eval.distances=[cpa]",
                                       "train.epochs=1"]), run, progress=False)
        ids = [v.video_id for v in recipe.load_data(load_config(recipe.config_cls,
                                                                run / "config.yaml"), run,
                                                    False).videos]
    pairs = tmp_path / "pairs.csv"
    rng = np.random.default_rng(1)
    with pairs.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["pair_id", "video_id_1", "video_id_2", "same"])
        for k, (i, j) in enumerate(rng.integers(0, len(ids), (30, 2))):
            w.writerow([f"p{k}", ids[i], "nowhere" if k == 7 else ids[j], k % 2])
    with compute(1):
        assert main(["score", str(pairs), "--run", str(run), "--out", str(tmp_path / "plain"),
                     "--shards", "3", "--quiet"]) == 0
        capsys.readouterr()
        assert main(["score", str(pairs), "--run", str(run), "--out", str(tmp_path / "ray"),
                     "--shards", "3", "--ray", "--ray-workers", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "pair p7 (nowhere)" in captured.err and "3 shard(s) scored (30 pairs)" in captured.out
    plain = S.read_shard(tmp_path / "plain" / "scores.csv")
    got = S.read_shard(tmp_path / "ray" / "scores.csv")
    assert [r["pair_id"] for r in got] == [r["pair_id"] for r in plain]
    assert [r["verdict"] for r in got] == [r["verdict"] for r in plain]
    assert [r["same"] for r in got] == [str(k % 2) for k in range(30)]  # the labels, kept
    assert got[7]["distance"] == "" and got[7]["missing"] == "nowhere"
    a = np.array([float(r["distance"]) for r in plain if r["distance"]])
    b = np.array([float(r["distance"]) for r in got if r["distance"]])
    assert np.allclose(a, b, atol=1e-6)


def test_ray_extraction_equals_plain_extraction(tmp_path, capsys):
    src = tmp_path / "src"
    for v in range(4):
        folder = src / f"clip{v}"
        folder.mkdir(parents=True)
        for i in range(3 + v):
            Image.fromarray(np.full((32, 32, 3), 20 * i + 5 * v, np.uint8)).save(folder / f"{i}.png")
    args = ["--encoder", "tiny_cnn", "--size", "32", "--no-progress"]
    assert main(["extract", str(src), str(tmp_path / "plain"), *args]) == 0
    assert main(["extract", str(src), str(tmp_path / "ray"), *args, "--ray", "--ray-workers", "2",
                 "--ray-shards", "3"]) == 0
    assert "4 extracted, 0 already cached, 0 failed, in 3 Ray shard(s)" in capsys.readouterr().out
    for v in range(4):
        a = np.load(tmp_path / "plain" / "features" / f"clip{v}.npy")
        b = np.load(tmp_path / "ray" / "features" / f"clip{v}.npy")
        assert np.allclose(a, b, atol=1e-6)
    from procalign.data.features import read_manifest

    assert len(read_manifest(tmp_path / "ray")["videos"]) == 4
    # a rerun through Ray skips every finished video
    assert main(["extract", str(src), str(tmp_path / "ray"), *args, "--ray", "--ray-workers", "2",
                 "--ray-shards", "3"]) == 0
    assert "0 extracted, 4 already cached" in capsys.readouterr().out
