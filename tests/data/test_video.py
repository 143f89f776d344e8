"""Video input: real files written with PyAV, frame folders, resize, per-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from procalign.data.render import render_frames, write_video
from procalign.data.sampling import SamplingPolicy, clip_indices
from procalign.data.video import (
    ResizePolicy,
    VideoDecodeError,
    VideoNotFoundError,
    read_many,
    read_video,
)

EXTS = ["mp4", "avi", "webm", "mkv"]
KEEP = ResizePolicy("none", None, None)
ALL = SamplingPolicy(mode="all")


def ramp_frames(n: int = 16, h: int = 32, w: int = 32) -> np.ndarray:
    """Frame i is uniformly grey with value 20 + 12 i: order survives lossy codecs."""
    values = 20 + 12 * np.arange(n)
    return np.broadcast_to(values[:, None, None, None], (n, h, w, 3)).astype(np.uint8).copy()


def grey_levels(frames: np.ndarray) -> np.ndarray:
    return frames.reshape(*frames.shape[:-3], -1).mean(-1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    return {ext: write_video(root / f"ramp.{ext}", ramp_frames()) for ext in EXTS}


@pytest.mark.parametrize("ext", EXTS)
def test_roundtrip_every_container(videos, ext):
    out = read_video(videos[ext], ALL, KEEP)
    assert out.frames.shape == (1, 16, 32, 32, 3) and out.frames.dtype == np.uint8
    assert out.num_source_frames == 16 and out.fps == pytest.approx(8.0)
    np.testing.assert_allclose(grey_levels(out.frames[0]), 20 + 12 * np.arange(16), atol=3)
    assert out.policy["source_kind"] == "video"
    assert out.policy["sampling"] == {"mode": "all", "fps": None}
    assert out.policy["resize"] == {"mode": "none", "size": None, "crop": None}


@pytest.mark.parametrize("ext", ["mp4", "webm"])
def test_three_clip_protocol_reads_the_right_frames(videos, ext):
    out = read_video(videos[ext], SamplingPolicy(mode="clips", num_frames=4), KEEP)
    expected = clip_indices(16, 4)
    assert (
        out.indices.tolist() == expected.tolist() == [[1, 5, 9, 13], [2, 6, 10, 14], [3, 7, 11, 15]]
    )
    assert out.frames.shape == (3, 4, 32, 32, 3)
    np.testing.assert_allclose(grey_levels(out.frames), 20 + 12 * expected, atol=3)
    assert out.policy["sampling"] == {
        "mode": "clips",
        "num_frames": 4,
        "offsets": [0.25, 0.5, 0.75],
        "boundaries": "even",
    }


def test_train_sampling_is_seeded(videos):
    pol = SamplingPolicy(mode="train", num_frames=5)
    a = read_video(videos["mp4"], pol, KEEP, rng=3).indices
    b = read_video(videos["mp4"], pol, KEEP, rng=3).indices
    assert a.tolist() == b.tolist()


def test_fps_resampling(tmp_path):
    path = write_video(tmp_path / "v.mp4", ramp_frames(16), fps=8)
    out = read_video(path, SamplingPolicy(mode="all", fps=4), KEEP)
    assert out.indices.tolist() == [[0, 2, 4, 6, 8, 10, 12, 14]]
    np.testing.assert_allclose(grey_levels(out.frames[0]), 20 + 12 * out.indices[0], atol=3)


def test_resize_policies(tmp_path):
    path = write_video(tmp_path / "wide.mp4", ramp_frames(4, h=48, w=64))
    short = read_video(path, ALL, ResizePolicy("shorter_side", 24, 24))
    assert short.frames.shape[2:] == (24, 24, 3)
    assert short.policy["resize"] == {"mode": "shorter_side", "size": 24, "crop": 24}
    nocrop = read_video(path, ALL, ResizePolicy("shorter_side", 24, None))
    assert nocrop.frames.shape[2:] == (24, 32, 3)
    fixed = read_video(path, ALL, ResizePolicy("fixed", (20, 30), None))
    assert fixed.frames.shape[2:] == (20, 30, 3)
    assert fixed.policy["resize"]["size"] == [20, 30]
    assert ResizePolicy("shorter_side", 24, 24).output_shape(48, 64) == (24, 24)


def test_resize_policy_rejects_bad_settings():
    with pytest.raises(ValueError, match="resize mode"):
        ResizePolicy("stretch")
    with pytest.raises(ValueError, match="int size"):
        ResizePolicy("shorter_side", 0)
    with pytest.raises(ValueError, match=r"size=\(H, W\)"):
        ResizePolicy("fixed", (3, 4, 5))


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_frame_folder_natural_order(tmp_path, suffix):
    folder = tmp_path / "clip"
    folder.mkdir()
    frames = ramp_frames(12, 16, 16)
    for i, frame in enumerate(frames, start=1):  # 1.png .. 12.png: 10 must come after 9
        Image.fromarray(frame).save(folder / f"{i}{suffix}")
    out = read_video(folder, ALL, KEEP)
    assert out.num_source_frames == 12 and out.fps is None
    assert out.policy["source_kind"] == "frames"
    np.testing.assert_allclose(grey_levels(out.frames[0]), 20 + 12 * np.arange(12), atol=2)
    clips = read_video(folder, SamplingPolicy(mode="eval", num_frames=3), ResizePolicy("fixed", 8))
    assert clips.frames.shape == (1, 3, 8, 8, 3)
    assert clips.indices.tolist() == [[2, 6, 10]]


def test_rendered_video_decodes_to_coloured_shapes(tmp_path):
    steps = np.repeat([0, 1, 2], 6)
    progress = np.tile(np.linspace(0, 1, 6), 3)
    frames = render_frames(steps, progress, size=32, seed=0)
    path = write_video(tmp_path / "steps.avi", frames)
    out = read_video(path, ALL, KEEP).frames[0].astype(float)
    # background frames are plain; step frames carry a saturated shape
    spread = out.std(axis=(1, 2, 3))
    assert spread[:6].max() < spread[6:].min()


# ----------------------------------------------------------------------------- failures


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(VideoNotFoundError, match="nope.mp4") as info:
        read_video(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert info.value.path == str(path)


def test_errors_survive_pickling(tmp_path):
    import pickle

    for cls in (VideoDecodeError, VideoNotFoundError):
        err = pickle.loads(pickle.dumps(cls(tmp_path / "a.mp4", "why")))
        assert type(err) is cls and err.cause == "why" and "a.mp4" in str(err)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(VideoDecodeError, match=r"empty\.mp4.*empty file"):
        read_video(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoDecodeError, match="garbage.avi") as info:
        read_video(path)
    assert "corrupt" in info.value.cause or "no video stream" in info.value.cause


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm"])
def test_truncated_file(videos, tmp_path, ext):
    data = videos[ext].read_bytes()
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[: int(len(data) * 0.55)])
    with pytest.raises(VideoDecodeError, match=f"cut.{ext}") as info:
        read_video(path, ALL, KEEP)
    assert any(word in info.value.cause for word in ("truncated", "corrupt", "no frames"))


def test_truncated_file_accepted_on_request(videos, tmp_path):
    data = videos["webm"].read_bytes()
    path = tmp_path / "cut.webm"
    path.write_bytes(data[: int(len(data) * 0.7)])
    out = read_video(path, ALL, KEEP, allow_truncated=True)
    assert 0 < out.num_source_frames < 16


def test_empty_frame_folder_and_bad_image(tmp_path):
    empty = tmp_path / "empty_clip"
    empty.mkdir()
    with pytest.raises(VideoDecodeError, match="holds no"):
        read_video(empty)
    bad = tmp_path / "bad_clip"
    bad.mkdir()
    Image.fromarray(ramp_frames(1, 8, 8)[0]).save(bad / "1.png")
    (bad / "2.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match=r"2\.png.*unreadable image"):
        read_video(bad, ALL, KEEP)


def test_batch_records_failures_and_goes_on(videos, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 100)
    paths = [videos["mp4"], tmp_path / "missing.mkv", bad, videos["avi"]]
    results = list(read_many(paths, SamplingPolicy(mode="eval", num_frames=4), KEEP))
    assert [p for p, _ in results] == [Path(p) for p in paths]
    kinds = [type(r).__name__ for _, r in results]
    assert kinds == ["DecodedVideo", "VideoNotFoundError", "VideoDecodeError", "DecodedVideo"]
    assert "missing.mkv" in str(results[1][1]) and "bad.mp4" in str(results[2][1])


def test_write_video_rejects_bad_frames(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "a.mp4", np.zeros((2, 7, 8, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="extension"):
        write_video(tmp_path / "a.gif", np.zeros((2, 8, 8, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------- streaming


def _stream(path, sampling=ALL, resize=KEEP, batch_size=5):
    from procalign.data.video import StreamedVideo, stream_frames

    items = list(stream_frames(path, sampling, resize, batch_size=batch_size))
    assert isinstance(items[-1], StreamedVideo)
    return items[:-1], items[-1]


@pytest.mark.parametrize("ext", EXTS)
def test_stream_frames_equals_read_video(videos, ext):
    for sampling in (ALL, SamplingPolicy(mode="eval", num_frames=6), SamplingPolicy("all", fps=4)):
        batches, info = _stream(videos[ext], sampling)
        assert all(len(b) <= 5 for b in batches) and all(len(b) == 5 for b in batches[:-1])
        ref = read_video(videos[ext], sampling, KEEP)
        np.testing.assert_array_equal(np.concatenate(batches), ref.frames[0])
        assert info.indices.tolist() == ref.indices[0].tolist()
        assert info.num_source_frames == 16 and info.policy["sampling"] == sampling.to_dict()


def test_stream_frames_resizes_at_the_target_size(tmp_path):
    path = write_video(tmp_path / "wide.mp4", ramp_frames(6, h=48, w=64))
    batches, info = _stream(path, resize=ResizePolicy("shorter_side", 24, 24))
    frames = np.concatenate(batches)
    assert frames.shape == (6, 24, 24, 3) and info.policy["interpolation"] == "area"
    np.testing.assert_allclose(grey_levels(frames), 20 + 12 * np.arange(6), atol=3)
    batches, _ = _stream(path, resize=ResizePolicy("fixed", (20, 30), None))
    assert np.concatenate(batches).shape == (6, 20, 30, 3)
    repeated, info = _stream(path, SamplingPolicy(mode="eval", num_frames=9))  # L < T: repeats
    frames = np.concatenate(repeated)
    assert len(frames) == 9 and info.indices.tolist()[:3] == [0, 1, 1]
    np.testing.assert_array_equal(frames[1], frames[2])  # one decoded frame, kept twice


def test_stream_frames_failures(videos, tmp_path):
    from procalign.data.video import stream_frames

    empty = tmp_path / "e.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "g.mkv"
    garbage.write_bytes(np.random.default_rng(1).bytes(3000))
    cut = tmp_path / "cut.webm"
    cut.write_bytes(videos["webm"].read_bytes()[: int(videos["webm"].stat().st_size * 0.55)])
    for path, words in [
        (tmp_path / "missing.mp4", ("no such file",)),
        (empty, ("empty file",)),
        (garbage, ("corrupt", "no video stream")),
        (cut, ("truncated", "corrupt", "no frames")),
    ]:
        with pytest.raises(VideoDecodeError, match=path.name) as info:
            list(stream_frames(path, ALL, KEEP))
        assert any(w in info.value.cause for w in words), info.value.cause
    with pytest.raises(ValueError, match="one clip"):
        list(stream_frames(videos["mp4"], SamplingPolicy(mode="clips", num_frames=2)))
