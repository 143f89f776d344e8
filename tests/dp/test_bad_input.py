"""Bad input gets a ValueError / TypeError that names the argument and the shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from procalign import dp


def test_wrong_rank_names_argument_and_shape():
    with pytest.raises(ValueError, match=r"costs must have shape \(B, N, M\).*\(4, 5\)"):
        dp.dtw(torch.rand(4, 5))
    with pytest.raises(ValueError, match=r"log_probs must have shape \(B, T, K\)"):
        dp.step_forward(torch.rand(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"sim must have shape"):
        dp.block_partition(torch.rand(3), 2)


def test_not_a_tensor_or_wrong_dtype():
    with pytest.raises(TypeError, match="costs must be a torch.Tensor"):
        dp.soft_dtw(np.zeros((1, 2, 2)))
    with pytest.raises(TypeError, match="float32 or float64"):
        dp.soft_dtw(torch.zeros(1, 2, 2, dtype=torch.int64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_inf_rejected(bad):
    c = torch.rand(2, 3, 3)
    c[1, 2, 0] = bad
    with pytest.raises(ValueError, match=r"costs contains 1 NaN or infinite"):
        dp.soft_dtw(c)
    with pytest.raises(ValueError, match=r"sim contains"):
        dp.block_partition(c, 2)
    with pytest.raises(ValueError, match=r"scores contains"):
        dp.step_viterbi(c)


def test_empty_inputs_rejected():
    with pytest.raises(ValueError, match="must not be empty"):
        dp.dtw(torch.rand(2, 0, 3))


def test_lengths_checked():
    c = torch.rand(2, 4, 3)
    with pytest.raises(ValueError, match=r"lengths_n must lie in \[1, 4\]"):
        dp.dtw(c, lengths_n=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match=r"lengths_m must lie in \[1, 3\]"):
        dp.soft_dtw(c, lengths_m=torch.tensor([3, 5]))
    with pytest.raises(ValueError, match=r"lengths_n must have shape \(B,\)=\(2,\)"):
        dp.dtw(c, lengths_n=torch.tensor([4, 4, 4]))
    with pytest.raises(TypeError, match="lengths must hold integers"):
        dp.step_forward(c.log_softmax(-1), lengths=torch.tensor([4.0, 3.0]))


def test_k_larger_than_length():
    with pytest.raises(ValueError, match=r"K=5 is larger than a sequence length.*3 frames"):
        dp.block_partition(torch.rand(2, 6, 6), 5, lengths_m=torch.tensor([6, 3]))
    with pytest.raises(ValueError, match=r"example 1 has 4 steps \(K\) and 3 frames \(T\)"):
        dp.step_forward(torch.rand(2, 5, 4), lengths=torch.tensor([5, 3]))
    with pytest.raises(ValueError, match="K must be >= 1"):
        dp.block_partition(torch.rand(1, 3, 3), 0)
    with pytest.raises(TypeError, match="K must be an int"):
        dp.block_partition(torch.rand(1, 3, 3), 2.0)


def test_gamma_backend_semiring_and_scores_checked():
    c = torch.rand(1, 3, 3)
    for g in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="gamma must be a positive finite number"):
            dp.soft_dtw(c, gamma=g)
    with pytest.raises(ValueError, match="backend must be one of"):
        dp.dtw(c, backend="cuda-magic")
    with pytest.raises(ValueError, match="unknown semiring 'tropical'"):
        dp.grid_value(c, "tropical")
    with pytest.raises(ValueError, match="block_score must be one of"):
        dp.block_partition(c, 2, block_score="median")


def test_mismatched_dtype_and_device_between_sequences():
    with pytest.raises(TypeError, match="x is torch.float32 but y is torch.float64"):
        dp.soft_dtw_divergence(torch.rand(1, 3, 2), torch.rand(1, 3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"must share B and D"):
        dp.pairwise_costs(torch.rand(1, 3, 2), torch.rand(1, 3, 5))
    with pytest.raises(ValueError, match="lengths_n is on"):
        dp.dtw(torch.rand(1, 3, 3), lengths_n=torch.tensor([3], device="meta"))


def test_soft_dtw_ragged_lengths_check_the_whole_tensor():
    """The public check covers the whole tensor, padding included (the kernels never read the
    padding, but a NaN there is still a caller's mistake worth naming)."""
    c = torch.rand(16, 6, 6)
    c[3, 5, 5] = float("nan")
    ln = torch.full((16,), 6)
    ln[3] = 4
    with pytest.raises(ValueError, match="NaN or infinite"):
        dp.soft_dtw(c, 1.0, lengths_n=ln, backend="numba")


def test_costs_from_pairwise_costs_skip_the_rescan_until_written():
    """pairwise_costs marks its output finite (its inputs were checked and their squared
    distances cannot overflow), so soft_dtw need not scan it again; a write into it, or into a
    view of it, voids the mark and the NaN is found."""
    from procalign.dp import _validate as V

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 5, 4, generator=g), torch.randn(3, 6, 4, generator=g)
    c = dp.pairwise_costs(x, y)
    _, bound = V.check_tensor_bound(c, "costs", 3, "B, N, M")
    assert bound >= float(c.max())  # a valid bound, from the mark (no pass over c)
    assert torch.isfinite(dp.soft_dtw(c, 0.5)).all()
    c.view(-1)[7] = float("nan")  # through a view: shares c's version counter
    with pytest.raises(ValueError, match="costs contains 1 NaN"):
        dp.soft_dtw(c, 0.5)
    c2 = dp.pairwise_costs(x, y)
    c2[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="costs contains 1 NaN or infinite"):
        dp.dtw(c2)
    # a copy carries no mark and is scanned
    c3 = dp.pairwise_costs(x, y).clone()
    c3[1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="costs contains 1 NaN"):
        dp.soft_dtw(c3, 0.5)


def test_check_tensor_bound_is_the_max_abs_value():
    from procalign.dp import _validate as V

    x = torch.tensor([[[0.5, -3.0], [2.0, 1.0]]])
    assert V.check_tensor_bound(x, "x", 3, "B, N, D")[1] == 3.0
    with pytest.raises(ValueError, match="x contains 1 NaN"):
        V.check_tensor_bound(torch.tensor([[[float("nan")]]]), "x", 3, "B, N, D")
