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

Every frame-alignment metric is also computed on two controls of the same test videos
(``static``: every frame replaced by the video's middle frame; ``shuffled``: frames permuted),
and the tables show the gap real - control: a model that reads the frame index through its
position encodings keeps its tau on static input. ``--models positions no_positions`` trains
every variant with and without the transformer's position encodings.

Video-level retrieval and verification are label-blind: after the per-action runs of a (model,
variant, seed), every video (query or candidate) is embedded by *all* trained action models,
each L2-normalised, concatenated; nothing depends on a video's label.

Deviations for a 2-core CPU (stated in the output): a 2-layer, 64-wide transformer instead of
7 x 256, 20 epochs at lr 1e-3 instead of 300 at 1e-4, subsampled evaluation pairs. Each (model,
variant, seed, action) is its own resumable run under ``--out``; raw rows accumulate in
``benchmarks/results/lrprop.json`` (rendered by ``benchmarks/tables.py``), so the script can be
stopped and restarted, and ``--report`` prints the tables.

    PROCALIGN_DATA=../shared/data nice -n 10 .venv/bin/python benchmarks/lrprop_pennaction.py \\
        --actions jumping_jacks tennis_serve golf_swing > runs/bench_lrprop.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
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
    # L_sdtw not divided by T (our default divides it, so Table 5's lambda2 is on another scale)
    "all_sdtw_unscaled": ["loss.sdtw_normalize=false"],
}
DEFAULT_VARIANTS = ("raw", "same", "same+prop", "same+sdtw", "all")
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
KEEP = {
    "kendalls_tau[tau_a]", "kendalls_tau[tcc]", "cycle_consistency", "retrieval_precision@1",
    "retrieval_precision@5", "verification_auc", "phase_classification@0.1[linear_svm]",
    "phase_classification@1[linear_svm]", "phase_progression", "ap@5[carl]",
    "dtw_alignment_accuracy",
}
MODELS = {"positions": [], "no_positions": ["model.positions=false"]}


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/bench_lrprop", help="run folders")
    p.add_argument("--actions", nargs="+", default=list(ORDER), help="Penn Action classes, in run order")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--side-by-side", action="store_true",
                   help="(re)compute the video-level rows with the previous rule (the query's class "
                   "model) beside the label-blind ones, retraining runs whose folders are gone")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", default="0.001")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-pairs", type=int, default=300, help="video pairs per class for tau / cycle")
    p.add_argument("--max-queries", type=int, default=10)
    p.add_argument("--max-candidates", type=int, default=10, help="test videos per label in the pool")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-synthetic", action="store_true", help="skip the synthetic phase-metric part")
    p.add_argument("--no-penn", action="store_true", help="skip the Penn Action part")
    p.add_argument("--report", action="store_true", help="only print the tables")
    return p.parse_args()


def _overrides(args: argparse.Namespace) -> list[str]:
    return [
        f"model.dim={args.dim}", f"model.layers={args.layers}", f"model.heads={args.heads}",
        f"train.epochs={args.epochs}", f"optim.lr={args.lr}", f"train.threads={args.threads}",
        f"eval.max_pairs={args.max_pairs}", f"eval.max_queries={args.max_queries}",
        f"eval.max_candidates={args.max_candidates}", "eval.raw_baseline=false",
    ]


def _keep(per: dict) -> dict:
    out = {}
    for k, v in per.items():
        base = k.split("@gap_")[0].split("@static")[0].split("@shuffled")[0]
        if base in KEEP and v is not None and math.isfinite(v):
            out[k] = float(v)
    return out


def run_one(recipe, config_file: Path, overrides: list[str], variant: str, run_dir: Path) -> dict:
    """Train (resumably) and evaluate one variant -> {label: metrics}, seconds per epoch."""
    if VARIANTS[variant] is None:
        cfg = load_config(LRPropConfig, config_file, overrides)
        with compute(cfg.train.threads):
            report = recipe.evaluate_inputs(cfg, recipe.load_data(cfg, None, False))
        return {"per_class": report["per_class"], "seconds_per_epoch": {}}
    cfg = load_config(LRPropConfig, config_file, overrides + VARIANTS[variant])
    summary = train_run(recipe, cfg, run_dir, resume=True, progress=False)
    report = evaluate_run(recipe, run_dir, progress=False)
    spe = {}
    for part in summary["parts"]:
        log = run_dir / part["part"] / "log.jsonl"
        records = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
        secs = [r["seconds"] for r in records if r.get("event") == "epoch"]
        spe[part["label"]] = float(np.mean(secs)) if secs else None
    return {"per_class": report["per_class"], "seconds_per_epoch": spe}


def label_blind_video_level(recipe, config_file: Path, overrides: list[str], run_dirs: dict) -> dict:
    """Retrieval / verification with every video embedded by every trained action model."""
    from procalign.eval import protocols as P
    from procalign.methods.lrprop import slug
    from procalign.train.runner import load_run

    models, cfg = {}, None
    for label, run_dir in run_dirs.items():
        cfg, _, ms = load_run(recipe, run_dir)
        models[f"classes/{slug(label)}"] = ms[f"classes/{slug(label)}"]
    cfg = load_config(LRPropConfig, config_file, overrides)
    classes = list(run_dirs)
    with compute(cfg.train.threads):
        data = recipe.load_data(cfg, None, False)
        embed = recipe.label_blind(cfg, models, {"classes": classes})
        pool = []
        for lab in sorted({v.label for v in data.videos}):
            pool += sorted(data.split("test", lab), key=lambda v: v.video_id)[: cfg.eval.max_candidates]
        queries = [q for c in classes for q in data.split("test", c)[: cfg.eval.max_queries]]
        res = P.video_level(queries, pool, embed, distance=cfg.eval.distance,
                            normalize=cfg.eval.normalize, retrieval_ks=cfg.eval.retrieval_ks)
        out = res["per_label"]
        # the previous rule, for the side-by-side comparison only: every candidate embedded by
        # the model of the *query's* label (that choice reads the label: issue 20's leak)
        for c in classes:
            key = f"classes/{slug(c)}"
            own = recipe.label_blind(cfg, {key: models[key]}, {"classes": [c]})
            q = [v for v in queries if v.label == c]
            old = P.video_level(q, pool, own, distance=cfg.eval.distance,
                                normalize=cfg.eval.normalize, retrieval_ks=cfg.eval.retrieval_ks)
            out.setdefault(c, {}).update(
                {f"query_class_model/{k}": v for k, v in old["per_label"].get(c, {}).items()})
    return out


def main() -> int:
    args = _args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tables

    path = tables.RESULTS / "lrprop.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    command = "PROCALIGN_DATA=../shared/data python benchmarks/lrprop_pennaction.py " + " ".join(
        sys.argv[1:]
    )
    earlier = [c for c in saved.get("command", "").splitlines() if c and c != command]
    saved.update(
        command="\n".join([*earlier, command]),
        seeds=list(dict.fromkeys([*saved.get("seeds", []), *args.seeds])),
        models=list(dict.fromkeys([*saved.get("models", []), *args.models])),
        settings={"model": f"transformer {args.layers} x {args.dim} (heads {args.heads}); paper 7 x 256",
                  "epochs": args.epochs, "lr": args.lr, "threads": args.threads,
                  "eval": f"max_pairs={args.max_pairs}, max_queries={args.max_queries}, "
                  f"max_candidates={args.max_candidates}"},
    )
    results = saved.setdefault("results", {})
    recipe = LRPropRecipe()
    over = _overrides(args)
    parts = [] if args.no_synthetic else [("synthetic", ROOT / "configs/lrprop_synthetic.yaml", [None])]
    if not args.no_penn:
        parts += [("pennaction", ROOT / "configs/lrprop_pennaction.yaml", args.actions)]
    for part, config_file, actions in ([] if args.report else parts):
        runs = results.setdefault(part, {})
        for model in args.models:
            for variant in args.variants:
                if VARIANTS[variant] is None and model != args.models[0]:
                    continue  # no training: one set of numbers
                for seed in args.seeds if VARIANTS[variant] is not None else [0]:
                    key = f"{args.models[0] if VARIANTS[variant] is None else model}/{variant}/seed{seed}"
                    have = runs.setdefault(key, {})
                    extra = [f"train.seed={seed}", *MODELS[model]]
                    run_dirs = {}
                    for action in actions:
                        if action is not None and action not in PENN_ACTION_TCC_ACTIONS:
                            raise SystemExit(f"unknown Penn Action class {action!r}")
                        sel = [f"data.actions=[{action}]"] if action else []
                        run_dir = out / "runs" / part / model / variant / f"seed{seed}" / (action or "all")
                        run_dirs[action] = run_dir
                        redo = args.side_by_side and not (run_dir / "summary.json").is_file()
                        if ((action in have) or (action is None and have)) and not redo:
                            continue
                        t0 = time.perf_counter()
                        rec = run_one(recipe, config_file, over + extra + sel, variant, run_dir)
                        for label, metrics in rec["per_class"].items():
                            have[label] = {**_keep(metrics),
                                           "seconds_per_epoch": rec["seconds_per_epoch"].get(label)}
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_text(json.dumps(saved, indent=1) + "\n")
                        tau = np.mean([m.get("kendalls_tau[tau_a]", np.nan) for m in rec["per_class"].values()])
                        print(f"[{time.strftime('%H:%M:%S')}] {part} {action or ''} {key}: tau_a={tau:.3f} "
                              f"({time.perf_counter() - t0:.0f} s)", flush=True)
                    if part == "pennaction" and VARIANTS[variant] is not None and len(run_dirs) > 1 \
                            and (not have.get("_label_blind") or (
                                args.side_by_side and not have["_label_blind"].get("side_by_side"))):
                        video = label_blind_video_level(recipe, config_file, over + extra, run_dirs)
                        for label, res in video.items():
                            have.setdefault(label, {}).update(res)
                        have["_label_blind"] = {"models": len(run_dirs), "side_by_side": True}
                        path.write_text(json.dumps(saved, indent=1) + "\n")
    for name in ("lrprop_penn", "lrprop_synthetic"):
        try:
            print(tables.render(name))
        except (KeyError, FileNotFoundError) as exc:
            print(f"{name}: {exc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
