"""Label-free and label-based alignment metrics over frame embeddings of video pairs.

These are the fine-grained alignment metrics of TCC (Dwibedi et al., CVPR 2019), LAV (Haresh et
al., CVPR 2021), CARL (Chen et al., CVPR 2022) and LRProp (Bar-Shalom et al.). The field's
definitions differ in details; each difference is a named ``variant`` argument, and the report of
a number should say which one it used.

Shapes: a video's embeddings are ``(N, D)`` (query) or ``(M, D)`` (candidate); labels ``(N,)``.
Nearest neighbours use ``scipy.spatial.distance.cdist`` with ``distance`` (``"sqeuclidean"``, the
TCC/LAV default, ``"euclidean"`` or ``"cosine"``); ties go to the smaller frame index.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from procalign.eval._checks import (
    check_choice,
    check_stride,
    float_array,
    labels_array,
    same_length,
    video_list,
)

__all__ = [
    "KENDALLS_TAU_VARIANTS",
    "cycle_consistency",
    "dtw_alignment_accuracy",
    "kendalls_tau",
    "mean_kendalls_tau",
]

DISTANCES = ("sqeuclidean", "euclidean", "cosine")

#: ``"tcc"``: tau-b of scipy between frame order and nearest-neighbour order, as the public TCC,
#: LAV and CARL evaluation code computes it (ties among the neighbour indices are corrected for).
#: ``"tau_a"``: the formula printed in the TCC and LRProp papers,
#: ``(concordant - discordant) / C(n, 2)``, where tied neighbour pairs count as neither.
KENDALLS_TAU_VARIANTS = ("tcc", "tau_a")


def _embeddings(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    e = float_array(x, name, 2)
    if dim is not None and e.shape[1] != dim:
        raise ValueError(f"{name} has feature size {e.shape[1]} but the other video has {dim}")
    return e


def _nearest(query: np.ndarray, candidates: np.ndarray, distance: str) -> np.ndarray:
    """Index of the nearest candidate row for each query row (first index on ties)."""
    from scipy.spatial.distance import cdist

    dists = cdist(query, candidates, metric=distance)
    return np.argmin(dists, axis=1)


def _tau_a(order: np.ndarray) -> float:
    n = order.size
    diff = np.sign(order[None, :] - order[:, None])  # [i, j] > 0 when order[j] > order[i]
    upper = np.triu(diff, k=1)
    return float(upper.sum() / (n * (n - 1) / 2))


def kendalls_tau(
    emb_a: Any,
    emb_b: Any,
    stride: int = 1,
    *,
    variant: str = "tcc",
    distance: str = "sqeuclidean",
) -> float:
    """Kendall's tau between the frame order of video A and that of its nearest neighbours in B.

    Definition: take every ``stride``-th frame of both videos (``emb_a[::stride]``,
    ``emb_b[::stride]``); for each kept frame ``i`` of A find its nearest kept frame ``nn(i)`` of
    B in embedding space; return Kendall's tau between ``(0, 1, ..., n-1)`` and
    ``(nn(0), ..., nn(n-1))``. 1 means neighbours keep the temporal order, -1 reverses it. The
    metric is directional (A queries B); :func:`mean_kendalls_tau` averages over ordered pairs.

    Variants (see ``KENDALLS_TAU_VARIANTS``):
        ``"tcc"``: ``scipy.stats.kendalltau`` (tau-b), as in the TCC / LAV / CARL code. Undefined
        (NaN) when all frames of A share one neighbour.
        ``"tau_a"``: ``(concordant - discordant) / C(n, 2)`` as printed in the TCC and LRProp
        papers; tied neighbours count as neither, so collapsed embeddings give 0.

    The published numbers use ``stride=5`` (TCC's evaluation config) on Pouring / PennAction.

    Args:
        emb_a: (N, D) frame embeddings of the query video.
        emb_b: (M, D) frame embeddings of the candidate video.
        stride: keep every ``stride``-th frame of both videos; at least 2 frames of A must remain.
        variant: ``"tcc"`` or ``"tau_a"``.
        distance: ``"sqeuclidean"`` (default, as TCC), ``"euclidean"`` or ``"cosine"``.

    Returns:
        tau in [-1, 1] (NaN possible for ``"tcc"``, see above).

    >>> import numpy as np
    >>> a = np.arange(6.0)[:, None]
    >>> round(kendalls_tau(a, a[::-1]), 6)
    -1.0
    >>> kendalls_tau(a, np.array([[0.0], [2.0], [1.0], [3.0], [4.0], [5.0]]), variant="tau_a")
    0.8666666666666667
    """
    from scipy.stats import kendalltau

    check_choice(variant, "variant", KENDALLS_TAU_VARIANTS)
    check_choice(distance, "distance", DISTANCES)
    stride = check_stride(stride)
    a = _embeddings(emb_a, "emb_a")
    b = _embeddings(emb_b, "emb_b", a.shape[1])
    query, cand = a[::stride], b[::stride]
    if query.shape[0] < 2:
        raise ValueError(
            f"emb_a of shape {tuple(a.shape)} keeps {query.shape[0]} frame(s) at stride {stride}; "
            "Kendall's tau needs at least 2"
        )
    nn = _nearest(query, cand, distance)
    if variant == "tau_a":
        return _tau_a(nn)
    return float(kendalltau(np.arange(nn.size), nn).statistic)


def mean_kendalls_tau(
    embs: Sequence[Any],
    stride: int = 1,
    *,
    variant: str = "tcc",
    distance: str = "sqeuclidean",
) -> float:
    """Mean :func:`kendalls_tau` over all ordered pairs ``(i, j), i != j`` of a set of videos.

    This is the dataset-level number of TCC / LAV / CARL: every video queries every other video,
    so each unordered pair contributes twice (once per direction). A NaN pair (``"tcc"`` variant,
    collapsed embeddings) makes the mean NaN rather than being dropped silently.

    Args:
        embs: B >= 2 per-video embeddings, each (T_b, D).
        stride, variant, distance: as in :func:`kendalls_tau`.

    >>> import numpy as np
    >>> v = np.arange(8.0)[:, None]
    >>> round(mean_kendalls_tau([v, v + 0.1, v + 0.3], stride=2), 6)
    1.0
    """
    videos = video_list(embs, "embs")
    if len(videos) < 2:
        raise ValueError(f"embs holds {len(videos)} video; Kendall's tau needs at least 2")
    taus = [
        kendalls_tau(videos[i], videos[j], stride, variant=variant, distance=distance)
        for i in range(len(videos))
        for j in range(len(videos))
        if i != j
    ]
    return float(np.mean(taus))


def cycle_consistency(
    emb_a: Any,
    emb_b: Any,
    emb_c: Any = None,
    *,
    stride: int = 1,
    distance: str = "sqeuclidean",
    tolerance: int = 0,
) -> float:
    """Fraction of frames that come back to themselves through nearest-neighbour cycles.

    Definition (two-way, ``emb_c is None``): for each kept frame ``i`` of A (every ``stride``-th
    frame of each video), ``j = nn_B(i)``, ``k = nn_A(j)``; the frame is consistent when
    ``|k - i| <= tolerance`` (in kept-frame units). Three-way (``emb_c`` given) cycles
    A -> B -> C -> A. Returns the fraction of consistent frames of A; 1 is perfectly
    cycle-consistent. This is the cycle-back evaluation of TCC / XIRL with exact return
    (``tolerance=0``) by default.

    Args:
        emb_a: (N, D) embeddings of the starting video.
        emb_b: (M, D) embeddings of the second video.
        emb_c: optional (L, D) embeddings of a third video for the three-way cycle.
        stride: keep every ``stride``-th frame of every video.
        distance: ``"sqeuclidean"``, ``"euclidean"`` or ``"cosine"``.
        tolerance: largest index error still counted as a return, >= 0.

    >>> import numpy as np
    >>> a = np.arange(5.0)[:, None]
    >>> cycle_consistency(a, a + 0.1)
    1.0
    >>> cycle_consistency(a, np.zeros((3, 1)))  # everything collapses onto frame 0
    0.2
    """
    check_choice(distance, "distance", DISTANCES)
    stride = check_stride(stride)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative integer, got {tolerance!r}")
    a = _embeddings(emb_a, "emb_a")[::stride]
    chain = [a, _embeddings(emb_b, "emb_b", a.shape[1])[::stride]]
    if emb_c is not None:
        chain.append(_embeddings(emb_c, "emb_c", a.shape[1])[::stride])
    chain.append(a)
    idx = np.arange(a.shape[0])
    for src, dst in pairwise(chain):
        idx = _nearest(src[idx], dst, distance)
    return float(np.mean(np.abs(idx - np.arange(a.shape[0])) <= tolerance))


def dtw_alignment_accuracy(
    emb_a: Any,
    emb_b: Any,
    labels_a: Any,
    labels_b: Any,
    *,
    distance: str = "sqeuclidean",
) -> float:
    """DTW-alignment accuracy (LRProp's "DTW A"): share of DTW links joining frames of one phase.

    Definition: align the two videos with hard DTW (:func:`procalign.dp.dtw`) over the cost
    matrix ``C[i, j] = distance(emb_a[i], emb_b[j])``; the optimal path is a set of cells
    ``(i, j)`` from ``(0, 0)`` to ``(N-1, M-1)``. The accuracy is the fraction of path cells with
    ``labels_a[i] == labels_b[j]``. 1 means every link joins frames of the same phase.

    Args:
        emb_a: (N, D) embeddings of video A; ``labels_a``: (N,) integer phase labels.
        emb_b: (M, D) embeddings of video B; ``labels_b``: (M,) integer phase labels.
        distance: frame cost, ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.

    >>> import numpy as np
    >>> a = np.array([[0.0], [0.0], [1.0], [1.0]])
    >>> b = np.array([[0.0], [1.0], [1.0]])
    >>> dtw_alignment_accuracy(a, b, [0, 0, 1, 1], [0, 1, 1])
    1.0
    """
    import torch
    from scipy.spatial.distance import cdist

    from procalign.dp import dtw

    check_choice(distance, "distance", DISTANCES)
    a = _embeddings(emb_a, "emb_a")
    b = _embeddings(emb_b, "emb_b", a.shape[1])
    la = labels_array(labels_a, "labels_a")
    lb = labels_array(labels_b, "labels_b")
    same_length(a, la, "emb_a", "labels_a")
    same_length(b, lb, "emb_b", "labels_b")
    costs = torch.from_numpy(cdist(a, b, metric=distance))[None]
    path = dtw(costs).path[0].detach().cpu().numpy() > 0
    agree = la[:, None] == lb[None, :]
    return float(agree[path].sum() / path.sum())
