"""CPA sequence verification: AUC of CPA and each baseline, mean and std over seeds.

    python benchmarks/cpa_sv.py [--datasets synthetic csv] [--seeds 0 1 2] [--epochs N]
                                [--ksweep 4 6 8 11 13 15] [--quality-threads 1 2] [--out DIR]

For every dataset and seed it trains, each in its own subprocess (so peak memory is the run's
own):

* ``cpa``        - CSM + FSA (the config as shipped: ``configs/cpa_<dataset>.yaml``);
* ``fsa_only``   - FSA with uniformly split steps, no step mining, no L_step (Table 3, row 2);
* ``video``      - the task loss only (Table 3, row 1), scored with the mean-pooled L2 distance
  (a bag of frames, blind to order by construction) and with an order-aware temporal pyramid;
* ``cpa_sqrt``   - CPA with the ``sqrt_area`` block score instead of Eq. 1's mean (our ablation);

and evaluates each with the SVIP protocol (3 clips per test video, distances averaged). The CPA
run is also scored with the baselines over its own embeddings (DTW, soft-DTW divergence,
video-level L2, uniform steps) and over the untrained input features (``raw_*``). ``--ksweep``
trains CPA once per K (seed 0; Table 4). Data: ``synthetic`` is the built-in generator with the
data seed = the training seed; ``csv`` keeps CSV's real label bank, splits and 1000 official test
pairs and simulates the frames (``from_svip``; needs ``PROCALIGN_DATA``).

``--quality-threads`` adds exemplar-based quality assessment (configs/cpa_quality_synthetic.yaml)
at each thread count (training is deterministic for a fixed seed and thread count, not across
thread counts).

Timing: seconds per training epoch (mean over epochs) with 1 torch / numba thread; peak memory
is the subprocess's maximum resident set size (``resource.getrusage``). The raw rows go to
``benchmarks/results/cpa_sv.json`` (merged with earlier runs of other datasets); the tables of
docs/results.md are rendered from it by ``benchmarks/tables.py``.
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
    "video": ["loss.align=0", "loss.step=0", "eval.distances=[video_l2,pyramid_l2]",
              "eval.steps_sweep=[]"],
    "cpa_sqrt": ["model.block_score=sqrt_area", "eval.steps_sweep=[]"],
    # the paper's equal loss weights instead of the public code's 0.5 / 0.5 / 1.0
    "cpa_equal": ["loss.task=1.0", "loss.align=1.0", "loss.step=1.0", "eval.distances=[cpa]",
                  "eval.steps_sweep=[]"],
}
DEFAULT_VARIANTS = ("cpa", "fsa_only", "video", "cpa_sqrt")
QUALITY_CONFIG = "configs/cpa_quality_synthetic.yaml"
sys.path.insert(0, str(ROOT / "benchmarks"))


def one_run(config: str, run_dir: str, overrides: list[str]) -> dict:
    """Train + evaluate in this process; print one JSON line with metrics, time and memory."""
    import resource

    import numba
    import torch

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
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
        "metrics": {r["metric"]: r["value"] for r in report["metrics"]} if cfg.model.task == "quality" else {},
        "seconds_per_epoch": statistics.mean(h["seconds"] for h in history),
        "epochs": len(history),
        "wall_seconds": time.perf_counter() - t0,
        "peak_rss_mb": peak_kb / 1024,
        "num_pairs": report.get("num_pairs"),
        "data": report["data"],
        "threshold": summary.get("threshold", {}).get("threshold"),
    }


def launch(config: str, run_dir: Path, overrides: list[str], threads: int = 1) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    overrides = [*overrides, f"train.threads={threads}"]
    cmd = [sys.executable, __file__, "--one", config, str(run_dir), *overrides]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _commands(saved: dict, command: str) -> str:
    """Every invocation that contributed rows, one per line."""
    lines = [c for c in saved.get("command", "").splitlines() if c and c != command]
    return "\n".join([*lines, command])


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
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=None, help="override train.epochs")
    p.add_argument("--ksweep", nargs="*", type=int, default=[], help="K values (trained, seed 0)")
    p.add_argument("--quality-threads", nargs="*", type=int, default=[],
                   help="also run configs/cpa_quality_synthetic.yaml (3 seeds) at these thread counts")
    p.add_argument("--out", default="runs/bench/cpa_sv", help="run folders")
    args = p.parse_args(argv)
    if "csv" in args.datasets and not os.environ.get("PROCALIGN_DATA"):
        raise SystemExit(
            "the csv rows need PROCALIGN_DATA (e.g. ../shared/data); set it or drop csv"
        )
    out = Path(args.out)
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
    quality: dict = {}
    for threads in args.quality_threads:
        for seed in args.seeds:
            over = [f"train.seed={seed}", f"data.synthetic.seed={seed}"]
            r = launch(QUALITY_CONFIG, out / "quality" / f"t{threads}_s{seed}", over, threads)
            quality.setdefault(str(threads), []).append(r)
            print(f"quality threads={threads} seed {seed}: {r['metrics']}", flush=True)
    import torch

    import tables

    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "pairs": pairs,
        "threads": 1,
    }
    path = tables.RESULTS / "cpa_sv.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    for ds, runs in results.items():  # merged per dataset and variant with earlier runs
        saved.setdefault("results", {}).setdefault(ds, {}).update(runs)
    saved.setdefault("ksweep", {}).update(ksweep)
    saved.setdefault("quality", {}).update(quality)
    saved.update(seeds=args.seeds, meta={**saved.get("meta", {}), **meta, "pairs": {
        **saved.get("meta", {}).get("pairs", {}), **pairs}},
        command=_commands(saved, "PROCALIGN_DATA=../shared/data python benchmarks/cpa_sv.py "
                          + " ".join(argv)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1) + "\n")
    for name in ("cpa_sv", "cpa_ksweep", "cpa_quality"):
        print(tables.render(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
