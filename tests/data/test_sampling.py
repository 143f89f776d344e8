"""TSN segment sampling: exact offsets, SVIP's reference boundaries, randomness by seed."""

from __future__ import annotations

import numpy as np
import pytest

from procalign.data.sampling import (
    SamplingPolicy,
    clip_indices,
    fps_indices,
    segment_indices,
    train_indices,
)

SIZES = [(1, 1), (1, 4), (3, 5), (7, 7), (10, 3), (16, 4), (100, 16), (333, 32)]


@pytest.mark.parametrize("length,num_frames", SIZES)
@pytest.mark.parametrize("offset", [0.0, 0.25, 0.5, 0.75, 0.99])
def test_eval_offset_formula_and_segment_bounds(length, num_frames, offset):
    idx = segment_indices(length, num_frames, offset)
    assert idx.shape == (num_frames,) and idx.dtype == np.int64
    for k, i in enumerate(idx.tolist()):
        assert i == int(np.floor((k + offset) * length / num_frames))
        # inside segment k = [k L / T, (k + 1) L / T)
        assert k * length / num_frames - 1 < i < (k + 1) * length / num_frames
    assert 0 <= idx.min() and idx.max() <= length - 1
    assert np.all(np.diff(idx) >= 0)


def test_three_clip_offsets_are_quarters():
    # 12 segments of 8 frames: offsets 1/4, 2/4, 3/4 are frames 2, 4, 6 of each segment
    clips = clip_indices(96, 12)
    assert clips.shape == (3, 12)
    for c, frame in enumerate((2, 4, 6)):
        assert clips[c].tolist() == [8 * k + frame for k in range(12)]


def test_svip_reference_boundaries():
    """The reference code: b = int(linspace(0, L - 2, T + 1)); b_k + int((b_k+1 - b_k) / 4) * c."""
    for length, num_frames in [(50, 16), (17, 16), (200, 16), (33, 8)]:
        b = np.linspace(0, length - 2, num_frames + 1, dtype=int)
        clips = clip_indices(length, num_frames, boundaries="svip")
        for c in range(3):
            expect = [b[j] + int((b[j + 1] - b[j]) / 4) * (c + 1) for j in range(num_frames)]
            assert clips[c].tolist() == expect
        assert clips.max() <= length - 2  # the reference code never samples the last frame


def test_svip_training_draws_inside_reference_segments():
    b = np.linspace(0, 98, 17, dtype=int)
    for seed in range(20):
        idx = train_indices(100, 16, seed, boundaries="svip")
        assert np.all(idx >= b[:-1]) and np.all(idx < b[1:])


@pytest.mark.parametrize("length,num_frames", SIZES)
def test_train_indices_stay_in_their_segment(length, num_frames):
    for seed in range(10):
        idx = train_indices(length, num_frames, seed)
        k = np.arange(num_frames)
        assert np.all(idx >= np.floor(k * length / num_frames))
        assert np.all(idx <= np.minimum(np.ceil((k + 1) * length / num_frames) - 1, length - 1))


def test_train_indices_deterministic_by_seed_and_cover_segments():
    assert train_indices(100, 10, 7).tolist() == train_indices(100, 10, 7).tolist()
    assert train_indices(100, 10, 7).tolist() != train_indices(100, 10, 8).tolist()
    rng = np.random.default_rng(0)
    seen = {int(train_indices(40, 4, rng)[0]) for _ in range(300)}
    assert seen == set(range(10))  # every frame of the first segment is reachable


def test_fps_indices():
    assert fps_indices(12, 30.0, 10.0).tolist() == [0, 3, 6, 9]
    assert fps_indices(5, 10.0, None).tolist() == [0, 1, 2, 3, 4]
    assert fps_indices(4, 10.0, 25.0).tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="fps must be positive"):
        fps_indices(4, 0.0, 5.0)


def test_policy_shapes_and_record():
    assert SamplingPolicy("train", 8).indices(50, 0).shape == (1, 8)
    assert SamplingPolicy("eval", 8, offset=0.25).indices(50).tolist() == [
        segment_indices(50, 8, 0.25).tolist()
    ]
    assert SamplingPolicy("clips", 8).indices(50).shape == (3, 8)
    assert SamplingPolicy("clips", 8).num_clips == 3
    assert SamplingPolicy("all").indices(6).tolist() == [[0, 1, 2, 3, 4, 5]]
    assert SamplingPolicy("all", fps=5).indices(10, source_fps=10).tolist() == [[0, 2, 4, 6, 8]]
    assert SamplingPolicy("eval", 8, offset=0.25).to_dict() == {
        "mode": "eval",
        "num_frames": 8,
        "offset": 0.25,
        "boundaries": "even",
    }
    assert SamplingPolicy("train", 4) == SamplingPolicy("train", 4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="length"):
        segment_indices(0, 4)
    with pytest.raises(ValueError, match="num_frames"):
        segment_indices(10, 0)
    with pytest.raises(ValueError, match="offset"):
        segment_indices(10, 4, 1.0)
    with pytest.raises(ValueError, match="boundaries"):
        segment_indices(10, 4, boundaries="odd")
    with pytest.raises(ValueError, match="svip"):
        segment_indices(10, 4, 0.3, boundaries="svip")
    with pytest.raises(ValueError, match="sampling mode"):
        SamplingPolicy("random")
    with pytest.raises(ValueError, match="source_fps"):
        SamplingPolicy("all", fps=5).indices(10)
    with pytest.raises(ValueError, match="offsets"):
        clip_indices(10, 4, ())
