"""Baseline distances: what each can see (order), padding never leaks, symmetry."""

from __future__ import annotations

import pytest
import torch

from procalign.methods.baselines import BASELINES, pyramid_l2, video_l2


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
