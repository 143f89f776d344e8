"""CPA sequence verification: AUC of CPA and each baseline, mean and std over seeds.

    python benchmarks/cpa_sv.py [--datasets synthetic csv] [--seeds 0 1 2] [--epochs N]
                                [--ksweep 3 4 5 6 7 8] [--out DIR] [--markdown FILE]

For every dataset and seed it trains, each in its own subprocess (so peak memory is the run's
own):

* ``cpa``        - CSM + FSA (the config as shipped: ``configs/cpa_<dataset>.yaml``);
* ``fsa_only``   - FSA with uniformly split steps, no step mining, no L_step (Table 3, row 2);
* ``video``      - the task loss only, video-level mean-pooled L2 distance (Table 3, row 1);
* ``cpa_sqrt``   - CPA with the ``sqrt_area`` block score instead of Eq. 1's mean (our ablation);

and evaluates each with the SVIP protocol (3 clips per test video, distances averaged). The CPA
run is also scored with the baselines over its own embeddings (DTW, soft-DTW divergence,
video-level L2, uniform steps) and over the untrained input features (``raw_*``). ``--ksweep``
trains CPA once per K (seed 0; Table 4). Data: ``synthetic`` is the built-in generator with the
data seed = the training seed; ``csv`` keeps CSV's real label bank, splits and 1000 official test
pairs and simulates the frames (``from_svip``; needs ``PROCALIGN_DATA``).

Timing: seconds per training epoch (mean over epochs) with 1 torch / numba thread; peak memory
is the subprocess's maximum resident set size (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"synthetic": "configs/cpa_synthetic.yaml", "csv": "configs/cpa_csv.yaml"}
VARIANTS = {
    "cpa": [],
    "fsa_only": ["model.step_mining=uniform", "loss.step=0", "eval.steps_sweep=[]"],
    "video": ["loss.align=0", "loss.step=0", "eval.distances=[video_l2]", "eval.steps_sweep=[]"],
    "cpa_sqrt": ["model.block_score=sqrt_area", "eval.steps_sweep=[]"],
}
LABELS = {
    ("cpa", "cpa"): "CPA: CSM + FSA (trained, Eq. 1 mean block score)",
    ("cpa_sqrt", "cpa"): "CPA, sqrt_area block score (trained)",
    ("fsa_only", "fsa_uniform"): "FSA only, uniform steps (trained without CSM)",
    ("video", "video_l2"): "video-level L2 (trained with the task loss only)",
    ("cpa", "fsa_uniform"): "CPA embeddings + uniform steps",
    ("cpa", "dtw"): "CPA embeddings + DTW",
    ("cpa", "soft_dtw"): "CPA embeddings + soft-DTW divergence",
    ("cpa", "video_l2"): "CPA embeddings + video-level L2",
    ("cpa", "raw_dtw"): "input features + DTW (untrained)",
    ("cpa", "raw_video_l2"): "input features + video-level L2 (untrained)",
}


def one_run(config: str, run_dir: str, overrides: list[str]) -> dict:
    """Train + evaluate in this process; print one JSON line with metrics, time and memory."""
    import resource

    import numba
    import torch

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    from procalign.config import load_config
    from procalign.methods import load_recipes
    from procalign.train.runner import evaluate_run, train_run

    recipe = load_recipes().build("cpa")
    cfg = load_config(recipe.config_cls, config, overrides)
    t0 = time.perf_counter()
    summary = train_run(recipe, cfg, run_dir, resume=False, progress=False)
    report = evaluate_run(recipe, run_dir, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    auc = {r["distance"]: r["value"] for r in report["metrics"] if r["metric"] == "auc"}
    wdr = {r["distance"]: r["value"] for r in report["metrics"] if r["metric"] == "wdr"}
    history = json.loads((Path(run_dir) / "history.json").read_text())
    return {
        "auc": auc,
        "wdr": wdr,
        "seconds_per_epoch": statistics.mean(h["seconds"] for h in history),
        "epochs": len(history),
        "wall_seconds": time.perf_counter() - t0,
        "peak_rss_mb": peak_kb / 1024,
        "num_pairs": report["num_pairs"],
        "data": report["data"],
        "threshold": summary.get("threshold", {}).get("threshold"),
    }


def launch(config: str, run_dir: Path, overrides: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    cmd = [sys.executable, __file__, "--one", config, str(run_dir), *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(values: list[float]) -> str:
    if not values:
        return "-"
    m = statistics.mean(values)
    s = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def markdown(results: dict, seeds: list[int], ksweep: dict, meta: dict) -> str:
    lines = [
        "| dataset | method / distance | AUC % (mean ± std) | WDR | s / epoch (median) "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    trained = {
        ("cpa", "cpa"),
        ("cpa_sqrt", "cpa"),
        ("fsa_only", "fsa_uniform"),
        ("video", "video_l2"),
    }
    for ds, runs in results.items():
        for (variant, dist), label in LABELS.items():
            if variant not in runs:
                continue
            aucs = [r["auc"][dist] for r in runs[variant] if dist in r["auc"]]
            wdrs = [r["wdr"][dist] for r in runs[variant] if dist in r.get("wdr", {})]
            wdr = f"{statistics.mean(wdrs):.2f}" if wdrs else "-"
            if (variant, dist) in trained:
                spe = statistics.median(r["seconds_per_epoch"] for r in runs[variant])
                mem = max(r["peak_rss_mb"] for r in runs[variant])
                cost = f"{spe:.2f} | {mem:.0f}"
            else:
                cost = "(CPA run) | "
            lines.append(f"| {ds} | {label} | {fmt(aucs)} | {wdr} | {cost} |")
    out = ["\n".join(lines), ""]
    if ksweep:
        out.append("K sweep (CPA trained per K, seed 0; AUC %):\n")
        for ds, per_k in ksweep.items():
            ks = sorted(per_k, key=int)
            out.append(f"| {ds} | " + " | ".join(f"K={k}" for k in ks) + " |")
            out.append("|---|" + "---|" * len(ks))
            out.append("| AUC | " + " | ".join(f"{100 * per_k[k]:.1f}" for k in ks) + " |")
            out.append("")
    out.append(
        f"Seeds {seeds}; {meta['machine']}; torch {meta['torch']}; 1 thread; "
        f"pairs scored: {meta['pairs']}."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--one":
        print(json.dumps(one_run(argv[1], argv[2], argv[3:])))
        return 0
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--datasets", nargs="+", default=["synthetic", "csv"], choices=sorted(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--ksweep", nargs="*", type=int, default=[], help="K values (trained, seed 0)")
    p.add_argument("--out", default="runs/bench/cpa_sv", help="run folders and results.json")
    p.add_argument("--markdown", default=None, help="also write the table to this file")
    p.add_argument("--table-only", action="store_true", help="re-print the table of --out")
    args = p.parse_args(argv)
    if "csv" in args.datasets and not os.environ.get("PROCALIGN_DATA"):
        raise SystemExit(
            "the csv rows need PROCALIGN_DATA (e.g. ../shared/data); set it or drop csv"
        )
    out = Path(args.out)
    if args.table_only:
        saved = json.loads((out / "results.json").read_text())
        table = markdown(saved["results"], saved["seeds"], saved["ksweep"], saved["meta"])
        print(table)
        if args.markdown:
            Path(args.markdown).write_text(table + "\n")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    ksweep: dict = {}
    pairs: dict = {}
    for ds in args.datasets:
        results[ds] = {}
        for variant in args.variants:
            for seed in args.seeds:
                over = [f"train.seed={seed}", *VARIANTS[variant]]
                over.append(f"data.synthetic.seed={seed}")  # data seed = training seed
                if args.epochs:
                    over.append(f"train.epochs={args.epochs}")
                r = launch(CONFIGS[ds], out / ds / f"{variant}_s{seed}", over)
                results[ds].setdefault(variant, []).append(r)
                pairs[ds] = r["num_pairs"]
                print(
                    f"{ds} {variant} seed {seed}: AUC "
                    + ", ".join(f"{k} {v:.3f}" for k, v in r["auc"].items())
                    + f" | {r['seconds_per_epoch']:.2f} s/epoch, {r['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
        for k in args.ksweep:
            over = [
                f"model.steps={k}",
                "eval.distances=[cpa]",
                "eval.steps_sweep=[]",
                "train.seed=0",
                "data.synthetic.seed=0",
            ]
            if args.epochs:
                over.append(f"train.epochs={args.epochs}")
            r = launch(CONFIGS[ds], out / ds / f"k{k}", over)
            ksweep.setdefault(ds, {})[str(k)] = r["auc"]["cpa"]
            print(f"{ds} K={k}: AUC {r['auc']['cpa']:.3f}", flush=True)
    import torch

    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "pairs": pairs,
    }
    (out / "results.json").write_text(
        json.dumps(
            {"results": results, "ksweep": ksweep, "seeds": args.seeds, "meta": meta}, indent=2
        )
    )
    table = markdown(results, args.seeds, ksweep, meta)
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
