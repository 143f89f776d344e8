"""The demo's figures and report: CPA's mined steps and frame-to-step posteriors, and the table of
the trained variants (used by ``procalign demo``)."""

from __future__ import annotations

import json
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


def test_pairs(vs, cfg):
    """The evaluation pairs of the test split, as ``procalign eval cpa`` scores them."""
    from procalign.eval.protocols import evaluation_pairs

    e = cfg.eval
    pairs, _, _ = evaluation_pairs(vs.split(cfg.data.test_split), vs.pairs, e.pairs, e.num_pairs,
                                   cfg.data.negatives, 7)
    return pairs


def example_pairs(model, vs, cfg):
    """A representative positive and negative test pair: among the evaluation pairs (negatives
    from the same task), the one whose CPA distance is the median of its class."""
    import numpy as np

    import torch

    from procalign.eval import protocols as P

    pairs = test_pairs(vs, cfg)
    pairs = [p for p in pairs if vs.get(p.video_id_1).task == vs.get(p.video_id_2).task]
    ids = sorted({p.video_id_1 for p in pairs} | {p.video_id_2 for p in pairs})
    clips = torch.from_numpy(np.stack([
        P.clip_features(vs.get(i).features, cfg.data.num_frames, cfg.data.clip_offsets,
                        cfg.data.boundaries) for i in ids
    ]))
    emb = P.embed_clips(model.embed, clips)
    d = P.pair_distances(
        lambda x, y: model.distance(x, y),
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


def plot_pair_steps(model, cfg, vs, pair, path: Path, tag: str) -> dict:
    """Four panels: relational matrix + mined steps on input features and on CPA embeddings, and
    the frame-to-step posterior of A's frames over B's steps before / after training."""
    import numpy as np
    import torch

    from procalign import dp
    from procalign.losses import cpa as L
    from procalign.eval.protocols import clip_features
    from procalign.viz.alignment import pyplot as _pyplot

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
        a.step_index[idx] if a.step_index is not None else None,
        b.step_index[idy] if b.step_index is not None else None,
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


def mined_step_stats(model, cfg, vs) -> dict:
    """How the mined steps look on positive test pairs: single-frame steps and block sizes, on
    the input features and on the trained embeddings (Eq. 1's mean block score)."""
    import numpy as np
    import torch

    from procalign.losses import cpa as L
    from procalign.eval.protocols import clip_features

    pairs = [p for p in test_pairs(vs, cfg) if p.same][:100]
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


def epoch_seconds(run_dir: Path) -> float:
    history = json.loads((Path(run_dir) / "history.json").read_text())
    return sum(h["seconds"] for h in history) / max(1, len(history))


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def auc_table(results) -> str:
    lines = ["| method / distance | AUC | EER | WDR |", "|---|---|---|---|"]
    for variant, dist, label in ROWS:
        vals = [_auc(results, variant, dist, m) for m in ("auc", "eer", "wdr")]
        if vals[0] is None:
            continue
        cells = [f"{v:.3f}" if v is not None else "-" for v in vals]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report_markdown(results, figs, blocks, vs, cfg, seconds, runs, pos, neg) -> str:
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
        auc_table(results),
        "",
        (
            "AUC: probability that a positive pair is closer than a negative one (higher is better); "
            "EER: equal error rate (lower is better); WDR: negative distance per step edit over the "
            "mean positive distance (higher is better)."
        ),
        "",
        "Training time per epoch: "
        + ", ".join(f"{k} {epoch_seconds(runs[k]):.2f} s" for k in results)
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
