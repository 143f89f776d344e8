"""Streaming extraction: per-file failures, decoded frames, fps sampling, bounded memory, workers,
encoder crashes, and what pretrained features buy on rendered videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from procalign.cli.main import main
from procalign.data.extraction import extract_features
from procalign.data.features import (
    discover_sources,
    load_features,
    manifest_random_weights,
    read_manifest,
)
from procalign.data.render import render_frames, write_video
from procalign.data.sampling import SamplingPolicy
from procalign.data.video import ResizePolicy
from procalign.models.encoders import build_encoder
from tests.data.fixtures_extraction import SMALL, CountingEncoder, tiny


def _audio_only(path: Path) -> Path:
    """An .mp4 holding only an AAC audio track: a wrong-codec input for a video reader."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_bad_videos_are_per_file_failures_and_the_run_goes_on(video_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    good = (video_dir / "vid1.mp4").read_bytes()
    (bad / "zero.mp4").write_bytes(b"")
    (bad / "truncated.mkv").write_bytes((video_dir / "vid0.webm").read_bytes()[:300])
    (bad / "cut.mp4").write_bytes(good[: len(good) // 2])
    (bad / "garbage.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    _audio_only(bad / "audio.mp4")
    (bad / "ok.mp4").write_bytes(good)
    (bad / "ok2.mp4").write_bytes(good)
    out = tmp_path / "out"
    report = extract_features(
        discover_sources(bad), out, tiny(), extractor="tiny_cnn", resize=SMALL, progress=False
    )
    assert sorted(report.done) == ["ok", "ok2"]
    assert sorted(report.failed) == ["audio", "cut", "garbage", "truncated", "zero"]
    assert "no video stream" in report.failed["audio"]
    assert "empty file" in report.failed["zero"]
    manifest = read_manifest(out)
    assert set(manifest["failures"]) == set(report.failed)
    assert all(e["error"].startswith("cannot read video") for e in manifest["failures"].values())
    assert sorted(p.name for p in (out / "features").iterdir()) == ["ok.npy", "ok2.npy"]


def test_streaming_matches_the_decoded_frames(video_dir, tmp_path):
    """The streamed pipeline encodes exactly the frames read_video returns (no resize)."""
    from procalign.data.video import read_video

    keep = ResizePolicy("none", None, None)
    enc = build_encoder("tiny_cnn", dim=8, width=4)
    for sampling in (SamplingPolicy("all"), SamplingPolicy("eval", num_frames=5)):
        out = tmp_path / f"o-{sampling.mode}"
        sources = [s for s in discover_sources(video_dir) if s.video_id in ("vid1", "vid2")]
        extract_features(
            sources,
            out,
            enc,
            extractor="tiny_cnn",
            sampling=sampling,
            resize=keep,
            batch_size=3,
            progress=False,
        )
        for s in sources:
            frames = read_video(s.path, sampling, keep).frames[0]
            with torch.no_grad():
                expected = enc(torch.from_numpy(frames).permute(0, 3, 1, 2)[None])[0].numpy()
            got = load_features(out / "features" / f"{s.video_id}.npy")
            np.testing.assert_allclose(got, expected, atol=1e-5)


def test_fps_sampling_default_rate_and_frame_folders(video_dir, tmp_path, capsys):
    """The CLI default: pretrained encoder, 8 fps for videos, every frame of frame folders."""
    src = tmp_path / "src"
    src.mkdir()
    steps = np.repeat([1, 2, 3], 8)
    write_video(
        src / "v.mp4", render_frames(steps, np.tile(np.linspace(0, 1, 8), 3), size=32), fps=16
    )  # 24 frames at 16 fps -> 12 frames at 8 fps
    folder = src / "clip"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(np.full((32, 32, 3), 30 * i, np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "out"
    assert main(["extract", str(src), str(out), "--size", "32", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "random weights" not in captured.err and "encoder efficientnet_lite0" in captured.out
    manifest = read_manifest(out)
    settings = manifest["settings"]
    assert settings["extractor"] == "efficientnet_lite0" and settings["random_weights"] is False
    assert settings["sampling"] == {"mode": "all", "fps": 8.0}
    assert manifest["videos"]["v"]["shape"] == [12, 1280]
    assert manifest["videos"]["clip"]["shape"] == [5, 1280]
    assert not manifest_random_weights(out)
    # --all-frames keeps every frame; an explicit --fps on a frame folder is a recorded failure
    assert (
        main(
            [
                "extract",
                str(src),
                str(tmp_path / "all"),
                "--size",
                "32",
                "--all-frames",
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_manifest(tmp_path / "all")["videos"]["v"]["shape"] == [24, 1280]
    assert (
        main(
            [
                "extract",
                str(src),
                str(tmp_path / "f4"),
                "--size",
                "32",
                "--fps",
                "4",
                "--no-progress",
            ]
        )
        == 1
    )
    assert "frame folder has no fps" in read_manifest(tmp_path / "f4")["failures"]["clip"]["error"]
    assert main(["extract", str(src), str(tmp_path / "x"), "--fps", "4", "--all-frames"]) == 2
    assert "exclude each other" in capsys.readouterr().err
    for bad in ("0", "-3", "nan"):
        assert main(["extract", str(src), str(tmp_path / "x"), "--fps", bad]) == 2
        assert "--fps must be a positive number" in capsys.readouterr().err


def test_memory_stays_bounded_for_a_long_video(tmp_path):
    """A 480-frame video at 64 px (5.9 MB of frames) is encoded holding a few batches only."""
    import tracemalloc

    n = 480
    steps = np.repeat(np.arange(1, 7), n // 6)
    progress = np.tile(np.linspace(0, 1, n // 6), 6)
    path = write_video(tmp_path / "long.mp4", render_frames(steps, progress, size=64), fps=30)
    total = n * 64 * 64 * 3
    enc = build_encoder("tiny_cnn", dim=8, width=4)
    src = discover_sources(path)
    tracemalloc.start()
    try:
        report = extract_features(
            src,
            tmp_path / "out",
            enc,
            extractor="tiny_cnn",
            resize=ResizePolicy("shorter_side", 64, 64),
            batch_size=16,
            prefetch=2,
            progress=False,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.done == ["long"] and report.frames == n
    assert peak < total / 4, f"peak {peak / 1e6:.1f} MB for {total / 1e6:.1f} MB of frames"


def test_workers_float16_and_settings(video_dir, tmp_path):
    sources = [s for s in discover_sources(video_dir) if s.video_id.startswith("vid")]
    one = extract_features(
        sources, tmp_path / "w1", tiny(), extractor="tiny_cnn", resize=SMALL, progress=False
    )
    two = extract_features(
        sources,
        tmp_path / "w2",
        tiny(),
        extractor="tiny_cnn",
        resize=SMALL,
        workers=3,
        prefetch=1,
        batch_size=5,
        progress=False,
    )
    assert sorted(two.done) == sorted(one.done) and one.key == two.key
    half = extract_features(
        sources,
        tmp_path / "h",
        tiny(),
        extractor="tiny_cnn",
        resize=SMALL,
        dtype="float16",
        progress=False,
    )
    assert half.key != one.key and read_manifest(tmp_path / "h")["settings"]["dtype"] == "float16"
    for vid in one.done:
        a = load_features(tmp_path / "w1" / "features" / f"{vid}.npy")
        b = load_features(tmp_path / "w2" / "features" / f"{vid}.npy")
        c = load_features(tmp_path / "h" / "features" / f"{vid}.npy")
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert c.dtype == np.float16
        np.testing.assert_allclose(c.astype(np.float32), a, rtol=2e-3, atol=2e-3)
    for bad in ({"workers": 0}, {"prefetch": 0}, {"dtype": "int8"}):
        with pytest.raises(ValueError, match="workers|prefetch|dtype"):
            extract_features(sources, tmp_path / "b", tiny(), extractor="tiny_cnn", **bad)


def test_an_encoder_crash_stops_the_decode_threads(video_dir, tmp_path):
    import threading

    class Boom(CountingEncoder):
        def forward(self, x):
            raise RuntimeError("encoder exploded")

    sources = [s for s in discover_sources(video_dir) if s.video_id.startswith("vid")]
    with pytest.raises(RuntimeError, match="exploded"):
        extract_features(
            sources,
            tmp_path / "o",
            Boom(build_encoder("tiny_cnn", dim=8, width=4)),
            extractor="tiny_cnn",
            resize=SMALL,
            workers=2,
            progress=False,
        )
    assert not [t for t in threading.enumerate() if t.name.startswith("procalign-decode")]


def _dtw_cost(a: np.ndarray, b: np.ndarray) -> float:
    """DTW of cosine distances, normalised by n + m (features centred and unit-normed)."""
    cost = 1.0 - a @ b.T
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return float(acc[n, m] / (n + m))


@pytest.mark.slow
def test_pretrained_features_tell_procedures_apart_where_random_ones_do_not(tmp_path, capsys):
    """Own-videos path on rendered videos: synth (cluttered scenes, where colour does not name a
    step) -> extract with efficientnet_lite0 and with tiny_cnn -> same-procedure AUC of DTW."""
    import csv
    import itertools

    from sklearn.metrics import roc_auc_score

    data = tmp_path / "videos"
    assert (
        main(
            [
                "synth",
                str(data),
                "--tasks",
                "1",
                "--procedures",
                "4",
                "--videos-per-procedure",
                "4",
                "--frames",
                "16",
                "--dim",
                "8",
                "--render-videos",
                "--render-style",
                "cluttered",
                "--video-size",
                "64",
                "--no-progress",
            ]
        )
        == 0
    )
    with open(data / "index.csv", newline="") as fh:
        label = {r["video_id"]: r["label"] for r in csv.DictReader(fh)}
    auc = {}
    for enc in ("efficientnet_lite0", "tiny_cnn"):
        out = tmp_path / enc
        assert (
            main(
                ["extract", str(data), str(out), "--encoder", enc, "--size", "64", "--no-progress"]
            )
            == 0
        )
        feats = {}
        for vid, entry in read_manifest(out)["videos"].items():
            x = np.asarray(load_features(out / entry["file"]), dtype=np.float64)
            x = x - x.mean(0)
            feats[vid] = x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-8)
        assert len(feats) == 16
        same, score = [], []
        for a, b in itertools.combinations(sorted(feats), 2):
            same.append(label[a] == label[b])
            score.append(-_dtw_cost(feats[a], feats[b]))
        auc[enc] = roc_auc_score(same, score)
    capsys.readouterr()
    print(f"same-procedure AUC: {auc}")
    assert auc["efficientnet_lite0"] >= 0.65, auc
    assert auc["efficientnet_lite0"] >= auc["tiny_cnn"] + 0.12, auc
