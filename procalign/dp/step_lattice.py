"""The monotone frame-to-step lattice: CPA's frame-to-step alignment and Viterbi pseudo-labels.

A labelling assigns each frame t < T_b one step k < K_b. Two lattices:

* strict (``skip=False``, CPA Eq. 6-9): frame 0 on step 0, the last frame on step K_b - 1, each
  frame stays on its step or moves to the next, so no step is skipped (needs T_b >= K_b).
  ``alpha(t, k) = p(t, k) (x) [alpha(t-1, k-1) (+) alpha(t-1, k)]``; there are C(T-1, K-1) paths.
* skip-allowed (``skip=True``, WeakSVR's Viterbi): labels are non-decreasing, start and end
  anywhere. ``alpha(t, k) = p(t, k) (x) (+)_{k' <= k} alpha(t-1, k')``; C(T+K-1, T) paths.

Under the log semiring the value is the log of the summed path probability (with log-probability
potentials); under max, the best labelling. Marginals and Viterbi labels are gradients of the
value. Time O(B T K) (O(B T K^2) for the generic torch skip lattice).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from procalign.dp import _validate as V
from procalign.dp.semiring import LogSemiring, MaxSemiring, Semiring, get_semiring


class StepViterbiResult(NamedTuple):
    """``values`` (B,) best total score; ``labels`` (B, T) step per frame (-1 on padded frames)."""

    values: Tensor
    labels: Tensor


def _prepare(x: Tensor, name: str, lengths, num_steps, skip: bool, backend: str):
    x = V.check_tensor(x, name, 3, "B, T, K")
    B, T, K = x.shape
    lt = V.check_lengths(lengths, "lengths", B, T, x)
    lk = V.check_lengths(num_steps, "num_steps", B, K, x)
    V.check_backend(backend)
    if not skip and bool((lk > lt).any()):
        b = int(torch.nonzero(lk > lt)[0, 0])
        raise ValueError(
            f"the strict step lattice needs at least as many frames as steps, but example {b} has "
            f"{int(lk[b])} steps (K) and {int(lt[b])} frames (T); use skip=True or fewer steps"
        )
    return x, lt, lk


def step_value(
    potentials: Tensor,
    semiring: Semiring | str = "log",
    lengths: Tensor | None = None,
    num_steps: Tensor | None = None,
    skip: bool = False,
    gamma: float = 1.0,
) -> Tensor:
    """Value of the step lattice over ``potentials`` (B, T, K) under any semiring -> (B,).

    The generic torch recursion (autograd, any device). ``lengths`` (B,) frames and
    ``num_steps`` (B,) steps per example; padding never enters a value.

    >>> import torch
    >>> ones = torch.ones(1, 5, 3, dtype=torch.float64)
    >>> step_value(ones, "counting")  # C(4, 2) strict paths
    tensor([6.], dtype=torch.float64)
    """
    sr = get_semiring(semiring, gamma)
    p, lt, lk = _prepare(potentials, "potentials", lengths, num_steps, skip, "torch")
    B, T, K = p.shape
    dev = p.device
    zero = torch.tensor(sr.zero, dtype=p.dtype, device=dev)
    kk = torch.arange(K, device=dev)
    step_ok = kk[None, :] < lk[:, None]  # (B, K)
    p = torch.where(step_ok[:, None, :], p, zero)
    if skip:
        alpha = p[:, 0]
        tri = kk[None, :] <= kk[:, None]  # tri[k, k'] = k' <= k
    else:
        alpha = torch.where(kk == 0, p[:, 0], zero)
    alphas = [alpha]
    for t in range(1, T):
        if skip:
            prev = sr.sum(torch.where(tri, alpha[:, None, :], zero), dim=-1)
        else:
            adv = torch.cat([zero.expand(B, 1), alpha[:, :-1]], dim=1)
            prev = sr.plus(adv, alpha)  # advancing first: ties prefer the smaller index
        alpha = sr.times(p[:, t], prev)
        alphas.append(alpha)
    A = torch.stack(alphas, dim=1)
    last = A[torch.arange(B, device=dev), lt - 1]  # (B, K)
    if skip:
        return sr.sum(torch.where(step_ok, last, zero), dim=-1)
    return last[torch.arange(B, device=dev), lk - 1]


def _np(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


class _StepNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, P: Tensor, lt: Tensor, lk: Tensor, skip: bool, hard: bool):  # type: ignore[override]
        from procalign.dp import _numba_step as K

        Pn = _np(P)
        B, T, Kmax = Pn.shape
        out = np.empty(B)
        A = np.empty((B, T, Kmax))
        ptr = np.zeros((B, T, Kmax) if hard else (1, 1, 1), dtype=np.int32)
        lt_np, lk_np = _np(lt), _np(lk)
        K.forward(Pn, lt_np, lk_np, skip, hard, out, A, ptr)
        labels = np.full((B, T), -1, dtype=np.int64)
        if hard:
            K.backtrack(A, ptr, lt_np, lk_np, skip, labels)
        ctx.stash = (Pn, A, out, lt_np, lk_np, skip, hard)
        labels_t = torch.from_numpy(labels)
        ctx.save_for_backward(labels_t)
        ctx.mark_non_differentiable(labels_t)
        return torch.from_numpy(out).to(P.dtype), labels_t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor, _grad_labels: Tensor):  # type: ignore[override]
        from procalign.dp import _numba_step as K

        Pn, A, out, lt, lk, skip, hard = ctx.stash
        if hard:
            (labels,) = ctx.saved_tensors
            onehot = torch.zeros(Pn.shape, dtype=grad.dtype)
            valid = labels >= 0
            onehot[valid.nonzero(as_tuple=True) + (labels[valid],)] = 1.0
            return grad[:, None, None] * onehot, None, None, None, None
        G = np.zeros(Pn.shape, dtype=Pn.dtype)
        K.marginals(Pn, A, out, lt, lk, skip, _np(grad.double()), G)
        return torch.from_numpy(G), None, None, None, None


def step_forward(
    log_probs: Tensor,
    lengths: Tensor | None = None,
    num_steps: Tensor | None = None,
    skip: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Log of the total probability of all monotone frame-to-step paths -> (B,).

    ``log_probs`` (B, T, K): log p(frame t on step k) (e.g. a log-softmax over steps). With
    ``skip=False`` this is CPA's frame-to-step alignment (Eq. 6-9, computed in log space): paths
    start on step 1, end on step K and advance by 0 or 1 step per frame. Differentiable; the
    gradient w.r.t. ``log_probs`` is the posterior marginal of each (frame, step).

    >>> import torch
    >>> lp = torch.full((1, 4, 2), 0.5, dtype=torch.float64).log()
    >>> step_forward(lp).exp()  # C(3, 1) = 3 paths of probability 0.5**4
    tensor([0.1875], dtype=torch.float64)
    """
    lp, lt, lk = _prepare(log_probs, "log_probs", lengths, num_steps, skip, backend)
    if V.use_numba(backend, lp, True):
        return _StepNumba.apply(lp, lt, lk, skip, False)[0]
    return step_value(lp, LogSemiring(1.0), lt, lk, skip)


def step_viterbi(
    scores: Tensor,
    lengths: Tensor | None = None,
    num_steps: Tensor | None = None,
    skip: bool = False,
    backend: str = "auto",
) -> StepViterbiResult:
    """Best labelling under the step lattice: ``values`` (B,) and ``labels`` (B, T).

    ``scores`` (B, T, K), higher is better (e.g. log-probabilities or similarities). ``skip=True``
    gives WeakSVR's Viterbi pseudo-labels: non-decreasing labels, any start and end. Ties go to
    the smaller step index. Padded frames get label -1. ``values`` is differentiable (its gradient
    is the one-hot labelling).

    >>> import torch
    >>> s = torch.tensor([[[0., 2.], [1., 0.], [0., 1.]]])
    >>> step_viterbi(s).labels.tolist()  # must start on step 0 and end on the last step
    [[0, 0, 1]]
    >>> step_viterbi(s, skip=True).labels.tolist()  # any start: stays on step 1
    [[1, 1, 1]]
    """
    sc, lt, lk = _prepare(scores, "scores", lengths, num_steps, skip, backend)
    if V.use_numba(backend, sc, True):
        return StepViterbiResult(*_StepNumba.apply(sc, lt, lk, skip, True))
    with torch.enable_grad():
        s = sc.detach().requires_grad_(True)
        best = step_value(s, MaxSemiring(), lt, lk, skip)
        (onehot,) = torch.autograd.grad(best.sum(), s)
    T = sc.shape[1]
    frame_ok = torch.arange(T, device=sc.device)[None, :] < lt[:, None]
    labels = torch.where(frame_ok, onehot.argmax(dim=-1), torch.full_like(lt[:, None], -1))
    return StepViterbiResult((onehot.detach() * sc).sum(dim=(1, 2)), labels)


def step_marginals(
    log_probs: Tensor,
    lengths: Tensor | None = None,
    num_steps: Tensor | None = None,
    skip: bool = False,
    backend: str = "auto",
) -> Tensor:
    """Posterior probability (B, T, K) that frame t sits on step k; rows sum to 1 on valid frames."""
    log_probs = V.check_tensor(log_probs, "log_probs", 3, "B, T, K")
    with torch.enable_grad():
        lp = log_probs.detach().requires_grad_(True)
        v = step_forward(lp, lengths, num_steps, skip, backend)
        (grad,) = torch.autograd.grad(v.sum(), lp)
    return grad
