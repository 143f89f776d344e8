"""``procalign demo``: the main job. Trains CPA on built-in synthetic procedures and reports.

In a few minutes on 2 CPU cores it

1. generates a synthetic procedural dataset (tasks whose procedures differ only in step order,
   or in one step; background, speed changes, per-video nuisance);
2. trains CPA (collaborative step mining + frame-to-step alignment) and, in the same harness,
   the two ablations of CPA's Table 3: frame-to-step alignment with uniformly split steps (no
   step mining) and the video-level model (task loss only, mean-pooled L2 distance); plus CPA
   with the public code's sum/sqrt(area) block score instead of Eq. 1's mean;
3. evaluates all of them with the SVIP protocol (3 clips per test video, distances averaged),
   together with DTW, soft-DTW and video-level distances over the same embeddings and over the
   untrained input features;
4. writes ``report.md`` (table, notes, plots) and ``report.json`` into ``--out``: the mined steps
   (relational matrix with blocks) and the frame-to-step posterior (``dp.step_marginals``) for a
   positive and a negative test pair, before and after training.

The CPA run folder (``--out``/runs/cpa) works with ``procalign verify A B --run ...`` and
``procalign eval cpa --run ...``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train CPA on built-in synthetic data, compare with baselines, write a report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--seed", type=int, default=0, help="data and training seed")
    p.add_argument("--epochs", type=int, default=20, help="training epochs per model")
    p.add_argument("-k", "--steps", type=int, default=6, help="steps K to mine (default 6)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch/numba threads (1 is fastest on a busy 2-core machine)",
    )
    p.add_argument("--quick", action="store_true", help="tiny data and 2 epochs (smoke test)")
    p.add_argument("--no-resume", action="store_true", help="retrain even if runs exist")
    p.set_defaults(func=run)


def _config(args: argparse.Namespace, overrides: list[str]):
    from procalign.config import load_config
    from procalign.methods.cpa import CPAConfig

    synth = (
        "{num_tasks: 3, procedures_per_task: 4, videos_per_procedure: 20, num_frames: 48, "
        f"dim: 64, steps_per_procedure: 5, seed: {args.seed}}}"
    )
    base = [
        f"data.synthetic={synth}",
        "data.num_frames=16",
        "data.pairs_per_epoch=256",
        "eval.pairs=sampled",
        "eval.num_pairs=600",
        f"model.steps={args.steps}",
        f"train.epochs={args.epochs}",
        f"train.seed={args.seed}",
        "eval.steps_sweep=[]",
    ]
    if args.quick:
        base += [
            (
                "data.synthetic={num_tasks: 2, procedures_per_task: 2, videos_per_procedure: 8, "
                f"num_frames: 32, dim: 32, steps_per_procedure: 4, seed: {args.seed}}}"
            ),
            "data.pairs_per_epoch=32",
            "eval.num_pairs=40",
            "data.threshold_pairs=40",
            "train.epochs=2",
            "model.temporal_args.dim=32",
        ]
    return load_config(CPAConfig, None, base + overrides)


VARIANTS = {
    "cpa": [],
    "fsa_only": ["model.step_mining=uniform", "loss.step=0", "eval.distances=[fsa_uniform]"],
    "video": ["loss.align=0", "loss.step=0", "eval.distances=[video_l2]"],
    "cpa_sqrt": ["model.block_score=sqrt_area", "eval.distances=[cpa]"],
}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from procalign.methods import load_recipes
    from procalign.train.runner import evaluate_run, load_run, train_run
    from procalign.train.threads import compute
    from procalign.viz import cpa_demo as R

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipes().build("cpa")
    base_cfg = _config(args, [])
    print(f"[demo] synthetic data (seed {args.seed}) ...", flush=True)
    with compute(max(1, args.threads)):
        vs = recipe.load_data(base_cfg, None, False)
        n_train = len(vs.split("train"))
        print(
            f"[demo] {len(vs.videos)} videos ({n_train} train), T={base_cfg.data.num_frames} "
            f"frames per clip, K={base_cfg.model.steps}",
            flush=True,
        )
        results: dict = {}
        runs: dict = {}
        for name, over in VARIANTS.items():
            cfg = _config(args, over)
            run_dir = out / "runs" / name
            print(f"[demo] training {name} ({cfg.train.epochs} epochs) ...", flush=True)
            t0 = time.perf_counter()
            summary = train_run(recipe, cfg, run_dir, resume=not args.no_resume, progress=True, data=vs)
            report = evaluate_run(recipe, run_dir, progress=False, data=vs)
            results[name] = {"summary": summary, "report": report, "seconds": time.perf_counter() - t0}
            runs[name] = run_dir
            auc = {r["distance"]: r["value"] for r in report["metrics"] if r["metric"] == "auc"}
            print(
                f"[demo]   {name}: "
                + ", ".join(f"AUC[{k}] {v:.3f}" for k, v in auc.items())
                + f"  ({results[name]['seconds']:.0f} s)",
                flush=True,
            )
        cfg, _, models = load_run(recipe, runs["cpa"])
        model = models[""]
        pos, neg = R.example_pairs(model, vs, cfg)
        figs = {}
        for tag, pair in (("positive", pos), ("negative", neg)):
            figs[tag] = R.plot_pair_steps(model, cfg, vs, pair, out / f"{tag}_pair.png", tag)
        blocks = R.mined_step_stats(model, cfg, vs)
    text = R.report_markdown(results, figs, blocks, vs, cfg, time.perf_counter() - t_start, runs, pos, neg)
    (out / "report.md").write_text(text)
    payload = {
        name: {
            "metrics": r["report"]["metrics"],
            "seconds_per_epoch": R.epoch_seconds(runs[name]),
            "threshold": r["summary"].get("threshold"),
        }
        for name, r in results.items()
    }
    payload["mined_steps"] = blocks
    payload["total_seconds"] = time.perf_counter() - t_start
    (out / "report.json").write_text(json.dumps(payload, indent=2, default=float))
    print()
    print(R.auc_table(results))
    print(
        f"\n[demo] wrote {out}/report.md, report.json, positive_pair.png, negative_pair.png "
        f"in {time.perf_counter() - t_start:.0f} s"
    )
    a, b = pos
    np.save(out / "example_a.npy", vs.get(a).features)
    np.save(out / "example_b.npy", vs.get(b).features)
    print(
        f"[demo] try: procalign verify {out}/example_a.npy {out}/example_b.npy --run {runs['cpa']}"
    )
    return 0
