"""Property-based fuzzing of every public entry point of :mod:`procalign.dp`.

Each test throws random arguments at one entry point: shapes with zeros, K > T, B = 0, lengths
that are 0, negative, past T, of the wrong shape or dtype; tensors of every dtype (int, bool,
float16, bfloat16, complex, float32/64), NaN and inf, wrong ranks, numpy arrays, lists. The
entry point must either reject the input with a ValueError / TypeError whose message is one
non-empty line, or return outputs of the documented shape that are finite when the inputs are,
within the per-example time limit. Anything else (another exception, a NaN, a hang) fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from procalign import dp
from tests.fuzz._guard import FUZZ, record, time_limit

NAMED = (ValueError, TypeError)
DTYPES = [torch.float32, torch.float64]
HUGE = [1e19, 1e26, 1e29, 3e38]  # float32 max is 3.4e38; the kernels' "impossible" is -1e30
ODD_DTYPES = [torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.bool, torch.complex64]


@st.composite
def arrays(draw, ndim: int = 3, max_side: int = 6):
    """Half the time a well-formed finite float tensor (B, ...) of sides >= 1 and random scale;
    otherwise anything: wrong rank, zero sides, B = 0, odd dtypes, NaN/inf, numpy, lists."""
    sane = draw(st.booleans())
    rank = ndim if sane else draw(st.sampled_from([ndim] * 4 + [ndim - 1, ndim + 1]))
    lo = 1 if sane else 0
    shape = [draw(st.integers(lo, max_side)) for _ in range(rank)]
    if rank > 0:
        shape[0] = draw(st.integers(lo, 3))  # small batches, B = 0 included when not sane
    seed = draw(st.integers(0, 2**31 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 1e3, 1e4]))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tuple(shape), generator=g, dtype=torch.float64) * scale
    if sane:
        return x.to(draw(st.sampled_from(DTYPES)))
    if draw(st.integers(0, 3)) == 0:
        x = x / scale * draw(st.sampled_from(HUGE))  # finite but near the dtype's limits
    if draw(st.integers(0, 2)) == 0 and x.numel():
        bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = bad
    dtype = draw(st.sampled_from(DTYPES * 3 + ODD_DTYPES))
    x = x.to(dtype) if not dtype.is_complex else x.to(torch.complex64)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return x.numpy() if dtype not in (torch.bfloat16,) else x
    if kind == 1:
        return x.tolist()
    if kind == 2 and x.dim() >= 1:
        return x.transpose(0, -1)  # non-contiguous
    return x


def _side(x, axis: int) -> int:
    return int(x.shape[axis]) if isinstance(x, torch.Tensor) and x.dim() > axis else 3


def _batch(x) -> int:
    return int(x.shape[0]) if isinstance(x, torch.Tensor) and x.dim() > 0 else 1


@st.composite
def lengths_for(draw, batch: int, side: int):
    """None, or per-example lengths: in range, 0, negative, past the side, wrong shape/dtype."""
    kind = draw(st.integers(0, 13))
    if kind <= 2:
        return None
    kind = min(kind, 9)
    n = batch if kind != 3 else draw(st.integers(0, batch + 2))
    lo, hi = (1, max(side, 1)) if kind >= 6 else (-2, side + 3)
    vals = draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
    if kind == 4:
        return torch.tensor(vals, dtype=torch.float32)
    if kind == 5:
        return vals  # a plain list
    return torch.tensor(vals, dtype=draw(st.sampled_from([torch.int64, torch.int32, torch.int16])))


def draw(data, strategy, default=None):
    """``data.draw(strategy)``; ``default`` when an @example passes ``data=None``."""
    return default if data is None else data.draw(strategy)


gammas = st.one_of(
    st.sampled_from([1.0, 0.1, 1e-3, 1e2]),
    st.sampled_from([1.0, 0.1, 1e-3, 1e2]),
    st.sampled_from([0.0, -1.0, math.nan, math.inf, 1e-8, 1e8, "1.0", None, True]),
)
backends = st.sampled_from(["auto", "auto", "numba", "torch", "torch", "cuda-magic"])


def _finite_input(*xs) -> bool:
    for x in xs:
        if (isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64)
                and not bool(torch.isfinite(x).all())):
            return False
    return True


def run(entry: str, fn, *args, finite_in: bool, check=None, **kwargs):
    """Call ``fn``; a named error with a one-line message or finite, checked outputs pass."""
    try:
        with time_limit(entry):
            out = fn(*args, **kwargs)
    except NAMED as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, f"{entry}: unclear message {msg!r}"
        record(entry, "rejected")
        return None
    outs = out if isinstance(out, tuple) else (out,)
    if finite_in:
        for o in outs:
            if o.is_floating_point():
                assert bool(torch.isfinite(o).all()), f"{entry}: non-finite output for finite input: {o}"
    if check is not None:
        check(out)
    record(entry, "ok")
    return out


def _is_float3(x) -> bool:
    return isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64) and x.dim() == 3


@FUZZ
@given(data=st.data(), costs=arrays(), backend=backends)
def test_fuzz_dtw(data, costs, backend):
    B = _batch(costs)
    ln = draw(data, lengths_for(B, _side(costs, 1)))
    lm = draw(data, lengths_for(B, _side(costs, 2)))

    def check(r):
        assert r.values.shape == (B,) and r.path.shape == costs.shape
        assert set(torch.unique(r.path).tolist()) <= {0.0, 1.0}

    run("dtw", dp.dtw, costs, ln, lm, backend=backend, finite_in=_finite_input(costs), check=check)


@FUZZ
@given(data=st.data(), costs=arrays(), gamma=gammas, backend=backends)
def test_fuzz_soft_dtw(data, costs, gamma, backend):
    B = _batch(costs)
    ln = draw(data, lengths_for(B, _side(costs, 1)))
    lm = draw(data, lengths_for(B, _side(costs, 2)))
    run("soft_dtw", dp.soft_dtw, costs, gamma, ln, lm, backend=backend, finite_in=_finite_input(costs),
        check=lambda v: v.shape == (B,) or pytest.fail("shape"))


@FUZZ
@given(data=st.data(), costs=arrays(), gamma=gammas, backend=backends)
# found by fuzzing: a numpy array crashed with AttributeError ('detach') before validation
@example(data=None, costs=np.zeros((1, 2, 2), dtype=np.float32), gamma=1.0, backend="auto")
def test_fuzz_expected_alignment(data, costs, gamma, backend):
    B = _batch(costs)
    ln = draw(data, lengths_for(B, _side(costs, 1)))
    lm = draw(data, lengths_for(B, _side(costs, 2)))

    def check(E):
        assert E.shape == costs.shape
        assert bool((E >= -1e-4).all()) and bool((E <= 1 + 1e-4).all()), E
        assert torch.allclose(E[:, 0, 0].double(), torch.ones(E.shape[0], dtype=torch.float64), atol=1e-3)

    run("expected_alignment", dp.expected_alignment, costs, gamma, ln, lm, backend=backend,
        finite_in=_finite_input(costs), check=check)


costs_names = st.sampled_from(["sqeuclidean", "euclidean", "cosine", "cosine", "manhattan", None])


@FUZZ
@given(data=st.data(), x=arrays(), cost=costs_names)
# found by fuzzing: finite float32 features of 1e19 gave infinite costs without a word
@example(data=None, x=torch.full((1, 4, 3), 1e19), cost="sqeuclidean")
def test_fuzz_pairwise_costs(data, x, cost):
    y = draw(data, st.one_of(arrays(), st.just(x)), x)
    if draw(data, st.booleans()) and _is_float3(x) and _is_float3(y):
        y = (x.flip(1) + 0.5 * y.mean()).to(y.dtype)  # often share B and D
    run("pairwise_costs", dp.pairwise_costs, x, y, cost, finite_in=_finite_input(x, y),
        check=lambda c: c.dim() == 3 or pytest.fail("rank"))


@FUZZ
@given(data=st.data(), x=arrays(max_side=5), gamma=gammas, cost=costs_names, backend=backends)
def test_fuzz_soft_dtw_divergence(data, x, gamma, cost, backend):
    y = draw(data, st.one_of(arrays(max_side=5), st.just(x)), x)
    if _is_float3(x) and _is_float3(y) and draw(data, st.booleans()):
        y = (x[:, : y.shape[1]] * 0.5 + 1).to(y.dtype)  # often share B and D
    B = _batch(x)
    ln = draw(data, lengths_for(B, _side(x, 1)))
    lm = draw(data, lengths_for(B, _side(y, 1)))
    run("soft_dtw_divergence", dp.soft_dtw_divergence, x, y, gamma, ln, lm, cost=cost or "sqeuclidean",
        backend=backend, finite_in=_finite_input(x, y))


def _step_args(data, x):
    B, T, K = _batch(x), _side(x, 1), _side(x, 2)
    lengths = draw(data, lengths_for(B, T))
    num_steps = draw(data, lengths_for(B, K))
    skip = draw(data, st.sampled_from([False, False, True, 1, "yes"]), False)
    return lengths, num_steps, skip


@FUZZ
@given(data=st.data(), lp=arrays(), backend=backends)
def test_fuzz_step_forward(data, lp, backend):
    lengths, num_steps, skip = _step_args(data, lp)
    run("step_forward", dp.step_forward, lp, lengths, num_steps, skip, backend=backend,
        finite_in=_finite_input(lp))


@FUZZ
@given(data=st.data(), sc=arrays(), backend=backends)
# found while fuzzing (by hand, the test oracle cannot see it): scores near -1e29 collide with the kernels' "impossible" marker (-1e30):
# numba and torch returned different labellings, neither the best one
@example(data=None, sc=-(torch.arange(60, dtype=torch.float64).reshape(1, 20, 3) + 60) * 1e27, backend="auto")
def test_fuzz_step_viterbi(data, sc, backend):
    lengths, num_steps, skip = _step_args(data, sc)

    def check(r):
        assert r.labels.shape == sc.shape[:2]
        assert int(r.labels.max()) < sc.shape[2]

    run("step_viterbi", dp.step_viterbi, sc, lengths, num_steps, skip, backend=backend,
        finite_in=_finite_input(sc), check=check)


@FUZZ
@given(data=st.data(), lp=arrays(), backend=backends)
# found by fuzzing: a numpy array crashed with AttributeError ('detach') before validation
@example(data=None, lp=np.zeros((1, 2, 2), dtype=np.float32), backend="auto")
# found by fuzzing: finite float32 values near 3e38 gave NaN marginals (torch) / inf (numba)
@example(data=None, lp=torch.full((2, 5, 4), 3e38), backend="torch")
@example(data=None, lp=torch.full((2, 5, 4), 3e38), backend="numba")
def test_fuzz_step_marginals(data, lp, backend):
    lengths, num_steps, skip = _step_args(data, lp)

    def check(P):
        assert P.shape == lp.shape
        assert bool((P >= -1e-4).all()) and bool((P <= 1 + 1e-4).all()), P
        T = lp.shape[1]
        lt = torch.full((lp.shape[0],), T) if lengths is None else torch.as_tensor(lengths)
        valid = torch.arange(T)[None, :] < lt[:, None]
        rows = P.sum(-1).double()
        assert torch.allclose(rows[valid], torch.ones_like(rows[valid]), atol=1e-3), rows
        assert bool((rows[~valid].abs() < 1e-6).all()), rows

    run("step_marginals", dp.step_marginals, lp, lengths, num_steps, skip, backend=backend,
        finite_in=_finite_input(lp), check=check)


@FUZZ
@given(
    data=st.data(),
    sim=arrays(),
    K=st.one_of(st.integers(1, 3), st.integers(-1, 8), st.sampled_from([2.0, True, "3", None, np.int64(2)])),
    block_score=st.sampled_from(["mean", "mean", "sqrt_area", "median"]),
    backend=backends,
)
# found by fuzzing: finite float32 similarities near 3e38 gave NaN values on the torch path
@example(data=None, sim=torch.full((2, 5, 4), 3e38), K=2, block_score="mean", backend="torch")
def test_fuzz_block_partition(data, sim, K, block_score, backend):
    B = _batch(sim)
    ln = draw(data, lengths_for(B, _side(sim, 1)))
    lm = draw(data, lengths_for(B, _side(sim, 2)))

    def check(r):
        assert r.values.shape == (B,) and r.bounds_n.shape == (B, int(K) + 1)
        assert bool((r.bounds_n.diff(dim=1) > 0).all()) and bool((r.bounds_m.diff(dim=1) > 0).all())

    run("block_partition", dp.block_partition, sim, K, ln, lm, block_score, backend=backend,
        finite_in=_finite_input(sim), check=check)


def test_marginals_of_huge_scores_are_refused_not_imprecise():
    """float64 path sums of |value| ~1e12 lose the precision the marginals need (rows summed to
    1 +- 1e-2): such inputs are refused with a message, and scores just below the limit are
    exact."""
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(1, 50, 7, generator=g, dtype=torch.float64) * 1e14
    with pytest.raises(ValueError, match="too large for the DP"):
        dp.step_marginals(lp, backend="numba")
    ok = torch.randn(1, 50, 7, generator=g, dtype=torch.float64) * 1e7
    rows = dp.step_marginals(ok, backend="numba").sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows), atol=1e-3)
