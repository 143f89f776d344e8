"""LRProp losses: priors against hand computations, gradchecks, constant DTW path, padding."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd import gradcheck

import procalign.losses.lrprop as L
from procalign.train.threads import compute as cpu_threads


@pytest.fixture(autouse=True)
def _one_thread():
    """numba's OpenMP workers spin between kernel calls and starve torch's on a small CPU."""
    with cpu_threads(1):
        yield


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gauss(d2: float, sigma2: float) -> float:
    return math.exp(-d2 / (2 * sigma2))


# ----------------------------------------------------------------------------- priors by hand


def test_same_video_prior_is_the_normalised_gaussian_of_eq2():
    idx_a = torch.tensor([[3.0, 7.0, 12.0]])  # original frames of crop A
    idx_b = torch.tensor([[5.0, 12.0]])  # original frames of crop B
    logp = L.index_log_prior(idx_b, idx_a, sigma2=10.0)
    assert logp.shape == (1, 2, 3)
    for j, s_b in enumerate([5.0, 12.0]):
        w = [_gauss((s_b - s_a) ** 2, 10.0) for s_a in (3.0, 7.0, 12.0)]
        expected = [x / sum(w) for x in w]
        assert logp[0, j].exp().tolist() == pytest.approx(expected, rel=1e-6)


def test_padded_keys_get_zero_prior_mass():
    logp = L.index_log_prior(
        torch.tensor([[0.0]]), torch.tensor([[0.0, 1.0, 2.0]]), 10.0, torch.tensor([2])
    )
    p = logp.exp()[0, 0]
    assert p[2] == 0 and float(p.sum()) == pytest.approx(1.0)
    w = [_gauss(0, 10), _gauss(1, 10)]
    assert p[:2].tolist() == pytest.approx([w[0] / sum(w), w[1] / sum(w)], rel=1e-6)


def test_dtw_matches_take_the_smallest_index_on_ties():
    # A = (0, 5); B = (0, 0, 5): the path is (0,0) (0,1) (1,2), so A's frame 0 matches B's 0 and 1.
    a = torch.tensor([[[0.0], [5.0]]])
    b = torch.tensor([[[0.0], [0.0], [5.0]]])
    assert L.dtw_matches(a, b).tolist() == [[0, 2]]
    # the reverse direction: B's frames 0 and 1 both match A's frame 0
    assert L.dtw_matches(b, a).tolist() == [[0, 0, 1]]


def test_propagated_prior_matches_eq7_by_hand():
    a = torch.tensor([[[0.0], [1.0], [4.0], [4.2]]])
    b = torch.tensor([[[0.0], [1.1], [4.1]]])
    idx_b = torch.tensor([[10.0, 14.0, 20.0]])  # B's original frame indices
    matches = L.dtw_matches(a, b)
    assert matches.tolist() == [[0, 1, 2, 2]]  # worked out on paper: a monotone 1-1 + one repeat
    logp = L.propagation_log_prior(matches, idx_b, sigma2=10.0)
    propagated = [10.0, 14.0, 20.0, 20.0]  # s^B at match(i) for the four frames i of A
    for j, s_b in enumerate([10.0, 14.0, 20.0]):
        w = [_gauss((s_b - s) ** 2, 10.0) for s in propagated]
        assert logp[0, j].exp().tolist() == pytest.approx([x / sum(w) for x in w], rel=1e-6)


def test_similarity_distribution_is_a_cosine_softmax_and_kl_matches_its_definition():
    za, zb = _rand(1, 3, 4, seed=1), _rand(1, 2, 4, seed=2)
    logq = L.similarity_log_probs(za, zb, tau=0.1)
    cos = torch.nn.functional.cosine_similarity(zb[0][:, None], za[0][None], dim=-1)
    assert torch.allclose(logq[0], torch.log_softmax(cos / 0.1, -1))
    logp = L.index_log_prior(
        torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, 1.0, 2.0]]), 1.0
    ).double()
    p, q = logp.exp()[0], logq.exp()[0]
    by_hand = (
        sum(float(p[j, i] * math.log(p[j, i] / q[j, i])) for j in range(2) for i in range(3)) / 2
    )
    assert float(L.prior_kl(logp, logq)[0]) == pytest.approx(by_hand, rel=1e-9)


# ----------------------------------------------------------------------------- gradients


def _lengths():
    return torch.tensor([5, 3]), torch.tensor([4, 2])


def test_gradcheck_same_video_loss():
    a, b = _rand(2, 5, 3, seed=3).requires_grad_(), _rand(2, 4, 3, seed=4).requires_grad_()
    ia, ib = torch.rand(2, 5, dtype=torch.float64) * 9, torch.rand(2, 4, dtype=torch.float64) * 9
    la, lb = _lengths()
    assert gradcheck(lambda x, y: L.same_video_loss(x, ia, y, ib, 10.0, 0.1, la, lb), (a, b))


def test_gradcheck_propagation_loss():
    a, b = _rand(2, 5, 3, seed=5).requires_grad_(), _rand(2, 4, 3, seed=6).requires_grad_()
    ib = torch.sort(torch.rand(2, 4, dtype=torch.float64) * 9).values
    la, lb = _lengths()
    assert gradcheck(lambda x, y: L.propagation_loss(x, y, ib, 10.0, 0.1, la, lb), (a, b))


@pytest.mark.parametrize("cost", ["cosine", "sqeuclidean"])
@pytest.mark.parametrize("gamma", [0.01, 0.1, 1.0])
def test_gradcheck_sdtw_divergence(gamma, cost):
    a, b = _rand(2, 5, 3, seed=7).requires_grad_(), _rand(2, 4, 3, seed=8).requires_grad_()
    la, lb = _lengths()
    assert gradcheck(lambda x, y: L.sdtw_loss(x, y, gamma, la, lb, cost), (a, b), atol=1e-5)


def test_gradcheck_sdtw_with_lav_idm():
    a, b = _rand(2, 5, 3, seed=9).requires_grad_(), _rand(2, 4, 3, seed=10).requires_grad_()
    ia = torch.arange(5, dtype=torch.float64).repeat(2, 1) * 3
    ib = torch.arange(4, dtype=torch.float64).repeat(2, 1) * 4
    la, lb = _lengths()

    def f(x, y):
        return L.sdtw_loss(
            x,
            y,
            0.1,
            la,
            lb,
            "cosine",
            "idm",
            idx_a=ia,
            idx_b=ib,
            num_frames_a=15.0,
            num_frames_b=16.0,
            idm_window=4.0,
            idm_margin=1.5,
        )

    assert gradcheck(f, (a, b), atol=1e-5)


def test_gradcheck_combined_eq12():
    z = _rand(4, 5, 3, seed=11).requires_grad_()
    idx = torch.sort(torch.rand(4, 5, dtype=torch.float64) * 20, dim=1).values
    video = torch.tensor([0, 0, 1, 1])
    loss = L.LRPropLoss(lambda1=0.5, lambda2=0.3)
    assert gradcheck(lambda x: loss(x, idx, video, torch.tensor([5, 4, 5, 3]))[0], (z,))


# ----------------------------------------------------------------------------- constant path


def test_propagation_path_is_a_constant(monkeypatch):
    seen = []
    real_dtw = L.dtw

    def spy(costs, *args, **kwargs):
        seen.append((costs.requires_grad, torch.is_grad_enabled()))
        return real_dtw(costs, *args, **kwargs)

    monkeypatch.setattr(L, "dtw", spy)
    a, b = _rand(2, 5, 3, seed=12).requires_grad_(), _rand(2, 4, 3, seed=13).requires_grad_()
    ib = torch.sort(torch.rand(2, 4, dtype=torch.float64) * 9).values
    loss = L.propagation_loss(a, b, ib).sum()
    assert seen == [(False, False)]  # DTW ran on detached costs, with autograd off
    ga, gb = torch.autograd.grad(loss, (a, b))
    # The same gradient as a KL whose prior is built from a precomputed, detached path:
    a2, b2 = a.detach().requires_grad_(), b.detach().requires_grad_()
    fixed = L.dtw_matches(a.detach(), b.detach())
    assert not fixed.requires_grad
    logp = L.propagation_log_prior(fixed, ib)
    ref = L.prior_kl(logp, L.similarity_log_probs(a2, b2, 0.1)).sum()
    ra, rb = torch.autograd.grad(ref, (a2, b2))
    assert torch.allclose(ga, ra) and torch.allclose(gb, rb)


# ----------------------------------------------------------------------------- properties


def test_padding_does_not_change_the_losses():
    za, zb = _rand(1, 4, 3, seed=14), _rand(1, 3, 3, seed=15)
    ia, ib = torch.tensor([[0.0, 2, 4, 6]]), torch.tensor([[1.0, 3, 5]])
    pa = torch.cat([za, _rand(1, 2, 3, seed=16)], 1)
    pb = torch.cat([zb, _rand(1, 3, 3, seed=17)], 1)
    pia, pib = (
        torch.cat([ia, torch.tensor([[50.0, 60]])], 1),
        torch.cat([ib, torch.tensor([[70.0, 80, 90]])], 1),
    )
    la, lb = torch.tensor([4]), torch.tensor([3])
    for f in (
        lambda x, y, i, j, **k: L.same_video_loss(x, i, y, j, **k),
        lambda x, y, i, j, **k: L.propagation_loss(x, y, j, **k),
        lambda x, y, i, j, **k: L.sdtw_loss(x, y, **k),
    ):
        assert torch.allclose(f(za, zb, ia, ib), f(pa, pb, pia, pib, lengths_a=la, lengths_b=lb))


def test_sdtw_divergence_is_zero_for_equal_views_and_positive_otherwise():
    z = _rand(1, 6, 4, seed=18)
    assert abs(float(L.sdtw_loss(z, z.clone()))) < 1e-9
    assert float(L.sdtw_loss(z, _rand(1, 6, 4, seed=19))) > 0


def test_same_video_loss_is_small_when_embeddings_follow_the_prior():
    # Embeddings on a circle by frame index: cosine similarity decreases with index distance.
    idx = torch.arange(12, dtype=torch.float64)[None]
    ang = idx[0] * 0.15
    z = torch.stack([ang.cos(), ang.sin()], -1)[None]
    shuffled = z[:, torch.randperm(12, generator=torch.Generator().manual_seed(0))]
    good = L.same_video_loss(z, idx, z, idx, sigma2=10.0, tau=0.1)
    bad = L.same_video_loss(shuffled, idx, z, idx, sigma2=10.0, tau=0.1)
    assert float(good) < float(bad)


def test_eq12_pairs_and_switches():
    same, cross = L.LRPropLoss.pairs(torch.tensor([0, 0, 1, 1]))
    assert same == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert len(cross) == 8 and all(a // 2 != b // 2 for a, b in cross)
    z, idx = _rand(4, 5, 3, seed=20), torch.arange(5.0).repeat(4, 1)
    _, logs = L.LRPropLoss(use_prop=False, use_sdtw=False)(z, idx, torch.tensor([0, 0, 1, 1]))
    assert set(logs) == {"same"}
    total, logs = L.LRPropLoss(lambda1=2.0, lambda2=3.0)(z, idx, torch.tensor([0, 0, 1, 1]))
    assert float(total) == pytest.approx(
        logs["same"] + 2 * logs["prop"] + 3 * logs["sdtw"], rel=1e-6
    )


def test_bad_inputs_raise_clear_errors():
    z = torch.randn(2, 5, 3)
    with pytest.raises(ValueError, match=r"z_a \(B, N, D\) and z_b \(B, M, D\)"):
        L.same_video_loss(z, torch.zeros(2, 5), torch.randn(3, 5, 3), torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"idx_a must have shape \(B, T\) = \(2, 5\)"):
        L.same_video_loss(z, torch.zeros(2, 4), z, torch.zeros(2, 5))
    with pytest.raises(TypeError, match="z_a must be a torch.Tensor"):
        L.propagation_loss(z.numpy(), z, torch.zeros(2, 5))
    with pytest.raises(ValueError, match="lengths_a must lie in"):
        L.sdtw_loss(z, z, lengths_a=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="sigma2 must be a positive number"):
        L.index_log_prior(torch.zeros(1, 2), torch.zeros(1, 2), sigma2=0)
    with pytest.raises(ValueError, match="variant must be one of"):
        L.sdtw_loss(z, z, variant="plain")
    with pytest.raises(ValueError, match="needs idx_a"):
        L.sdtw_loss(z, z, variant="idm")
    with pytest.raises(ValueError, match="at least one of use_same"):
        L.LRPropLoss(use_same=False, use_prop=False, use_sdtw=False)
    with pytest.raises(ValueError, match="two views of one video"):
        L.LRPropLoss()(torch.randn(2, 4, 3), torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="two different videos"):
        L.LRPropLoss(use_same=False)(torch.randn(2, 4, 3), torch.zeros(2, 4), torch.tensor([0, 0]))
