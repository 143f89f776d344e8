"""CPA's functional pieces (procalign.losses.cpa) against brute force and their invariants."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from procalign.losses import cpa as L


def _paths(T: int, K: int):
    """Every strict monotone frame-to-step labelling: starts on 0, ends on K-1, steps +0/+1."""
    for moves in itertools.product((0, 1), repeat=T - 1):
        if sum(moves) == K - 1:
            yield [0, *itertools.accumulate(moves)]


def test_frame_to_step_nll_matches_enumeration():
    torch.manual_seed(1)
    T, K, D = 6, 3, 4
    F, S = torch.randn(2, T, D, dtype=torch.float64), torch.randn(2, K, D, dtype=torch.float64)
    W = torch.softmax(F @ S.transpose(1, 2) / math.sqrt(D), dim=-1)
    for b in range(2):
        total = sum(math.prod(float(W[b, t, k]) for t, k in enumerate(p)) for p in _paths(T, K))
        raw = L.frame_to_step_nll(F, S, normalize="none")[b]
        assert float(raw) == pytest.approx(-math.log(total), rel=1e-9)
        assert float(L.frame_to_step_nll(F, S)[b]) == pytest.approx(-math.log(total) / T)
        assert float(L.frame_to_step_nll(F, S, normalize="code")[b]) == pytest.approx(
            -math.log(total) / K**2
        )


def test_alignment_distance_is_symmetric_and_padding_safe():
    torch.manual_seed(2)
    F1, F2 = torch.randn(3, 7, 5), torch.randn(3, 9, 5)
    S1, S2 = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    l1, l2 = torch.tensor([7, 5, 6]), torch.tensor([9, 9, 4])
    d12 = L.alignment_distance(F1, S1, F2, S2, l1, l2)
    d21 = L.alignment_distance(F2, S2, F1, S1, l2, l1)
    assert torch.allclose(d12, d21)
    # padding frames never enter a value
    junk = F1.clone()
    junk[1, 5:] = 1e3
    assert torch.allclose(L.alignment_distance(junk, S1, F2, S2, l1, l2)[1], d12[1])


def test_alignment_distance_gradcheck():
    torch.manual_seed(3)
    F1 = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    F2 = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    b1 = torch.tensor([[0, 2, 5], [0, 1, 5]])
    b2 = torch.tensor([[0, 3, 6], [0, 4, 6]])

    def fn(a, b):
        S1 = L.gather_step_features(a, b1, "center")
        S2 = L.gather_step_features(b, b2, "mean")
        return L.alignment_distance(a, S1, b, S2)

    assert torch.autograd.gradcheck(fn, (F1, F2))


def test_relational_matrix_modes():
    torch.manual_seed(4)
    F1, F2 = torch.randn(2, 5, 8), torch.randn(2, 6, 8)
    l1, l2 = torch.tensor([5, 3]), torch.tensor([6, 4])
    row = L.relational_matrix(F1, F2, l1, l2, "row")
    assert torch.allclose(row[0].sum(-1), torch.ones(5))
    assert torch.allclose(row[1, :3].sum(-1), torch.ones(3))
    assert row[1, 3:].abs().sum() == 0 and row[1, :, 4:].abs().sum() == 0
    sym = L.relational_matrix(F1, F2, l1, l2, "symmetric")
    sym_t = L.relational_matrix(F2, F1, l2, l1, "symmetric")
    assert torch.allclose(sym, sym_t.transpose(1, 2), atol=1e-6)
    assert not torch.allclose(row, L.relational_matrix(F2, F1, l2, l1, "row").transpose(1, 2))
    with pytest.raises(ValueError, match="mode must be one of"):
        L.relational_matrix(F1, F2, mode="col")
    with pytest.raises(ValueError, match="must agree on B and D"):
        L.relational_matrix(F1, torch.randn(2, 6, 7))


def test_step_features_and_bounds():
    F = torch.arange(10.0).reshape(1, 10, 1).repeat(2, 1, 3)
    bounds = torch.tensor([[0, 2, 7, 10], [0, 1, 2, 10]])
    assert L.gather_step_features(F, bounds, "center")[0, :, 0].tolist() == [0.0, 4.0, 8.0]
    assert L.gather_step_features(F, bounds, "first")[1, :, 0].tolist() == [0.0, 1.0, 2.0]
    assert L.gather_step_features(F, bounds, "mean")[0, :, 0].tolist() == [0.5, 4.0, 8.0]
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        r = L.gather_step_features(F, bounds, "random", g)[..., 0]
        assert ((r >= bounds[:, :-1]) & (r < bounds[:, 1:])).all()
    assert L.uniform_bounds(torch.tensor([16, 10]), 4).tolist() == [
        [0, 4, 8, 12, 16],
        [0, 2, 5, 7, 10],
    ]
    with pytest.raises(ValueError, match="K=5 steps need at least K frames"):
        L.uniform_bounds(torch.tensor([4]), 5)
    with pytest.raises(ValueError, match="strictly increasing"):
        L.gather_step_features(F, torch.tensor([[0, 3, 3, 10], [0, 1, 2, 10]]), "center")
    with pytest.raises(ValueError, match="mode must be one of"):
        L.gather_step_features(F, bounds, "last")


def test_nll_rejects_more_steps_than_frames():
    with pytest.raises(ValueError, match=r"pair 0 has 3 frames \(T\) and 4 steps \(K\)"):
        L.frame_to_step_nll(torch.randn(1, 3, 2), torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match=r"must have shape \(B, T, D\)"):
        L.frame_to_step_nll(torch.randn(3, 2), torch.randn(1, 4, 2))


def test_mine_steps_value_and_max_over_k():
    torch.manual_seed(5)
    sim = torch.rand(2, 8, 7)
    res = L.mine_steps(sim, 3)
    assert res.bounds_n.shape == (2, 4) and res.bounds_m[:, -1].tolist() == [7, 7]
    best = L.mine_steps(sim, 3, max_over_k=True)
    assert (best.values >= res.values - 1e-9).all()
    assert torch.equal(best.bounds_n, res.bounds_n)
    assert L.step_loss(res.values) == -res.values.mean()
    with pytest.raises(ValueError, match="larger than a sequence length"):
        L.mine_steps(sim, 8)


def test_align_loss_positives_only():
    d = torch.tensor([1.0, 5.0, 3.0], requires_grad=True)
    assert float(L.align_loss(d, torch.tensor([True, False, True])).detach()) == 2.0
    zero = L.align_loss(d, torch.tensor([False, False, False]))
    zero.backward()
    assert float(zero.detach()) == 0.0 and d.grad.abs().sum() == 0
