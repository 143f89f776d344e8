"""Generalisation: the methods with their folder configs against the strong model-free baselines.

    PROCALIGN_DATA=../shared/data python benchmarks/generalisation.py \
        [--datasets nuisance csv] [--seeds 0 1 2] [--methods cpa lrprop weaksvr sspl] [--out DIR]

What a user does with a dataset nobody tuned procalign for, end to end and in subprocesses:

1. ``procalign synth DIR --preset nuisance --seed S`` (the hard generator: subject offsets and
   mixing, time warps, idle gaps, shared steps, background activity, unseen test procedures) or
   ``procalign synth DIR --from-svip $PROCALIGN_DATA/svip/CSV --seed S`` (CSV's real scripts,
   splits and 1,000 official test pairs, **simulated frames**) writes a folder dataset;
2. ``procalign train cpa --config configs/cpa_folder.yaml data.root=DIR`` (T and K from the
   data, epochs by early stopping on held-out training procedures, evaluation T/K chosen on
   validation pairs) and ``procalign eval cpa``: CPA's AUC next to the full-resolution DTW /
   soft-DTW / mean-pooling baselines (settings chosen on validation pairs) on the same test
   pairs, and DTW over CPA's own frame embeddings;
3. ``procalign train lrprop --config configs/lrprop_folder.yaml data.root=DIR`` (nuisance only:
   the generator's phase labels) and ``procalign eval lrprop``: DTW-alignment accuracy and
   Kendall's tau against the raw and the per-video normalised + smoothed inputs.

No setting is chosen on test pairs. On the nuisance folder the test pairs are 600 sampled pairs
(``eval.pairs=sampled``: the folder's own pairs.csv has 152, too few for a stable AUC); on the
CSV folder they are the official 1,000. Raw rows go to ``benchmarks/results/generalisation.json``
(merged per dataset with earlier runs); ``benchmarks/tables.py`` renders docs/results.md's table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
EXTRA_EVAL = {"nuisance": ["eval.pairs=sampled", "eval.num_pairs=600"], "csv": []}
CPA_ROWS = ("cpa", "dtw", "dtw_window", "fullres_dtw", "fullres_dtw_window", "fullres_soft_dtw",
            "fullres_mean", "raw_dtw")
LRPROP_METRICS = ("dtw_alignment_accuracy", "kendalls_tau")


def sh(cmd: list[str], env: dict | None = None) -> str:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"failed ({time.perf_counter() - t0:.0f} s): {' '.join(cmd)}\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout


def procalign(*args: str) -> list[str]:
    return [sys.executable, "-m", "procalign", *args]


def make_folder(dataset: str, seed: int, out: Path) -> Path:
    folder = out / "data" / f"{dataset}_s{seed}"
    if (folder / "index.csv").is_file():
        return folder
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    if dataset == "nuisance":
        sh(procalign("synth", str(folder), "--preset", "nuisance", "--seed", str(seed), "--quiet"))
    else:
        root = Path(os.environ["PROCALIGN_DATA"]) / "svip" / "CSV"
        sh(procalign("synth", str(folder), "--from-svip", str(root), "--seed", str(seed),
                     "--quiet"))
    return folder


def clean_ceiling(dataset: str, folder: Path) -> dict:
    """Not a baseline: full-resolution DTW on the generator's noise-free signal (the same videos
    and layouts with no subject offsets, mixing, drift, noise or background activity), on the
    same test pairs the methods are scored on, with the path mean (``auc``) and with the worst
    window of the path (``window_auc``, the best of the baseline's window fractions). What the
    frames' content gives these alignment distances without any nuisance: not a bound on every
    possible verifier (session 12: the worst window beats the path mean on CSV's noise-free
    frames, so the path mean's figure was no ceiling)."""
    from dataclasses import fields

    from procalign.data.featureset import DataConfig, load_featureset
    from procalign.data.synthetic import SynthConfig, make_dataset
    from procalign.data.synthetic_io import from_svip
    from procalign.eval import verification_auc
    from procalign.eval import protocols as P
    from procalign.eval.fullres import fullres_distances, prepare

    meta = json.loads((folder / "meta.json").read_text())
    names = {f.name for f in fields(SynthConfig)}
    cfg = {k: v for k, v in meta["config"].items() if k in names}
    clean_cfg = SynthConfig(**{**cfg, "noise": 0.0, "video_nuisance": 0.0, "mixing": 0.0,
                               "drift": 0.0, "distractor": 0.0})
    source = meta.get("source", "")
    clean = (from_svip(source.split("svip:", 1)[1], clean_cfg) if source.startswith("svip:")
             else make_dataset(clean_cfg))
    feats = {v.record.video_id: v.features for v in clean.videos}
    data = load_featureset(DataConfig(dataset="folder", root=str(folder)))
    sampled = "eval.pairs=sampled" in EXTRA_EVAL[dataset]
    num = int(next((a.split("=")[1] for a in EXTRA_EVAL[dataset] if a.startswith("eval.num_pairs=")),
                   400))
    pairs, _, _ = P.evaluation_pairs(data.split("test"), [] if sampled else data.pairs,
                                     "sampled" if sampled else "auto", num, "prefer_same_task", 7)
    same = np.array([bool(p.same) for p in pairs])
    for v in data.split("test"):  # the clean videos are the folder's, frame for frame
        if len(feats[v.video_id]) != len(v.features):
            raise RuntimeError(f"clean video {v.video_id} does not match the folder's")
    from procalign.eval.fullres import FRACTIONS

    out, win = {}, {}
    for norm in ("center", "standardize"):
        f = {i: prepare(x, norm, 1) for i, x in feats.items()}
        xs, ys = [f[p.video_id_1] for p in pairs], [f[p.video_id_2] for p in pairs]
        out[norm] = float(verification_auc(fullres_distances("fullres_dtw", xs, ys), same))
        for frac in FRACTIONS:
            d = fullres_distances("fullres_dtw_window", xs, ys, fraction=frac)
            win[f"{norm},frac={frac:g}"] = float(verification_auc(d, same))
    return {"auc": max(out.values()), "by_norm": out, "window_auc": max(win.values()),
            "window_by_setting": win, "num_pairs": len(pairs)}


def run_cpa(dataset: str, folder: Path, seed: int, out: Path) -> dict:
    run = out / "runs" / f"cpa_{dataset}_s{seed}"
    t0 = time.perf_counter()
    sh(procalign("train", "cpa", "--config", "configs/cpa_folder.yaml", f"data.root={folder}",
                 f"train.seed={seed}", "train.threads=1", "--out", str(run), "--quiet"))
    train_s = time.perf_counter() - t0
    sh(procalign("eval", "cpa", "--run", str(run), "--quiet", *EXTRA_EVAL[dataset]))
    report = json.loads((run / "eval.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    auc = {}
    for r in report["metrics"]:
        if r["metric"] == "auc" and r["distance"] in CPA_ROWS and "@K=" not in r["variant"]:
            auc.setdefault(r["distance"], {"value": r["value"], "variant": r["variant"]})
    part = summary["parts"][0]
    return {
        "auc": auc,
        "verdict": report.get("verdict", {}).get("line"),
        "chosen_baselines": report.get("baselines", {}).get("chosen"),
        "auto": summary.get("auto"),
        "eval_setting": summary.get("eval_setting"),
        "selected_epoch": (part.get("selected") or {}).get("epoch"),
        "epochs_done": part.get("epochs_done"),
        "num_pairs": report.get("num_pairs"),
        "train_seconds": train_s,
    }


def train_eval(method: str, dataset: str, folder: Path, seed: int, out: Path,
               eval_args: list[str] = ()) -> tuple[dict, dict, float]:
    """``procalign train METHOD --config configs/METHOD_folder.yaml`` then ``eval``:
    (eval report, summary, training seconds)."""
    run = out / "runs" / f"{method}_{dataset}_s{seed}"
    t0 = time.perf_counter()
    sh(procalign("train", method, "--config", f"configs/{method}_folder.yaml",
                 f"data.root={folder}", f"train.seed={seed}", "train.threads=1", "--out",
                 str(run), "--quiet"))
    train_s = time.perf_counter() - t0
    sh(procalign("eval", method, "--run", str(run), "--quiet", *eval_args))
    return (json.loads((run / "eval.json").read_text()),
            json.loads((run / "summary.json").read_text()), train_s)


def run_weaksvr(dataset: str, folder: Path, seed: int, out: Path) -> dict:
    """WeakSVR with its folder config on the same test pairs as CPA (its own report carries the
    same full-resolution baselines, chosen on its own validation pairs)."""
    report, summary, train_s = train_eval("weaksvr", dataset, folder, seed, out,
                                          EXTRA_EVAL[dataset])
    auc = {}
    for r in report["metrics"]:
        if r["metric"] == "auc":
            auc.setdefault(r["distance"], {"value": r["value"], "variant": r["variant"]})
    return {"auc": auc, "verdict": report.get("verdict", {}).get("line"),
            "margin": report.get("verdict", {}).get("margin"),
            "chosen_baselines": report.get("baselines", {}).get("chosen"),
            "auto": summary.get("auto"), "num_pairs": report.get("num_pairs"),
            "train_seconds": train_s}


def run_sspl(dataset: str, folder: Path, seed: int, out: Path) -> dict:
    """Multi-task procedure learning with its folder config (k from the `steps` column, tasks
    from the `task` column): frame F1 / IoU of the key-steps on the test videos against the
    model-free rows of its own report (uniform segments, random, the initial k-means + subset
    selection teacher on the inputs)."""
    report, summary, train_s = train_eval("sspl", dataset, folder, seed, out)
    rows: dict[str, dict[str, float]] = {}
    for r in report["metrics"]:
        if r["metric"] in ("f1", "iou", "mof", "task_accuracy"):
            name = r["variant"].split(",k=")[0]
            rows.setdefault(name, {}).setdefault(r["metric"], r["value"])
    part = summary["parts"][0]
    return {"rows": rows, "k": report.get("k"), "auto": summary.get("auto"),
            "selected_epoch": (part.get("selected") or {}).get("epoch"),
            "val_videos": part.get("val_videos"), "train_seconds": train_s}


def run_lrprop(dataset: str, folder: Path, seed: int, out: Path) -> dict:
    run = out / "runs" / f"lrprop_{dataset}_s{seed}"
    t0 = time.perf_counter()
    sh(procalign("train", "lrprop", "--config", "configs/lrprop_folder.yaml",
                 f"data.root={folder}", f"train.seed={seed}", "train.threads=1", "--out",
                 str(run), "--quiet"))
    train_s = time.perf_counter() - t0
    sh(procalign("eval", "lrprop", "--run", str(run), "--quiet"))
    report = json.loads((run / "eval.json").read_text())
    rows: dict[str, dict[str, float]] = {}
    for r in report["metrics"]:
        v = r["variant"]
        if r["metric"] not in LRPROP_METRICS or "mean_of" not in v:
            continue
        if r["metric"] == "kendalls_tau" and "tau_a" not in v:
            continue
        control = "real"
        for c in ("gap_static", "gap_shuffled", "static", "shuffled"):
            if f"control={c}" in v:
                control = c
                break
        rows.setdefault(r["model"], {})[f"{r['metric']}@{control}"] = r["value"]
    summary = json.loads((run / "summary.json").read_text())
    return {"rows": rows, "baselines": report.get("baselines", {}).get("chosen"),
            "auto": summary.get("auto"), "train_seconds": train_s}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["nuisance", "csv"], choices=sorted(EXTRA_EVAL))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["cpa", "lrprop", "weaksvr", "sspl"],
                   choices=["cpa", "lrprop", "weaksvr", "sspl"])
    p.add_argument("--out", default="runs/bench/generalisation")
    args = p.parse_args(argv)
    if "csv" in args.datasets and not os.environ.get("PROCALIGN_DATA"):
        raise SystemExit("the csv rows need PROCALIGN_DATA (e.g. ../shared/data)")
    out = Path(args.out).resolve()
    import tables

    path = tables.RESULTS / "generalisation.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for ds in args.datasets:
        results: dict[str, list] = {}
        for seed in args.seeds:
            folder = make_folder(ds, seed, out)
            c = clean_ceiling(ds, folder)
            results.setdefault("ceiling", []).append(c)
            print(f"{ds} seed {seed} DTW on the noise-free signal: path mean {c['auc']:.3f}, "
                  f"worst window {c['window_auc']:.3f}", flush=True)
            if "cpa" in args.methods:
                r = run_cpa(ds, folder, seed, out)
                results.setdefault("cpa", []).append(r)
                print(f"{ds} seed {seed} cpa: " + ", ".join(
                    f"{k} {v['value']:.3f}" for k, v in r["auc"].items())
                    + f" | T/K {r['eval_setting'] and (r['eval_setting']['num_frames'], r['eval_setting']['steps'])}"
                    f" | {r['train_seconds']:.0f} s", flush=True)
            if "weaksvr" in args.methods:
                r = run_weaksvr(ds, folder, seed, out)
                results.setdefault("weaksvr", []).append(r)
                print(f"{ds} seed {seed} weaksvr: {r['verdict']} | {r['train_seconds']:.0f} s",
                      flush=True)
            if "sspl" in args.methods and ds == "nuisance":  # CSV's test tasks are unseen:
                # a multi-task model's key-step states belong to training tasks
                r = run_sspl(ds, folder, seed, out)
                results.setdefault("sspl", []).append(r)
                print(f"{ds} seed {seed} sspl: " + ", ".join(
                    f"{k} f1 {v.get('f1', float('nan')):.3f}" for k, v in r["rows"].items()
                    if "f1" in v) + f" | {r['train_seconds']:.0f} s", flush=True)
            if "lrprop" in args.methods and ds == "nuisance":
                r = run_lrprop(ds, folder, seed, out)
                results.setdefault("lrprop", []).append(r)
                print(f"{ds} seed {seed} lrprop: {json.dumps(r['rows'])}", flush=True)
        saved.setdefault("results", {}).setdefault(ds, {}).update(results)
    import torch

    saved["meta"] = {"machine": f"{platform.processor() or platform.machine()}, "
                                f"{os.cpu_count()} cores (shared)", "torch": torch.__version__,
                     "threads": 1}
    saved["seeds"] = args.seeds
    command = "PROCALIGN_DATA=../shared/data python benchmarks/generalisation.py " + " ".join(argv)
    lines = [c for c in saved.get("command", "").splitlines() if c and c != command]
    saved["command"] = "\n".join([*lines, command])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    print(tables.render("generalisation"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
