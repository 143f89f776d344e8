"""Batched, masked, differentiable dynamic programs: the engine under every procalign method.

Three lattices, each written once over a :mod:`semiring <procalign.dp.semiring>`:

* :mod:`~procalign.dp.grid` - the pairwise alignment grid: :func:`dtw`, :func:`soft_dtw`,
  :func:`soft_dtw_divergence`, :func:`expected_alignment`.
* :mod:`~procalign.dp.step_lattice` - monotone frame-to-step paths: :func:`step_forward`,
  :func:`step_viterbi`, :func:`step_marginals`.
* :mod:`~procalign.dp.block_partition` - K diagonal blocks tiling two sequences:
  :func:`block_partition`.

Every entry point takes a batch (B, ...) with per-example lengths, float32 or float64, on CPU
(compiled numba kernels with hand-written backward) or any torch device (vectorised torch
recursion, autograd). ``backend="auto" | "numba" | "torch"`` picks one explicitly.
"""

from procalign.dp.block_partition import BlockPartitionResult, block_partition, block_value
from procalign.dp.grid import (
    DTWResult,
    dtw,
    expected_alignment,
    grid_value,
    pairwise_costs,
    soft_dtw,
    soft_dtw_divergence,
)
from procalign.dp.semiring import (
    CountingSemiring,
    LogSemiring,
    MaxSemiring,
    Semiring,
    get_semiring,
)
from procalign.dp.step_lattice import (
    StepViterbiResult,
    step_forward,
    step_marginals,
    step_value,
    step_viterbi,
)

__all__ = [
    "BlockPartitionResult",
    "CountingSemiring",
    "DTWResult",
    "LogSemiring",
    "MaxSemiring",
    "Semiring",
    "StepViterbiResult",
    "block_partition",
    "block_value",
    "dtw",
    "expected_alignment",
    "get_semiring",
    "grid_value",
    "pairwise_costs",
    "soft_dtw",
    "soft_dtw_divergence",
    "step_forward",
    "step_marginals",
    "step_value",
    "step_viterbi",
]
