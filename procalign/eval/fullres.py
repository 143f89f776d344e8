"""Strong baselines on the full-resolution inputs, with their settings chosen on validation pairs.

A learned verifier that loses to ten lines of DTW on its own inputs has learned nothing useful,
and a report that never shows those ten lines hides it. The baselines here see every frame of
both videos (not the T sampled frames a model sees), after per-video normalisation and optional
temporal smoothing:

* ``fullres_dtw``: DTW over cosine frame costs, divided by the optimal path's length;
* ``fullres_dtw_window``: the worst stretch of the same path, the largest mean cost over a
  window of ``frac`` x its length (``frac`` chosen on validation with the rest): a step that
  one video skips costs a few path cells, diluted by the mean and not by the window;
* ``fullres_soft_dtw``: the soft-DTW divergence over cosine costs, divided by N + M;
* ``fullres_mean``: L2 distance of the L2-normalised mean frames of the raw inputs (a bag of
  frames: per-video centring would make every mean zero, so it has no normalisation choice).

Per-video normalisation is ``center`` (subtract the video's mean frame: removes a per-video
offset such as the subject or the camera) or ``standardize`` (also divide each dimension by the
video's std); smoothing is a centred moving average of ``width`` frames. Both are chosen, per
baseline, by AUC on *validation* pairs drawn from held-out training videos, never on the test
pairs; the report row names the choice (``fullres_dtw,center,w=5``) and the validation AUC.

:func:`verdict` compares a method's test AUC with the best baseline's, the summary line of every
verification report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from procalign.eval.report import row

__all__ = [
    "FRACTIONS",
    "FULLRES",
    "NORMS",
    "WIDTHS",
    "fullres_baselines",
    "fullres_distances",
    "prepare",
    "validation_split",
    "verdict",
]

FULLRES = ("fullres_dtw", "fullres_dtw_window", "fullres_soft_dtw", "fullres_mean")
NORMS = ("center", "standardize")
WIDTHS = (1, 3, 5, 9, 15)
#: window fractions of ``fullres_dtw_window``, chosen on validation pairs with norm and width
FRACTIONS = (0.1, 0.2, 0.3)


def prepare(x: np.ndarray, norm: str | None, width: int, max_frames: int | None = 512) -> np.ndarray:
    """(L, D) inputs -> (L', D) float32: per-video ``norm`` (``center``, ``standardize`` or
    None), a centred moving average over ``width`` frames (1 = none; edges repeat the end
    frames), then at most ``max_frames`` evenly spread frames (None keeps all).

    >>> x = np.arange(12, dtype=float).reshape(6, 2)
    >>> prepare(x, "center", 1)[:, 0].tolist()
    [-5.0, -3.0, -1.0, 1.0, 3.0, 5.0]
    >>> [round(float(v), 4) for v in prepare(x, None, 3)[[0, 3], 0]]  # edges repeat: (0 + 0 + 2) / 3
    [0.6667, 6.0]
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"expected (L, D) inputs with L >= 1, got shape {x.shape}")
    if norm not in (None, *NORMS):
        raise ValueError(f"norm must be one of {NORMS} or None, got {norm!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    if norm is not None:
        x = x - x.mean(0, keepdims=True)
        if norm == "standardize":
            x = x / np.maximum(x.std(0, keepdims=True), 1e-6)
    if width > 1:
        from scipy.ndimage import uniform_filter1d

        x = uniform_filter1d(x, size=width, axis=0, mode="nearest")
    if max_frames is not None and len(x) > max_frames:
        x = x[np.linspace(0, len(x) - 1, max_frames).round().astype(int)]
    return x.astype(np.float32)


def _padded(xs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(x) for x in xs])
    out = torch.zeros(len(xs), int(lengths.max()), xs[0].shape[1])
    for i, x in enumerate(xs):
        out[i, : len(x)] = torch.from_numpy(x)
    return out, lengths


def fullres_distances(
    kind: str,
    xs: Sequence[np.ndarray],
    ys: Sequence[np.ndarray],
    gamma: float = 0.1,
    batch_size: int = 64,
    fraction: float = 0.2,
) -> np.ndarray:
    """(P,) distances between prepared videos ``xs[p]`` (N_p, D) and ``ys[p]`` (M_p, D);
    ``fraction``: the window of ``fullres_dtw_window`` as a fraction of the path's length."""
    from procalign.methods import baselines as BL

    if kind not in FULLRES:
        raise ValueError(f"unknown full-resolution baseline {kind!r}; known: {FULLRES}")
    if len(xs) != len(ys):
        raise ValueError(f"{len(xs)} first videos but {len(ys)} second videos")
    out = []
    for s in range(0, len(xs), batch_size):
        A, la = _padded(xs[s : s + batch_size])
        B, lb = _padded(ys[s : s + batch_size])
        with torch.no_grad():
            if kind == "fullres_dtw":
                d = BL.dtw_distance(A, B, la, lb)
            elif kind == "fullres_dtw_window":
                d = BL.dtw_window_distance(A, B, la, lb, fraction=fraction)
            elif kind == "fullres_soft_dtw":
                d = BL.soft_dtw_distance(A, B, la, lb, gamma=gamma)
            else:
                d = BL.video_l2(A, B, la, lb)
        out.append(d.double().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def validation_split(
    videos: Sequence[Any], fraction: float = 0.2, by: str = "procedure", seed: int = 0
) -> tuple[list[Any], list[Any]]:
    """(kept, held out) training videos: ``by="procedure"`` holds out whole labels (each task
    keeps at least two; at least two are held out, else it falls back to ``"video"``), for
    test procedures unseen in training; ``"video"`` holds out two or more videos of every label
    with four or more (two kept). Deterministic in ``seed``.

    >>> from types import SimpleNamespace as V
    >>> vids = [V(video_id=f"{l}_{i}", label=l, task="t") for l in "abcde" for i in range(3)]
    >>> keep, val = validation_split(vids, 0.4, "procedure")
    >>> sorted({v.label for v in val}), len(keep) + len(val)
    (['d', 'e'], 15)
    """
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if by not in ("procedure", "video"):
        raise ValueError(f"validation split must be by 'procedure' or 'video', got {by!r}")
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    if by == "procedure":
        tasks: dict[Any, list[str]] = {}
        for v in videos:
            labels = tasks.setdefault(v.task, [])
            if v.label not in labels:
                labels.append(v.label)
        for labels in tasks.values():
            n = min(len(labels) - 2, max(2, int(round(fraction * len(labels)))))
            if n >= 1:
                held |= {labels[i] for i in rng.choice(len(labels), size=n, replace=False)}
        if len(held) < 2:  # too few labels to hold out two (a same/different split needs
            return validation_split(videos, fraction, "video", seed)  # 2): by video instead
        return ([v for v in videos if v.label not in held], [v for v in videos if v.label in held])
    by_label: dict[Any, list[int]] = {}
    for i, v in enumerate(videos):
        by_label.setdefault(v.label, []).append(i)
    out: set[int] = set()
    for idx in by_label.values():
        n = min(len(idx) - 2, max(2, int(round(fraction * len(idx)))))  # 2 make a positive
        if n >= 1:
            out |= {idx[i] for i in rng.choice(len(idx), size=n, replace=False)}
    return ([v for i, v in enumerate(videos) if i not in out],
            [v for i, v in enumerate(videos) if i in out])


def fullres_baselines(
    features: Callable[[str], np.ndarray],
    val_pairs: Sequence[Any],
    test_pairs: Sequence[Any],
    *,
    kinds: Sequence[str] = FULLRES,
    norms: Sequence[str] = NORMS,
    widths: Sequence[int] = WIDTHS,
    fractions: Sequence[float] = FRACTIONS,
    gamma: float = 0.1,
    max_frames: int | None = 512,
    progress: bool = False,
) -> dict[str, Any]:
    """Rows (AUC, EER on the test pairs) for every baseline at its setting chosen on the
    validation pairs, and what was chosen: ``{"metrics": [...], "chosen": {kind: {...}}}``
    (``fractions``: the window grid of ``fullres_dtw_window``).

    Args:
        features: ``video_id -> (L, D)`` raw inputs.
        val_pairs, test_pairs: records with ``video_id_1``, ``video_id_2``, ``same``; the
            validation pairs must hold both classes.
    """
    from procalign._progress import bar as tqdm

    from procalign.eval import verification_auc, verification_eer

    val_same = np.array([bool(p.same) for p in val_pairs])
    test_same = np.array([bool(p.same) for p in test_pairs])
    if len(set(val_same.tolist())) < 2:
        raise ValueError("the validation pairs must hold both same and different pairs")
    cache: dict[tuple[str, str | None, int], np.ndarray] = {}

    def prepared(vid: str, norm: str | None, width: int) -> np.ndarray:
        key = (vid, norm, width)
        if key not in cache:
            cache[key] = prepare(features(vid), norm, width, max_frames)
        return cache[key]

    def dists(kind, pairs, norm, width, frac):
        xs = [prepared(p.video_id_1, norm, width) for p in pairs]
        ys = [prepared(p.video_id_2, norm, width) for p in pairs]
        return fullres_distances(kind, xs, ys, gamma, fraction=frac if frac else 1.0)

    rows: list[dict[str, Any]] = []
    chosen: dict[str, dict[str, Any]] = {}
    jobs = [(k, n, w, f) for k in kinds
            for n, w in ([(None, 1)] if k == "fullres_mean" else
                         [(n, w) for n in norms for w in widths])
            for f in (fractions if k == "fullres_dtw_window" else [None])]
    bar = tqdm(total=len(jobs) + len(kinds), desc="baselines", disable=not progress, leave=False)
    for kind in kinds:
        best = None
        for k, norm, width, frac in jobs:
            if k != kind:
                continue
            auc = verification_auc(dists(kind, val_pairs, norm, width, frac), val_same)
            bar.update(1)
            if best is None or auc > best[0] + 1e-12:
                best = (auc, norm, width, frac)
        assert best is not None
        val_auc, norm, width, frac = best
        d = dists(kind, test_pairs, norm, width, frac)
        bar.update(1)
        setting = "raw" if kind == "fullres_mean" else f"{norm},w={width}"
        if frac is not None:
            setting += f",frac={frac:g}"
        variant = f"{kind},{setting},chosen_on_val"
        chosen[kind] = {"norm": norm, "width": width, "val_auc": val_auc}
        if frac is not None:
            chosen[kind]["fraction"] = frac
        rows.append(row("auc", verification_auc(d, test_same), variant, True, distance=kind))
        rows.append(row("eer", verification_eer(d, test_same), variant, False, distance=kind))
    bar.close()
    return {"metrics": rows, "chosen": chosen, "num_val_pairs": len(val_pairs)}


def verdict(metrics: Sequence[dict[str, Any]], method: str, metric: str = "auc",
            variants: Sequence[str] = ("dtw", "dtw_window")) -> dict | None:
    """Does ``method``'s row beat the best baseline row of ``metric``? Baselines are the rows
    that use no trained model: ``fullres_*`` and ``raw_*`` distances (rows over the model's
    embeddings, such as DTW on them, are variants of the method, not baselines).

    ``variants``: distances over the trained model's embeddings fixed in advance (not chosen on
    the test pairs), whose margins over the same baseline are reported beside the method's
    (``"variants"``; the line names them): e.g. DTW on the trained frame embeddings, which
    separates what the encoder learned from what the method's own distance adds.

    Returns ``{method, value, best_baseline, baseline_value, margin, beats, line, variants}``
    or None when the report has no such rows.
    """
    mine = [r for r in metrics if r["metric"] == metric and r.get("distance") == method]
    others = [r for r in metrics if r["metric"] == metric
              and str(r.get("distance", "")).startswith(("fullres_", "raw_"))]
    if not mine or not others:
        return None
    m = mine[0]
    higher = bool(m["higher_is_better"])
    best = max(others, key=lambda r: r["value"] if higher else -r["value"])
    margin = (m["value"] - best["value"]) * (1 if higher else -1)
    beats = margin > 0
    line = (
        f"{method} {metric} {m['value']:.3f} {'beats' if beats else 'does NOT beat'} the best "
        f"baseline {best['variant']} ({best['value']:.3f}) by {margin:+.3f}"
    )
    extra = {}
    for name in variants:
        rows = [r for r in metrics if r["metric"] == metric and r.get("distance") == name]
        if rows:
            extra[name] = {"variant": rows[0]["variant"], "value": rows[0]["value"],
                           "margin": (rows[0]["value"] - best["value"]) * (1 if higher else -1)}
    if extra:
        line += "; " + ", ".join(f"{name} on {method}'s embeddings {e['value']:.3f} "
                                 f"({e['margin']:+.3f})" for name, e in extra.items())
    return {"method": method, "metric": metric, "value": m["value"],
            "best_baseline": best["variant"], "baseline_value": best["value"],
            "margin": margin, "beats": beats, "line": line, "variants": extra}


def split_rule(train: Sequence[Any], test: Sequence[Any]) -> str:
    """``"procedure"`` when no test label occurs in training (unseen procedures), else
    ``"video"``: how a validation split must be held out to look like the test split."""
    seen = {v.label for v in train}
    return "video" if any(v.label in seen for v in test) else "procedure"


def report_baselines(
    data: Any,
    train_split: str,
    test_pairs: Sequence[Any],
    *,
    kinds: Sequence[str] = FULLRES,
    val_fraction: float = 0.2,
    val_pairs: int = 200,
    negatives: str = "prefer_same_task",
    test_split: str = "test",
    seed: int = 0,
    gamma: float = 0.1,
    max_frames: int | None = 512,
    progress: bool = False,
) -> dict[str, Any]:
    """:func:`fullres_baselines` for a :class:`~procalign.data.featureset.FeatureSet`: the
    validation pairs are sampled from training videos held out like the test split is
    (:func:`split_rule`); the test pairs are the method's own. Returns the rows, the chosen
    settings and where the validation pairs came from."""
    from procalign.eval.protocols import evaluation_pairs

    if not kinds:
        return {"metrics": [], "chosen": {}}
    train = data.split(train_split)
    by = split_rule(train, data.split(test_split))
    held = data.split("val")  # the run's own validation split, when it has one
    if not held:
        _, held = validation_split(train, val_fraction, by, seed)
    if len(held) < 2:
        raise ValueError(
            f"too few training videos ({len(train)}) to hold out validation videos for the "
            "baselines' settings; set eval.fullres=[] to leave the baselines out"
        )
    pairs, _, _ = evaluation_pairs(held, [], "sampled", val_pairs, negatives, seed + 101)
    out = fullres_baselines(lambda i: data.get(i).features, pairs, test_pairs, kinds=kinds,
                            gamma=gamma, max_frames=max_frames, progress=progress)
    out["validation"] = (f"{len(pairs)} pairs of {len(held)} training videos held out by "
                         f"{by} (settings chosen on them, never on the test pairs)")
    return out


def add_baselines(
    report: dict[str, Any], data: Any, cfg: Any, pairs: Sequence[Any], method: str,
    progress: bool = False,
) -> dict[str, Any]:
    """Add the ``cfg.eval.fullres`` baselines (on ``pairs``, settings from ``cfg.eval.val_*``)
    and the :func:`verdict` of ``method`` against every baseline row to a verification
    ``report``; returns it. The shared step of every method's verification report."""
    e = cfg.eval
    if getattr(e, "fullres", None):
        try:
            extra = report_baselines(
                data, cfg.data.train_split, pairs, kinds=e.fullres, val_fraction=e.val_fraction,
                val_pairs=e.val_pairs, negatives=getattr(cfg.data, "negatives", "prefer_same_task"),
                test_split=cfg.data.test_split, seed=cfg.train.seed,
                gamma=getattr(e, "gamma", 0.1), max_frames=e.fullres_max_frames,
                progress=progress,
            )
        except ValueError as exc:  # too few training videos for same/different validation pairs
            report.setdefault("warnings", []).append(
                f"full-resolution baselines left out: no usable validation pairs ({exc})"
            )
        else:
            report["metrics"] = [*report["metrics"], *extra["metrics"]]
            report["baselines"] = {"chosen": extra["chosen"], "validation": extra["validation"]}
    v = verdict(report["metrics"], method)
    if v is not None:
        report["verdict"] = v
    return report


def check_config(e: Any) -> None:
    """Errors naming the key for the baseline settings of an ``eval`` section."""
    unknown = [k for k in e.fullres if k not in FULLRES]
    if unknown:
        raise ValueError(f"eval.fullres entries {unknown} unknown; known: {list(FULLRES)}")
    if not 0 < e.val_fraction < 1:
        raise ValueError(f"eval.val_fraction must be in (0, 1), got {e.val_fraction}")
    if e.val_pairs < 2:
        raise ValueError(f"eval.val_pairs must be >= 2, got {e.val_pairs}")
    if e.fullres_max_frames is not None and e.fullres_max_frames < 1:
        raise ValueError(f"eval.fullres_max_frames must be >= 1 or null, got {e.fullres_max_frames}")
