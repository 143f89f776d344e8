"""LRProp recipe: inputs, views, model, training, resume, CLI, config errors, Penn Action."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import procalign.eval as E
from procalign.config import load_config
from procalign.data.joints import event_phases, normalize_joints
from procalign.data.views import augment_view, make_batches, sample_view
from procalign.eval.protocols import control_inputs
from procalign.methods.lrprop import LRPropConfig, LRPropRecipe
from procalign.models.lrprop import LRPropModel
from procalign.models.lrprop import embed_videos as embed_clips
from procalign.train.runner import evaluate_run, load_run, train_run
from procalign.train.threads import compute

RECIPE = LRPropRecipe()

TINY = [
    "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 16, num_frames: 32, dim: 16, seed: 0}",
    "data.num_frames=16",
    "model.dim=32",
    "model.layers=1",
    "model.heads=2",
    "optim.lr=0.003",
    "train.threads=1",
    "eval.max_queries=3",
    "eval.max_candidates=4",
    "eval.fractions=[0.5, 1.0]",
]


@pytest.fixture(autouse=True)
def _one_thread():
    """numba's OpenMP workers spin between kernel calls and starve torch's on a small CPU."""
    with compute(1):
        yield


def _cfg(*extra: str) -> LRPropConfig:
    return load_config(LRPropConfig, None, [*TINY, *extra])


def _data(cfg: LRPropConfig):
    return RECIPE.load_data(cfg, None, False)


# ----------------------------------------------------------------------------- inputs


def test_normalize_joints_by_hand():
    j = np.zeros((2, 13, 2), np.float32)
    j[:, 1] = (90, 100)  # shoulders at y = 100 (image y points down)
    j[:, 2] = (110, 100)
    j[:, 7] = (95, 140)  # hips at y = 140: torso length 40
    j[:, 8] = (105, 140)
    j[1] += (30, 0)  # the person walks 30 px right in frame 1
    j[:, 0] = j[:, 1] + (10, -20)  # head 20 px above the mid-shoulder
    hips = normalize_joints(j, "hips")
    assert hips[0, 0].tolist() == pytest.approx([0.0, 1.5])  # (0, 60 px up) / 40
    assert np.allclose(hips[0], hips[1])  # per-frame centring removes the walk
    video = normalize_joints(j, "video")
    assert video[1, 7, 0] - video[0, 7, 0] == pytest.approx(30 / 40)  # global motion kept
    bbox = np.array([[80, 60, 120, 160]], np.float32)  # one row short: repeated
    boxed = normalize_joints(j, "bbox", bbox)
    assert boxed[0, 7].tolist() == pytest.approx([(95 - 100) / 100, (-140 + 110) / 100])
    with pytest.raises(ValueError, match=r"joints must be \(T, J, 2\)"):
        normalize_joints(np.zeros((3, 13)))
    with pytest.raises(ValueError, match="needs bbox"):
        normalize_joints(j, "bbox")


def test_event_phases_are_ordered_and_start_at_the_first_step():
    assert event_phases(np.array([-1, -1, 0, 0, -1, 1, 2, 2, -1])).tolist() == [
        0,
        0,
        1,
        1,
        1,
        2,
        3,
        3,
        3,
    ]


def test_sample_view_crops_keep_original_sorted_indices():
    rng = np.random.default_rng(0)
    for F, T in [(100, 16), (10, 16), (1, 4)]:
        idx = sample_view(F, T, 0.5, rng)
        assert idx.shape == (T,) and idx.dtype == np.int64
        assert np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() < F
        assert idx.max() - idx.min() + 1 >= min(F, T) * 0.4  # spans a real crop, not one frame
    assert len(set(sample_view(10, 16, 1.0, rng).tolist())) <= 10  # short videos repeat frames


def test_joint_augmentation_is_one_similarity_transform_for_all_frames():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 13 * 2 + 13)).astype(np.float32)
    out = augment_view(
        x, np.random.default_rng(2), "joints", num_joints=13, jitter=0.0, rotation=30
    )
    assert np.array_equal(out[:, 26:], x[:, 26:])  # visibility untouched
    src, dst = x[:, :26].reshape(-1, 2), out[:, :26].reshape(-1, 2)
    # least-squares affine fit over all frames at once: exact only if one transform serves all
    A = np.concatenate([src, np.ones((len(src), 1))], 1)
    coef, *_ = np.linalg.lstsq(A, dst, rcond=None)
    assert np.allclose(A @ coef, dst, atol=1e-4)
    M = coef[:2]
    assert M[0, 0] == pytest.approx(M[1, 1], abs=1e-4) and M[0, 1] == pytest.approx(
        -M[1, 0], abs=1e-4
    )


def test_feature_augmentation_drops_the_same_dimensions_in_every_frame():
    x = np.random.default_rng(3).normal(size=(8, 20)).astype(np.float32)
    mean = np.full(20, 7.0, np.float32)
    out = augment_view(x, np.random.default_rng(4), "features", mean=mean, noise=0.0, dropout=0.5)
    dropped = np.all(out == 7.0, axis=0)
    assert dropped.any() and np.all((out == 7.0) == dropped[None, :])


def test_batches_are_a_function_of_the_epoch():
    data = _data(_cfg(
        "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 6, dim: 8}"
    ))
    train = data.split("train", "1.1")
    a, b, c = (make_batches(train, e, seed=1, num_frames=12) for e in (0, 0, 1))
    assert all(
        torch.equal(x["x"], y["x"]) and torch.equal(x["idx"], y["idx"]) for x, y in zip(a, b)
    )
    assert not torch.equal(a[0]["idx"], c[0]["idx"])
    batch = a[0]
    assert (
        batch["x"].shape == (4, 12, 8)
        and batch["video"].tolist()[::2] == batch["video"].tolist()[1::2]
    )
    for v, idx in zip(batch["video"].tolist(), batch["idx"]):
        assert idx.max() < train[v].features.shape[0]
    # the crop holds the original frames at those indices (no augmentation here)
    v0 = batch["video"][0].item()
    assert np.allclose(batch["x"][0].numpy(), train[v0].features[batch["idx"][0].long().numpy()])


# ----------------------------------------------------------------------------- model


def test_model_shapes_and_padding():
    torch.manual_seed(0)
    model = LRPropModel(10, dim=16, layers=2, heads=4).eval()
    model.set_input_stats([np.random.default_rng(0).normal(3.0, 2.0, size=(50, 10))])
    assert model.in_mean.shape == (10,) and float(model.in_std.mean()) == pytest.approx(
        2.0, rel=0.3
    )
    x = torch.randn(3, 7, 10)
    lengths = torch.tensor([7, 4, 2])
    z = model(x, lengths)
    assert z.shape == (3, 7, 16)
    assert torch.all(z[1, 4:] == 0) and torch.all(z[2, 2:] == 0)
    alone = model(x[1:2, :4])
    assert torch.allclose(z[1, :4], alone[0], atol=1e-5)  # padding never leaks into real frames
    with pytest.raises(ValueError, match=r"x must be \(B, T, D_in=10\)"):
        model(torch.randn(2, 5, 9))


def test_strided_embedding_covers_every_frame_with_whole_video_views():
    torch.manual_seed(0)
    model = LRPropModel(4, dim=8, layers=1, heads=2).eval()
    xs = [
        np.random.default_rng(5).normal(size=(23, 4)).astype(np.float32),
        np.ones((5, 4), np.float32),
    ]
    out = embed_clips(model, xs, window=8, mode="strided")
    assert [o.shape for o in out] == [(23, 8), (5, 8)]
    # 23 frames, window 8 -> 3 interleaved views: frames 1, 4, 7, ... form one of them
    with torch.no_grad():
        view = model(torch.from_numpy(xs[0][1::3])[None])[0].numpy()
        full = model(torch.from_numpy(xs[1])[None])[0].numpy()
    assert np.allclose(out[0][1::3], view, atol=1e-5)
    assert np.allclose(out[1], full, atol=1e-5)
    assert np.allclose(
        embed_clips(model, xs[:1], 8, "full")[0],
        model(torch.from_numpy(xs[0])[None])[0].detach().numpy(),
        atol=1e-5,
    )


# ----------------------------------------------------------------------------- training


def _tau(model, videos, window, static=False):
    xs = [v.features for v in videos]
    if static:
        xs = control_inputs(xs, "static")
    return E.mean_kendalls_tau(embed_clips(model, xs, window), variant="tau_a")


def test_short_training_improves_the_gap_to_static_input(tmp_path):
    """Learning is judged on tau(real) - tau(static): with position encodings a model can read
    the frame index and keep its tau on a video whose frames are all the same, so the raw tau
    alone cannot tell learning from counting."""
    cfg = _cfg("data.actions=['1.1']", "train.epochs=10")
    data = _data(cfg)
    info = RECIPE.describe(cfg, data)
    train, test = data.split("train", "1.1"), data.split("test", "1.1")
    assert len(train) >= 8 and len(test) >= 3
    untrained = RECIPE.build(cfg, info)["classes/1.1"]  # the initialisation training starts from
    untrained.set_input_stats([v.features for v in train])
    untrained.eval()
    gap0 = _tau(untrained, test, 16) - _tau(untrained, test, 16, static=True)
    summary = train_run(RECIPE, cfg, tmp_path, resume=False, progress=False, data=data)
    trained = load_run(RECIPE, tmp_path)[2]["classes/1.1"]
    gap1 = _tau(trained, test, 16) - _tau(trained, test, 16, static=True)
    part = summary["parts"][0]
    assert part["epochs_done"] == 10 and {"same", "prop", "sdtw"} <= set(part["last_epoch"])
    assert gap1 > gap0 + 0.05, (gap0, gap1)


def test_recipe_resume_gives_identical_weights(tmp_path):
    cfg = _cfg("data.actions=['1.2']", "train.epochs=3")
    train_run(RECIPE, cfg, tmp_path / "full", progress=False)
    train_run(RECIPE, _cfg("data.actions=['1.2']", "train.epochs=3", "train.stop_after_epoch=1"),
              tmp_path / "cut", progress=False)
    assert not (tmp_path / "cut/classes/1.2/model.safetensors").exists()
    summary = train_run(RECIPE, cfg, tmp_path / "cut", progress=False)  # a new call resumes
    assert summary["parts"][0]["resumed_from_epoch"] == 1
    a = load_run(RECIPE, tmp_path / "full")[2]["classes/1.2"]
    b = load_run(RECIPE, tmp_path / "cut")[2]["classes/1.2"]
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    again = train_run(RECIPE, cfg, tmp_path / "cut", progress=False)
    assert again["parts"][0]["status"] == "already trained"
    with pytest.raises(ValueError, match=r"other settings \(train.epochs: 3 -> 4\).*--extend"):
        train_run(RECIPE, _cfg("data.actions=['1.2']", "train.epochs=4"), tmp_path / "cut",
                  progress=False)


def test_cli_train_and_eval_on_synthetic_with_phase_metrics(tmp_path, capsys):
    from procalign.cli.main import main

    out = tmp_path / "run"
    over = [*TINY, "train.epochs=2", "data.augment=false", "loss.sdtw_variant=idm"]
    assert main(["train", "lrprop", *over, "--out", str(out), "--quiet"]) == 0
    assert main(["eval", "lrprop", "--run", str(out), "eval.stride=2", "--out",
                 str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    metrics = {m["metric"] for m in report["metrics"]}
    assert {
        "kendalls_tau",
        "cycle_consistency",
        "ap@5",
        "dtw_alignment_accuracy",
        "phase_progression",
        "phase_classification@1",
        "retrieval_precision@1",
        "verification_auc_pooled",
    } <= metrics
    assert {m["model"] for m in report["metrics"]} == {"lrprop", "raw_inputs", "fullres_inputs"}
    # the normalised + smoothed inputs are chosen on the training videos and named by setting
    chosen = report["baselines"]["chosen"]["fullres_inputs"]
    assert chosen["norm"] in ("center", "standardize") and chosen["width"] in (1, 3, 5, 9, 15)
    assert all(f"fullres_inputs,{chosen['norm']},w={chosen['width']},chosen_on_train" in m["variant"]
               for m in report["metrics"] if m["model"] == "fullres_inputs")
    controls = {m.get("control") for m in report["metrics"] if m["metric"] == "kendalls_tau"}
    assert {"static", "shuffled", "gap_static", "gap_shuffled"} <= controls
    assert report["classes"] == ["1.1", "1.2"]
    assert all(
        "stride=2" in m["variant"] for m in report["metrics"] if m["metric"] == "kendalls_tau"
    )
    assert all(
        math.isfinite(m["value"]) for m in report["metrics"] if m["metric"] != "kendalls_tau"
    )
    assert "kendalls_tau" in capsys.readouterr().out


def test_folder_dataset_with_string_frame_labels(tmp_path):
    from procalign.data.synthetic import make_dataset, write_folder

    root = write_folder(
        make_dataset(
            num_tasks=1, procedures_per_task=2, videos_per_procedure=8, num_frames=24, dim=8
        ),
        tmp_path / "data",
    )
    cfg = _cfg("data.dataset=folder", f"data.root={root}", "data.actions=['1.1']", "train.epochs=1")
    train_run(RECIPE, cfg, tmp_path / "run", progress=False)
    report = evaluate_run(RECIPE, tmp_path / "run", progress=False)
    rows = {(m["metric"], m["model"]) for m in report["metrics"] if "control" not in m}
    assert ("phase_classification@1", "lrprop") in rows and ("dtw_alignment_accuracy", "lrprop") in rows
    assert ("phase_progression", "lrprop") not in rows  # step names are not ordered phases
    assert (tmp_path / "run/eval.json").exists()


def test_folder_videos_go_through_a_frozen_registry_encoder(tmp_path):
    import shutil

    from procalign.data.synthetic import make_dataset, write_folder

    ds = make_dataset(
        num_tasks=1, procedures_per_task=2, videos_per_procedure=8, num_frames=12, dim=8
    )
    root = write_folder(ds, tmp_path / "data", render_videos=True, video_size=32)
    shutil.rmtree(root / "features")  # videos only: features must come from the encoder
    cfg = _cfg(
        "data.dataset=folder",
        f"data.root={root}",
        "data.actions=['1.1']",
        "train.epochs=1",
        "data.video_encoder=tiny_cnn",
        "data.video_encoder_args={dim: 12}",
        "data.num_frames=8",
    )
    train_run(RECIPE, cfg, tmp_path / "run", progress=False)
    assert len(list((tmp_path / "run/features/features").glob("*.npy"))) == len(ds)
    report = evaluate_run(RECIPE, tmp_path / "run", progress=False)
    assert "kendalls_tau" in {m["metric"] for m in report["metrics"]}


def test_video_level_embedding_does_not_depend_on_the_label(tmp_path):
    """Shuffling the test videos' labels must not change any video's embedding (issue: the
    query's class model used to embed every candidate)."""
    import random

    cfg = _cfg("train.epochs=1")
    data = _data(cfg)
    train_run(RECIPE, cfg, tmp_path, progress=False, data=data)
    cfg, info, models = load_run(RECIPE, tmp_path)
    embed = RECIPE.label_blind(cfg, models, info)
    test = data.split("test")
    before = embed([v.features for v in test])
    labels = [v.label for v in test]
    random.Random(0).shuffle(labels)
    for v, lab in zip(test, labels):
        v.label = lab
    after = embed([v.features for v in test])
    assert all(np.array_equal(x, y) for x, y in zip(before, after))
    assert before[0].shape[1] == 2 * cfg.model.dim  # both class models, concatenated


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.sdtw_variant=plain", "loss.sdtw_variant"),
        ("train.batch_size=1", "train.batch_size"),

        ("data.crop_min=0", "data.crop_min"),
        ("model.heads=3", "divisible"),
        ("train.per_class={'1.1': {sigma: 2}}", "train.per_class.1.1.sigma"),
        ("eval.views=chunks", "eval.views"),
        ("train.threads=0", "train.threads"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        RECIPE.validate(_cfg(override))


def test_unknown_keys_and_missing_data_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown config key"):
        _cfg("loss.lambda3=1.0")
    with pytest.raises(ValueError, match="data.root"):
        train_run(RECIPE, _cfg("data.dataset=folder"), tmp_path, progress=False)
    with pytest.raises(ValueError, match="data.dataset 'kinetics' is unknown"):
        train_run(RECIPE, _cfg("data.dataset=kinetics"), tmp_path / "k", progress=False)
    with pytest.raises(ValueError, match=r"data.actions \['9.9'\] are not labels"):
        train_run(RECIPE, _cfg("data.actions=['9.9']"), tmp_path / "x", progress=False)
    assert not (tmp_path / "x/config.yaml").exists()  # a corrected config can use the folder
    with pytest.raises(FileNotFoundError, match="not a finished lrprop run"):
        evaluate_run(RECIPE, tmp_path / "nothing")


# ----------------------------------------------------------------------------- real data


def test_pennaction_joints_through_the_model(real_data, tmp_path):
    cfg = _cfg(
        "data.dataset=pennaction",
        f"data.root={real_data / 'pennaction'}",
        "data.actions=[jumping_jacks]",
        "data.max_train_videos=4",
        "data.max_test_videos=2",
        "train.epochs=1",
        "data.num_frames=12",
    )
    data = _data(cfg)
    assert data.kind == "joints" and data.num_joints == 13 and data.in_dim == 39
    jj = data.split("train", "jumping_jacks")
    assert len(jj) == 4 and all(v.phases is None for v in jj)
    coords = np.concatenate([v.features[:, :26] for v in jj]).reshape(-1, 13, 2)
    assert np.allclose(coords[:, 7:9].mean(1), 0, atol=1e-5)  # centred on the mid-hip
    assert 0.5 < np.median(np.abs(coords[:, 0, 1])) < 3  # head about a torso above the hips
    summary = train_run(RECIPE, cfg, tmp_path, resume=False, progress=False, data=data)
    part = summary["parts"][0]
    assert part["epochs_done"] == 1 and math.isfinite(part["last_epoch"]["loss"])
    model = load_run(RECIPE, tmp_path)[2]["classes/jumping_jacks"]
    test = data.split("test", "jumping_jacks")
    embs = embed_clips(model, [v.features for v in test], 12)
    assert all(e.shape == (len(v.features), 32) and np.isfinite(e).all() for e, v in zip(embs, test))
