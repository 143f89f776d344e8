"""Generalisation: the methods with their folder configs against the strong model-free baselines.

    PROCALIGN_DATA=../shared/data python benchmarks/generalisation.py \
        [--datasets nuisance csv] [--seeds 0 1 2] [--methods cpa lrprop weaksvr] [--out DIR]

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
EXTRA_EVAL = {"nuisance": ["eval.pairs=sampled", "eval.num_pairs=600"], "csv": []}
CPA_ROWS = ("cpa", "dtw", "fullres_dtw", "fullres_soft_dtw", "fullres_mean", "raw_dtw")
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


def run_weaksvr(dataset: str, folder: Path, seed: int, out: Path) -> dict:
    """WeakSVR with its folder config on the same test pairs as CPA (its own report carries the
    same full-resolution baselines, chosen on its own validation pairs)."""
    run = out / "runs" / f"weaksvr_{dataset}_s{seed}"
    t0 = time.perf_counter()
    sh(procalign("train", "weaksvr", "--config", "configs/weaksvr_folder.yaml",
                 f"data.root={folder}", f"train.seed={seed}", "train.threads=1", "--out",
                 str(run), "--quiet"))
    train_s = time.perf_counter() - t0
    sh(procalign("eval", "weaksvr", "--run", str(run), "--quiet", *EXTRA_EVAL[dataset]))
    report = json.loads((run / "eval.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    auc = {}
    for r in report["metrics"]:
        if r["metric"] == "auc":
            auc.setdefault(r["distance"], {"value": r["value"], "variant": r["variant"]})
    return {"auc": auc, "verdict": report.get("verdict", {}).get("line"),
            "margin": report.get("verdict", {}).get("margin"),
            "chosen_baselines": report.get("baselines", {}).get("chosen"),
            "auto": summary.get("auto"), "num_pairs": report.get("num_pairs"),
            "train_seconds": train_s}


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
    p.add_argument("--methods", nargs="+", default=["cpa", "lrprop", "weaksvr"],
                   choices=["cpa", "lrprop", "weaksvr"])
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
