"""The CPA model and recipe: shapes, gradients, symmetry, learning, resume, data sources, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from procalign.cli.main import main
from procalign.config import load_config
from procalign.methods import cpa, load_recipes
from procalign.train import load_weights

TINY_DATA = (
    "data.synthetic={num_tasks: 2, procedures_per_task: 2, videos_per_procedure: 6, "
    "num_frames: 24, dim: 16, steps_per_procedure: 4, seed: 0}"
)
TINY = [
    TINY_DATA,
    "data.num_frames=8",
    "data.pairs_per_epoch=16",
    "data.batch_size=8",
    "data.test_pairs=24",
    "data.threshold_pairs=24",
    "model.steps=4",
    "model.temporal_args={dim: 16, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "train.epochs=2",
    "eval.steps_sweep=[]",
]


def _cfg(*extra: str) -> cpa.CPAConfig:
    return load_config(cpa.CPAConfig, None, [*TINY, *extra])


def _model(**kw) -> cpa.CPAModel:
    args = {
        "steps": 3,
        "temporal": "transformer",
        "temporal_args": {"dim": 8, "layers": 1, "heads": 2, "dropout": 0.0, "positions": False},
    }
    args.update(kw)
    return cpa.CPAModel(6, 4, **args)


def test_registered_recipe_and_config_class():
    recipe = load_recipes().build("cpa")
    assert recipe.config_cls is cpa.CPAConfig
    assert callable(recipe.train) and callable(recipe.evaluate)


def test_forward_shapes():
    torch.manual_seed(0)
    m = _model()
    x1, x2 = torch.randn(5, 10, 6), torch.randn(5, 10, 6)
    out = m(x1, x2)
    assert out["F1"].shape == (5, 10, 8) and out["sim"].shape == (5, 10, 10)
    assert out["bounds_1"].shape == (5, 4) and out["S1"].shape == (5, 3, 8)
    assert out["distance"].shape == (5,) and out["values"].shape == (5,)
    assert out["logits_1"].shape == (5, 4)
    # different lengths per side and padding
    l1, l2 = torch.tensor([10, 6, 7, 3, 9]), torch.tensor([9, 9, 4, 8, 3])
    out = m(x1, torch.randn(5, 9, 6), l1, l2)
    assert (out["bounds_1"][:, -1] == l1).all() and (out["bounds_2"][:, -1] == l2).all()
    uni = _model(step_mining="uniform")
    assert uni(x1, x2)["values"] is None


@pytest.mark.parametrize(
    "task,extra",
    [
        ("verification", {"step_features": "attention", "eval_step_features": "attention"}),
        ("quality", {}),
    ],
)
def test_loss_gradients_reach_every_parameter(task, extra):
    torch.manual_seed(0)
    cfg = _cfg(f"model.task={task}")
    m = _model(task=task, **extra)
    batch = {
        "x1": torch.randn(4, 10, 6),
        "x2": torch.randn(4, 10, 6),
        "labels_1": torch.tensor([0, 1, 2, 3]),
        "labels_2": torch.tensor([0, 1, 3, 2]),
        "same": torch.tensor([True, True, False, False]),
        "scores_1": torch.tensor([50.0, 60.0, 0.0, 0.0]),
        "scores_2": torch.tensor([40.0, 70.0, 0.0, 0.0]),
    }
    loss, logs = cpa.make_loss_fn(cfg)(m, batch)
    assert torch.isfinite(loss) and {"l_task", "l_align", "l_step"} <= set(logs)
    loss.backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_distance_symmetric_in_the_two_videos():
    torch.manual_seed(0)
    m = _model(relational="symmetric").eval()
    x1, x2 = torch.randn(6, 12, 6), torch.randn(6, 12, 6)
    F1, F2 = m.embed(x1), m.embed(x2)
    d12, d21 = m.distance(F1, F2), m.distance(F2, F1)
    assert torch.allclose(d12, d21, atol=1e-5)
    # uniform steps and DTW-type baselines are symmetric for any relational mode
    row = _model().eval()
    F1, F2 = row.embed(x1), row.embed(x2)
    assert torch.allclose(
        row.distance(F1, F2, mining="uniform"), row.distance(F2, F1, mining="uniform")
    )
    for name in ("video_l2", "dtw", "soft_dtw"):
        fn = cpa.pair_distance_fn(row, name)
        assert torch.allclose(fn(F1, F2), fn(F2, F1), atol=1e-5), name


def test_model_input_errors():
    m = _model()
    with pytest.raises(ValueError, match=r"expected features of shape \(B, T, D=6\)"):
        m(torch.randn(2, 10, 5), torch.randn(2, 10, 5))
    with pytest.raises(ValueError, match="K=3 steps need at least K frames"):
        m(torch.randn(2, 2, 6), torch.randn(2, 2, 6))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        m.embed(np.zeros((2, 10, 6)))
    with pytest.raises(ValueError, match="relational must be one of"):
        _model(relational="columns")


@pytest.mark.parametrize(
    "override,error,match",
    [
        (
            "model.steps=9",
            ValueError,
            r"model.steps \(K=9\) must be in \[1, data.num_frames \(T=8\)\]",
        ),
        ("model.block_score=max", ValueError, "model.block_score must be one of"),
        ("data.source=youtube", ValueError, "data.source must be one of"),
        ("eval.distances=[cpa,euclid]", ValueError, "eval.distances entry must be one of"),
        ("loss.align=-1", ValueError, "loss.align must be >= 0"),
        ("data.clip_offsets=[0.5,1.5]", ValueError, "data.clip_offsets"),
        ("data.synthetic=3", TypeError, "data.synthetic must be a mapping"),
    ],
)
def test_config_errors_name_the_key(tmp_path, override, error, match):
    with pytest.raises(error, match=match):
        cpa.train(_cfg(override), tmp_path / "run", progress=False)


def test_config_errors_from_files_and_sources(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(cpa.CPAConfig, None, ["model.stepz=3"])
    with pytest.raises(ValueError, match=r"unknown data.synthetic key\(s\) \['frames'\]"):
        cpa.load_videos(_cfg("data.synthetic={frames: 3}").data)
    monkeypatch.delenv("PROCALIGN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="PROCALIGN_DATA, which is not set"):
        cpa.load_videos(_cfg("data.source=svip").data)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cpa.load_videos(_cfg("data.source=svip", f"data.root={tmp_path / 'nope'}").data)
    with pytest.raises(ValueError, match="needs data.root"):
        cpa.load_videos(_cfg("data.source=folder").data)
    with pytest.raises(FileNotFoundError, match="not a finished CPA run"):
        cpa.load_run(tmp_path)
    with pytest.raises(ValueError, match="takes frames, but training reads cached features"):
        cpa.train(_cfg("model.encoder=tiny_cnn"), tmp_path / "frames", progress=False)


def test_positives_closer_than_negatives_after_short_training(tmp_path):
    """Easy synthetic data (order-only negatives, little noise): a short training must separate."""
    easy = (
        "data.synthetic={num_tasks: 2, procedures_per_task: 2, videos_per_procedure: 10, "
        "num_frames: 24, dim: 16, steps_per_procedure: 4, background: 0.0, noise: 0.2, "
        "video_nuisance: 0.3, mixing: 0.1, drift: 0.0, speed: 0.2, seed: 3}"
    )
    cfg = _cfg(
        easy,
        "data.pairs_per_epoch=64",
        "train.epochs=4",
        "data.test_pairs=80",
        "eval.distances=[cpa,raw_video_l2]",
    )
    vs = cpa.load_videos(cfg.data)
    cpa.train(cfg, tmp_path / "run", progress=False, videos=vs)
    model, cfg2, _ = cpa.load_run(tmp_path / "run")
    pairs = cpa._pairs_for_split(vs, cfg2, "test", None, 7)
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    emb, _ = cpa._embed_for(model, vs, ids, cfg2, False)
    d = cpa.pair_distances(
        cpa.pair_distance_fn(model, "cpa"),
        emb,
        {v: i for i, v in enumerate(ids)},
        [(p.video_id_1, p.video_id_2) for p in pairs],
    )
    same = np.array([p.same for p in pairs])
    assert d[same].mean() < d[~same].mean()
    report = cpa.evaluate(tmp_path / "run", progress=False, videos=vs)
    auc = {r["distance"]: r["value"] for r in report["metrics"] if r["metric"] == "auc"}
    assert auc["cpa"] >= 0.8
    assert auc["raw_video_l2"] < 0.7  # order-only negatives: mean pooling cannot separate them


def test_resume_through_the_recipe_gives_identical_weights(tmp_path):
    recipe = load_recipes().build("cpa")
    cfg = _cfg("train.epochs=3")
    threads = torch.get_num_threads()
    recipe.train(cfg, tmp_path / "full", resume=False, progress=False)
    assert torch.get_num_threads() == threads  # train.threads is restored afterwards
    cut = _cfg("train.epochs=3", "train.stop_after_epoch=1")
    s1 = recipe.train(cut, tmp_path / "cut", resume=False, progress=False)
    assert s1["epochs_done"] == 1 and not (tmp_path / "cut" / "model.safetensors").exists()
    s2 = recipe.train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert s2["resumed_from_epoch"] == 1 and s2["epochs_done"] == 3
    a, _, _ = cpa.load_run(tmp_path / "full")
    b, _, _ = cpa.load_run(tmp_path / "cut")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    events = [
        json.loads(line)["event"]
        for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()
    ]
    assert events.count("resume") == 1 and events.count("epoch") == 3
    thr = json.loads((tmp_path / "cut" / "threshold.json").read_text())
    assert thr["rule"] == "same if distance <= threshold" and np.isfinite(thr["threshold"])
    load_weights(b, tmp_path / "cut" / "checkpoints" / "epoch_0003" / "model.safetensors")


def test_train_and_eval_from_the_command_line(tmp_path, capsys):
    run = tmp_path / "run"
    # overrides before the options: argparse ends the positionals at the first option
    assert main(["train", "cpa", *TINY, "--out", str(run), "--quiet"]) == 0
    for name in ("config.yaml", "meta.json", "log.jsonl", "model.safetensors", "threshold.json"):
        assert (run / name).is_file(), name
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert (
        main(["eval", "cpa", "--run", str(run), "--out", str(out_json), "eval.steps_sweep=[3]"])
        == 0
    )
    table = capsys.readouterr().out
    assert "cpa,svip_3clips,T=8,K=4" in table and "cpa@K=3" in table
    report = json.loads(out_json.read_text())
    metrics = {(r["metric"], r["variant"].split(",")[0]) for r in report["metrics"]}
    for dist in ("cpa", "fsa_uniform", "video_l2", "dtw", "soft_dtw", "raw_video_l2", "raw_dtw"):
        assert {("auc", dist), ("eer", dist), ("wdr", dist)} <= metrics, dist
    assert main(["train", "cpa", "model.steps=99", *TINY[:1], "--out", str(tmp_path / "bad")]) == 2
    assert "model.steps (K=99)" in capsys.readouterr().err


def test_folder_dataset_end_to_end(tmp_path):
    from procalign.data.synthetic import make_dataset, write_folder

    ds = make_dataset(
        num_tasks=1,
        procedures_per_task=2,
        videos_per_procedure=6,
        num_frames=20,
        dim=12,
        steps_per_procedure=3,
        seed=1,
    )
    write_folder(ds, tmp_path / "data")
    cfg = _cfg(
        "data.source=folder",
        f"data.root={tmp_path / 'data'}",
        "model.steps=3",
        "data.test_pairs=null",
    )
    summary = cpa.train(cfg, tmp_path / "run", progress=False)
    assert summary["data"].startswith("folder dataset")
    report = cpa.evaluate(tmp_path / "run", progress=False)
    assert report["num_pairs"] == len(ds.pairs) and report["metrics"]
    (tmp_path / "data" / "features" / f"{ds.videos[0].video_id}.npy").unlink()
    with pytest.raises(FileNotFoundError):
        cpa.load_videos(cfg.data)


def test_quality_assessment_reports_spearman_rl2_aiou(tmp_path):
    cfg = _cfg(
        "model.task=quality",
        "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 8, "
        "num_frames: 24, dim: 16, steps_per_procedure: 3, background: 0.0, seed: 0}",
        "model.steps=3",
        "eval.num_exemplars=2",
    )
    cpa.train(cfg, tmp_path / "run", progress=False)
    report = cpa.evaluate(tmp_path / "run", progress=False)
    names = {r["metric"] for r in report["metrics"]}
    assert {"spearman_rho", "relative_l2", "aiou@0.5", "aiou@0.75"} <= names
    assert all(np.isfinite(r["value"]) for r in report["metrics"])


@pytest.mark.realdata
def test_csv_scripted_data_uses_official_pairs(real_data, tmp_path):
    cfg = _cfg(
        "data.source=svip",
        "data.name=svip-csv",
        f"data.root={real_data / 'svip' / 'CSV'}",
        "data.synthetic={num_frames: 32, dim: 16, seed: 0}",
        "data.max_videos=150",
        "data.test_pairs=null",
        "train.epochs=1",
        "eval.distances=[cpa,raw_dtw]",
    )
    vs = cpa.load_videos(cfg.data)
    assert vs.simulated and "SIMULATED" in vs.description
    assert all(p.video_id_1.split("/")[0] == p.label_1 for p in vs.pairs)
    cpa.train(cfg, tmp_path / "run", progress=False, videos=vs)
    report = cpa.evaluate(tmp_path / "run", progress=False, videos=vs)
    assert report["num_pairs"] == len(vs.pairs) > 0 and report["simulated_frames"]


@pytest.mark.realdata
def test_svip_reader_with_cached_features(real_data, tmp_path):
    """The real-feature path: svip-csv reader (splits, official pairs) + features_dir/<id>.npy."""
    from procalign.data import load

    root = real_data / "svip" / "CSV"
    data = load("svip-csv", root)
    feats = tmp_path / "features"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for rec in [r for r in data.records if r.split == split]:
            (feats / rec.video_id).parent.mkdir(parents=True, exist_ok=True)
            np.save(feats / f"{rec.video_id}.npy", rng.normal(size=(30, 16)).astype(np.float32))
    cfg = _cfg(
        "data.source=svip",
        f"data.root={root}",
        f"data.features_dir={feats}",
        "data.test_pairs=null",
        "train.epochs=1",
        "eval.distances=[cpa]",
    )
    vs = cpa.load_videos(cfg.data)
    assert not vs.simulated and len(vs.videos) == len(data) and vs.in_dim == 16
    assert len(vs.pairs) == 1000  # the official test pairs
    assert all(p.video_id_1 in vs.index and p.video_id_2 in vs.index for p in vs.pairs)
    cpa.train(cfg, tmp_path / "run", progress=False, videos=vs)
    assert cpa.evaluate(tmp_path / "run", progress=False, videos=vs)["metrics"]
    (feats / f"{data.records[0].video_id}.npy").unlink()
    missing = _cfg("data.source=svip", f"data.root={root}", f"data.features_dir={feats}")
    with pytest.raises(FileNotFoundError, match="feature files are missing"):
        cpa.load_videos(missing.data)
