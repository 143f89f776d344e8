"""Sharded pair scoring with a trained run: ``procalign score PAIRS.csv --run DIR --out SCORES``.

A pair list (CSV with ``video_id_1``, ``video_id_2`` and optional ``pair_id``, ``same``) is cut
into N shards of contiguous rows; each shard is scored on cached features (the run's own data,
or a ``procalign extract`` folder) and written as one file, atomically::

    SCORES/manifest.json                 the pair list's hash, the run, N
    SCORES/shard-00001-of-00004.csv      pair_id, video_id_1, video_id_2, distance, same, verdict, missing
    SCORES/scores.csv                    every shard in order (``merge``)

A rerun skips the shards already written (a killed job loses at most the shards in progress);
shards may run on different machines (``--shard i/n``). A pair naming a video without features
is written with an empty distance and the missing id(s) in ``missing``, and reported; the
others are scored. ``same`` is the pair list's own label, copied through (empty when the list
has none), so ``procalign eval verification --pairs SCORES/scores.csv`` scores the run against
it; ``verdict`` is the run's decision at its threshold (``threshold.json``: 1 when distance <=
threshold), empty without one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from procalign._io import atomic_write_text

COLUMNS = ("pair_id", "video_id_1", "video_id_2", "distance", "same", "verdict", "missing")


@dataclass(frozen=True)
class PairRow:
    """One line of a pair list (``same``: the label, when the list has one)."""

    pair_id: str
    video_id_1: str
    video_id_2: str
    same: bool | None = None


def read_pair_list(path: str | Path) -> list[PairRow]:
    """The rows of a pair CSV; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no pair list at {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        for need in ("video_id_1", "video_id_2"):
            if need not in cols:
                raise ValueError(f"{path}: no {need!r} column (columns: {cols})")
        rows = []
        for lineno, r in enumerate(reader, start=2):
            v1, v2 = (r.get("video_id_1") or "").strip(), (r.get("video_id_2") or "").strip()
            if not v1 or not v2:
                raise ValueError(f"{path}:{lineno}: empty video id")
            same = (r.get("same") or "").strip()
            if same not in ("", "0", "1"):
                raise ValueError(f"{path}:{lineno}: 'same' must be 0, 1 or empty, got {same!r}")
            pid = (r.get("pair_id") or "").strip() or str(lineno - 2)
            rows.append(PairRow(pid, v1, v2, None if same == "" else same == "1"))
    return rows


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def shard_bounds(num_pairs: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``[lo, hi)`` row ranges of each shard (sizes differ by at most one)."""
    from procalign.train.distributed import split_bounds

    return split_bounds(num_pairs, shards)


def shard_path(out_dir: str | Path, i: int, n: int) -> Path:
    return Path(out_dir) / f"shard-{i:05d}-of-{n:05d}.csv"


class NpyFeatures:
    """``get(video_id).features`` from a folder of ``<video_id>.npy`` files (an extraction
    folder or its ``features/``), memory-mapped on first use."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if (folder / "features").is_dir():
            folder = folder / "features"
        if not folder.is_dir():
            raise FileNotFoundError(f"no feature folder at {folder}")
        self.folder = folder
        self.ids = {p.stem for p in folder.glob("*.npy")}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self.ids

    def get(self, video_id: str):
        from types import SimpleNamespace

        from procalign.data.features import load_features

        return SimpleNamespace(video_id=video_id,
                               features=load_features(self.folder / f"{video_id}.npy"))


class PairScorer:
    """A trained run, loaded once, that scores lists of pairs (a Ray actor holds one).

    Args:
        run_dir: folder of ``procalign train METHOD``.
        features: a ``procalign extract`` folder (or a folder of ``<id>.npy``); None reads the
            run's own data (its config's cached features).
        threshold: decision threshold; None takes the run's ``threshold.json`` (if any).
    """

    def __init__(self, run_dir: str | Path, features: str | Path | None = None,
                 threshold: float | None = None, data: Any = None) -> None:
        from procalign.train.runner import load_run, recipe_of_run

        self.run_dir = Path(run_dir)
        self.recipe = recipe_of_run(run_dir)
        if not self.recipe.verifies_pairs:
            raise ValueError(f"{self.recipe.name} runs do not score same/different pairs")
        self.cfg, self.meta, self.models = load_run(self.recipe, run_dir)
        if data is not None:
            self.data = data
        elif features is not None:
            self.data = NpyFeatures(features)
        else:
            self.data = self.recipe.load_data(self.cfg, self.run_dir, False)
        self._ids = (self.data.ids if isinstance(self.data, NpyFeatures)
                     else {v.video_id for v in self.data.videos})
        if threshold is None:
            tfile = self.run_dir / "threshold.json"
            if tfile.is_file():
                threshold = float(json.loads(tfile.read_text())["threshold"])
        self.threshold = threshold

    def score(self, pairs: Sequence[PairRow]) -> list[dict[str, Any]]:
        """One output row (``COLUMNS``) per pair, in order; pairs naming videos without
        features get ``distance`` NaN and the missing ids in ``missing``."""
        import torch

        from procalign.data.records import PairRecord
        from procalign.train.threads import compute

        missing = [";".join(v for v in (p.video_id_1, p.video_id_2) if v not in self._ids)
                   for p in pairs]
        ok = [i for i, m in enumerate(missing) if not m]
        dist = np.full(len(pairs), np.nan)
        if ok:
            recs = [PairRecord(pairs[i].video_id_1, pairs[i].video_id_2, False) for i in ok]
            with compute(self.cfg.train.threads), torch.no_grad():
                d = self.recipe.pair_distances(self.cfg, self.data, self.models, self.meta, recs)
            dist[ok] = np.asarray(d, dtype=np.float64)
        out = []
        for p, d, m in zip(pairs, dist, missing):
            verdict = None if m or self.threshold is None else bool(d <= self.threshold)
            out.append({"pair_id": p.pair_id, "video_id_1": p.video_id_1,
                        "video_id_2": p.video_id_2, "distance": float(d), "same": p.same,
                        "verdict": verdict, "missing": m})
        return out


def _flag(value: bool | None) -> str | int:
    """A boolean CSV cell: 1 / 0, empty for None."""
    return "" if value is None else int(value)


def rows_to_csv(rows: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        d = r["distance"]
        w.writerow([r["pair_id"], r["video_id_1"], r["video_id_2"],
                    "" if d is None or (isinstance(d, float) and math.isnan(d)) else repr(float(d)),
                    _flag(r.get("same")), _flag(r.get("verdict")), r.get("missing") or ""])
    return buf.getvalue()


def read_shard(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(
            f"{path}: columns {', '.join(reader.fieldnames or ())} are not {', '.join(COLUMNS)} "
            "(a shard from an older procalign, whose 'same' was the verdict); remove it and "
            "score again"
        )
    return rows


def prepare(pairs_csv: str | Path, run_dir: str | Path | None, out_dir: str | Path,
            shards: int) -> tuple[list[PairRow], dict[str, Any]]:
    """Read the pair list and check (or write) ``SCORES/manifest.json``: a rerun must score the
    same pair list with the same run and number of shards."""
    if isinstance(shards, bool) or not isinstance(shards, int) or shards < 1:
        raise ValueError(f"the number of shards must be an integer >= 1, got {shards!r}")
    pairs = read_pair_list(pairs_csv)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} exists and is not a folder")
    manifest = {"pairs": str(pairs_csv), "pairs_sha256": file_sha256(pairs_csv),
                "num_pairs": len(pairs), "shards": shards,
                "run": None if run_dir is None else str(Path(run_dir).resolve())}
    mpath = out_dir / "manifest.json"
    if mpath.is_file():
        saved = json.loads(mpath.read_text())
        for key in ("pairs_sha256", "shards", "run"):
            if key == "run" and manifest["run"] is None:
                continue
            if saved.get(key) != manifest[key]:
                raise ValueError(
                    f"{out_dir} holds scores of another job ({key}: {saved.get(key)} -> "
                    f"{manifest[key]}); score into a new --out folder"
                )
        manifest["run"] = saved.get("run")
    elif run_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(mpath, json.dumps(manifest, indent=2))
    return pairs, manifest


def score_shards(
    pairs: Sequence[PairRow],
    scorer: Any,
    out_dir: str | Path,
    shards: int,
    which: Sequence[int] | None = None,
    *,
    chunk: int = 2048,
    progress: bool = True,
) -> dict[str, Any]:
    """Score shards ``which`` (default: all) of ``pairs`` into ``out_dir``, skipping finished
    ones; ``scorer`` is a :class:`PairScorer` (or anything with ``score(pairs) -> rows``).

    Returns ``{"done": [...], "skipped": [...], "pairs": P scored, "missing": {pair_id: ids}}``.
    """
    bounds = shard_bounds(len(pairs), shards)
    which = list(range(shards)) if which is None else list(which)
    todo = [i for i in which if not shard_path(out_dir, i, shards).is_file()]
    skipped = [i for i in which if i not in todo]
    total = sum(bounds[i][1] - bounds[i][0] for i in todo)
    bar = None
    if progress and total:
        from procalign._progress import bar as tqdm

        bar = tqdm(total=total, desc="score", unit="pair", dynamic_ncols=True)
    missing: dict[str, str] = {}
    scored = 0
    try:
        for i in todo:
            lo, hi = bounds[i]
            rows: list[dict[str, Any]] = []
            for s in range(lo, hi, chunk):
                part = scorer.score(pairs[s : min(hi, s + chunk)])
                rows += part
                if bar is not None:
                    bar.update(len(part))
            missing.update({r["pair_id"]: r["missing"] for r in rows if r["missing"]})
            atomic_write_text(shard_path(out_dir, i, shards), rows_to_csv(rows))
            scored += hi - lo
    finally:
        if bar is not None:
            bar.close()
    return {"done": todo, "skipped": skipped, "pairs": scored, "missing": missing}


def merge_shards(out_dir: str | Path) -> dict[str, Any]:
    """Check that every shard of ``out_dir`` is present and write ``scores.csv`` (atomically).

    Raises ValueError naming the missing shards (and the command that fills them in).
    """
    out_dir = Path(out_dir)
    mpath = out_dir / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{out_dir} has no manifest.json: score some shards there first")
    manifest = json.loads(mpath.read_text())
    n = int(manifest["shards"])
    absent = [i for i in range(n) if not shard_path(out_dir, i, n).is_file()]
    if absent:
        listed = ", ".join(f"{i}/{n}" for i in absent[:10]) + (" ..." if len(absent) > 10 else "")
        raise ValueError(
            f"{out_dir}: {len(absent)} of {n} shard(s) missing ({listed}); run "
            f"`procalign score {manifest['pairs']} --run RUN --out {out_dir} --shard I/{n}` "
            "for each, then merge again"
        )
    rows: list[dict[str, str]] = []
    for i in range(n):
        rows += read_shard(shard_path(out_dir, i, n))
    if len(rows) != int(manifest["num_pairs"]):
        raise ValueError(
            f"{out_dir}: the shards hold {len(rows)} rows, the pair list has "
            f"{manifest['num_pairs']}; remove the shard files and score again"
        )
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out_dir / "scores.csv", buf.getvalue())
    missing = {r["pair_id"]: r["missing"] for r in rows if r["missing"]}
    return {"scores": str(out_dir / "scores.csv"), "pairs": len(rows), "shards": n,
            "missing": missing}
