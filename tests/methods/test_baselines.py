"""Baseline distances: what each can see (order), padding never leaks, symmetry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from procalign import dp
from procalign.methods.baselines import (
    BASELINES,
    dtw_distance,
    dtw_window_distance,
    pyramid_l2,
    video_l2,
)


def test_bag_of_frames_is_blind_to_order_and_the_pyramid_is_not():
    torch.manual_seed(0)
    F = torch.randn(4, 12, 6)
    perm = F[:, torch.randperm(12)]
    assert torch.allclose(video_l2(F, perm), torch.zeros(4), atol=1e-6)
    assert bool((pyramid_l2(F, perm) > 1e-3).all())
    assert torch.allclose(pyramid_l2(F, F), torch.zeros(4), atol=1e-6)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_padding_never_leaks_and_distances_are_symmetric(name):
    torch.manual_seed(1)
    fn = BASELINES[name]
    A, B = torch.randn(3, 10, 5), torch.randn(3, 10, 5)
    la, lb = torch.tensor([10, 7, 3]), torch.tensor([4, 10, 6])
    d = fn(A, B, la, lb)
    junk_a, junk_b = A.clone(), B.clone()
    for i in range(3):
        junk_a[i, la[i]:] = 1e3
        junk_b[i, lb[i]:] = -1e3
    assert torch.allclose(fn(junk_a, junk_b, la, lb), d, atol=1e-5)
    for i in range(3):
        alone = fn(A[i : i + 1, : la[i]], B[i : i + 1, : lb[i]])
        assert torch.allclose(alone, d[i : i + 1], atol=1e-5)
    assert torch.allclose(fn(B, A, lb, la), d, atol=1e-5)


def _windowed_max_reference(cost: np.ndarray, fraction: float) -> float:
    """tslearn's DTW path over a precomputed cost, then the largest mean over a window of
    round(fraction * L) consecutive path cells, in plain numpy."""
    from tslearn.metrics import dtw_path_from_metric

    path, _ = dtw_path_from_metric(cost, metric="precomputed")
    c = np.array([cost[i, j] for i, j in path])
    k = max(1, min(len(c), int(round(fraction * len(c)))))
    return max(c[s : s + k].mean() for s in range(len(c) - k + 1))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5, 1.0])
def test_dtw_window_matches_a_reference_path_and_window(fraction):
    torch.manual_seed(2)
    A, B = torch.randn(4, 9, 3, dtype=torch.float64), torch.randn(4, 11, 3, dtype=torch.float64)
    la, lb = torch.tensor([9, 5, 2, 7]), torch.tensor([11, 3, 8, 1])
    got = dtw_window_distance(A, B, la, lb, fraction=fraction)
    costs = dp.pairwise_costs(A, B, "cosine")
    for b in range(4):
        want = _windowed_max_reference(costs[b, : la[b], : lb[b]].numpy(), fraction)
        assert float(got[b]) == pytest.approx(want, abs=1e-12)


def test_dtw_window_limits_are_the_path_mean_and_the_path_max():
    torch.manual_seed(3)
    A, B = torch.randn(3, 12, 4), torch.randn(3, 10, 4)
    la, lb = torch.tensor([12, 6, 9]), torch.tensor([10, 10, 4])
    assert torch.allclose(dtw_window_distance(A, B, la, lb, fraction=1.0),
                          dtw_distance(A, B, la, lb), atol=1e-6)
    costs = dp.pairwise_costs(A, B, "cosine")
    path = dp.dtw(costs, la, lb).path.bool()
    top = torch.stack([costs[b][path[b]].max() for b in range(3)])
    assert torch.allclose(dtw_window_distance(A, B, la, lb, fraction=1e-3), top)


def test_dtw_window_sees_a_skipped_step_that_the_path_mean_dilutes():
    # eight steps; the second video skips one (two frames of 32): the mean over the path moves
    # little, the worst window moves by the whole cost of the skipped step
    torch.manual_seed(4)
    protos = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    full = protos.repeat_interleave(4, 0)
    skip = torch.cat([protos[:3], protos[4:]]).repeat_interleave(4, 0)
    skip = torch.cat([skip, skip[-4:]])  # same length: only the content differs
    pair = lambda fn, **kw: float(fn(full[None], skip[None], **kw)[0])  # noqa: E731
    assert pair(dtw_distance) < 0.15
    assert pair(dtw_window_distance, fraction=0.1) > 0.5


def test_dtw_window_refuses_a_bad_fraction():
    x = torch.randn(1, 5, 3)
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            dtw_window_distance(x, x, fraction=bad)
