"""The CPA model and recipe: shapes, gradients, symmetry, learning, resume, data sources, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from procalign.cli.main import main
from procalign.config import load_config
from procalign.data.featureset import load_featureset
from procalign.eval import protocols as P
from procalign.losses.cpa import CPALoss
from procalign.methods import cpa, load_recipes
from procalign.models.cpa import CPAModel
from procalign.train import load_weights
from procalign.train.runner import evaluate_run, load_run, train_run

RECIPE = load_recipes().build("cpa")

TINY_DATA = (
    "data.synthetic={num_tasks: 2, procedures_per_task: 2, videos_per_procedure: 6, "
    "num_frames: 24, dim: 16, steps_per_procedure: 4, seed: 0}"
)
TINY = [
    TINY_DATA,
    "data.num_frames=8",
    "data.pairs_per_epoch=16",
    "train.batch_size=8",
    "eval.pairs=sampled",
    "eval.num_pairs=24",
    "data.threshold_pairs=24",
    "model.steps=4",
    "model.temporal_args={dim: 16, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "train.epochs=2",
    "eval.steps_sweep=[]",
]


def _cfg(*extra: str) -> cpa.CPAConfig:
    return load_config(cpa.CPAConfig, None, [*TINY, *extra])


def _model(**kw) -> CPAModel:
    args = {
        "steps": 3,
        "temporal": "transformer",
        "temporal_args": {"dim": 8, "layers": 1, "heads": 2, "dropout": 0.0, "positions": False},
    }
    args.update(kw)
    return CPAModel(6, 4, **args)


def test_registered_recipe_and_config_class():
    recipe = load_recipes().build("cpa")
    assert recipe.config_cls is cpa.CPAConfig
    assert callable(recipe.build) and callable(recipe.trainer) and callable(recipe.evaluate)


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
    loss, logs = CPALoss()(m, batch)
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
    cfg = _cfg("eval.distances=[video_l2,dtw,soft_dtw]")
    for dist in cpa.distances(row, cfg):
        fn = dist.fn
        assert torch.allclose(fn(F1, F2), fn(F2, F1), atol=1e-5), dist.label


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
        ("data.dataset=youtube", ValueError, "data.dataset 'youtube' is unknown"),
        ("eval.distances=[cpa,euclid]", ValueError, "eval.distances entry must be one of"),
        ("loss.align=-1", ValueError, "loss.align must be >= 0"),
        ("data.clip_offsets=[0.5,1.5]", ValueError, "data.clip_offsets"),
        ("data.synthetic=3", ValueError, "data.synthetic must be a mapping"),
    ],
)
def test_config_errors_name_the_key(tmp_path, override, error, match):
    with pytest.raises(error, match=match):
        train_run(RECIPE, _cfg(override), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # nothing written for a bad config


def test_config_errors_from_files_and_sources(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown config key"):
        load_config(cpa.CPAConfig, None, ["model.stepz=3"])
    with pytest.raises(ValueError, match=r"unknown data.synthetic key\(s\) \['frames'\]"):
        load_featureset(_cfg("data.synthetic={frames: 3}").data)
    monkeypatch.delenv("PROCALIGN_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match="PROCALIGN_DATA, which is not set"):
        load_featureset(_cfg("data.dataset=svip-csv").data)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_featureset(_cfg("data.dataset=svip-csv", f"data.root={tmp_path / 'nope'}").data)
    with pytest.raises(ValueError, match="needs data.root"):
        load_featureset(_cfg("data.dataset=folder").data)
    with pytest.raises(FileNotFoundError, match="not a finished cpa run"):
        load_run(RECIPE, tmp_path)
    with pytest.raises(ValueError, match="takes frames, but training reads cached features"):
        train_run(RECIPE, _cfg("model.encoder=tiny_cnn"), tmp_path / "frames", progress=False)


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
        "eval.num_pairs=80",
        "eval.distances=[cpa,raw_video_l2]",
    )
    vs = RECIPE.load_data(cfg, None, False)
    train_run(RECIPE, cfg, tmp_path / "run", progress=False, data=vs)
    cfg2, _, models = load_run(RECIPE, tmp_path / "run")
    model = models[""]
    pairs, _, _ = P.evaluation_pairs(vs.split("test"), vs.pairs, "sampled", 80, seed=7)
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    clips = torch.from_numpy(
        np.stack([P.clip_features(vs.get(i).features, 8, cfg2.data.clip_offsets) for i in ids])
    )
    d = P.pair_distances(
        lambda x, y: model.distance(x, y),
        P.embed_clips(model.embed, clips),
        {v: i for i, v in enumerate(ids)},
        [(p.video_id_1, p.video_id_2) for p in pairs],
    )
    same = np.array([p.same for p in pairs])
    assert d[same].mean() < d[~same].mean()
    report = evaluate_run(RECIPE, tmp_path / "run", progress=False, data=vs)
    auc = {r["distance"]: r["value"] for r in report["metrics"] if r["metric"] == "auc"}
    assert auc["cpa"] >= 0.8
    assert auc["raw_video_l2"] < 0.7  # order-only negatives: mean pooling cannot separate them
    # judged against the static control: with every frame replaced by the video's middle frame
    # nothing but a frame-index shortcut could separate the pairs
    from procalign.eval.verification import verification_auc

    static = {v.video_id: P.control_inputs([np.asarray(v.features)], "static")[0] for v in vs.videos}
    d_static = P.clip_distances(lambda i: static[i], pairs, model.embed,
                                lambda x, y: model.distance(x, y), T=8,
                                offsets=cfg2.data.clip_offsets)
    auc_real = verification_auc(d, same)
    assert auc_real - verification_auc(d_static, same) > 0.2, (auc_real, d_static[:4])


def test_resume_through_the_recipe_gives_identical_weights(tmp_path):
    recipe = load_recipes().build("cpa")
    cfg = _cfg("train.epochs=3")
    threads = torch.get_num_threads()
    train_run(recipe, cfg, tmp_path / "full", resume=False, progress=False)
    assert torch.get_num_threads() == threads  # train.threads is restored afterwards
    cut = _cfg("train.epochs=3", "train.stop_after_epoch=1")
    s1 = train_run(recipe, cut, tmp_path / "cut", resume=False, progress=False)
    assert s1["parts"][0]["epochs_done"] == 1 and not s1["finished"]
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    s2 = train_run(recipe, cfg, tmp_path / "cut", resume=True, progress=False)
    assert s2["parts"][0]["resumed_from_epoch"] == 1 and s2["parts"][0]["epochs_done"] == 3
    a = load_run(recipe, tmp_path / "full")[2][""]
    b = load_run(recipe, tmp_path / "cut")[2][""]
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
        "data.dataset=folder",
        f"data.root={tmp_path / 'data'}",
        "model.steps=3",
        "eval.pairs=auto",
    )
    summary = train_run(RECIPE, cfg, tmp_path / "run", progress=False)
    assert summary["data"].startswith("folder dataset")
    report = evaluate_run(RECIPE, tmp_path / "run", progress=False)
    assert report["num_pairs"] == len(ds.pairs) and report["metrics"]
    assert "pairs.csv" in report["pairs"] or "own list" in report["pairs"]
    (tmp_path / "data" / "features" / f"{ds.videos[0].video_id}.npy").unlink()
    with pytest.raises(FileNotFoundError):
        load_featureset(cfg.data)


def test_quality_assessment_reports_spearman_rl2_aiou(tmp_path):
    cfg = _cfg(
        "model.task=quality",
        "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 8, "
        "num_frames: 24, dim: 16, steps_per_procedure: 3, background: 0.0, seed: 0}",
        "model.steps=3",
        "eval.num_exemplars=2",
    )
    train_run(RECIPE, cfg, tmp_path / "run", progress=False)
    report = evaluate_run(RECIPE, tmp_path / "run", progress=False)
    names = {r["metric"] for r in report["metrics"]}
    assert {"spearman_rho", "relative_l2", "aiou@0.5", "aiou@0.75"} <= names
    assert all(np.isfinite(r["value"]) for r in report["metrics"])


@pytest.mark.realdata
def test_csv_scripted_data_uses_official_pairs(real_data, tmp_path):
    cfg = _cfg(
        "data.dataset=svip-csv",
        f"data.root={real_data / 'svip' / 'CSV'}",
        "data.synthetic={num_frames: 32, dim: 16, seed: 0}",
        "data.max_videos=150",
        "eval.pairs=auto",
        "train.epochs=1",
        "eval.distances=[cpa,raw_dtw]",
    )
    vs = load_featureset(cfg.data)
    assert vs.simulated and "SIMULATED" in vs.description
    assert all(p.video_id_1.split("/")[0] == p.label_1 for p in vs.pairs)
    train_run(RECIPE, cfg, tmp_path / "run", progress=False, data=vs)
    report = evaluate_run(RECIPE, tmp_path / "run", progress=False, data=vs)
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
        "data.dataset=svip-csv",
        f"data.root={root}",
        f"data.features_dir={feats}",
        "eval.pairs=auto",
        "train.epochs=1",
        "eval.distances=[cpa]",
    )
    vs = load_featureset(cfg.data)
    assert not vs.simulated and len(vs.videos) == len(data) and vs.in_dim == 16
    assert len(vs.pairs) == 1000  # the official test pairs
    assert all(p.video_id_1 in vs.index and p.video_id_2 in vs.index for p in vs.pairs)
    train_run(RECIPE, cfg, tmp_path / "run", progress=False, data=vs)
    assert evaluate_run(RECIPE, tmp_path / "run", progress=False, data=vs)["metrics"]
    (feats / f"{data.records[0].video_id}.npy").unlink()
    missing = _cfg("data.dataset=svip-csv", f"data.root={root}", f"data.features_dir={feats}")
    with pytest.raises(FileNotFoundError, match="feature files .* are missing"):
        load_featureset(missing.data)
