"""LRProp losses (Bar-Shalom, Leifman, Elad, Rivlin): position priors matched by KL, plus soft-DTW.

Functional forms built only on :mod:`procalign.dp` and torch, and one module,
:class:`LRPropLoss`, that applies Eq. 12 to a batch of views.

Every KL term compares a *prior* ``P(i | j)`` with the *model* distribution

    Q(i | j) = softmax_i( cos(z^B_j, z^A_i) / tau )                                    (Eq. 1)

over the frames ``i`` of a view A, for each frame ``j`` of a view B, and averages
``KL(P(.|j) || Q(.|j))`` over the frames ``j`` of B (Eqs. 3-4, 8-9). The priors:

* same video (Eq. 2): ``P(i | j) ∝ exp(-(s^B_j - s^A_i)^2 / (2 sigma^2))`` with ``s`` the
  *original* frame indices of the two crops;
* different videos (Eq. 7, "pair-wise position propagation"): hard DTW between A and B gives, for
  every frame ``i`` of A, its matched frame ``match(i)`` in B (the smallest index on ties); then
  ``P(i | j) ∝ exp(-(s^B_j - s^B_match(i))^2 / (2 sigma^2))``. The path is a constant: no
  gradient flows through DTW, only through Q.

The soft-DTW term (Sec. 3.4) is the soft-DTW *divergence* by default (zero only for equal
sequences, so it cannot be minimised by collapsing every frame to one point); LAV's plain soft-DTW
plus contrastive inverse-difference-moment regulariser is the other choice.

Shapes: B pairs of views; view A has N frames (indexed i), view B has M frames (indexed j);
D features. ``lengths_a`` (B,) / ``lengths_b`` (B,) mark padding (frames at or past the length are
ignored); None means all frames are real. Every per-pair loss returns (B,).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from procalign.dp import dtw, pairwise_costs, soft_dtw, soft_dtw_divergence
from procalign.masks import check_lengths, valid_mask

__all__ = [
    "SDTW_VARIANTS",
    "LRPropLoss",
    "contrastive_idm",
    "dtw_matches",
    "index_log_prior",
    "prior_kl",
    "propagation_log_prior",
    "propagation_loss",
    "same_video_loss",
    "sdtw_loss",
    "similarity_log_probs",
]

#: ``"divergence"``: soft-DTW divergence (Blondel et al. 2021), the default.
#: ``"idm"``: soft-DTW plus LAV's contrastive inverse-difference-moment regulariser on each view.
SDTW_VARIANTS = ("divergence", "idm")
_COSTS = ("sqeuclidean", "euclidean", "cosine")


# ----------------------------------------------------------------------------- validation


def _embeddings(z: object, name: str) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, T, D), got {type(z).__name__}")
    if z.dim() != 3:
        raise ValueError(f"{name} must have shape (B, T, D), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {z.dtype}")
    return z


def _pair(z_a: object, z_b: object) -> tuple[Tensor, Tensor]:
    a, b = _embeddings(z_a, "z_a"), _embeddings(z_b, "z_b")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[2]:
        raise ValueError(
            f"z_a (B, N, D) and z_b (B, M, D) must share B and D, got {tuple(a.shape)} and "
            f"{tuple(b.shape)}"
        )
    if a.dtype != b.dtype or a.device != b.device:
        raise ValueError(
            f"z_a and z_b differ in dtype/device: {a.dtype}/{a.device} vs {b.dtype}/{b.device}"
        )
    return a, b


def _indices(idx: object, name: str, B: int, T: int, like: Tensor) -> Tensor:
    if not isinstance(idx, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape ({B}, {T}), got {type(idx).__name__}"
        )
    if tuple(idx.shape) != (B, T):
        raise ValueError(f"{name} must have shape (B, T) = ({B}, {T}), got {tuple(idx.shape)}")
    return idx.to(device=like.device, dtype=like.dtype)


def _lengths(lengths: object, name: str, B: int, T: int, device: torch.device) -> Tensor:
    return check_lengths(lengths, B, T, name, device)


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


_valid = valid_mask


# ----------------------------------------------------------------------------- distributions


def index_log_prior(
    query_idx: Tensor,
    key_idx: Tensor,
    sigma2: float = 10.0,
    lengths_key: Tensor | None = None,
) -> Tensor:
    """Log of the Gaussian index prior ``log P(i | j)`` (Eq. 2) -> (B, M, N).

    ``P(i | j) = exp(-(q_j - k_i)^2 / (2 sigma2)) / sum_i' exp(-(q_j - k_i')^2 / (2 sigma2))``,
    normalised over the real key frames ``i < lengths_key``; padded keys get ``-inf``.

    Args:
        query_idx: (B, M) positions of the conditioning frames ``j`` (frame indices).
        key_idx: (B, N) positions of the frames ``i`` the distribution is over.
        sigma2: the Gaussian's variance sigma^2 in squared frames (paper: 10).
        lengths_key: (B,) real key frames, or None.

    >>> q = torch.tensor([[0.0]]); k = torch.tensor([[0.0, 1.0]])
    >>> index_log_prior(q, k, sigma2=0.5).exp()  # exp(0) : exp(-1)
    tensor([[[0.7311, 0.2689]]])
    """
    s2 = _positive(sigma2, "sigma2")
    if not isinstance(query_idx, Tensor) or query_idx.dim() != 2:
        raise ValueError(
            f"query_idx must be a (B, M) tensor, got {getattr(query_idx, 'shape', query_idx)}"
        )
    if (
        not isinstance(key_idx, Tensor)
        or key_idx.dim() != 2
        or key_idx.shape[0] != query_idx.shape[0]
    ):
        raise ValueError(
            f"key_idx must be a (B, N) tensor with the B of query_idx {tuple(query_idx.shape)}, "
            f"got {getattr(key_idx, 'shape', key_idx)}"
        )
    dtype = torch.promote_types(query_idx.dtype, torch.float32)
    dtype = torch.promote_types(dtype, key_idx.dtype)
    q, k = query_idx.to(dtype), key_idx.to(dtype)
    B, N = k.shape
    logits = -((q[:, :, None] - k[:, None, :]) ** 2) / (2.0 * s2)
    if lengths_key is not None:
        valid = _valid(_lengths(lengths_key, "lengths_key", B, N, k.device), N)
        logits = logits.masked_fill(~valid[:, None, :], float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def similarity_log_probs(
    z_a: Tensor,
    z_b: Tensor,
    tau: float = 0.1,
    lengths_a: Tensor | None = None,
) -> Tensor:
    """``log Q(i | j) = log_softmax_i(cos(z_b[j], z_a[i]) / tau)`` (Eq. 1) -> (B, M, N).

    Args:
        z_a: (B, N, D) embeddings of view A (the frames ``i`` the distribution is over).
        z_b: (B, M, D) embeddings of view B (the conditioning frames ``j``).
        tau: softmax temperature (paper: 0.1).
        lengths_a: (B,) real frames of A; padded frames get ``-inf``.
    """
    a, b = _pair(z_a, z_b)
    t = _positive(tau, "tau")
    B, N, _ = a.shape
    sim = torch.bmm(F.normalize(b, dim=-1), F.normalize(a, dim=-1).transpose(1, 2)) / t
    if lengths_a is not None:
        valid = _valid(_lengths(lengths_a, "lengths_a", B, N, a.device), N)
        sim = sim.masked_fill(~valid[:, None, :], float("-inf"))
    return torch.log_softmax(sim, dim=-1)


def prior_kl(
    log_p: Tensor,
    log_q: Tensor,
    lengths_b: Tensor | None = None,
) -> Tensor:
    """``(1/M_b) sum_j KL(P(.|j) || Q(.|j))`` over the real rows j (Eqs. 3-4) -> (B,).

    ``log_p`` and ``log_q`` are (B, M, N) row-normalised log-probabilities; entries where P is 0
    contribute 0 (padded keys are ``-inf`` in both). ``lengths_b`` (B,) masks padded rows.
    """
    if log_p.shape != log_q.shape or log_p.dim() != 3:
        raise ValueError(
            f"log_p and log_q must both be (B, M, N), got {tuple(log_p.shape)} and {tuple(log_q.shape)}"
        )
    B, M, _ = log_p.shape
    p = log_p.exp()
    term = torch.where(
        p > 0, p * (log_p - log_q), torch.zeros((), dtype=log_q.dtype, device=log_q.device)
    )
    per_row = term.sum(-1)  # (B, M)
    lb = _lengths(lengths_b, "lengths_b", B, M, log_p.device)
    rows = _valid(lb, M).to(per_row.dtype)
    return (per_row * rows).sum(-1) / lb.to(per_row.dtype)


# ----------------------------------------------------------------------------- L_same


def same_video_loss(
    z_a: Tensor,
    idx_a: Tensor,
    z_b: Tensor,
    idx_b: Tensor,
    sigma2: float = 10.0,
    tau: float = 0.1,
    lengths_a: Tensor | None = None,
    lengths_b: Tensor | None = None,
) -> Tensor:
    """L_same (Eqs. 2-4): two crops A and B of the *same* video -> (B,).

    For each frame j of B, the prior over the frames i of A is a Gaussian of the original-index
    distance ``idx_b[j] - idx_a[i]``; the loss is the mean over j of KL(prior || Q).

    Args:
        z_a: (B, N, D) embeddings of crop A; ``idx_a`` (B, N) its original frame indices.
        z_b: (B, M, D) embeddings of crop B; ``idx_b`` (B, M) its original frame indices.
        sigma2, tau: prior variance (frames^2) and softmax temperature.
        lengths_a, lengths_b: (B,) real frames, or None.

    >>> z = torch.randn(1, 4, 3)
    >>> idx = torch.arange(4.0)[None]
    >>> same_video_loss(z, idx, z, idx).shape
    torch.Size([1])
    """
    a, b = _pair(z_a, z_b)
    B, N, _ = a.shape
    M = b.shape[1]
    ia = _indices(idx_a, "idx_a", B, N, a)
    ib = _indices(idx_b, "idx_b", B, M, b)
    with torch.no_grad():
        log_p = index_log_prior(ib, ia, sigma2, lengths_a)
    log_q = similarity_log_probs(a, b, tau, lengths_a)
    return prior_kl(log_p, log_q, lengths_b)


# ----------------------------------------------------------------------------- L_prop


@torch.no_grad()
def dtw_matches(
    z_a: Tensor,
    z_b: Tensor,
    lengths_a: Tensor | None = None,
    lengths_b: Tensor | None = None,
    cost: str = "euclidean",
) -> Tensor:
    """For each frame i of A, its matched frame in B on the hard DTW path -> (B, N) int64.

    The DTW runs on ``pairwise_costs(z_a, z_b, cost)`` (the paper uses the l2 norm,
    ``"euclidean"``); ``match(i)`` is the *smallest* j with ``path[i, j] = 1`` (the paper's tie
    rule). Computed without gradient: the path is a constant of the loss. Padded frames of A get 0.

    >>> a = torch.tensor([[[0.0], [1.0], [2.0]]]); b = torch.tensor([[[0.0], [2.0]]])
    >>> dtw_matches(a, b).tolist()
    [[0, 0, 1]]
    """
    a, b = _pair(z_a, z_b)
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {_COSTS}, got {cost!r}")
    B, N, _ = a.shape
    M = b.shape[1]
    la = _lengths(lengths_a, "lengths_a", B, N, a.device)
    lb = _lengths(lengths_b, "lengths_b", B, M, a.device)
    costs = pairwise_costs(a.detach(), b.detach(), cost)
    path = dtw(costs, la, lb).path
    # argmax returns the first maximal index: the smallest matched j. Padded rows are all 0 -> 0.
    return path.argmax(dim=-1)


def propagation_log_prior(
    matches: Tensor,
    idx_b: Tensor,
    sigma2: float = 10.0,
    lengths_a: Tensor | None = None,
) -> Tensor:
    """Log of the propagated prior (Eq. 7) -> (B, M, N).

    ``P(i | j) ∝ exp(-(idx_b[j] - idx_b[matches[i]])^2 / (2 sigma2))``: frame i of A takes the
    original index of its DTW match in B, and the Gaussian is evaluated in B's index space.

    Args:
        matches: (B, N) int64, frame of B matched to each frame of A (:func:`dtw_matches`).
        idx_b: (B, M) original frame indices of B.
        sigma2: prior variance (frames^2).
        lengths_a: (B,) real frames of A.
    """
    if not isinstance(matches, Tensor) or matches.dim() != 2 or matches.dtype != torch.long:
        raise ValueError(
            f"matches must be a (B, N) int64 tensor, got {getattr(matches, 'shape', matches)}"
        )
    if not isinstance(idx_b, Tensor) or idx_b.dim() != 2 or idx_b.shape[0] != matches.shape[0]:
        raise ValueError(
            f"idx_b must be (B, M) with the B of matches {tuple(matches.shape)}, "
            f"got {getattr(idx_b, 'shape', idx_b)}"
        )
    M = idx_b.shape[1]
    if matches.numel() and (int(matches.min()) < 0 or int(matches.max()) >= M):
        raise ValueError(
            f"matches must index the M={M} frames of B, got range [{int(matches.min())}, {int(matches.max())}]"
        )
    propagated = torch.gather(idx_b, 1, matches.to(idx_b.device))  # (B, N): s^B_match(i)
    return index_log_prior(idx_b, propagated, sigma2, lengths_a)


def propagation_loss(
    z_a: Tensor,
    z_b: Tensor,
    idx_b: Tensor,
    sigma2: float = 10.0,
    tau: float = 0.1,
    lengths_a: Tensor | None = None,
    lengths_b: Tensor | None = None,
    cost: str = "euclidean",
    matches: Tensor | None = None,
) -> Tensor:
    """L_prop (Eqs. 7-9): views A and B of two *different* videos of one class -> (B,).

    Args:
        z_a: (B, N, D) embeddings of A (the frames i the distributions are over).
        z_b: (B, M, D) embeddings of B (the conditioning frames j); ``idx_b`` (B, M) their
            original frame indices.
        sigma2, tau: prior variance and softmax temperature.
        lengths_a, lengths_b: (B,) real frames, or None.
        cost: frame cost of the hard DTW (``"euclidean"`` as in the paper).
        matches: (B, N) precomputed :func:`dtw_matches`; computed here when None. Either way it
            carries no gradient.
    """
    a, b = _pair(z_a, z_b)
    B, M = b.shape[:2]
    ib = _indices(idx_b, "idx_b", B, M, b)
    if matches is None:
        matches = dtw_matches(a, b, lengths_a, lengths_b, cost)
    with torch.no_grad():
        log_p = propagation_log_prior(matches.detach(), ib, sigma2, lengths_a)
    log_q = similarity_log_probs(a, b, tau, lengths_a)
    return prior_kl(log_p, log_q, lengths_b)


# ----------------------------------------------------------------------------- L_sdtw


def contrastive_idm(
    z: Tensor,
    idx: Tensor,
    num_frames: Tensor | float,
    lengths: Tensor | None = None,
    window: float = 5.0,
    margin: float = 1.0,
    cost: str = "cosine",
) -> Tensor:
    """LAV's contrastive inverse-difference-moment regulariser of one view -> (B,).

    With ``d(i, j)`` the frame cost between frames i and j of the view, ``t = idx / num_frames``
    the normalised original indices and ``W(i, j) = 1 + (t_i - t_j)^2``: neighbours
    (``|idx_i - idx_j| <= window`` frames) are pulled together (``d``), the others pushed beyond
    ``margin`` with weight W (``W * relu(margin - d)``), as in LAV's public code. Averaged over the
    real (i, j) pairs, so the value does not grow with T.

    Args:
        z: (B, T, D) embeddings; ``idx`` (B, T) original frame indices.
        num_frames: (B,) or a number: frames of the source video, to normalise ``idx``.
        lengths: (B,) real frames of the view.
        window: neighbourhood half-width in original frames.
        margin: hinge margin in cost units (``cosine``: 1 - cos, so 1.0 asks for orthogonality).
        cost: ``"cosine"``, ``"sqeuclidean"`` or ``"euclidean"``.
    """
    z = _embeddings(z, "z")
    B, T, _ = z.shape
    i = _indices(idx, "idx", B, T, z)
    nf = torch.as_tensor(num_frames, dtype=z.dtype, device=z.device).reshape(-1)
    if nf.numel() == 1:
        nf = nf.expand(B)
    if nf.shape != (B,) or bool((nf <= 0).any()):
        raise ValueError(
            f"num_frames must be a positive number or (B,) = ({B},), got {tuple(nf.shape)}"
        )
    w = float(window)
    if w < 0:
        raise ValueError(f"window must be >= 0, got {window!r}")
    m = _positive(margin, "margin")
    d = pairwise_costs(z, z, cost)
    gap = (i[:, :, None] - i[:, None, :]).abs()
    t = i / nf[:, None]
    W = 1.0 + (t[:, :, None] - t[:, None, :]) ** 2
    near = gap <= w
    idm = torch.where(near, d, W * torch.relu(m - d))
    valid = _valid(_lengths(lengths, "lengths", B, T, z.device), T)
    pairs = (valid[:, :, None] & valid[:, None, :]).to(z.dtype)
    return (idm * pairs).sum((1, 2)) / pairs.sum((1, 2))


def sdtw_loss(
    z_a: Tensor,
    z_b: Tensor,
    gamma: float = 0.1,
    lengths_a: Tensor | None = None,
    lengths_b: Tensor | None = None,
    cost: str = "cosine",
    variant: str = "divergence",
    normalize: bool = True,
    *,
    idx_a: Tensor | None = None,
    idx_b: Tensor | None = None,
    num_frames_a: Tensor | float | None = None,
    num_frames_b: Tensor | float | None = None,
    idm_weight: float = 0.5,
    idm_window: float = 5.0,
    idm_margin: float = 1.0,
) -> Tensor:
    """L_sdtw between views of two different videos -> (B,).

    ``variant="divergence"`` (default): ``sdtw(a, b) - (sdtw(a, a) + sdtw(b, b)) / 2``, which is
    zero only when the sequences are equal, so collapsing all frames to one point does not
    minimise it. ``variant="idm"`` (LAV): ``sdtw(a, b) + idm_weight * (IDM(a) + IDM(b))`` with
    :func:`contrastive_idm` (needs ``idx_a``, ``idx_b``, ``num_frames_a``, ``num_frames_b``).

    With ``normalize`` the soft-DTW part is divided by the mean view length ``(n_a + n_b) / 2``
    (T for equal crops), so lambda2 weighs a per-frame quantity.

    Args:
        z_a: (B, N, D), z_b: (B, M, D) embeddings; lengths_a, lengths_b: (B,) or None.
        gamma: soft-DTW smoothing.
        cost: frame cost (``"cosine"`` default: the same geometry as Q's cosine similarity).
    """
    a, b = _pair(z_a, z_b)
    if variant not in SDTW_VARIANTS:
        raise ValueError(f"variant must be one of {SDTW_VARIANTS}, got {variant!r}")
    B, N, _ = a.shape
    M = b.shape[1]
    la = _lengths(lengths_a, "lengths_a", B, N, a.device)
    lb = _lengths(lengths_b, "lengths_b", B, M, a.device)
    if variant == "divergence":
        value = soft_dtw_divergence(a, b, gamma, la, lb, cost=cost)
    else:
        value = soft_dtw(pairwise_costs(a, b, cost), gamma, la, lb)
    if normalize:
        value = value / ((la + lb).to(value.dtype) / 2.0)
    if variant == "idm":
        if idx_a is None or idx_b is None or num_frames_a is None or num_frames_b is None:
            raise ValueError("variant='idm' needs idx_a, idx_b, num_frames_a and num_frames_b")
        reg_a = contrastive_idm(a, idx_a, num_frames_a, la, idm_window, idm_margin, cost)
        reg_b = contrastive_idm(b, idx_b, num_frames_b, lb, idm_window, idm_margin, cost)
        value = value + idm_weight * (reg_a + reg_b)
    return value


# ----------------------------------------------------------------------------- Eq. 12


class LRPropLoss(nn.Module):
    """Eq. 12 over a batch of views: ``L_same`` on same-video pairs, ``lambda1 L_prop +
    lambda2 L_sdtw`` on pairs of different videos.

    ``forward(z (V, T, D), idx (V, T), video (V,), lengths (V,) | None, num_frames (V,) | None)``
    takes V views (typically 2 crops of each of 2 videos) and returns ``(loss, logs)``:

    * ``same``: mean of :func:`same_video_loss` over the *ordered* pairs of distinct views of one
      video (both directions, since Q(i|j) is not symmetric);
    * ``prop``: mean of :func:`propagation_loss` over the ordered pairs of views of different
      videos;
    * ``sdtw``: mean of :func:`sdtw_loss` over the unordered pairs of views of different videos
      (soft-DTW divergence is symmetric).

    ``loss = w_same * same + lambda1 * prop + lambda2 * sdtw``; a term switched off
    (``use_*=False``) is neither computed nor logged. Normalising each term by its number of
    pairs keeps lambda1/lambda2 independent of the batch size.

    Args:
        sigma2: prior variance in frames^2 (paper: 10); tau: softmax temperature (paper: 0.1).
        lambda1, lambda2: weights of L_prop and L_sdtw (paper: per class, Table 5).
        use_same, use_prop, use_sdtw: ablation switches (paper Table 3).
        prop_cost: frame cost of the hard DTW of L_prop (paper: l2, ``"euclidean"``).
        sdtw_variant: ``"divergence"`` (default) or ``"idm"`` (LAV); sdtw_gamma, sdtw_cost,
            sdtw_normalize: see :func:`sdtw_loss`; idm_*: see :func:`contrastive_idm`.
    """

    def __init__(
        self,
        sigma2: float = 10.0,
        tau: float = 0.1,
        lambda1: float = 0.01,
        lambda2: float = 0.4,
        use_same: bool = True,
        use_prop: bool = True,
        use_sdtw: bool = True,
        prop_cost: str = "euclidean",
        sdtw_variant: str = "divergence",
        sdtw_gamma: float = 0.1,
        sdtw_cost: str = "cosine",
        sdtw_normalize: bool = True,
        idm_weight: float = 0.5,
        idm_window: float = 5.0,
        idm_margin: float = 1.0,
    ) -> None:
        super().__init__()
        self.sigma2 = _positive(sigma2, "sigma2")
        self.tau = _positive(tau, "tau")
        for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not (use_same or use_prop or use_sdtw):
            raise ValueError("at least one of use_same, use_prop, use_sdtw must be true")
        if sdtw_variant not in SDTW_VARIANTS:
            raise ValueError(f"sdtw_variant must be one of {SDTW_VARIANTS}, got {sdtw_variant!r}")
        for name, value in (("prop_cost", prop_cost), ("sdtw_cost", sdtw_cost)):
            if value not in _COSTS:
                raise ValueError(f"{name} must be one of {_COSTS}, got {value!r}")
        self.lambda1, self.lambda2 = float(lambda1), float(lambda2)
        self.use_same, self.use_prop, self.use_sdtw = use_same, use_prop, use_sdtw
        self.prop_cost = prop_cost
        self.sdtw_variant, self.sdtw_gamma = sdtw_variant, _positive(sdtw_gamma, "sdtw_gamma")
        self.sdtw_cost, self.sdtw_normalize = sdtw_cost, sdtw_normalize
        self.idm_weight, self.idm_window, self.idm_margin = idm_weight, idm_window, idm_margin

    @staticmethod
    def pairs(video: Tensor) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(ordered same-video pairs, ordered cross-video pairs) of view indices."""
        v = video.tolist()
        same = [(a, b) for a in range(len(v)) for b in range(len(v)) if a != b and v[a] == v[b]]
        cross = [(a, b) for a in range(len(v)) for b in range(len(v)) if v[a] != v[b]]
        return same, cross

    def forward(
        self,
        z: Tensor,
        idx: Tensor,
        video: Tensor,
        lengths: Tensor | None = None,
        num_frames: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        z = _embeddings(z, "z")
        V, T, _ = z.shape
        idx = _indices(idx, "idx", V, T, z)
        if not isinstance(video, Tensor) or tuple(video.shape) != (V,):
            raise ValueError(
                f"video must be a (V,) = ({V},) tensor of video ids, got {getattr(video, 'shape', video)}"
            )
        lengths = _lengths(lengths, "lengths", V, T, z.device)
        same, cross = self.pairs(video)
        if self.use_same and not same:
            raise ValueError("L_same needs at least two views of one video (video ids repeat)")
        if (self.use_prop or self.use_sdtw) and not cross:
            raise ValueError("L_prop / L_sdtw need views of at least two different videos")
        total = z.new_zeros(())
        logs: dict[str, float] = {}
        if self.use_same:
            a, b = map(list, zip(*same))
            ls = same_video_loss(
                z[a], idx[a], z[b], idx[b], self.sigma2, self.tau, lengths[a], lengths[b]
            ).mean()
            total = total + ls
            logs["same"] = float(ls.detach())
        if self.use_prop:
            a, b = map(list, zip(*cross))
            lp = propagation_loss(
                z[a], z[b], idx[b], self.sigma2, self.tau, lengths[a], lengths[b], self.prop_cost
            ).mean()
            total = total + self.lambda1 * lp
            logs["prop"] = float(lp.detach())
        if self.use_sdtw:
            unordered = [(x, y) for x, y in cross if x < y]
            a, b = map(list, zip(*unordered))
            if self.sdtw_variant == "idm" and num_frames is None:
                raise ValueError(
                    "sdtw_variant='idm' needs num_frames (V,): frames of each source video"
                )
            nf = num_frames if num_frames is not None else None
            lsd = sdtw_loss(
                z[a],
                z[b],
                self.sdtw_gamma,
                lengths[a],
                lengths[b],
                self.sdtw_cost,
                self.sdtw_variant,
                self.sdtw_normalize,
                idx_a=idx[a],
                idx_b=idx[b],
                num_frames_a=None if nf is None else nf[a],
                num_frames_b=None if nf is None else nf[b],
                idm_weight=self.idm_weight,
                idm_window=self.idm_window,
                idm_margin=self.idm_margin,
            ).mean()
            total = total + self.lambda2 * lsd
            logs["sdtw"] = float(lsd.detach())
        return total, logs
