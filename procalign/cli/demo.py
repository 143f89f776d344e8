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

5. trains WeakSVR (video-text learning from each video's unaligned step list, with the offline
   MiniLM sentence encoder) on the same videos and scores it on the same test pairs, plus
   text-to-video matching (``report.md``, section "WeakSVR on the same data").

The CPA run folder (``--out``/runs/cpa) works with ``procalign verify A B --run ...`` and
``procalign eval cpa --run ...``; the WeakSVR one (``--out``/runs/weaksvr) also with
``procalign match "step; step" A B --run ...``.
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
    p.add_argument("--skip-weaksvr", action="store_true", help="CPA only (no text model)")
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


def _train(recipe, cfg, run_dir: Path, args: argparse.Namespace, data) -> dict:
    """train_run, resuming; a demo folder made with other settings is refused with the demo's
    own advice (the demo has no --config)."""
    from procalign.train.runner import RunConflict, train_run

    try:
        return train_run(recipe, cfg, run_dir, resume=not args.no_resume, progress=True, data=data)
    except RunConflict as exc:
        if not exc.diff:
            raise
        raise RunConflict(
            f"{run_dir} holds a demo run made with other settings ({'; '.join(exc.diff)}); it "
            "is left unchanged: use another --out folder, or add --no-resume to train the "
            "demo's runs again", exc.diff,
        ) from None


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from procalign.methods import load_recipes
    from procalign.train.runner import evaluate_run, load_run
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
            summary = _train(recipe, cfg, run_dir, args, vs)
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
        weak = None if args.skip_weaksvr else _weaksvr(args, vs, out, runs)
    text = R.report_markdown(results, figs, blocks, vs, cfg, time.perf_counter() - t_start, runs, pos, neg)
    if weak is not None:
        text += weak["markdown"]
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
    if weak is not None:
        payload["weaksvr"] = {"metrics": weak["report"]["metrics"],
                              "matching": weak["report"].get("matching")}
    payload["total_seconds"] = time.perf_counter() - t_start
    (out / "report.json").write_text(json.dumps(payload, indent=2, default=float))
    print()
    print(R.auc_table(results))
    print(
        f"\n[demo] wrote {out}/report.md, report.json, positive_pair.png, negative_pair.png "
        f"in {time.perf_counter() - t_start:.0f} s"
    )
    from procalign.viz.report import build_report

    with compute(max(1, args.threads)):
        html_report = build_report(runs["cpa"], out / "report.html", pairs=2, data=vs)
    print(f"[demo] HTML report (open it in a browser): {html_report}")
    a, b = pos
    np.save(out / "example_a.npy", vs.get(a).features)
    np.save(out / "example_b.npy", vs.get(b).features)
    print(
        f"[demo] try: procalign verify {out}/example_a.npy {out}/example_b.npy --run {runs['cpa']}"
    )
    return 0


def _weaksvr(args: argparse.Namespace, vs, out: Path, runs: dict) -> dict:
    """Train WeakSVR on the demo's videos; score it on the same sampled test pairs as CPA."""
    from procalign.config import load_config
    from procalign.methods import load_recipes
    from procalign.methods.weaksvr import WeakSVRConfig
    from procalign.train.runner import evaluate_run

    recipe = load_recipes().build("weaksvr")
    cpa_cfg = _config(args, [])
    over = [
        f"data.synthetic={json.dumps(cpa_cfg.data.synthetic)}",
        "data.num_frames=16",
        "eval.pairs=sampled",
        f"eval.num_pairs={cpa_cfg.eval.num_pairs}",
        "eval.matching=sampled",
        "eval.distances=[weaksvr]",
        f"train.epochs={max(2, args.epochs + 10) if not args.quick else 2}",
        f"train.seed={args.seed}",
        "model.dim=128",
    ]
    if args.quick:
        over += ["model.dim=32", "data.threshold_pairs=40", "eval.num_queries=20",
                 "eval.candidates=3", "eval.topk=[1]"]
    cfg = load_config(WeakSVRConfig, None, over)
    run_dir = out / "runs" / "weaksvr"
    print(f"[demo] training weaksvr ({cfg.train.epochs} epochs, text encoder "
          f"{cfg.model.text_encoder}) ...", flush=True)
    t0 = time.perf_counter()
    _train(recipe, cfg, run_dir, args, vs)
    report = evaluate_run(recipe, run_dir, progress=False, data=vs)
    runs["weaksvr"] = run_dir
    # the method's own rows (the report also holds the baselines' auc / eer rows)
    rows = {r["metric"]: r["value"] for r in report["metrics"]
            if r.get("distance", "weaksvr") == "weaksvr"}
    print(f"[demo]   weaksvr: AUC[weaksvr] {rows['auc']:.3f}, matching accuracy "
          f"{rows.get('matching_accuracy', float('nan')):.3f} ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    lines = [
        "",
        "## WeakSVR on the same data",
        "",
        "WeakSVR learns from each training video's step list only (its sentences, no frame "
        f"labels), with the text encoder `{report.get('text_encoder')}`; verification uses "
        "the l2 distance of its normalised video embeddings on the same test pairs as above.",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {r['metric']} ({r['variant']}) | {r['value']:.3f} |" for r in report["metrics"]),
        "",
        f"Matching queries: {report.get('matching', {}).get('source')}. Run folder: "
        f"`{run_dir}` (`procalign match \"step; step\" A.npy B.npy --run {run_dir}`).",
        "",
    ]
    return {"report": report, "markdown": "\n".join(lines)}
