"""Fine-grained frame retrieval: average precision at K (AP@K) over frame embeddings.

For a query frame, retrieve its K nearest frames in embedding space and count the share that carry
the query's phase label; average over query frames and videos. Two published variants differ in
*where* the K frames are retrieved from:

* ``"carl"`` (CARL / SCL code, cross-video): candidates are all frames of all *other* videos,
  after taking every ``stride``-th frame of each video. Per query video, the precisions of its
  frames are averaged; the result is the mean over query videos.
* ``"lav"`` (LAV code, within-video): candidates are the frames of the *same* video, the query
  frame itself included (it is its own nearest neighbour at distance 0). Per video, the mean over
  its frames; the result is the mean over videos.

Both are "precision@K" averaged over queries (no rank weighting), as in the papers' code; LRProp
describes it the same way. Ties in distance go to the smaller frame index (stable sort).

Shapes: B videos, each ``(T_b, D)`` embeddings and ``(T_b,)`` integer phase labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from procalign.eval._checks import check_choice, check_stride, embeddings_and_labels

__all__ = ["AP_VARIANTS", "average_precision_at_k"]

AP_VARIANTS = ("carl", "lav")
_DISTANCES = ("sqeuclidean", "euclidean", "cosine")


def _precision_at_k(
    query: np.ndarray,
    q_labels: np.ndarray,
    cand: np.ndarray,
    c_labels: np.ndarray,
    k: int,
    distance: str,
) -> float:
    from scipy.spatial.distance import cdist

    dists = cdist(query, cand, metric=distance)
    top = np.argsort(dists, axis=1, kind="stable")[:, :k]
    return float(np.mean(c_labels[top] == q_labels[:, None]))


def average_precision_at_k(
    embs: Sequence[Any],
    labels: Sequence[Any],
    k: int,
    *,
    variant: str = "carl",
    stride: int = 1,
    distance: str = "sqeuclidean",
) -> float:
    """AP@K of phase labels among the K nearest frames (see the module docstring for variants).

    Definition: ``mean_v mean_{query frame t of v} |{top-K neighbours of t with label(t)}| / K``,
    with neighbours taken from the other videos (``"carl"``) or from video v itself, query frame
    included (``"lav"``).

    Args:
        embs: B videos, each (T_b, D) embeddings (B >= 2 for ``"carl"``).
        labels: B videos, each (T_b,) integer phase labels.
        k: number of retrieved frames, >= 1; at most the number of candidates available.
        variant: ``"carl"`` (cross-video, default) or ``"lav"`` (within-video).
        stride: every ``stride``-th frame of each video is kept (CARL's
            ``KENDALLS_TAU_STRIDE``; LAV uses every frame). Used by both variants.
        distance: ``"sqeuclidean"`` (default), ``"euclidean"`` or ``"cosine"``.

    Returns:
        AP@K in [0, 1].

    >>> import numpy as np
    >>> embs = [np.array([[0.0], [4.0], [5.0]]), np.array([[0.1], [4.1], [5.1]])]
    >>> labels = [np.array([0, 1, 1]), np.array([0, 1, 1])]
    >>> average_precision_at_k(embs, labels, 1, variant="carl")
    1.0
    >>> round(average_precision_at_k(embs, labels, 2, variant="lav"), 4)
    0.8333
    """
    check_choice(variant, "variant", AP_VARIANTS)
    check_choice(distance, "distance", _DISTANCES)
    stride = check_stride(stride)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    e_list, l_list = embeddings_and_labels(embs, labels, "embs", "labels")
    e_list = [e[::stride] for e in e_list]
    l_list = [lab[::stride] for lab in l_list]
    per_video = []
    if variant == "carl":
        if len(e_list) < 2:
            raise ValueError(f"variant 'carl' retrieves from other videos; got {len(e_list)} video")
        for v in range(len(e_list)):
            cand = np.concatenate([e for u, e in enumerate(e_list) if u != v])
            cand_l = np.concatenate([lab for u, lab in enumerate(l_list) if u != v])
            if k > cand.shape[0]:
                raise ValueError(
                    f"k={k} exceeds the {cand.shape[0]} candidate frames for video {v}"
                )
            per_video.append(_precision_at_k(e_list[v], l_list[v], cand, cand_l, k, distance))
    else:
        for v, (e, lab) in enumerate(zip(e_list, l_list)):
            if k > e.shape[0]:
                raise ValueError(f"k={k} exceeds the {e.shape[0]} frames of video {v} ('lav')")
            per_video.append(_precision_at_k(e, lab, e, lab, k, distance))
    return float(np.mean(per_video))
