"""LRProp ablation (the paper's Table 3) on Penn Action joints, plus phase metrics on synthetic data.

Variants, compared in one run with the same protocol:

* ``raw``        the normalised joints themselves (standardised per class), no training;
* ``same``       L_same only (an SCL-like temporal-contrastive baseline);
* ``same+prop``  L_same + lambda1 L_prop;
* ``same+sdtw``  L_same + lambda2 L_sdtw (soft-DTW divergence);
* ``all``        L_same + lambda1 L_prop + lambda2 L_sdtw (LRProp, Eq. 12).

Penn Action (``$PROCALIGN_DATA/pennaction``): one model per action on normalised 2-D joints
(mid-hip centred, torso scaled, + visibility), official train/test split, T and lambda from
``configs/lrprop_pennaction.yaml`` (Table 5). Reported: Kendall's tau, cycle-consistency,
nearest-neighbour video retrieval precision@1/@5 and verification AUC (same vs different
action). Penn Action has no phase labels here, so phase classification, progression, AP@K and
DTW-alignment accuracy come from the synthetic part (``configs/lrprop_synthetic.yaml``).

Deviations for a 2-core CPU (stated in the output): a 2-layer, 64-wide transformer instead of
7 x 256, 20 epochs at lr 1e-3 instead of 300 at 1e-4, subsampled evaluation pairs. Each (variant,
seed, action) is its own resumable run under ``--out``; results accumulate in
``results.json``, so the script can be stopped and restarted, and ``--report`` prints the table
for whatever is finished (actions done in every variant and seed).

    nice -n 10 .venv/bin/python benchmarks/lrprop_pennaction.py --out runs/bench_lrprop \\
        > runs/bench_lrprop.log 2>&1 &
    .venv/bin/python benchmarks/lrprop_pennaction.py --out runs/bench_lrprop --report
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from procalign.config import load_config
from procalign.methods.lrprop import PENN_ACTION_TCC_ACTIONS, LRPropConfig, LRPropRecipe
from procalign.train.runner import evaluate_run, train_run
from procalign.train.threads import compute

VARIANTS = {
    "raw": None,
    "same": ["loss.use_prop=false", "loss.use_sdtw=false"],
    "same+prop": ["loss.use_sdtw=false"],
    "same+sdtw": ["loss.use_prop=false"],
    "all": [],
}
#: Actions in the order they are run: a spread of T (20..80) and motion types first.
ORDER = (
    "jumping_jacks",
    "tennis_serve",
    "bowl",
    "golf_swing",
    "squat",
    "pullup",
    "baseball_pitch",
    "baseball_swing",
    "bench_press",
    "clean_and_jerk",
    "pushup",
    "situp",
    "tennis_forehand",
)
PENN_METRICS = (
    ("kendalls_tau[tau_a]", "Kendall's tau (tau_a)"),
    ("kendalls_tau[tcc]", "Kendall's tau (tcc, NaN pairs dropped)"),
    ("cycle_consistency", "cycle-consistency"),
    ("retrieval_precision@1", "retrieval P@1"),
    ("retrieval_precision@5", "retrieval P@5"),
    ("verification_auc", "verification AUC"),
)
SYNTH_METRICS = (
    ("kendalls_tau[tau_a]", "tau (tau_a)"),
    ("phase_classification@0.1[linear_svm]", "phase cls @10%"),
    ("phase_classification@1[linear_svm]", "phase cls @100%"),
    ("phase_progression", "progression R2"),
    ("ap@5", "AP@5"),
    ("dtw_alignment_accuracy", "DTW acc."),
)


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--out", default="runs/bench_lrprop", help="runs, results.json and table.md go here"
    )
    p.add_argument(
        "--actions", nargs="+", default=list(ORDER), help="Penn Action classes, in run order"
    )
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", default="0.001")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument(
        "--max-pairs", type=int, default=300, help="video pairs per class for tau / cycle"
    )
    p.add_argument("--max-queries", type=int, default=20)
    p.add_argument(
        "--max-candidates", type=int, default=20, help="test videos per label in the pool"
    )
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--no-synthetic", action="store_true", help="skip the synthetic phase-metric part"
    )
    p.add_argument("--report", action="store_true", help="only print the table of finished runs")
    return p.parse_args()


def _overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"model.dim={args.dim}",
        f"model.layers={args.layers}",
        f"model.heads={args.heads}",
        f"train.epochs={args.epochs}",
        f"optim.lr={args.lr}",
        f"train.threads={args.threads}",
        f"eval.max_pairs={args.max_pairs}",
        f"eval.max_queries={args.max_queries}",
        f"eval.max_candidates={args.max_candidates}",
    ]


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, results: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float))
    os.replace(tmp, path)


def run_one(
    recipe: LRPropRecipe, config_file: Path, overrides: list[str], variant: str, run_dir: Path
) -> dict:
    """Train (resumably) and evaluate one variant; returns per-class metrics and timings."""
    if VARIANTS[variant] is None:
        cfg = load_config(LRPropConfig, config_file, overrides)
        t0 = time.perf_counter()
        with compute(cfg.train.threads):
            report = recipe.evaluate_inputs(cfg, recipe.load_data(cfg, None, False))
        return {"per_class": report["per_class"], "eval_seconds": time.perf_counter() - t0}
    cfg = load_config(LRPropConfig, config_file, overrides + VARIANTS[variant])
    t0 = time.perf_counter()
    summary = train_run(recipe, cfg, run_dir, resume=True, progress=False)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = evaluate_run(recipe, run_dir, progress=False)
    spe = {c["label"]: c.get("seconds_per_epoch") for c in summary["parts"]}
    if any(v is None for v in spe.values()):  # trained by an earlier invocation: read its log
        for label in spe:
            log = run_dir / "classes" / label / "log.jsonl"
            secs = [
                json.loads(x)["seconds"]
                for x in log.read_text().splitlines()
                if '"epoch"' in x and '"seconds"' in x
            ]
            spe[label] = float(np.mean(secs)) if secs else None
    return {
        "per_class": report["per_class"],
        "seconds_per_epoch": spe,
        "train_seconds": train_s,
        "eval_seconds": time.perf_counter() - t0,
    }


def _fmt(values: list[float]) -> str:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"


def table(
    results: dict, part: str, metrics, seeds: list[int], variants: list[str]
) -> tuple[str, list[str]]:
    """Markdown table: rows = variants, mean ± std over seeds of the mean over classes."""
    runs = results.get(part, {})
    # classes finished in every trained variant x seed (raw has one "seed")
    keys = [(v, s) for v in variants for s in (seeds if VARIANTS[v] is not None else [0])]
    done = None
    for v, s in keys:
        classes = set(runs.get(f"{v}/seed{s}", {}).keys())
        done = classes if done is None else done & classes
    done = sorted(done or [])
    if not done:
        return "(no finished runs)", []
    header = ["variant", *[name for _, name in metrics], "s/epoch per class"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for v in variants:
        ss = seeds if VARIANTS[v] is not None else [0]
        cells = [v]
        for key, _ in metrics:
            per_seed = []
            for s in ss:
                vals = [runs[f"{v}/seed{s}"][c]["metrics"].get(key) for c in done]
                vals = [x for x in vals if x is not None and not math.isnan(x)]
                per_seed.append(float(np.mean(vals)) if vals else None)
            cells.append(_fmt(per_seed))
        if VARIANTS[v] is None:
            cells.append("–")
        else:
            spe = [
                float(np.mean([runs[f"{v}/seed{s}"][c]["seconds_per_epoch"] for c in done]))
                for s in ss
            ]
            cells.append(_fmt(spe))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), done


def main() -> int:
    args = _args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = _load(results_path)
    recipe = LRPropRecipe()
    over = _overrides(args)
    results["settings"] = {
        "model": f"transformer {args.layers} layers x {args.dim} (heads {args.heads}); paper 7 x 256",
        "epochs": args.epochs,
        "lr": args.lr,
        "seeds": args.seeds,
        "eval": f"max_pairs={args.max_pairs}, max_queries={args.max_queries}, max_candidates={args.max_candidates}",
        "threads": args.threads,
    }
    if not args.report:
        parts = (
            []
            if args.no_synthetic
            else [("synthetic", ROOT / "configs/lrprop_synthetic.yaml", [None])]
        )
        parts += [("pennaction", ROOT / "configs/lrprop_pennaction.yaml", args.actions)]
        for part, config_file, actions in parts:
            runs = results.setdefault(part, {})
            for action in actions:
                if action is not None and action not in PENN_ACTION_TCC_ACTIONS:
                    raise SystemExit(f"unknown Penn Action class {action!r}")
                for seed in args.seeds:
                    for variant in args.variants:
                        if VARIANTS[variant] is None and seed != args.seeds[0]:
                            continue  # no training: one deterministic number
                        key = f"{variant}/seed{seed if VARIANTS[variant] is not None else 0}"
                        have = runs.setdefault(key, {})
                        if action is not None and action in have:
                            continue
                        if action is None and have:
                            continue
                        extra = [f"train.seed={seed}"] + ([f"data.actions=[{action}]"] if action else [])
                        run_dir = out / "runs" / part / variant / f"seed{seed}" / (action or "all")
                        t0 = time.perf_counter()
                        rec = run_one(recipe, config_file, over + extra, variant, run_dir)
                        for label, metrics in rec["per_class"].items():
                            have[label] = {
                                "metrics": metrics,
                                "seconds_per_epoch": (rec.get("seconds_per_epoch") or {}).get(
                                    label
                                ),
                            }
                        _save(results_path, results)
                        tau = np.mean(
                            [
                                m.get("kendalls_tau[tau_a]", np.nan)
                                for m in rec["per_class"].values()
                            ]
                        )
                        print(
                            f"[{time.strftime('%H:%M:%S')}] {part} {action or ''} {key}: tau_a={tau:.3f} "
                            f"({time.perf_counter() - t0:.0f} s)",
                            flush=True,
                        )
    report = [f"settings: {json.dumps(results['settings'])}", ""]
    for part, metrics in (("pennaction", PENN_METRICS), ("synthetic", SYNTH_METRICS)):
        text, done = table(results, part, metrics, args.seeds, args.variants)
        report += [f"## {part} ({len(done)} classes: {', '.join(done)})", "", text, ""]
    text = "\n".join(report)
    (out / "table.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
