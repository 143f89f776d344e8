"""Ray Data steps for feature extraction and pair scoring (``pip install procalign[ray]``).

No cluster logic of our own: the callables below are plain Ray Data ``map_batches`` UDFs
(callable classes, so each actor loads its encoder or run once), and the two drivers only build
a dataset, map it and write results through the same atomic files as the plain commands. Ray
connects to ``RAY_ADDRESS`` (a cluster) when it is set, else starts a local instance.

    import ray
    from procalign.integrations.ray import ScorePairs
    ds = ray.data.read_csv("pairs.csv")                       # video_id_1, video_id_2, pair_id
    ds = ds.map_batches(ScorePairs, fn_constructor_kwargs={"run_dir": "runs/cpa"},
                        batch_size=2048, concurrency=8, batch_format="numpy")
    ds.write_csv("scores/")

Batches are dicts of numpy arrays (``batch_format="numpy"``):

* :class:`ScorePairs`: ``pair_id``, ``video_id_1``, ``video_id_2`` (N,) -> the same plus
  ``distance`` (N,) float64 (NaN when a video has no features), ``verdict`` (N,) int8 (1 same,
  0 different, -1 no verdict) and ``missing`` (N,) str (the ids without features);
* :class:`ExtractShards`: ``shard`` (M,) int shard indices -> ``shard``, ``extracted``,
  ``skipped``, ``failed`` (M,) counts; each shard writes ``features/<id>.npy`` and its own
  ``manifest.shard-I-of-N.json`` exactly as ``procalign extract --shard I/N`` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ExtractShards", "ScorePairs", "extract_with_ray", "require_ray", "score_with_ray"]


def require_ray():
    """The ``ray`` module, or an ImportError naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the Ray path needs ray[data] ({exc}); install it with `pip install procalign[ray]`"
        ) from None
    return ray


def _init(workers: int) -> None:
    ray = require_ray()
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=workers, **kwargs)


class ScorePairs:
    """``map_batches`` callable scoring pairs with a trained run (see the module docstring).

    Args:
        run_dir, features, threshold: as :class:`procalign.eval.scoring.PairScorer`.
        threads: torch / numba threads of each actor (1: one actor per CPU).
    """

    def __init__(self, run_dir: str, features: str | None = None,
                 threshold: float | None = None, threads: int = 1) -> None:
        from procalign.eval.scoring import PairScorer
        from procalign.train.threads import set_threads

        set_threads(threads)
        self.scorer = PairScorer(run_dir, features, threshold)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from procalign.eval.scoring import PairRow

        v1, v2 = batch["video_id_1"], batch["video_id_2"]
        pids = batch.get("pair_id", np.arange(len(v1)))
        pairs = [PairRow(str(p), str(a), str(b)) for p, a, b in zip(pids, v1, v2)]
        rows = self.scorer.score(pairs)
        out = {k: np.asarray(v) for k, v in batch.items()}
        out["distance"] = np.array([r["distance"] for r in rows], dtype=np.float64)
        out["verdict"] = np.array([-1 if r["verdict"] is None else int(r["verdict"])
                                   for r in rows], dtype=np.int8)
        out["missing"] = np.array([r["missing"] for r in rows], dtype=object)
        return out


class ExtractShards:
    """``map_batches`` callable running ``procalign extract --shard I/N`` for each shard index.

    Args:
        input, out_dir: as ``procalign extract INPUT OUT_DIR``.
        num_shards: N.
        encoder, encoder_args: the registered encoder and its keywords (built once per actor).
        threads: torch / numba threads of each actor.
        **extract_args: the other keywords of :func:`procalign.data.extraction.extract_features`
            (sampling, resize, batch_size, dtype, ...).
    """

    def __init__(self, input: str, out_dir: str, num_shards: int, encoder: str,
                 encoder_args: dict[str, Any] | None = None, threads: int = 1,
                 **extract_args: Any) -> None:
        from procalign.data.features import discover_sources
        from procalign.models.encoders import build_encoder
        from procalign.train.threads import set_threads

        set_threads(threads)
        self.encoder = build_encoder(encoder, **dict(encoder_args or {}))
        self.name = encoder
        kind = getattr(self.encoder, "input_kind", "frames")
        self.sources = discover_sources(input, prefer=kind)
        self.out_dir, self.num_shards, self.args = out_dir, int(num_shards), extract_args

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from procalign.data.extraction import extract_features

        counts: dict[str, list[int]] = {"shard": [], "extracted": [], "skipped": [], "failed": []}
        for i in batch["shard"]:
            report = extract_features(self.sources, self.out_dir, self.encoder,
                                      extractor=self.name, shard=(int(i), self.num_shards),
                                      progress=False, **self.args)
            counts["shard"].append(int(i))
            counts["extracted"].append(len(report.done))
            counts["skipped"].append(len(report.skipped))
            counts["failed"].append(len(report.failed))
        return {k: np.asarray(v, dtype=np.int64) for k, v in counts.items()}


def extract_with_ray(input: str, out_dir: str, num_shards: int, encoder: str,
                     encoder_args: dict[str, Any] | None = None, *, actors: int = 2,
                     **extract_args: Any) -> dict[str, int]:
    """Every shard of ``procalign extract`` as a Ray Data task on ``actors`` actors (each with
    its own encoder); returns summed counts."""
    ray = require_ray()
    _init(actors)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    ds = ray.data.from_items([{"shard": i} for i in range(num_shards)],
                             override_num_blocks=num_shards)
    ds = ds.map_batches(
        ExtractShards, batch_size=1, concurrency=actors, num_cpus=1, batch_format="numpy",
        fn_constructor_kwargs={"input": str(input), "out_dir": str(out_dir),
                               "num_shards": num_shards, "encoder": encoder,
                               "encoder_args": dict(encoder_args or {}), **extract_args},
    )
    rows = ds.take_all()
    return {k: int(sum(r[k] for r in rows)) for k in ("extracted", "skipped", "failed")} | {
        "shards": len(rows)}


def score_with_ray(pairs: Sequence[Any], run_dir: str, out_dir: str, shards: int,
                   which: Sequence[int] | None = None, *, features: str | None = None,
                   threshold: float | None = None, workers: int = 2, chunk: int = 2048,
                   progress: bool = True) -> dict[str, Any]:
    """The pending shards of ``procalign score`` through Ray Data :class:`ScorePairs` actors.

    Results stream back in order; each shard file is written (atomically) as soon as its last
    row arrives, so a killed job keeps its finished shards. Same return as
    :func:`procalign.eval.scoring.score_shards`.
    """
    from procalign._io import atomic_write_text
    from procalign.eval.scoring import rows_to_csv, shard_bounds, shard_path

    ray = require_ray()
    bounds = shard_bounds(len(pairs), shards)
    which = list(range(shards)) if which is None else list(which)
    todo = [i for i in which if not shard_path(out_dir, i, shards).is_file()]
    skipped = [i for i in which if i not in todo]
    items = [{"row": k, "pair_id": pairs[k].pair_id, "video_id_1": pairs[k].video_id_1,
              "video_id_2": pairs[k].video_id_2} for i in todo for k in range(*bounds[i])]
    missing: dict[str, str] = {}
    if not items:
        return {"done": [], "skipped": skipped, "pairs": 0, "missing": missing}
    _init(workers)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = bool(progress)
    blocks = min(len(items), max(2 * workers, len(items) // chunk + 1))
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(
        ScorePairs, batch_size=chunk, concurrency=workers, num_cpus=1, batch_format="numpy",
        fn_constructor_kwargs={"run_dir": str(run_dir), "features": features,
                               "threshold": threshold},
    )
    shard_of = {k: i for i in todo for k in range(*bounds[i])}
    pending: dict[int, list[dict[str, Any]]] = {i: [] for i in todo}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for j in range(len(batch["row"])):
            k = int(batch["row"][j])
            verdict = int(batch["verdict"][j])
            row = {"pair_id": str(batch["pair_id"][j]), "video_id_1": str(batch["video_id_1"][j]),
                   "video_id_2": str(batch["video_id_2"][j]),
                   "distance": float(batch["distance"][j]),
                   "same": pairs[k].same, "verdict": None if verdict < 0 else bool(verdict),
                   "missing": str(batch["missing"][j]),
                   "row": k}
            i = shard_of[k]
            pending[i].append(row)
            if row["missing"]:
                missing[row["pair_id"]] = row["missing"]
            lo, hi = bounds[i]
            if len(pending[i]) == hi - lo:
                done_rows = sorted(pending.pop(i), key=lambda r: r["row"])
                atomic_write_text(shard_path(out_dir, i, shards), rows_to_csv(done_rows))
    if pending:  # pragma: no cover - Ray lost rows without raising
        raise RuntimeError(f"Ray returned no rows for shard(s) {sorted(pending)}")
    return {"done": todo, "skipped": skipped, "pairs": len(items), "missing": missing}
