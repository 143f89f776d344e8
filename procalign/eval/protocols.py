"""Evaluation protocols: functions of an ``embed`` callable and plain arguments.

Every method reports through these, so two methods evaluated on the same data are compared on
the same pairs, clips and metric variants.

* :func:`evaluation_pairs` - which pairs a verification is scored on (the dataset's own list, or
  pairs sampled from the split), and a sentence saying which.
* :func:`clip_verification` - SVIP's sequence-verification protocol: every video sampled as C
  clips of T frames (offsets 1/4, 2/4, 3/4 inside T equal segments), pair distances averaged
  over clips; AUC, EER and WDR rows per distance.
* :func:`frame_alignment` (in :mod:`procalign.eval.frame_protocols`) - per class: Kendall's tau, cycle consistency, AP@K, DTW-alignment
  accuracy, phase classification and progression of frame embeddings, each also on two
  controls (``static``: every frame replaced by one frame of the video; ``shuffled``: frames
  permuted) with the gap real - control.
* :func:`video_level` (same module) - nearest-neighbour retrieval and verification AUC across classes, with one
  label-blind embedding for every video.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from procalign.eval.frame_protocols import (  # re-exported: one import path for every protocol
    CONTROLS,
    control_inputs,
    frame_alignment,
    l2_normalise,
    mean_rows,
    video_distances,
    video_level,
)
from procalign.eval.report import row

Embed = Callable[[Tensor], Tensor]  # (N, T, D_in) -> (N, T, D)
PairFn = Callable[[Tensor, Tensor], Tensor]  # (B, T, D), (B, T, D) -> (B,)

#: a verification on fewer pairs than this, or with a class of fewer videos, is flagged
MIN_PAIRS = 50

__all__ = [
    "CONTROLS",
    "Distance",
    "clip_distances",
    "clip_embeddings",
    "clip_features",
    "clip_verification",
    "control_inputs",
    "eer_threshold",
    "embed_clips",
    "evaluation_pairs",
    "exemplar_quality",
    "frame_alignment",
    "l2_normalise",
    "mean_rows",
    "pair_distances",
    "verification_rows",
    "video_distances",
    "video_level",
]


# =============================================================================================
# Pairs
# =============================================================================================


def evaluation_pairs(
    videos: Sequence[Any],
    own: Sequence[Any],
    mode: str = "auto",
    num: int = 400,
    negatives: str = "prefer_same_task",
    seed: int = 7,
    limit: int | None = None,
) -> tuple[list[Any], str, list[str]]:
    """(pairs, where they come from, warnings) for a verification over ``videos``.

    Args:
        videos: the split's videos (``video_id``, ``label``, ``task``).
        own: the dataset's own pair list for this split (may be empty).
        mode: ``"auto"`` (own list when it has both classes, else sampled), ``"dataset"`` (own
            list, an error without one) or ``"sampled"`` (``num`` pairs, half positive).
        limit: keep the first N pairs.
    """
    from procalign.data.pairs import PairSampler
    from procalign.data.records import VideoRecord

    if mode not in ("auto", "dataset", "sampled"):
        raise ValueError(f"eval.pairs must be auto, dataset or sampled, got {mode!r}")
    notes: list[str] = []
    own = list(own)
    usable = bool(own) and len({bool(p.same) for p in own}) == 2
    if mode == "dataset" and not usable:
        raise ValueError(
            "eval.pairs=dataset, but the dataset has no pair list with both positive and "
            f"negative pairs for this split ({len(own)} pairs)"
        )
    if mode != "sampled" and usable:
        pairs, source = own, f"the dataset's own list ({len(own)} pairs)"
    else:
        if own and mode == "sampled":
            notes.append(
                f"eval.pairs=sampled ignores the dataset's own list of {len(own)} pairs"
            )
        elif own:
            notes.append(f"the dataset's {len(own)} pairs hold one class only: sampled instead")
        recs = [VideoRecord(v.video_id, label=v.label, task=v.task) for v in videos]
        pairs = PairSampler(recs, negatives=negatives, seed=seed).sample(num, 0.5)
        source = f"{len(pairs)} pairs sampled from {len(recs)} videos"
    if limit is not None:
        pairs = pairs[:limit]
    if not pairs:
        raise ValueError("no evaluation pairs")
    ids = {v for p in pairs for v in (p.video_id_1, p.video_id_2)}
    per_label: dict[str, int] = {}
    for v in videos:
        if v.video_id in ids:
            per_label[str(v.label)] = per_label.get(str(v.label), 0) + 1
    if len(pairs) < MIN_PAIRS:
        notes.append(f"only {len(pairs)} evaluation pairs (< {MIN_PAIRS}): the figures are noisy")
    lonely = sorted(k for k, n in per_label.items() if n < 2)
    if lonely:
        notes.append(f"{len(lonely)} class(es) have fewer than 2 test videos, e.g. {lonely[:3]}")
    return pairs, source, notes


# =============================================================================================
# SVIP clip verification
# =============================================================================================


def clip_features(
    features: np.ndarray, T: int, offsets: Sequence[float], boundaries: str = "even"
) -> np.ndarray:
    """SVIP clips of one video: (L, D) features (or (L, ...) frames) -> (C, T, D) (or
    (C, T, ...)), clip c taking offset ``offsets[c]`` inside each of T equal segments (frames
    repeat when L < T)."""
    from procalign.data.sampling import clip_indices

    if features.ndim < 2 or len(features) < 1:
        raise ValueError(f"features must be (L, D) with L >= 1, got shape {features.shape}")
    idx = clip_indices(len(features), T, list(offsets), boundaries=boundaries)
    out = np.asarray(features[idx])
    return out.astype(np.float32) if out.dtype != np.uint8 else out


@torch.no_grad()
def embed_clips(embed: Embed, clips: Tensor, batch_size: int = 256) -> Tensor:
    """(V, C, T, D_in) clips -> (V, C, T, D) embeddings, ``batch_size`` clips per call."""
    V, C = clips.shape[:2]
    flat = clips.reshape(V * C, *clips.shape[2:])
    out = [embed(flat[s : s + batch_size]) for s in range(0, len(flat), batch_size)]
    return torch.cat(out).reshape(V, C, *out[0].shape[1:])


@torch.no_grad()
def pair_distances(
    fn: PairFn,
    emb: Tensor,
    index: Mapping[str, int],
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 128,
) -> np.ndarray:
    """Mean over clips of ``fn`` for each pair -> (P,). ``emb`` (V, C, T, D).

    Under torchrun (a process group of N > 1 ranks) each rank scores a contiguous share of the
    batches of pairs and the shares are all-gathered
    (:func:`procalign.train.distributed.split_gather`): every rank returns the full (P,) array,
    in pair order, the batches being the very ones one process scores.
    """
    from procalign.train.distributed import split_gather

    C = emb.shape[1]
    ia = torch.tensor([index[a] for a, _ in pairs])
    ib = torch.tensor([index[b] for _, b in pairs])
    step = max(1, batch_size // C)
    starts = list(range(0, len(pairs), step))

    def score(lo: int, hi: int) -> list[Tensor]:
        out = []
        for s in starts[lo:hi]:
            A = emb[ia[s : s + step]]
            B = emb[ib[s : s + step]]
            d = fn(A.flatten(0, 1), B.flatten(0, 1)).reshape(len(A), C)
            out.append(d.mean(1).cpu())
        return out

    out = split_gather(len(starts), score, "gathering the pair distances")
    return torch.cat(out).double().numpy()


def verification_rows(
    distances: np.ndarray, same: np.ndarray, steps_1, steps_2, variant: str, distance: str
) -> list[dict[str, Any]]:
    """AUC, EER and (with step lists) WDR rows for one distance."""
    from procalign.eval import verification_auc, verification_eer, wrong_distance_ratio

    def r(metric: str, value: float, higher: bool, note: str = "") -> dict[str, Any]:
        return row(metric, value, f"{distance},{variant}{note}", higher, distance=distance)

    rows = [
        r("auc", verification_auc(distances, same), True),
        r("eer", verification_eer(distances, same), False),
    ]
    if steps_1 is not None:
        keep = np.array(
            [bool(s) or (tuple(a) != tuple(b)) for s, a, b in zip(same, steps_1, steps_2)]
        )
        dropped = int((~keep).sum())
        if keep.any() and same[keep].any() and (~same[keep]).any():
            wdr = wrong_distance_ratio(
                distances[keep],
                same[keep],
                [steps_1[i] for i in np.flatnonzero(keep)],
                [steps_2[i] for i in np.flatnonzero(keep)],
            )
            rows.append(r("wdr", wdr, True, f",dropped_identical_scripts={dropped}" if dropped else ""))
    return rows


def clip_embeddings(
    features: Callable[[str], np.ndarray],
    ids: Sequence[str],
    embed: Embed,
    *,
    T: int,
    offsets: Sequence[float],
    boundaries: str = "even",
    batch_size: int = 128,
) -> tuple[Tensor, Tensor]:
    """(input clips (V, C, T, D_in), embedded clips (V, C, T, D)) of the videos ``ids``."""
    clips = torch.from_numpy(
        np.stack([clip_features(features(i), T, offsets, boundaries) for i in ids])
    )
    return clips, embed_clips(embed, clips, batch_size)


def centre_clip(offsets: Sequence[float]) -> int:
    """Index of the SVIP clip offset closest to the middle of the segments (0.5)."""
    return int(np.argmin(np.abs(np.asarray(offsets, dtype=float) - 0.5)))


def threshold_record(d: np.ndarray, same: np.ndarray, distance: str, num_clips: int | None) -> dict:
    """The same/different threshold at the EER point of (P,) training-pair distances ``d``
    with (P,) labels ``same``, and what it was chosen on (what ``threshold.json`` holds);
    ``num_clips`` None: the distances are of whole videos."""
    from procalign.eval import verification_auc, verification_eer

    same = np.asarray(same, dtype=bool)
    protocol = "whole videos" if num_clips is None else f"SVIP {num_clips}-clip protocol"
    return {
        "threshold": eer_threshold(d, same),
        "distance": distance,
        "rule": "same if distance <= threshold",
        "chosen_on": f"{len(d)} training pairs ({int(same.sum())} positive), {protocol}, EER point",
        "train_auc": verification_auc(d, same),
        "train_eer": verification_eer(d, same),
        "positive_mean": float(d[same].mean()),
        "negative_mean": float(d[~same].mean()),
    }


def clip_distances(
    features: Callable[[str], np.ndarray],
    pairs: Sequence[Any],
    embed: Embed,
    fn: PairFn,
    **clip_args: Any,
) -> np.ndarray:
    """(P,) distances of ``pairs`` under ``fn`` with the SVIP clip protocol (mean over clips);
    ``clip_args``: T, offsets, boundaries, batch_size as in :func:`clip_embeddings`."""
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    _, emb = clip_embeddings(features, ids, embed, **clip_args)
    return pair_distances(fn, emb, {v: i for i, v in enumerate(ids)},
                          [(p.video_id_1, p.video_id_2) for p in pairs],
                          clip_args.get("batch_size", 128))


def eer_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The distance where false-accept and false-reject rates cross ("same" when <= it).

    >>> eer_threshold(np.array([0.1, 0.2, 0.8, 0.9]), np.array([True, True, False, False]))
    0.2
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(same, -np.asarray(distances))
    i = int(np.argmin(np.abs(fpr - (1 - tpr))))
    return float(-thr[i]) if np.isfinite(thr[i]) else float(np.max(distances))


@dataclass
class Distance:
    """One distance of a verification report.

    Attributes:
        label: its name in the report (``cpa``, ``dtw``, ``cpa@K=4``, ``raw_dtw``...).
        fn: ``(F1 (B, T, D), F2 (B, T, D)) -> (B,)``.
        on_inputs: computed on the input clips, not on the embeddings (untrained baselines).
        variant: extra variant text (``K=6``).
    """

    label: str
    fn: PairFn
    on_inputs: bool = False
    variant: str = ""


def clip_verification(
    features: Callable[[str], np.ndarray],
    pairs: Sequence[Any],
    embed: Embed,
    distances: Sequence[Distance],
    *,
    T: int,
    offsets: Sequence[float] = (0.25, 0.5, 0.75),
    boundaries: str = "even",
    steps: Callable[[str], Any] | None = None,
    batch_size: int = 128,
    progress: bool = False,
) -> dict[str, Any]:
    """SVIP-protocol verification: rows (AUC, EER, WDR) for each distance over the same clips.

    Args:
        features: ``video_id -> (L, D_in)`` inputs.
        pairs: records with ``video_id_1``, ``video_id_2``, ``same``.
        embed: ``(N, T, D_in) -> (N, T, D)`` (eval mode, no gradient).
        steps: ``video_id -> step list`` (WDR), or None.
    """
    from procalign._progress import bar as tqdm

    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    index = {v: i for i, v in enumerate(ids)}
    clips, emb = clip_embeddings(features, ids, embed, T=T, offsets=offsets,
                                 boundaries=boundaries, batch_size=batch_size)
    same = np.array([bool(p.same) for p in pairs])
    have_steps = steps is not None and all(steps(i) for i in ids)
    steps_1 = [steps(p.video_id_1) for p in pairs] if have_steps else None
    steps_2 = [steps(p.video_id_2) for p in pairs] if have_steps else None
    id_pairs = [(p.video_id_1, p.video_id_2) for p in pairs]
    rows: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    C = len(offsets)
    for dist in tqdm(distances, desc="eval", disable=not progress, leave=False):
        t0 = time.perf_counter()
        d = pair_distances(dist.fn, clips if dist.on_inputs else emb, index, id_pairs, batch_size)
        timings[dist.label] = time.perf_counter() - t0
        variant = f"svip_{C}clips,T={T}" + (f",{dist.variant}" if dist.variant else "")
        rows += verification_rows(d, same, steps_1, steps_2, variant, dist.label)
    return {
        "task": "verification",
        "num_pairs": len(pairs),
        "num_positive": int(same.sum()),
        "num_videos": len(ids),
        "metrics": rows,
        "seconds": timings,
    }


# Exemplar-based quality assessment
# =============================================================================================


def exemplar_quality(
    train: Sequence[Any],
    test: Sequence[Any],
    score: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    *,
    T: int,
    offsets: Sequence[float] = (0.25, 0.5, 0.75),
    boundaries: str = "even",
    num_exemplars: int = 5,
    aiou_thresholds: Sequence[float] = (0.5, 0.75),
    score_scale: float = 100.0,
    batch_size: int = 128,
    progress: bool = False,
) -> dict[str, Any]:
    """Quality assessment against exemplars (TSA's setting): each test video is scored against
    the first ``num_exemplars`` training videos of its label, predictions averaged over exemplars
    and clips.

    Args:
        train, test: videos with ``features``, ``label``, ``score``; test videos also
            ``step_index`` and ``steps`` (for AIoU).
        score: ``(query clips (E*C, T, D), exemplar clips (E*C, T, D)) -> (predicted
            (score(query) - score(exemplar)) / score_scale (E*C,), query step bounds
            (E*C, K+1))``.

    Reports Spearman's rho, relative L2 (x100, the training scores' range) and AIoU after
    regrouping the K steps uniformly into 3 phases (centre clip, first exemplar, sampled-frame
    units).
    """
    from procalign._progress import bar as tqdm

    from procalign.eval import aiou, relative_l2, spearman_rho

    by_label: dict[str, list] = {}
    for v in train:
        by_label.setdefault(v.label, []).append(v)
    C = len(offsets)
    centre = int(np.argmin(np.abs(np.asarray(offsets) - 0.5)))

    def clips(v):
        return clip_features(v.features, T, offsets, boundaries)

    preds, trues, pt, tt = [], [], [], []
    for v in tqdm(test, desc="quality", disable=not progress, leave=False):
        ex = by_label.get(v.label, [])[:num_exemplars]
        if not ex:
            continue
        q = torch.from_numpy(clips(v))[None].expand(len(ex), -1, -1, -1).flatten(0, 1)
        e = torch.from_numpy(np.stack([clips(x) for x in ex])).flatten(0, 1)
        delta, bounds = score(q, e)
        base = torch.tensor([x.score for x in ex]).repeat_interleave(C)
        preds.append(float((base + score_scale * delta).mean()))
        trues.append(v.score)
        bq = bounds[centre].numpy()
        K = len(bq) - 1
        pt.append([bq[round(K / 3)], bq[round(2 * K / 3)]])
        idx = clip_features(np.arange(len(v.features))[:, None], T, [offsets[centre]])[0, :, 0]
        ph = v.step_index[idx.astype(int)]
        group = np.where(ph >= 0, np.minimum(ph * 3 // len(v.steps), 2), -1)
        tt.append([_first_at_least(group, 1), _first_at_least(group, 2)])
    if len(preds) < 2:
        raise ValueError("quality evaluation needs at least 2 test videos with exemplars")
    lo, hi = min(v.score for v in train), max(v.score for v in train)
    rows = [
        row("spearman_rho", spearman_rho(preds, trues), f"exemplars={num_exemplars},{C}clips"),
        row("relative_l2", relative_l2(preds, trues, (lo, hi)),
            f"x100,range=train[{lo:.1f},{hi:.1f}]", False),
    ]
    for thr, val in aiou(np.array(pt, float), np.array(tt, float), aiou_thresholds).items():
        rows.append(row(f"aiou@{thr}", val, "tsa,K->3 phases"))
    return {"task": "quality", "num_videos": len(preds), "metrics": rows}


def _first_at_least(group: np.ndarray, g: int) -> int:
    hits = np.flatnonzero(group >= g)
    return int(hits[0]) if hits.size else len(group)
