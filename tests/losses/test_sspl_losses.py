"""Procedure learning (sspl): the teacher (Eq. 2 subset selection, k-means correspondence) and the
losses (Eq. 7 ranking, Remark 3 cross-entropy), against brute force and hand computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from procalign.losses import sspl as T
from procalign.models.sspl import SSPLModel


def _cost_loop(f, x, subset, video):
    """Eq. 2 written out: sum over videos of 1/T_l sum_t min_{i in S} ||f_t - x_i||."""
    total = 0.0
    for v in np.unique(video):
        rows = f[video == v]
        total += sum(min(np.linalg.norm(r - x[i]) for i in subset) for r in rows) / len(rows)
    return total


def _tiny(seed):
    rng = np.random.default_rng(seed)
    f = rng.standard_normal((10, 3))
    x = rng.standard_normal((6, 3))
    video = np.array([0] * 3 + [1] * 4 + [2] * 3)
    return f, x, video


@pytest.mark.parametrize("seed", range(5))
def test_cost_matches_the_equation_on_every_subset(seed):
    f, x, video = _tiny(seed)
    for k in (1, 2, 3):
        for s in itertools.combinations(range(6), k):
            assert T.facility_location_cost(f, x, s, video) == pytest.approx(_cost_loop(f, x, s, video))


@pytest.mark.parametrize("seed", range(8))
def test_greedy_against_brute_force_over_all_k_subsets(seed):
    f, x, video = _tiny(seed)
    for k in (1, 2, 3):
        sel, costs = T.greedy_select(f, x, k, video)
        assert len(set(sel.tolist())) == len(sel) <= k
        assert costs[-1] == pytest.approx(T.facility_location_cost(f, x, sel, video))
        # every step adds the single best state (brute force over the remaining ones)
        for i in range(len(sel)):
            best = min(_cost_loop(f, x, [*sel[:i], j], video) for j in range(6) if j not in sel[:i])
            assert costs[i] == pytest.approx(best)
        opt = min(_cost_loop(f, x, s, video) for s in itertools.combinations(range(6), k))
        if k == 1:
            assert costs[-1] == pytest.approx(opt)
        # facility location is submodular: greedy keeps (1 - 1/e) of the optimal gain over
        # J0 (every frame at the largest distance)
        j0 = _cost_loop(f, np.vstack([x, np.full(3, 1e3)]), [6], video)
        assert j0 - costs[-1] >= (1 - 1 / math.e) * (j0 - opt) - 1e-9
        assert costs[-1] >= opt - 1e-9


def test_greedy_finds_the_optimum_on_separated_clusters():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 4)) * 10
    f = np.concatenate([x[i] + 0.1 * rng.standard_normal((5, 4)) for i in (1, 3, 4)])
    video = np.repeat([0, 1, 2], 5)
    sel, _ = T.greedy_select(f, x, 3, video)
    assert sorted(sel.tolist()) == [1, 3, 4]
    # no fourth state is nearer to any frame than its own cluster's: selection stops early
    sel4, costs4 = T.greedy_select(f, x, 4, video)
    assert sorted(sel4.tolist()) == [1, 3, 4] and len(costs4) == 3
    # and duplicates of selected states lower nothing either
    dup = np.vstack([x[[1, 3, 4]], x[[1, 3, 4]]])
    sel_d, _ = T.greedy_select(f, dup, 5, video)
    assert len(sel_d) == 3


def test_assign_is_nearest_selected_state():
    x = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    f = np.array([[9.0, 0.0], [1.0, 9.0], [0.0, 1.0]])
    assert T.assign(f, x, np.array([0, 2])).tolist() == [0, 2, 0]
    assert T.assign(f, x, np.array([1, -1])).tolist() == [1, 1, 1]


def test_centre_correspondence_across_refits():
    rng = np.random.default_rng(1)
    means = rng.standard_normal((5, 3)) * 8
    f = np.concatenate([m + rng.standard_normal((40, 3)) for m in means])
    first = T.fit_centres(f, 5, seed=0)
    # refit on moved features (as attention features move between epochs), other seed:
    g = f + 0.3 + 0.1 * rng.standard_normal(f.shape)
    refit = T.fit_centres(g, 5, seed=7, previous=first)
    d = np.linalg.norm(first[:, None] - refit[None], axis=2)
    assert (d.argmin(1) == np.arange(5)).all()  # centre m is still centre m
    # a cold refit (no previous centres) numbers the clusters arbitrarily; matching fixes that
    cold = T.fit_centres(g[::-1].copy(), 5, seed=3)
    perm = T.match_centres(first, cold)
    assert sorted(perm.tolist()) == list(range(5))
    assert (np.linalg.norm(first[:, None] - cold[perm][None], axis=2).argmin(1) == np.arange(5)).all()
    # the permutation of a shuffled copy is recovered exactly
    shuffle = rng.permutation(5)
    assert np.array_equal(first[shuffle][T.match_centres(first, first[shuffle])], first)
    # deterministic
    assert np.array_equal(refit, T.fit_centres(g, 5, seed=7, previous=first))


def test_ranking_loss_by_hand():
    s = torch.tensor([[[2.0, 1.0, 0.5], [0.0, 3.0, 1.0], [9.0, 9.0, 9.0]],
                      [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[0, 2, 1], [1, 0, -1]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    # video 0 (frame 2 masked): frame 0: max(0, 1-2+1) + max(0, 1-2+0.5) = 0;
    # frame 1 (r=2): max(0, 1-1+0) + max(0, 1-1+3) = 3  -> 3 / 2 = 1.5
    # video 1 (frame 2 label -1): frame 0 (r=1): 1 + 1 = 2; frame 1 (r=0): max(0, 1-1+0)*2 = 0
    #   -> 2 / 2 = 1.0; mean over videos 1.25
    assert float(T.ranking_loss(s, labels, mask)) == pytest.approx(1.25)
    assert float(T.ranking_loss(s[:1, :2], labels[:1, :2])) == pytest.approx(1.5)
    assert float(T.ranking_loss(s[:1, :2], labels[:1, :2], margin=2.0)) == pytest.approx(
        ((1 + 0.5) + (1 + 4)) / 2)


def test_cross_entropy_by_hand():
    s = torch.tensor([[[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]]])
    labels = torch.tensor([[0, 2]])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + math.exp(0.5)))
    ce1 = -math.log(math.exp(1) / (1 + math.exp(3) + math.exp(1)))
    assert float(T.state_cross_entropy(s, labels)) == pytest.approx((ce0 + ce1) / 2)


def test_ranking_loss_gradient_moves_the_right_scores():
    s = torch.zeros(1, 1, 4, requires_grad=True)
    T.ranking_loss(s, torch.tensor([[2]])).backward()
    assert s.grad[0, 0].tolist() == pytest.approx([1.0, 1.0, -3.0, 1.0])


def test_attention_and_pooling_gradients():
    torch.manual_seed(0)
    m = SSPLModel(3 * 2, 3, 2, 4, 2, hidden=4).double()  # R = 3, D = 2, M = 4
    y = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda y: m.attend(y)[0], (y,))
    assert torch.autograd.gradcheck(lambda y: m.attend(y)[1], (y,))
    f = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    p = torch.softmax(torch.randn(2, 4, 4, dtype=torch.float64), 2).requires_grad_()
    mask = torch.tensor([[True] * 4, [True] * 3 + [False]])
    for pooling in ("average", "sum"):
        m.pooling = pooling
        assert torch.autograd.gradcheck(lambda f, p: m.pool(f, p, mask), (f, p))
    h = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m.weigh, (h,))
    # padded frames take no part in pooling
    m.pooling = "average"
    hp = m.pool(f, p, mask)
    assert torch.allclose(hp[1], m.pool(f[1:, :3], p[1:, :3], mask[1:, :3])[0])
    # the attention weights are a softmax over regions
    assert torch.allclose(m.attend(y)[1].sum(2), torch.ones(2, 4, dtype=torch.float64))


def test_bad_inputs_name_the_problem():
    f, x, video = _tiny(0)
    with pytest.raises(ValueError, match=r"k = 7 .* M = 6"):
        T.greedy_select(f, x, 7, video)
    with pytest.raises(ValueError, match=r"features must be \(N, D\)"):
        T.greedy_select(f[None], x, 2)
    with pytest.raises(ValueError, match="D=3 but centres have D=2"):
        T.greedy_select(f, x[:, :2], 2)
    bad = f.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        T.greedy_select(bad, x, 2)
    with pytest.raises(ValueError, match="NaN"):
        T.fit_centres(bad, 3, 0)
    with pytest.raises(ValueError, match="at least M training frames"):
        T.fit_centres(f, 50, 0)
    with pytest.raises(ValueError, match="video ids"):
        T.greedy_select(f, x, 2, video[:4])
    with pytest.raises(ValueError, match=r"scores must be \(B, T, M\)"):
        T.ranking_loss(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"labels must be state ids in \[0, 4\)"):
        T.ranking_loss(torch.zeros(1, 2, 4), torch.tensor([[0, 4]]))
    with pytest.raises(ValueError, match=r"x must be \(B, T, R\*D\)"):
        SSPLModel(12, 4, 2, 5, 2)(torch.zeros(1, 3, 10))
    with pytest.raises(ValueError, match="not R x D"):
        SSPLModel(10, 4, 2, 5, 2)
