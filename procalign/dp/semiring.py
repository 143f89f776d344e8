"""Semirings: the only arithmetic the dynamic programs of :mod:`procalign.dp` use.

A dynamic program is written once with ``times`` (combine a partial structure with one more
piece) and ``sum`` (aggregate over alternatives). Swapping the semiring changes what it computes:

=================  =====================  ==========  ==================================
semiring           sum                    times       value of the DP
=================  =====================  ==========  ==================================
``LogSemiring(g)`` ``g*logsumexp(x/g)``   ``a + b``   smoothed max (soft-DTW, forward)
``MaxSemiring``    ``max``                ``a + b``   best structure (DTW, Viterbi)
``CountingSemiring`` ``sum``              ``a * b``   number of structures (on all-ones input)
=================  =====================  ==========  ==================================

All DPs in procalign maximise *scores*. Cost-based entry points (``dtw``, ``soft_dtw``) negate at
the boundary: ``min(c) = -max(-c)`` and ``softmin_g(c) = -g*logsumexp(-c/g)``.

The gradient of a ``LogSemiring`` value with respect to the potentials gives marginals; of a
``MaxSemiring`` value, the indicator of the best structure (ties go to the first alternative in the
order the DP lists them, which procalign always orders by smallest index first).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: A finite stand-in for minus infinity. True ``-inf`` makes ``logsumexp`` backward produce
#: ``0 * inf = nan`` in cells that no path reaches; a large finite value keeps gradients at 0.
NEG = -1e30


class Semiring:
    """Base class: subclasses define ``zero``, ``one``, ``sum`` and ``times``."""

    name = "semiring"
    zero: float
    one: float

    def sum(self, x: Tensor, dim: int | tuple[int, ...]) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def times(self, a: Tensor, b: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def plus(self, *xs: Tensor) -> Tensor:
        """Aggregate several same-shaped tensors (order matters only for ties)."""
        return self.sum(torch.stack(torch.broadcast_tensors(*xs), dim=0), dim=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LogSemiring(Semiring):
    """``sum = gamma * logsumexp(x / gamma)``; tends to :class:`MaxSemiring` as gamma -> 0."""

    name = "log"
    zero = NEG
    one = 0.0

    def __init__(self, gamma: float = 1.0) -> None:
        gamma = float(gamma)
        if not gamma > 0 or gamma != gamma or gamma == float("inf"):
            raise ValueError(f"gamma must be a positive finite number, got {gamma}")
        self.gamma = gamma

    def sum(self, x: Tensor, dim: int | tuple[int, ...]) -> Tensor:
        if self.gamma == 1.0:
            return torch.logsumexp(x, dim=dim)
        return self.gamma * torch.logsumexp(x / self.gamma, dim=dim)

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def __repr__(self) -> str:
        return f"LogSemiring(gamma={self.gamma:g})"


class MaxSemiring(Semiring):
    """``sum = max`` (first index wins ties, so gradients are 0/1 indicators)."""

    name = "max"
    zero = NEG
    one = 0.0

    def sum(self, x: Tensor, dim: int | tuple[int, ...]) -> Tensor:
        if isinstance(dim, tuple):
            # Flatten the reduced dims (row-major) so ties resolve to the lexicographically
            # smallest index, then take one max.
            dims = sorted(d % x.dim() for d in dim)
            if dims != list(range(dims[0], dims[0] + len(dims))):
                raise ValueError("MaxSemiring.sum over several dims needs them contiguous")
            x = x.flatten(dims[0], dims[-1])
            dim = dims[0]
        return torch.max(x, dim=dim).values

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b


class CountingSemiring(Semiring):
    """Real ``(+, *)``: on all-ones potentials the value counts the structures."""

    name = "counting"
    zero = 0.0
    one = 1.0

    def sum(self, x: Tensor, dim: int | tuple[int, ...]) -> Tensor:
        return x.sum(dim=dim)

    def times(self, a: Tensor, b: Tensor) -> Tensor:
        return a * b


def get_semiring(semiring: Semiring | str, gamma: float = 1.0) -> Semiring:
    """Accept a semiring instance or one of the names ``"log"``, ``"max"``, ``"counting"``."""
    if isinstance(semiring, Semiring):
        return semiring
    names = {"log": lambda: LogSemiring(gamma), "max": MaxSemiring, "counting": CountingSemiring}
    if semiring not in names:
        raise ValueError(f"unknown semiring {semiring!r}; known: {', '.join(names)}")
    return names[semiring]()
