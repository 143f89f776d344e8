"""Why CPA does not beat full-resolution DTW on CSV-scripted data: its distance with ideal encoders.

    PROCALIGN_DATA=../shared/data python benchmarks/csv_bounds.py [--seeds 0 1 2] [--out DIR]

benchmarks/generalisation.py trains CPA on CSV-scripted folders (CSV's real scripts, splits and
1,000 official test pairs, simulated frames) and finds it below the best model-free baseline.
This script asks whether a better *encoder* could close the gap. On the same folders and test
pairs it scores two distances over six kinds of frame features, with no training:

* inputs: ``noisy`` (the folder's features, per-video standardised: what the baselines see),
  ``clean`` (the generator's noise-free signal of the same videos, standardised: an encoder that
  removes every nuisance exactly), ``onehot`` (the true step of every frame as a one-hot vector,
  background its own entry: an encoder that recognises every step, unseen ones included) and
  ``onehot_steps`` (the same with every background frame dropped: an encoder that also finds
  background, and a distance that skips it), and ``noisy_steps`` / ``clean_steps`` (the
  folder's inputs / the noise-free signal with the true background frames dropped: a perfect
  background detector in front of an encoder that does not recognise steps);
* distances: DTW over the full videos (path mean, and the worst window of 10 / 20 / 30 % of the
  path: the ``fullres_dtw_window`` baseline) and **CPA's own lattice** (collaborative step
  mining + frame-to-step alignment, Eq. 10, `CPAModel.pair` with the folder config's scores),
  with K and a feature scale (the lattice's softmaxes are not scale-free) chosen **on the test
  pairs** over a grid, at the clip length CPA trains on and at full length. A rerun reuses the
  grid cells already in the JSON (an extended grid computes only its new cells).
* on the noise-free signal and the background-free true steps, CPA's **other lattice
  settings** (VARIANTS: sqrt_area block score, symmetric relational matrix, uniform steps, mean
  step features, the two other FSA normalisations), one change each from the folder config's,
  over a smaller K x scale grid at the clip length, also chosen on test.

Choosing on the test pairs makes every CPA row the best its encoder gets over this grid, not a
result. Unlike trained CPA's evaluation (each clip standardised on its own, distances averaged
over 3 clip offsets) the features here are standardised per whole video and cut into one clip.
A last row, "the true step lists", scores a verifier that reads each video's script (0 when
two scripts are equal, 1 otherwise): it separates every test pair, so the test pairs are
separable in principle. Raw rows go to ``benchmarks/results/csv_bounds.json``;
``benchmarks/tables.py`` renders the docs/results.md table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
KS = (10, 15, 20, 25, 30, 35)
SCALES = (0.35, 0.5, 0.7, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
#: the folder config's lattice (configs/cpa_folder.yaml): what every grid cell scores
#: (``max_over_k`` is not among them: it changes L_step's value, never the mined bounds)
LATTICE = {"relational": "row", "block_score": "mean", "step_mining": "csm",
           "eval_step_features": "center", "fsa_normalize": "frames"}
#: CPA's other lattice settings, one change each from LATTICE (every one a CPAModel option),
#: scored on VARIANT_INPUTS over the smaller VARIANT_KS x VARIANT_SCALES grid at the clip length
VARIANTS = {
    "sqrt_area block score": {"block_score": "sqrt_area"},
    "symmetric relational matrix": {"relational": "symmetric"},
    "uniform steps (no mining)": {"step_mining": "uniform"},
    "mean step features": {"eval_step_features": "mean"},
    "FSA normalised per code": {"fsa_normalize": "code"},
    "FSA unnormalised": {"fsa_normalize": "none"},
}
VARIANT_INPUTS = ("clean", "onehot_steps")
DEFAULT = "default (configs/cpa_folder.yaml)"
VARIANT_KS = (15, 20, 25)
VARIANT_SCALES = (0.5, 2.0, 4.0, 8.0, 16.0, 32.0)
#: "onehot_steps": the one-hot steps with every background frame dropped (an encoder that also
#: recognises background, and a distance that skips it)
#: "noisy_steps" / "clean_steps": the folder's inputs / the noise-free signal (standardised per
#: whole video) with the true background frames dropped (a perfect background detector alone)
INPUTS = ("noisy", "noisy_steps", "clean", "clean_steps", "onehot", "onehot_steps")


def features_by_input(folder: Path) -> tuple[dict[str, dict[str, np.ndarray]], list, np.ndarray,
                                              dict[str, tuple[str, ...]]]:
    """The four feature kinds of every test video, the test pairs, their labels, the scripts."""
    from procalign.data.featureset import DataConfig, load_featureset
    from procalign.data.synthetic import SynthConfig
    from procalign.data.synthetic_io import from_svip
    from procalign.eval.fullres import prepare

    meta = json.loads((folder / "meta.json").read_text())
    source = meta.get("source", "")
    if not source.startswith("svip:"):
        raise ValueError(f"{folder} is not a CSV-scripted folder (meta.json source {source!r})")
    names = {f.name for f in fields(SynthConfig)}
    cfg = {k: v for k, v in meta["config"].items() if k in names}
    quiet = {"noise": 0.0, "video_nuisance": 0.0, "mixing": 0.0, "drift": 0.0, "distractor": 0.0}
    clean = {v.record.video_id: v for v in
             from_svip(source.split("svip:", 1)[1], SynthConfig(**{**cfg, **quiet})).videos}
    data = load_featureset(DataConfig(dataset="folder", root=str(folder)))
    test = {v.video_id: v for v in data.split("test")}
    vocab = 1 + max(int(clean[i].record.frame_labels.max()) for i in test)
    out: dict[str, dict[str, np.ndarray]] = {k: {} for k in INPUTS}
    for i, v in test.items():
        c = clean[i]
        background = c.record.frame_labels == 0
        if len(c.features) != len(v.features) or (
                v.step_index is not None and not np.array_equal(background, v.step_index < 0)):
            raise RuntimeError(f"the regenerated clean video {i} does not match the folder's")
        out["noisy"][i] = prepare(v.features, "standardize", 1, None)
        out["clean"][i] = prepare(c.features, "standardize", 1, None)
        out["onehot"][i] = np.eye(vocab, dtype=np.float32)[c.record.frame_labels]
        out["onehot_steps"][i] = out["onehot"][i][~background]
        out["noisy_steps"][i] = out["noisy"][i][~background]
        out["clean_steps"][i] = out["clean"][i][~background]
    same = np.array([bool(p.same) for p in data.pairs])
    scripts = {i: tuple(v.steps or ()) for i, v in test.items()}
    return out, list(data.pairs), same, scripts


def cpa_lattice_distances(feats: dict[str, np.ndarray], pairs: list, K: int, scale: float,
                          frames: int | None, batch: int = 100, **settings) -> np.ndarray:
    """CPA's Eq. 10 distance (B,) over given frame features (no encoder): (L, D) per video,
    ``frames`` evenly spread frames per clip (None: all), features multiplied by ``scale``;
    ``settings`` override LATTICE (CPAModel's lattice options). The model's temporal module
    is never called: ``CPAModel.pair`` takes embedded frames."""
    import torch

    from procalign.models.cpa import CPAModel

    unknown = set(settings) - set(LATTICE)
    if unknown:
        raise ValueError(f"unknown lattice settings {sorted(unknown)}; known: {sorted(LATTICE)}")
    dim = next(iter(feats.values())).shape[1]
    model = CPAModel(dim, steps=K, temporal="mlp", **{**LATTICE, **settings}).eval()

    def clip(x: np.ndarray) -> np.ndarray:
        return x if frames is None else x[np.linspace(0, len(x) - 1, frames).round().astype(int)]

    def pad(arrays: list[np.ndarray]):
        L = max(len(x) for x in arrays)
        out = np.zeros((len(arrays), L, dim), np.float32)
        for j, x in enumerate(arrays):
            out[j, : len(x)] = x
        return torch.from_numpy(out) * scale, torch.tensor([len(x) for x in arrays])

    d = []
    for s in range(0, len(pairs), batch):
        chunk = pairs[s : s + batch]
        F1, l1 = pad([clip(feats[p.video_id_1]) for p in chunk])
        F2, l2 = pad([clip(feats[p.video_id_2]) for p in chunk])
        with torch.no_grad():
            d.append(model.pair(F1, F2, l1, l2, K)["distance"].double().numpy())
    return np.concatenate(d)


def bounds(folder: Path, train_frames: int, done: dict | None = None) -> dict:
    """Every row of one folder; ``done``: an earlier result of the same folder whose CPA grid
    cells are reused (a grid extended later computes only its new cells)."""
    from procalign.eval import verification_auc
    from procalign.eval.fullres import FRACTIONS, fullres_distances

    feats, pairs, same, scripts = features_by_input(folder)
    res: dict = {"num_pairs": len(pairs), "train_frames": train_frames}
    differ = np.array([scripts[p.video_id_1] != scripts[p.video_id_2] for p in pairs], float)
    res["scripts_auc"] = float(verification_auc(differ, same))
    for kind in INPUTS:
        f = feats[kind]
        shortest = min(len(x) for x in f.values())
        xs, ys = [f[p.video_id_1] for p in pairs], [f[p.video_id_2] for p in pairs]
        row = {"dtw": float(verification_auc(fullres_distances("fullres_dtw", xs, ys), same))}
        row["dtw_window"] = {f"{frac:g}": float(verification_auc(
            fullres_distances("fullres_dtw_window", xs, ys, fraction=frac), same))
            for frac in FRACTIONS}
        old = ((done or {}).get(kind) or {}).get("cpa_grid", {})
        grid = {}
        t0 = time.perf_counter()
        for frames in (train_frames, None):
            for K in KS:
                if K > (frames or shortest):  # CSM needs K <= frames in every clip
                    continue
                for scale in SCALES:
                    key = f"T={frames or 'full'},K={K},scale={scale:g}"
                    if key not in old:
                        d = cpa_lattice_distances(f, pairs, K, scale, frames)
                        old[key] = float(verification_auc(d, same))
                    grid[key] = old[key]
        best = max(grid, key=grid.get)
        row.update(cpa_grid=grid, cpa_best=grid[best], cpa_best_setting=best,
                   cpa_seconds=time.perf_counter() - t0)
        print(f"  {kind}: DTW {row['dtw']:.3f}, worst window "
              f"{max(row['dtw_window'].values()):.3f}, CPA lattice (best on test) "
              f"{row['cpa_best']:.3f} at {best}", flush=True)
        if kind in VARIANT_INPUTS:  # {} when no K of VARIANT_KS fits the clips
            row["variants"] = variant_grids(f, pairs, same, train_frames,
                                            ((done or {}).get(kind) or {}).get("variants", {}),
                                            default=grid)
        res[kind] = row
    return res


def variant_grids(f: dict[str, np.ndarray], pairs: list, same: np.ndarray, frames: int,
                  done: dict, default: dict | None = None) -> dict:
    """Every VARIANTS lattice over VARIANT_KS x VARIANT_SCALES at ``frames`` per clip, the
    default lattice on the same grid beside them: ``f`` (L, D) features per video id, ``same``
    (B,) the labels of the B ``pairs``; ``done``: cells of an earlier run, reused;
    ``default``: the main grid's cells (the default lattice's, reused)."""
    from procalign.eval import verification_auc

    out = {}
    for name, settings in {DEFAULT: {}, **VARIANTS}.items():
        grid = dict((done.get(name) or {}).get("grid", {}))
        keep = set()
        for K in VARIANT_KS:
            if K > frames:  # as in the main grid: a clip of ``frames`` frames holds K steps
                continue
            for scale in VARIANT_SCALES:
                key = f"T={frames},K={K},scale={scale:g}"
                keep.add(key)
                if key not in grid and not settings and key in (default or {}):
                    grid[key] = default[key]
                if key not in grid:
                    d = cpa_lattice_distances(f, pairs, K, scale, frames, **settings)
                    grid[key] = float(verification_auc(d, same))
        grid = {k: v for k, v in grid.items() if k in keep}
        if not grid:  # no K of the grid fits these clips
            continue
        best = max(grid, key=grid.get)
        out[name] = {"grid": grid, "best": grid[best], "best_setting": best}
        print(f"    variant {name}: {grid[best]:.3f} at {best}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/bench/generalisation",
                   help="where benchmarks/generalisation.py keeps its folders (made when missing)")
    p.add_argument("--train-frames", type=int, default=38,
                   help="the clip length configs/cpa_folder.yaml picks on these folders")
    args = p.parse_args(argv)
    if not os.environ.get("PROCALIGN_DATA"):
        raise SystemExit("csv_bounds needs PROCALIGN_DATA (e.g. ../shared/data)")
    import torch

    import tables
    from generalisation import make_folder

    torch.set_num_threads(1)
    out = Path(args.out).resolve()
    path = tables.RESULTS / "csv_bounds.json"
    earlier = (json.loads(path.read_text()) if path.is_file() else {}).get("results", {})
    results = {}
    for seed in args.seeds:
        print(f"csv seed {seed}", flush=True)
        done = earlier.get(str(seed))
        if done and done.get("train_frames") != args.train_frames:
            done = None
        results[str(seed)] = bounds(make_folder("csv", seed, out), args.train_frames, done)
    # read again just before writing: runs for other seeds may have written meanwhile
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved.setdefault("results", {}).update(results)
    saved["results"] = dict(sorted(saved["results"].items()))
    saved["grid"] = {"K": list(KS), "scale": list(SCALES), "frames": [args.train_frames, "full"],
                     "variants": {"inputs": list(VARIANT_INPUTS), "K": list(VARIANT_KS),
                                  "scale": list(VARIANT_SCALES), "frames": args.train_frames,
                                  "settings": VARIANTS}}
    saved["command"] = ("PROCALIGN_DATA=../shared/data python benchmarks/csv_bounds.py --seeds "
                        + " ".join(saved["results"]))
    path.write_text(json.dumps(saved, indent=1) + "\n")
    print(tables.render("csv_bounds"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
