"""Feature cache: manifest key, resumable atomic extraction, shards, failures, training reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from procalign.cli.main import main
from procalign.data.features import (
    discover_sources,
    extract_features,
    extraction_settings,
    lazy_features,
    load_features,
    manifest_random_weights,
    parse_shard,
    read_manifest,
    settings_key,
    shard_of,
)
from procalign.data.sampling import SamplingPolicy
from procalign.data.render import render_frames, write_video
from procalign.data.video import ResizePolicy
from procalign.models.encoders import build_encoder
from tests.data.fixtures_extraction import SMALL, CountingEncoder, tiny


def test_settings_key_changes_with_every_setting():
    base = dict(
        extractor="tiny_cnn",
        weights_id="w0",
        sampling=SamplingPolicy("all"),
        resize=ResizePolicy("shorter_side", 64, 64),
        dim=8,
    )
    key = settings_key(extraction_settings(**base))
    variants = [
        {"extractor": "resnet50"},
        {"weights_id": "w1"},
        {"sampling": SamplingPolicy("all", fps=10)},  # fps
        {"sampling": SamplingPolicy("eval", num_frames=16)},
        {"resize": ResizePolicy("shorter_side", 32, 32)},  # size
        {"resize": ResizePolicy("fixed", 64)},
        {"dim": 16},
    ]
    keys = {settings_key(extraction_settings(**{**base, **v})) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    assert key == settings_key(extraction_settings(**base))
    assert len(key) == 16


def test_discover_sources(video_dir):
    sources = {s.video_id: s.kind for s in discover_sources(video_dir)}
    assert sources == {
        **{f"vid{i}": "video" for i in range(6)},
        "framesA": "frames",
        "corrupt": "video",
        "empty": "video",
    }
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_sources(video_dir / "nothing")


def test_extract_records_failures_and_goes_on(video_dir, tmp_path):
    out = tmp_path / "out"
    enc = tiny()
    report = extract_features(
        discover_sources(video_dir), out, enc, extractor="tiny_cnn", resize=SMALL, progress=False
    )
    assert sorted(report.done) == sorted([f"vid{i}" for i in range(6)] + ["framesA"])
    assert sorted(report.failed) == ["corrupt", "empty"]
    assert "corrupt.mp4" in report.failed["corrupt"] and "empty file" in report.failed["empty"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["key"] == report.key
    assert set(manifest["failures"]) == {"corrupt", "empty"}
    entry = manifest["videos"]["vid1"]
    assert entry["shape"] == [12, 8] and entry["file"] == "features/vid1.npy"
    assert entry["policy"]["resize"] == {"mode": "shorter_side", "size": 16, "crop": 16}
    assert entry["policy"]["sampling"] == {"mode": "all", "fps": None}
    assert manifest["videos"]["framesA"]["shape"] == [5, 8]
    assert not list(out.rglob(".*tmp*"))  # atomic writes leave no temporary files
    arr = load_features(out / "features" / "vid0.npy")
    assert isinstance(arr, np.memmap) and arr.dtype == np.float32 and arr.shape == (12, 8)
    assert not arr.flags.writeable


def test_extract_is_resumable(video_dir, tmp_path):
    out = tmp_path / "out"
    sources = [s for s in discover_sources(video_dir) if s.video_id.startswith("vid")]
    first = extract_features(
        sources, out, tiny(), extractor="tiny_cnn", resize=SMALL, progress=False
    )
    assert len(first.done) == 6
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "features").iterdir()}
    enc = tiny()
    second = extract_features(sources, out, enc, extractor="tiny_cnn", resize=SMALL, progress=False)
    assert second.done == [] and sorted(second.skipped) == sorted(first.done) and enc.calls == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "features").iterdir()} == mtimes
    (out / "features" / "vid3.npy").unlink()
    third = extract_features(sources, out, enc, extractor="tiny_cnn", resize=SMALL, progress=False)
    assert third.done == ["vid3"] and enc.calls == 1
    assert len(read_manifest(out)["videos"]) == 6


def test_interrupted_run_resumes_without_partial_files(video_dir, tmp_path):
    out = tmp_path / "out"
    sources = [s for s in discover_sources(video_dir) if s.video_id.startswith("vid")]

    class Crash(Exception):
        pass

    class CrashOnThird(CountingEncoder):
        def forward(self, x):
            if self.calls == 2:
                raise Crash("power cut")
            return super().forward(x)

    with pytest.raises(Crash):
        extract_features(
            sources,
            out,
            CrashOnThird(build_encoder("tiny_cnn", dim=8, width=4)),
            extractor="tiny_cnn",
            resize=SMALL,
            progress=False,
        )
    written = sorted(p.name for p in (out / "features").iterdir())
    assert written == ["vid0.npy", "vid1.npy"]  # complete files only, no temporaries
    kept = read_manifest(out)["videos"]  # flushed on the way out, policies included
    assert sorted(kept) == ["vid0", "vid1"] and all("policy" in e for e in kept.values())
    with pytest.raises(ValueError, match="other settings"):  # the key was saved before any .npy
        extract_features(sources, out, tiny(4), extractor="tiny_cnn", resize=SMALL, progress=False)
    report = extract_features(
        sources, out, tiny(), extractor="tiny_cnn", resize=SMALL, progress=False
    )
    assert sorted(report.skipped) == ["vid0", "vid1"] and len(report.done) == 4
    assert set(read_manifest(out)["videos"]) == {f"vid{i}" for i in range(6)}


def test_fps_on_a_frame_folder_is_a_recorded_failure(video_dir, tmp_path):
    sources = [s for s in discover_sources(video_dir) if s.video_id in ("framesA", "vid1")]
    report = extract_features(
        sources,
        tmp_path / "out",
        tiny(),
        extractor="tiny_cnn",
        sampling=SamplingPolicy("all", fps=5),
        resize=SMALL,
        progress=False,
    )
    assert report.done == ["vid1"] and "frame folder has no fps" in report.failed["framesA"]


def test_other_settings_are_refused_unless_overwrite(video_dir, tmp_path):
    out = tmp_path / "out"
    sources = [s for s in discover_sources(video_dir) if s.video_id == "vid0"]
    extract_features(sources, out, tiny(8), extractor="tiny_cnn", resize=SMALL, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        extract_features(sources, out, tiny(4), extractor="tiny_cnn", resize=SMALL, progress=False)
    report = extract_features(
        sources, out, tiny(4), extractor="tiny_cnn", resize=SMALL, progress=False, overwrite=True
    )
    assert report.done == ["vid0"] and load_features(out / "features" / "vid0.npy").shape == (12, 4)


def test_shards_partition_the_work(video_dir, tmp_path):
    out = tmp_path / "out"
    sources = discover_sources(video_dir)
    ids = [s.video_id for s in sources]
    seen: list[str] = []
    for i in range(3):
        report = extract_features(
            sources, out, tiny(), extractor="tiny_cnn", resize=SMALL, shard=(i, 3), progress=False
        )
        mine = report.done + list(report.failed)
        assert all(shard_of(v, 3) == i for v in mine)
        assert report.not_in_shard == len(ids) - len(mine)
        assert (out / f"manifest.shard-{i}-of-3.json").is_file()
        seen.extend(mine)
    assert sorted(seen) == sorted(ids)  # disjoint and complete
    merged = read_manifest(out)
    assert set(merged["videos"]) | set(merged["failures"]) == set(ids)
    assert parse_shard("2/3") == (2, 3)
    for bad in ("3/3", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_random_sampling_is_refused(video_dir, tmp_path):
    with pytest.raises(ValueError, match="sampling mode must be 'all' or 'eval'"):
        extract_features(
            discover_sources(video_dir),
            tmp_path / "o",
            tiny(),
            extractor="tiny_cnn",
            sampling=SamplingPolicy("train", 4),
            progress=False,
        )


def test_identity_over_feature_files(tmp_path):
    src = tmp_path / "feats"
    src.mkdir()
    rng = np.random.default_rng(0)
    arrays = {f"v{i}": rng.normal(size=(10 + i, 6)).astype(np.float32) for i in range(3)}
    for vid, arr in arrays.items():
        np.save(src / f"{vid}.npy", arr)
    np.save(src / "bad.npy", np.zeros(5))
    out = tmp_path / "out"
    report = extract_features(
        discover_sources(src),
        out,
        build_encoder("identity", dim=6),
        extractor="identity",
        sampling=SamplingPolicy("eval", num_frames=4),
        progress=False,
    )
    assert sorted(report.done) == ["v0", "v1", "v2"] and list(report.failed) == ["bad"]
    got = load_features(out / "features" / "v2.npy")
    np.testing.assert_array_equal(got, arrays["v2"][[1, 4, 7, 10]])
    # a frame encoder cannot eat .npy inputs: recorded as a per-file failure
    report = extract_features(
        discover_sources(src), tmp_path / "out2", tiny(), extractor="tiny_cnn", progress=False
    )
    assert len(report.failed) == 4 and "cannot feed" in report.failed["v0"]
    # a .npy of another D is a per-file failure, not the end of the run
    np.save(src / "wide.npy", np.zeros((5, 9), np.float32))
    report = extract_features(
        discover_sources(src),
        tmp_path / "out3",
        build_encoder("identity", dim=6),
        extractor="identity",
        progress=False,
    )
    assert len(report.done) == 3 and "encoder expects D = 6" in report.failed["wide"]


def test_folder_dataset_sources_follow_the_encoder_input(tmp_path):
    root = tmp_path / "ds"
    (root / "features").mkdir(parents=True)
    (root / "index.csv").write_text("video_id,label,split\na,x,train\nb,x,test\n")
    for vid in "ab":
        np.save(root / "features" / f"{vid}.npy", np.zeros((12, 4), np.float32))
    steps = np.repeat([1, 2, 3], 4)
    write_video(root / "videos" / "a.mp4", render_frames(steps, np.tile(np.linspace(0, 1, 4), 3)))
    frames = {s.video_id: s.kind for s in discover_sources(root)}
    features = {s.video_id: s.kind for s in discover_sources(root, prefer="features")}
    assert frames == {"a": "video", "b": "features"}
    assert features == {"a": "features", "b": "features"}
    with pytest.raises(ValueError, match="prefer"):
        discover_sources(root, prefer="video")


def test_foreign_npy_files_are_never_taken_for_cached_outputs(tmp_path):
    from procalign.data import synthetic

    root = synthetic.write_folder(
        synthetic.make_dataset(
            num_tasks=1, procedures_per_task=2, videos_per_procedure=1, num_frames=12, dim=4
        ),
        tmp_path / "ds",
        render_videos=True,
        video_size=16,
    )
    before = {p.name: p.read_bytes() for p in (root / "features").iterdir()}
    for overwrite in (False, True):  # OUT_DIR = the dataset: its own features/ are not a cache
        with pytest.raises(ValueError, match="no manifest.json"):
            extract_features(
                discover_sources(root), root, tiny(), extractor="tiny_cnn", overwrite=overwrite
            )
    identity = build_encoder("identity")
    (root / "manifest.json").write_text(json.dumps({"key": "x", "settings": {}, "videos": {}}))
    with pytest.raises(ValueError, match="would overwrite the input files"):
        extract_features(
            discover_sources(root, prefer="features"),
            root,
            identity,
            extractor="identity",
            overwrite=True,
        )
    assert {p.name: p.read_bytes() for p in (root / "features").iterdir()} == before


def test_bad_settings_fail_before_any_work(video_dir, tmp_path):
    sources = discover_sources(video_dir)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        extract_features(sources, tmp_path / "o", tiny(), extractor="tiny_cnn", batch_size=0)
    with pytest.raises(ValueError, match="fps must be a positive number"):
        SamplingPolicy("all", fps=-2)
    # a run that finished nothing leaves no settings to defend: the next run may change them
    out = tmp_path / "nothing"
    one = [s for s in sources if s.video_id == "corrupt"]
    extract_features(one, out, tiny(8), extractor="tiny_cnn", resize=SMALL, progress=False)
    report = extract_features(one, out, tiny(4), extractor="tiny_cnn", resize=SMALL, progress=False)
    assert list(report.failed) == ["corrupt"] and read_manifest(out)["key"] == report.key


def test_cli_extract_in_process(video_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    args = [
        "extract",
        str(video_dir),
        str(out),
        "--encoder",
        "tiny_cnn",
        "--encoder-arg",
        "dim=8",
        "--encoder-arg",
        "width=4",
        "--size",
        "16",
        "--frames",
        "4",
        "--no-progress",
    ]
    assert main(args) == 1  # two inputs fail; the others are written
    captured = capsys.readouterr()
    text = captured.out
    assert "7 extracted" in text and "2 failed" in text and "corrupt" in text
    assert "random weights" in captured.err and "carries no meaning" in captured.err
    assert read_manifest(out)["settings"]["random_weights"] is True
    assert manifest_random_weights(out) and manifest_random_weights(out / "features")
    assert load_features(out / "features" / "vid2.npy").shape == (4, 8)
    assert main(args) == 1
    assert "0 extracted, 7 already cached" in capsys.readouterr().out
    assert main(args[:3] + ["--encoder", "nonsense"]) == 2
    assert "unknown encoder" in capsys.readouterr().err
    assert main(args + ["--shard", "5/2"]) == 2


def test_read_manifest_names_a_folder_without_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        read_manifest(tmp_path)

def test_manifest_random_weights_of_older_manifests(tmp_path):
    old = {"settings": {"weights": "tiny_cnn:random-seed0-w16-d64"}}
    assert manifest_random_weights(old)
    assert not manifest_random_weights({"settings": {"weights": "efficientnet_lite0:imagenet"}})
    assert not manifest_random_weights(tmp_path)  # no manifest: features made elsewhere


_FD_SCRIPT = """
import resource, sys, numpy as np
from procalign.data.features import lazy_features
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
paths = sys.argv[2:]
if sys.argv[1] == "lazy":
    held = [lazy_features(p) for p in paths]
    total = sum(float(np.asarray(h).sum()) + float(h[1:3].sum()) for h in held)
    print("ok", len(held), total)
else:
    held = [np.load(p, mmap_mode="r") for p in paths]
    print("ok", len(held))
"""


def test_lazy_features_hold_no_file_descriptors(tmp_path):
    """200 feature files under ulimit -n 64: memory maps die with Errno 24, lazy views do not."""
    import os
    import subprocess
    import sys

    paths = []
    for i in range(200):
        p = tmp_path / f"v{i}.npy"
        np.save(p, np.full((4, 3), i, np.float32))
        paths.append(str(p))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    lazy = subprocess.run(
        [sys.executable, "-c", _FD_SCRIPT, "lazy", *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert lazy.returncode == 0, lazy.stderr
    assert lazy.stdout.split()[:2] == ["ok", "200"]
    assert float(lazy.stdout.split()[2]) == pytest.approx(sum(18 * i for i in range(200)))
    mapped = subprocess.run(
        [sys.executable, "-c", _FD_SCRIPT, "mmap", *paths],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert mapped.returncode != 0 and "Too many open files" in mapped.stderr
    view = lazy_features(paths[7])
    assert view.shape == (4, 3) and len(view) == 4 and view.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(view), np.full((4, 3), 7, np.float32))
    with pytest.raises(ValueError, match="expected \\(T, D\\)"):
        np.save(tmp_path / "flat.npy", np.zeros(3))
        lazy_features(tmp_path / "flat.npy")


def test_extraction_names_are_still_importable_from_features():
    """The streaming extraction moved to procalign.data.extraction; old imports keep working."""
    from procalign.data import extraction, features

    for name in features._EXTRACTION:
        assert getattr(features, name) is getattr(extraction, name)
    with pytest.raises(AttributeError, match="no_such_name"):
        features.no_such_name  # noqa: B018
    from procalign.cli import extract as cli_extract  # its own copy keeps --help fast

    assert cli_extract.DEFAULT_FPS == extraction.DEFAULT_FPS
