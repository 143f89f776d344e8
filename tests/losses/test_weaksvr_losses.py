"""WeakSVR losses: InfoNCE by hand, the straight-through Gumbel gradient, each pseudo-labeller
against brute force, padded steps masked both ways, clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from procalign.losses import weaksvr as L


def _hand_info_nce(v, l, scale, groups=None):
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    l = l / np.linalg.norm(l, axis=1, keepdims=True)  # noqa: E741
    s = scale * v @ l.T
    B = len(v)
    total = 0.0
    for direction in (s, s.T):
        for i in range(B):
            keep = [j for j in range(B) if j == i or groups is None or groups[j] != groups[i]]
            total += -(direction[i, i] - np.log(np.exp(direction[i, keep]).sum())) / B
    return total


def test_info_nce_matches_a_hand_computation_with_and_without_masking():
    rng = np.random.default_rng(0)
    v, l = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))  # noqa: E741
    groups = np.array([0, 1, 0, 2, 1])
    got = L.info_nce(torch.from_numpy(v), torch.from_numpy(l), 3.0)
    assert float(got) == pytest.approx(_hand_info_nce(v, l, 3.0), rel=1e-10)
    got = L.info_nce(torch.from_numpy(v), torch.from_numpy(l), 3.0, torch.from_numpy(groups))
    assert float(got) == pytest.approx(_hand_info_nce(v, l, 3.0, groups), rel=1e-10)
    # masking removes terms from the denominators: the loss can only go down
    assert float(got) < _hand_info_nce(v, l, 3.0)


def test_info_nce_gradcheck_and_learnable_temperature():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    l = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)  # noqa: E741
    s = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    groups = torch.tensor([0, 0, 1, 2])
    assert gradcheck(lambda a, b, c: L.info_nce(a, b, c, groups), (v, l, s))


def test_gumbel_straight_through_forward_is_one_hot_backward_is_the_soft_sample():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    noise = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    w = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    y = L.gumbel_st(x, 0.7, noise=noise)
    assert torch.equal(y.detach().sum(-1), torch.ones(3, 4, dtype=torch.float64))
    assert set(torch.unique(y.detach()).tolist()) <= {0.0, 1.0}
    assert torch.equal(y.detach().argmax(-1), (x + noise).argmax(-1))
    (gx,) = torch.autograd.grad((w * y).sum(), x)
    x2 = x.detach().clone().requires_grad_(True)
    (gs,) = torch.autograd.grad((w * ((x2 + noise) / 0.7).softmax(-1)).sum(), x2)
    torch.testing.assert_close(gx, gs)
    # a mask keeps the sample on allowed entries
    mask = torch.zeros(3, 4, 5, dtype=torch.bool)
    mask[..., :2] = True
    assert (L.gumbel_st(x, 1.0, mask, generator=g).detach()[..., 2:] == 0).all()
    with pytest.raises(ValueError, match="temperature"):
        L.gumbel_st(x, 0.0)


def test_sort_labels_sort_the_argmax_in_time():
    pred = torch.nn.functional.one_hot(torch.tensor([[2, 0, 1, 1], [0, 3, 3, 1]]), 4).float()
    assert L.sort_labels(pred).tolist() == [[0, 1, 1, 2], [0, 1, 3, 3]]


def _best_monotone(sim: np.ndarray, k: int) -> float:
    N = sim.shape[0]
    best = -np.inf
    for lab in itertools.product(range(k), repeat=N):
        if all(b >= a for a, b in zip(lab, lab[1:])):
            best = max(best, sum(sim[t, lab[t]] for t in range(N)))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_viterbi_labels_are_the_best_monotone_labelling_by_enumeration(seed):
    rng = np.random.default_rng(seed)
    N, K = 5, 4
    sim = rng.normal(size=(2, N, K))
    k = torch.tensor([4, 3])
    labels = L.viterbi_labels(torch.from_numpy(sim), k).numpy()
    for b in range(2):
        lab = labels[b]
        assert (np.diff(lab) >= 0).all() and lab.max() < k[b]
        score = sum(sim[b, t, lab[t]] for t in range(N))
        assert score == pytest.approx(_best_monotone(sim[b], int(k[b])), abs=1e-9)


def test_split_labels_are_uniform_parts():
    assert L.split_labels(6, torch.tensor([3, 2, 6])).tolist() == [
        [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5]]


@pytest.mark.parametrize("pseudo, logits", [("sort", "gumbel"), ("viterbi", "gumbel"),
                                            ("split", "gumbel"), ("sort", "similarity"),
                                            ("viterbi", "similarity")])
def test_fine_loss_ignores_padded_steps_in_both_directions(pseudo, logits):
    g = torch.Generator().manual_seed(3)
    H = torch.randn(2, 6, 8, generator=g, dtype=torch.float64)
    S = torch.randn(2, 5, 8, generator=g, dtype=torch.float64)
    k = torch.tensor([5, 3])
    S2 = S.clone()
    S2[1, 3:] = 50 * H[1, :2]  # padding that would attract every frame if it were used
    torch.manual_seed(0)
    a, la = L.fine_loss(H, S, k, pseudo, logits=logits)
    torch.manual_seed(0)
    b, lb = L.fine_loss(H, S2, k, pseudo, logits=logits)
    assert float(a) == pytest.approx(float(b), rel=1e-12)
    assert torch.equal(la, lb) and int(la[1].max()) < 3
    # and a video with fewer frames than steps works for split
    if pseudo == "split":
        torch.manual_seed(0)
        loss, _ = L.fine_loss(H[:, :2], S, k, pseudo)
        assert torch.isfinite(loss)


def test_fine_loss_gradient_reaches_frames_and_sentences():
    g = torch.Generator().manual_seed(4)
    H = torch.randn(2, 6, 8, generator=g, requires_grad=True)
    S = torch.randn(2, 4, 8, generator=g, requires_grad=True)
    loss, labels = L.fine_loss(H, S, torch.tensor([4, 2]), "sort")
    loss.backward()
    assert labels.shape == (2, 6) and (labels.diff(dim=1) >= 0).all()
    assert H.grad.abs().sum() > 0 and S.grad[0].abs().sum() > 0
    assert S.grad[1, 2:].abs().sum() == 0  # padded sentences get no gradient
    none, _ = L.fine_loss(H, S, torch.tensor([4, 2]), "none")
    assert float(none.detach()) == 0.0


def test_bad_inputs_are_named():
    v = torch.randn(3, 4)
    with pytest.raises(ValueError, match="same shape"):
        L.info_nce(v, torch.randn(3, 5), 1.0)
    bad = v.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        L.info_nce(bad, v, 1.0)
    with pytest.raises(ValueError, match="groups"):
        L.info_nce(v, v, 1.0, torch.tensor([0, 1]))
    H, S = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="num_steps"):
        L.fine_loss(H, S, torch.tensor([4, 1]))
    with pytest.raises(ValueError, match="pseudo-labels"):
        L.fine_loss(H, S, torch.tensor([3, 1]), "random")
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        L.fine_loss(H[0], S, torch.tensor([3, 1]))


def test_similarity_logits_give_a_full_softmax_gradient():
    """With logits="similarity" the frame -> step cross-entropy is over the scaled cosines: its
    value matches a direct computation against the same (Viterbi) labels."""
    g = torch.Generator().manual_seed(5)
    H = torch.randn(1, 5, 6, generator=g, dtype=torch.float64)
    S = torch.randn(1, 3, 6, generator=g, dtype=torch.float64)
    k = torch.tensor([3])
    loss, labels = L.fine_loss(H, S, k, "viterbi", scale=4.0, logits="similarity")
    sim = 4.0 * L.cosine_matrix(H, S)
    f2s = torch.nn.functional.cross_entropy(sim[0], labels[0])
    first = [int((labels[0] == j).nonzero()[0]) for j in range(3) if (labels[0] == j).any()]
    steps = [j for j in range(3) if (labels[0] == j).any()]
    s2f = torch.nn.functional.cross_entropy(sim[0].T[steps], torch.tensor(first))
    assert float(loss) == pytest.approx(float(f2s + s2f), rel=1e-10)
    with pytest.raises(ValueError, match="logits"):
        L.fine_loss(H, S, k, "sort", logits="onehot")
