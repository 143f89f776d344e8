"""Procedure learning (Elhamifar & Huynh, ECCV 2020): the teacher and the losses.

Teacher (Sec. 2.1.2), plain numpy / scikit-learn:

* :func:`fit_centres` - mini-batch k-means with M centres over the attention features of all
  training frames; a refit is warm-started from the previous centres and then re-matched to
  them (Hungarian, :func:`match_centres`), so centre m stays centre m across refits;
* :func:`facility_location_cost` - Eq. 2, J_a(S) = sum_l 1/T_l sum_t min_{i in S} ||f_t - x_i||
  (unsquared distances);
* :func:`greedy_select` - the greedy minimiser of Eq. 2 (k additions, each the largest decrease),
  vectorised over candidates; it stops early when no state lowers the cost;
* :func:`assign` - pseudo-label r_t = nearest selected state.

Losses (Sec. 2.2), torch:

* :func:`ranking_loss` - Eq. 7 on the raw scores s (B, T, M);
* :func:`state_cross_entropy` - the cross-entropy alternative (Remark 3);
* Eq. 6 (ranking + lambda * task cross-entropy) is assembled by the recipe.

Shapes: N frames, D feature size, M states (centres), k selected states, B videos, T frames.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "assign",
    "facility_location_cost",
    "fit_centres",
    "greedy_select",
    "match_centres",
    "ranking_loss",
    "state_cross_entropy",
]


def _features(f: np.ndarray, name: str = "features") -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"{name} must be (N, D), got shape {tuple(f.shape)}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return f


def _distances(f: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(N, M) Euclidean (unsquared) distances between frames f (N, D) and states x (M, D)."""
    sq = (f * f).sum(1)[:, None] - 2 * f @ x.T + (x * x).sum(1)[None]
    return np.sqrt(np.maximum(sq, 0.0))


def _weights(video: np.ndarray | None, n: int) -> np.ndarray:
    """1 / T_l for each frame of video l; ``video`` (N,) ids (None: one video)."""
    if video is None:
        return np.full(n, 1.0 / max(n, 1))
    video = np.asarray(video)
    if video.shape != (n,):
        raise ValueError(f"video ids must be (N,) = ({n},), got shape {tuple(video.shape)}")
    _, inv, counts = np.unique(video, return_inverse=True, return_counts=True)
    return 1.0 / counts[inv]


def facility_location_cost(
    f: np.ndarray, centres: np.ndarray, subset, video: np.ndarray | None = None
) -> float:
    """Eq. 2: sum over videos of 1/T_l sum_t min_{i in subset} ||f_t - x_i||_2.

    Args:
        f: (N, D) frame features of one task's videos, concatenated.
        centres: (M, D) states.
        subset: indices into the M states (non-empty).
        video: (N,) video id of each frame (None: all frames one video).
    """
    f, x = _features(f), _features(centres, "centres")
    idx = np.asarray(list(subset), dtype=np.int64)
    if idx.size == 0:
        raise ValueError("subset is empty: Eq. 2 needs at least one state")
    d = _distances(f, x[idx])
    return float((_weights(video, len(f)) * d.min(1)).sum())


def greedy_select(
    f: np.ndarray, centres: np.ndarray, k: int, video: np.ndarray | None = None
) -> tuple[np.ndarray, list[float]]:
    """Greedy subset selection of at most k of the M states minimising Eq. 2.

    Each step adds the state with the largest decrease of J (all M candidates scored at once);
    it stops before k when no candidate decreases J.

    Args:
        f: (N, D) frame features of one task; centres: (M, D); k: states to select (<= M);
        video: (N,) video ids for the 1/T_l weights.

    Returns:
        (selected (k',) int64 state ids in the order chosen, costs J after each addition).
    """
    f, x = _features(f), _features(centres, "centres")
    if f.shape[1] != x.shape[1]:
        raise ValueError(f"features have D={f.shape[1]} but centres have D={x.shape[1]}")
    M = len(x)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if k > M:
        raise ValueError(f"k = {k} key-steps cannot be selected from M = {M} centres (need k <= M)")
    if len(f) == 0:
        raise ValueError("no frames to select states for")
    w = _weights(video, len(f))
    d = _distances(f, x)  # (N, M)
    best = np.full(len(f), np.inf)
    chosen: list[int] = []
    costs: list[float] = []
    free = np.ones(M, dtype=bool)
    for _ in range(k):
        cand = (w[:, None] * np.minimum(best[:, None], d)).sum(0)  # J(S + j) for every j
        cand[~free] = np.inf
        j = int(np.argmin(cand))
        if costs and not cand[j] < costs[-1]:
            break
        chosen.append(j)
        costs.append(float(cand[j]))
        free[j] = False
        best = np.minimum(best, d[:, j])
    return np.asarray(chosen, dtype=np.int64), costs


def assign(f: np.ndarray, centres: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """(N,) pseudo-labels: the state id (in 0..M-1) of the nearest selected state of each frame."""
    f, x = _features(f), _features(centres, "centres")
    sel = np.asarray(selected, dtype=np.int64)
    sel = sel[sel >= 0]
    if sel.size == 0:
        raise ValueError("no selected states to assign frames to")
    return sel[_distances(f, x[sel]).argmin(1)]


def match_centres(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Permutation ``perm`` (M,) such that ``new[perm][m]`` is the new centre closest to old m
    (Hungarian matching on Euclidean distances); ``new[perm]`` keeps the old numbering."""
    from scipy.optimize import linear_sum_assignment

    old, new = _features(old, "old centres"), _features(new, "new centres")
    if old.shape != new.shape:
        raise ValueError(f"old centres {old.shape} and new centres {new.shape} differ in shape")
    rows, cols = linear_sum_assignment(_distances(old, new))
    perm = np.empty(len(old), dtype=np.int64)
    perm[rows] = cols
    return perm


def fit_centres(
    f: np.ndarray,
    num_centres: int,
    seed: int,
    previous: np.ndarray | None = None,
    *,
    batch_size: int = 1024,
    max_iter: int = 50,
) -> np.ndarray:
    """(M, D) k-means centres of frames f (N, D) by scikit-learn's MiniBatchKMeans.

    With ``previous`` (M, D) the fit starts from those centres and its result is re-matched to
    them (:func:`match_centres`), so centre m of a refit describes what centre m described
    before. Deterministic in (f, seed, previous).
    """
    from sklearn.cluster import MiniBatchKMeans

    f = _features(f)
    if num_centres < 1:
        raise ValueError(f"the number of centres M must be >= 1, got {num_centres}")
    if len(f) < num_centres:
        raise ValueError(
            f"k-means with M = {num_centres} centres needs at least M training frames, got {len(f)}"
        )
    init: str | np.ndarray = "k-means++"
    if previous is not None:
        init = _features(previous, "previous centres")
        if init.shape != (num_centres, f.shape[1]):
            raise ValueError(f"previous centres must be ({num_centres}, {f.shape[1]}), got {init.shape}")
    km = MiniBatchKMeans(
        n_clusters=num_centres, init=init, n_init=1, random_state=seed,
        batch_size=min(batch_size, len(f)), max_iter=max_iter,
    )
    km.fit(f)
    centres = km.cluster_centers_.astype(np.float64)
    if previous is not None:
        centres = centres[match_centres(previous, centres)]
    return centres


# ------------------------------------------------------------------------------------ losses


def _check_scores(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None):
    if scores.ndim != 3:
        raise ValueError(f"scores must be (B, T, M), got shape {tuple(scores.shape)}")
    B, T, M = scores.shape
    if labels.shape != (B, T):
        raise ValueError(f"labels must be (B, T) = ({B}, {T}), got {tuple(labels.shape)}")
    if mask is None:
        mask = torch.ones(B, T, dtype=torch.bool, device=scores.device)
    elif mask.shape != (B, T):
        raise ValueError(f"mask must be (B, T) = ({B}, {T}), got {tuple(mask.shape)}")
    mask = mask.bool() & (labels >= 0)
    if bool(((labels >= M) & mask).any()):
        raise ValueError(f"labels must be state ids in [0, {M}) (or -1 to ignore a frame)")
    return mask


def ranking_loss(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None, margin: float = 1.0
) -> torch.Tensor:
    """Eq. 7, averaged over the B videos: (1/T_l) sum_t sum_{m != r_t} max(0, 1 - s_{r_t,t} + s_{m,t}).

    Args:
        scores: (B, T, M) raw (pre-softmax) state scores s.
        labels: (B, T) pseudo-labels r_t in [0, M); -1 frames take no part.
        mask: (B, T) valid frames (padding False); T_l counts a video's valid labelled frames.
        margin: the 1 of Eq. 7.
    """
    mask = _check_scores(scores, labels, mask)
    safe = labels.clamp(min=0)
    s_true = scores.gather(2, safe.unsqueeze(2))  # (B, T, 1)
    hinge = torch.relu(margin - s_true + scores)  # (B, T, M); m == r_t gives `margin`: remove
    hinge = hinge.sum(2) - margin
    per_video = (hinge * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_video.mean()


def state_cross_entropy(
    scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Remark 3's alternative: per-frame cross-entropy of softmax_m(s) against r_t, averaged
    over each video's frames and then over videos. Shapes as :func:`ranking_loss`."""
    mask = _check_scores(scores, labels, mask)
    nll = -torch.log_softmax(scores, dim=2).gather(2, labels.clamp(min=0).unsqueeze(2)).squeeze(2)
    per_video = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)
    return per_video.mean()
