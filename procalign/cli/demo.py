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

ROWS = (
    ("cpa", "cpa", "CPA: step mining + frame-to-step alignment (trained)"),
    ("cpa_sqrt", "cpa", "CPA with the sum/sqrt(area) block score (trained)"),
    ("fsa_only", "fsa_uniform", "FSA only: uniform steps, no step mining (trained, Table 3)"),
    ("video", "video_l2", "video-level: task loss only, mean-pooled L2 (trained, Table 3)"),
    ("cpa", "fsa_uniform", "CPA embeddings + uniform steps"),
    ("cpa", "dtw", "CPA embeddings + DTW"),
    ("cpa", "soft_dtw", "CPA embeddings + soft-DTW divergence"),
    ("cpa", "video_l2", "CPA embeddings + video-level L2"),
    ("cpa", "raw_dtw", "input features + DTW (no training)"),
    ("cpa", "raw_video_l2", "input features + video-level L2 (no training)"),
)


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
        "data.test_pairs=600",
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
            "data.test_pairs=40",
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
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        import numba

        numba.set_num_threads(min(max(1, args.threads), numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass
    from procalign.methods import cpa

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = _config(args, [])
    print(f"[demo] synthetic data (seed {args.seed}) ...", flush=True)
    vs = cpa.load_videos(base_cfg.data)
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
        summary = cpa.train(cfg, run_dir, resume=not args.no_resume, progress=True, videos=vs)
        report = cpa.evaluate(run_dir, progress=False, videos=vs)
        results[name] = {"summary": summary, "report": report, "seconds": time.perf_counter() - t0}
        runs[name] = run_dir
        auc = {r["distance"]: r["value"] for r in report["metrics"] if r["metric"] == "auc"}
        print(
            f"[demo]   {name}: "
            + ", ".join(f"AUC[{k}] {v:.3f}" for k, v in auc.items())
            + f"  ({results[name]['seconds']:.0f} s)",
            flush=True,
        )

    model, cfg, _ = cpa.load_run(runs["cpa"])
    pos, neg = _example_pairs(model, vs, cfg)
    figs = {}
    for tag, pair in (("positive", pos), ("negative", neg)):
        figs[tag] = _plot_pair(model, cfg, vs, pair, out / f"{tag}_pair.png", tag)
    blocks = _block_stats(model, cfg, vs)
    text = _report(results, figs, blocks, vs, cfg, time.perf_counter() - t_start, runs, pos, neg)
    (out / "report.md").write_text(text)
    payload = {
        name: {
            "metrics": r["report"]["metrics"],
            "seconds_per_epoch": _epoch_seconds(runs[name]),
            "threshold": r["summary"].get("threshold"),
        }
        for name, r in results.items()
    }
    payload["mined_steps"] = blocks
    payload["total_seconds"] = time.perf_counter() - t_start
    (out / "report.json").write_text(json.dumps(payload, indent=2, default=float))
    print()
    print(_table(results))
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


def _example_pairs(model, vs, cfg):
    """A representative positive and negative test pair: among the evaluation pairs (negatives
    from the same task), the one whose CPA distance is the median of its class."""
    import numpy as np

    from procalign.methods import cpa

    pairs = cpa._pairs_for_split(vs, cfg, cfg.data.test_split, None, 7)
    pairs = [p for p in pairs if vs.get(p.video_id_1).task == vs.get(p.video_id_2).task]
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    emb, _ = cpa._embed_for(model, vs, ids, cfg, False)
    d = cpa.pair_distances(
        cpa.pair_distance_fn(model, "cpa"),
        emb,
        {v: i for i, v in enumerate(ids)},
        [(p.video_id_1, p.video_id_2) for p in pairs],
    )
    chosen = []
    for same in (True, False):
        idx = [i for i, p in enumerate(pairs) if p.same == same]
        mid = idx[int(np.argsort(d[idx])[len(idx) // 2])]
        chosen.append((pairs[mid].video_id_1, pairs[mid].video_id_2))
    return chosen[0], chosen[1]


def _plot_pair(model, cfg, vs, pair, path: Path, tag: str) -> dict:
    """Four panels: relational matrix + mined steps on input features and on CPA embeddings, and
    the frame-to-step posterior of A's frames over B's steps before / after training."""
    import numpy as np
    import torch

    from procalign import dp
    from procalign.losses import cpa as L
    from procalign.methods.cpa import clip_features
    from procalign.viz.alignment import _pyplot

    a, b = (vs.get(i) for i in pair)
    T, K = cfg.data.num_frames, model.steps
    xa = torch.from_numpy(clip_features(a.features, T, [0.5]))
    xb = torch.from_numpy(clip_features(b.features, T, [0.5]))
    idx = clip_features(np.arange(len(a.features))[:, None], T, [0.5])[0, :, 0].astype(int)
    idy = clip_features(np.arange(len(b.features))[:, None], T, [0.5])[0, :, 0].astype(int)
    panels = {}
    with torch.no_grad():
        for stage, (Fa, Fb) in (
            ("input features", (xa, xb)),
            ("CPA embeddings", (model.embed(xa), model.embed(xb))),
        ):
            sim = L.relational_matrix(Fa, Fb, mode=model.relational)
            part = L.mine_steps(sim, K, block_score=model.block_score)
            Sb = L.gather_step_features(Fb, part.bounds_m, "center")
            Sa = L.gather_step_features(Fa, part.bounds_n, "center")
            marg = dp.step_marginals(L.frame_to_step_log_probs(Fa, Sb))[0].numpy()
            dist = float(L.alignment_distance(Fa, Sa, Fb, Sb)[0])
            panels[stage] = (
                sim[0].numpy(),
                part.bounds_n[0].numpy(),
                part.bounds_m[0].numpy(),
                marg,
                dist,
            )
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(2, 2, figsize=(10, 9))
    pa, pb = (
        a.phases[idx] if a.phases is not None else None,
        b.phases[idy] if b.phases is not None else None,
    )
    for row, (stage, (sim, bn, bm, marg, dist)) in enumerate(panels.items()):
        ax = axes[row, 0]
        ax.imshow(sim, cmap="viridis", aspect="auto", interpolation="nearest")
        for k in range(K):
            ax.add_patch(
                Rectangle(
                    (bm[k] - 0.5, bn[k] - 0.5),
                    bm[k + 1] - bm[k],
                    bn[k + 1] - bn[k],
                    fill=False,
                    lw=2,
                    edgecolor=plt.get_cmap("tab10")(k % 10),
                )
            )
        ax.set_title(f"{stage}: relational matrix + {K} mined steps", fontsize=9)
        ax.set_xlabel(f"frames of B ({b.video_id}); true steps " + _phase_text(pb), fontsize=8)
        ax.set_ylabel(f"frames of A ({a.video_id}); true steps " + _phase_text(pa), fontsize=8)
        ax = axes[row, 1]
        im = ax.imshow(marg, cmap="magma", aspect="auto", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{stage}: P(frame of A on step of B), d={dist:.3f}", fontsize=9)
        ax.set_xlabel("mined steps of B")
        ax.set_ylabel("frames of A")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(
        f"{tag} pair: {a.label} {'=' if a.label == b.label else '!='} {b.label} "
        f"({' > '.join(a.steps or ())}  vs  {' > '.join(b.steps or ())})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {
        "plot": path.name,
        "a": a.video_id,
        "b": b.video_id,
        "label_a": a.label,
        "label_b": b.label,
        "distance_input": panels["input features"][4],
        "distance_trained": panels["CPA embeddings"][4],
        "bounds_a": panels["CPA embeddings"][1].tolist(),
        "bounds_b": panels["CPA embeddings"][2].tolist(),
    }


def _phase_text(phases) -> str:
    if phases is None:
        return ""
    return "".join("-" if p < 0 else str(int(p) + 1) for p in phases)


def _block_stats(model, cfg, vs) -> dict:
    """How the mined steps look on positive test pairs: single-frame steps and block sizes, on
    the input features and on the trained embeddings (Eq. 1's mean block score)."""
    import numpy as np
    import torch

    from procalign.losses import cpa as L
    from procalign.methods.cpa import _pairs_for_split, clip_features

    pairs = [p for p in _pairs_for_split(vs, cfg, cfg.data.test_split, None, 7) if p.same][:100]
    T = cfg.data.num_frames
    xa = torch.from_numpy(
        np.stack([clip_features(vs.get(p.video_id_1).features, T, [0.5])[0] for p in pairs])
    )
    xb = torch.from_numpy(
        np.stack([clip_features(vs.get(p.video_id_2).features, T, [0.5])[0] for p in pairs])
    )
    out = {}
    with torch.no_grad():
        for stage, (Fa, Fb) in (
            ("input", (xa, xb)),
            ("trained", (model.embed(xa), model.embed(xb))),
        ):
            for score in ("mean", "sqrt_area"):
                sim = L.relational_matrix(Fa, Fb, mode=model.relational)
                part = L.mine_steps(sim, model.steps, block_score=score)
                sizes = torch.cat([part.bounds_n.diff(dim=1), part.bounds_m.diff(dim=1)]).float()
                out[f"{stage}/{score}"] = {
                    "single_frame_steps": float((sizes == 1).float().mean()),
                    "largest_step_frames": float(sizes.max(dim=1).values.mean()),
                }
    return out


def _auc(results, variant, dist, metric="auc"):
    for r in results.get(variant, {}).get("report", {}).get("metrics", []):
        if r["distance"] == dist and r["metric"] == metric:
            return r["value"]
    return None


def _epoch_seconds(run_dir: Path) -> float:
    history = json.loads((Path(run_dir) / "history.json").read_text())
    return sum(h["seconds"] for h in history) / max(1, len(history))


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(results) -> str:
    lines = ["| method / distance | AUC | EER | WDR |", "|---|---|---|---|"]
    for variant, dist, label in ROWS:
        vals = [_auc(results, variant, dist, m) for m in ("auc", "eer", "wdr")]
        if vals[0] is None:
            continue
        cells = [f"{v:.3f}" if v is not None else "-" for v in vals]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report(results, figs, blocks, vs, cfg, seconds, runs, pos, neg) -> str:
    cpa_r = results["cpa"]
    n_pairs = cpa_r["report"]["num_pairs"]
    thr = cpa_r["summary"].get("threshold") or {}
    order = [
        _auc(results, "cpa", "cpa"),
        _auc(results, "fsa_only", "fsa_uniform"),
        _auc(results, "video", "video_l2"),
    ]
    holds = all(v is not None for v in order) and order[0] >= order[1] >= order[2]
    lines = [
        "# procalign demo: CPA on synthetic procedures",
        "",
        (
            f"Data: {vs.description}; {len(vs.videos)} videos, {len(vs.split('train'))} for training; "
            f"{n_pairs} test pairs (half positive; negatives are other procedures of the same task: "
            "same steps in another order, or one step replaced). T = "
            f"{cfg.data.num_frames} frames per clip, K = {cfg.model.steps} steps, SVIP protocol "
            f"({len(cfg.data.clip_offsets)} clips per video, distances averaged). Total time "
            f"{seconds:.0f} s."
        ),
        "",
        _table(results),
        "",
        (
            "AUC: probability that a positive pair is closer than a negative one (higher is better); "
            "EER: equal error rate (lower is better); WDR: negative distance per step edit over the "
            "mean positive distance (higher is better)."
        ),
        "",
        "Training time per epoch: "
        + ", ".join(f"{k} {_epoch_seconds(runs[k]):.2f} s" for k in results)
        + " (1 thread).",
        "",
        "## What the ablation says",
        "",
        f"The paper's Table 3 predicts CSM+FSA >= FSA-only >= video-level. Here: "
        f"{order[0]:.3f} / {order[1]:.3f} / {order[2]:.3f} -> "
        + (
            "the ordering holds on this seed (over 3 seeds, docs/results.md finds CPA with the "
            "mean block score level with FSA-only on synthetic data, and ahead on CSV-scripted "
            "data)."
            if holds
            else "the ordering does NOT hold on this run; see "
            "docs/results.md for the analysis over seeds."
        ),
        "",
        (
            f"CPA trained with the sum/sqrt(area) block score: "
            f"{_fmt(_auc(results, 'cpa_sqrt', 'cpa'))} (Eq. 1's mean collapses most mined steps to "
            "single frames, see below; docs/results.md has the 3-seed benchmark and the analysis)."
        ),
        "",
        (
            "The video-level distance cannot separate procedures that differ only in step order (the "
            "mean of a video's frames does not depend on the order), which is why it sits near 0.5."
        ),
        "",
        "## Mined steps before and after training",
        "",
        (
            "Share of single-frame steps and mean size of the largest step (frames of T) over positive "
            "test pairs, for Eq. 1's mean block score (what CPA trains with) and sum/sqrt(area):"
        ),
        "",
        "| features | block score | single-frame steps | largest step |",
        "|---|---|---|---|",
    ]
    for key, s in blocks.items():
        stage, score = key.split("/")
        lines.append(
            f"| {stage} | {score} | {s['single_frame_steps']:.2f} | "
            f"{s['largest_step_frames']:.1f} |"
        )
    lines += [
        "",
        (
            "On untrained features the mean score prefers tiny blocks around the most similar cells "
            "and leaves one big block; L_step (maximise the summed block means) sharpens the "
            "relational matrix but does not by itself stop this: compare the rows above."
        ),
        "",
        "## Plots",
        "",
    ]
    for tag, f in figs.items():
        lines += [
            (
                f"**{tag} pair** (median CPA distance among {tag} test pairs) {f['a']} "
                f"({f['label_a']}) vs {f['b']} ({f['label_b']}): CPA distance "
                f"{f['distance_input']:.3f} on input features, {f['distance_trained']:.3f} after "
                f"training (centre clip)."
            ),
            "",
            f"![{tag}]({f['plot']})",
            "",
            (
                "Left: relational matrix with the K mined blocks (axis labels give the true step of "
                "each sampled frame). Right: posterior probability that frame t of A sits on mined "
                "step k of B (`procalign.dp.step_marginals`): a positive pair shows one continuous "
                "path from the top-left to the bottom-right corner."
            ),
            "",
        ]
    if thr:
        lines += [
            "## Using the trained model",
            "",
            (
                f"Decision threshold {thr['threshold']:.4f} (EER point of {thr['chosen_on']}), saved "
                f"in `{runs['cpa']}/threshold.json`:"
            ),
            "",
            "```",
            f"procalign verify A.npy B.npy --run {runs['cpa']}",
            f"procalign eval cpa --run {runs['cpa']}",
            "```",
        ]
    return "\n".join(lines) + "\n"
