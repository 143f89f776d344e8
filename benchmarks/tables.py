"""Every table of docs/results.md, rendered from the raw rows in benchmarks/results/*.json.

    python benchmarks/tables.py            # print every table
    python benchmarks/tables.py --write    # replace the tables in docs/results.md
    python benchmarks/tables.py --check    # exit 1 when a table in docs/results.md differs

In docs/results.md a table sits between ``<!-- table: NAME -->`` and ``<!-- /table -->``; NAME
is a key of :data:`RENDERERS`. The benchmark scripts (``benchmarks/cpa_sv.py``,
``benchmarks/lrprop_pennaction.py``) write the JSON; this file only formats it, and the test
suite (tests/test_results_tables.py) fails when the document and the JSON disagree.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "results.md"
BLOCK = re.compile(r"<!-- table: (\w+) -->\n(.*?)<!-- /table -->", re.S)


def load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no results file {path}; run the benchmark that writes it")
    return json.loads(path.read_text())


def mean_std(values, scale: float = 1.0, digits: int = 3) -> str:
    vals = [v * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{statistics.mean(vals):.{digits}f} ± {statistics.stdev(vals):.{digits}f}"


def _command(data: dict) -> str:
    return f"```\n{data['command']}\n```\n\n"


# ----------------------------------------------------------------------------- CPA

CPA_ROWS = (
    ("cpa", "cpa", "CPA: CSM + FSA (trained, Eq. 1 mean block score)"),
    ("cpa_sqrt", "cpa", "CPA, sqrt_area block score (trained)"),
    ("cpa_equal", "cpa", "CPA with the paper's equal loss weights 1 / 1 / 1 (trained)"),
    ("fsa_only", "fsa_uniform", "FSA only, uniform steps (trained without CSM)"),
    ("video", "video_l2", "video-level, task loss only: bag of frames (mean-pooled L2; blind to order)"),
    ("video", "pyramid_l2", "video-level, task loss only: temporal pyramid (order-aware)"),
    ("cpa", "fsa_uniform", "CPA embeddings + uniform steps"),
    ("cpa", "dtw", "CPA embeddings + DTW"),
    ("cpa", "soft_dtw", "CPA embeddings + soft-DTW divergence"),
    ("cpa", "video_l2", "CPA embeddings + bag of frames"),
    ("cpa", "pyramid_l2", "CPA embeddings + temporal pyramid"),
    ("cpa", "raw_dtw", "input features + DTW (untrained)"),
    ("cpa", "raw_video_l2", "input features + bag of frames (untrained)"),
    ("cpa", "raw_pyramid_l2", "input features + temporal pyramid (untrained)"),
)
DATASET_LABELS = {
    "synthetic": "synthetic",
    "csv": "CSV-scripted, simulated frames",
}
TRAINED = {("cpa", "cpa"), ("cpa_sqrt", "cpa"), ("cpa_equal", "cpa"), ("fsa_only", "fsa_uniform"),
           ("video", "video_l2")}


def render_cpa_sv(data: dict) -> str:
    lines = [
        "| dataset | method / distance | AUC % (mean ± std) | WDR | s / epoch (median) | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for ds, runs in data["results"].items():
        for variant, dist, label in CPA_ROWS:
            aucs = [r["auc"][dist] for r in runs.get(variant, []) if dist in r["auc"]]
            if not aucs:
                continue
            wdrs = [r["wdr"][dist] for r in runs[variant] if dist in r.get("wdr", {})]
            wdr = f"{statistics.mean(wdrs):.2f}" if wdrs else "-"
            if (variant, dist) in TRAINED:
                spe = statistics.median(r["seconds_per_epoch"] for r in runs[variant])
                cost = f"{spe:.2f} | {max(r['peak_rss_mb'] for r in runs[variant]):.0f}"
            else:
                cost = "(same run) | "
            lines.append(
                f"| {DATASET_LABELS.get(ds, ds)} | {label} | {mean_std(aucs, 100, 1)} | {wdr} | {cost} |"
            )
    meta = data["meta"]
    lines += ["", f"Seeds {data['seeds']}; {meta['machine']}; torch {meta['torch']}; "
              f"{meta.get('threads', 1)} thread; pairs scored: {meta['pairs']}."]
    return _command(data) + "\n".join(lines) + "\n"


def render_cpa_ksweep(data: dict) -> str:
    out = []
    for ds, per_k in data["ksweep"].items():
        ks = sorted(per_k, key=int)
        out += [f"| {DATASET_LABELS.get(ds, ds).split(' (')[0]} | " + " | ".join(f"K={k}" for k in ks) + " |",
                "|---|" + "---|" * len(ks),
                "| AUC % | " + " | ".join(f"{100 * per_k[k]:.1f}" for k in ks) + " |", ""]
    return _command(data) + "\n".join(out)


def render_cpa_quality(data: dict) -> str:
    names = ("spearman_rho", "relative_l2", "aiou@0.5", "aiou@0.75")
    lines = ["| threads | Spearman rho | relative L2 (x100) | AIoU@0.5 | AIoU@0.75 | seeds |",
             "|---|---|---|---|---|---|"]
    for threads, runs in sorted(data["quality"].items()):
        cells = [mean_std([r["metrics"][n] for r in runs], 1, 3 if n != "relative_l2" else 2)
                 for n in names]
        lines.append(f"| {threads} | " + " | ".join(cells) + f" | {len(runs)} |")
    return _command(data) + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- LRProp

LRPROP_VARIANTS = (
    ("raw", "raw joints / features"),
    ("same", "L_same (SCL-like)"),
    ("same+prop", "L_same + L_prop"),
    ("same+sdtw", "L_same + L_sdtw"),
    ("all", "all three (LRProp)"),
    ("all_sdtw_unscaled", "all three, L_sdtw not divided by T (the paper's scale)"),
)
PENN_COLUMNS = (
    ("kendalls_tau[tau_a]", "tau_a"),
    ("kendalls_tau[tau_a]@static", "tau_a, static input"),
    ("kendalls_tau[tau_a]@gap_static", "gap to static"),
    ("kendalls_tau[tau_a]@gap_shuffled", "gap to shuffled"),
    ("cycle_consistency", "cycle-consistency"),
    ("retrieval_precision@1", "retrieval P@1"),
    ("verification_auc", "verification AUC"),
)
SYNTH_COLUMNS = (
    ("kendalls_tau[tau_a]", "tau_a"),
    ("kendalls_tau[tau_a]@gap_static", "tau gap to static"),
    ("phase_classification@0.1[linear_svm]", "phase cls @10%"),
    ("phase_classification@1[linear_svm]", "phase cls @100%"),
    ("phase_progression", "progression R²"),
    ("phase_progression@gap_static", "progression gap to static"),
    ("ap@5[carl]", "AP@5"),
    ("dtw_alignment_accuracy", "DTW acc."),
    ("dtw_alignment_accuracy@gap_static", "DTW acc. gap to static"),
)


def _lrprop_table(runs: dict, columns, seeds, models=("positions",)) -> str:
    done = None
    for key, per_label in runs.items():
        labels = {k for k in per_label if not k.startswith("_")}
        done = labels if done is None else done & labels
    done = sorted(done or [])
    header = ["model", "variant", *[c for _, c in columns]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model in models:
        for variant, label in LRPROP_VARIANTS:
            keys = [f"{model}/{variant}/seed{s}" for s in (seeds if variant != "raw" else [0])]
            keys = [k for k in keys if k in runs]
            if not keys:
                continue
            cells = []
            for metric, _ in columns:
                per_seed = []
                for k in keys:
                    vals = [runs[k][c].get(metric) for c in done]
                    vals = [v for v in vals if v is not None and not math.isnan(v)]
                    per_seed.append(statistics.mean(vals) if vals else None)
                cells.append(mean_std(per_seed))
            name = "–" if variant == "raw" else ("with positions" if model == "positions" else "no positions")
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\nClasses: {len(done)} ({', '.join(done)}).\n"


def render_lrprop_penn(data: dict) -> str:
    return _command(data) + _lrprop_table(data["results"]["pennaction"], PENN_COLUMNS,
                                          data["seeds"], data["models"])


def render_lrprop_video(data: dict) -> str:
    """Issue 20's side by side: the same trained models, video-level metrics with one
    label-blind embedding vs the previous rule (candidates embedded by the query's class model)."""
    runs = data["results"]["pennaction"]
    cols = (("retrieval_precision@1", "P@1"), ("verification_auc", "AUC"))
    lines = ["| model | variant | " + " | ".join(f"{c}, label-blind" for _, c in cols) + " | "
             + " | ".join(f"{c}, query's class model (old)" for _, c in cols) + " |",
             "|" + "---|" * (2 + 2 * len(cols))]
    for model in data["models"]:
        for variant, label in LRPROP_VARIANTS:
            keys = [f"{model}/{variant}/seed{s}" for s in data["seeds"]]
            keys = [k for k in keys if k in runs and any(
                "query_class_model/verification_auc" in v for c, v in runs[k].items()
                if not c.startswith("_"))]
            if not keys:
                continue
            cells = []
            for prefix in ("", "query_class_model/"):
                for metric, _ in cols:
                    per_seed = []
                    for k in keys:
                        vals = [v.get(prefix + metric) for c, v in runs[k].items()
                                if not c.startswith("_") and isinstance(v, dict)]
                        vals = [x for x in vals if x is not None]
                        per_seed.append(statistics.mean(vals) if vals else None)
                    cells.append(mean_std(per_seed))
            name = "with positions" if model == "positions" else "no positions"
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return _command(data) + "\n".join(lines) + "\n"


def render_lrprop_synthetic(data: dict) -> str:
    return _command(data) + _lrprop_table(data["results"]["synthetic"], SYNTH_COLUMNS,
                                          data["seeds"], data["models"])


# ----------------------------------------------------------------------------- WeakSVR

WEAKSVR_ROWS = (
    ("sort", "weaksvr", "WeakSVR, sort pseudo-labels (as shipped)", "6"),
    ("viterbi", "weaksvr", "WeakSVR, Viterbi pseudo-labels", "6"),
    ("none", "weaksvr", "L_coarse only (TE + MLP, no L_fine)", "6 / 1"),
    ("split", "weaksvr", "WeakSVR, split pseudo-labels", "6"),
    ("sort_sim", "weaksvr", "sort, L_fine's cross-entropy over the similarities (ours)", "ours"),
    ("cls_both", "weaksvr", "w CLS: L_coarse + L_fine", "5"),
    ("cls_fine", "weaksvr", "w CLS: L_fine only", "5"),
    ("cls_coarse", "weaksvr", "w CLS: L_coarse only", "5"),
    ("cls_only", "weaksvr", "w CLS: neither (classification only, no text)", "5"),
    ("pool", "weaksvr", "mean-pooled frame tokens + linear, L_coarse only (TE + Pool)", "1"),
    ("eq3", "weaksvr", "sort, paragraph = encoder over the joined steps (Eq. 3)", "ours"),
    ("eq3_none", "weaksvr", "Eq. 3 paragraph, L_coarse only (no L_fine)", "ours"),
    ("no_center", "weaksvr", "sort, no per-clip centring", "ours"),
    ("cpa", "cpa", "CPA (configs/cpa_<dataset>.yaml) on the same frames and pairs", "1"),
    ("sort", "raw_pyramid_l2", "input features + temporal pyramid (untrained)", "-"),
    ("sort", "raw_video_l2", "input features + bag of frames (untrained)", "-"),
)


def render_weaksvr_sv(data: dict) -> str:
    lines = [
        "| dataset | variant | paper table | verification AUC % | s / epoch | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for ds, runs in data["results"].items():
        for variant, dist, label, table in WEAKSVR_ROWS:
            aucs = [r["auc"][dist] for r in runs.get(variant, []) if dist in r["auc"]]
            if not aucs:
                continue
            if dist.startswith("raw_"):
                cost = "(same run) | "
            else:
                spe = statistics.median(r["seconds_per_epoch"] for r in runs[variant])
                rss = [r["peak_rss_mb"] for r in runs[variant] if r.get("peak_rss_mb")]
                cost = f"{spe:.2f} | {max(rss):.0f}" if rss else f"{spe:.2f} | -"
            lines.append(f"| {DATASET_LABELS.get(ds, ds)} | {label} | {table} | "
                         f"{mean_std(aucs, 100, 1)} | {cost} |")
    pairs = {ds: next(iter(runs.values()))[0].get("pairs") for ds, runs in data["results"].items()}
    meta = data["meta"]
    lines += ["", f"Seeds {data['seeds']}; {meta['machine']}; torch {meta['torch']}; "
              f"{meta.get('threads', 1)} thread; pairs: {pairs}."]
    return _command(data) + "\n".join(lines) + "\n"


def render_weaksvr_matching(data: dict) -> str:
    lines = [
        "| dataset | variant | accuracy (top-1) % | AUC % |",
        "|---|---|---|---|",
    ]
    sources = {}
    for ds, runs in data["results"].items():
        for variant, dist, label, _ in WEAKSVR_ROWS:
            rs = [r for r in runs.get(variant, []) if r.get("matching") and dist == "weaksvr"]
            if not rs:
                continue
            sources[ds] = rs[0].get("matching_source")
            cells = [mean_std([r["matching"].get(k) for r in rs], 100, 1)
                     for k in ("accuracy", "auc")]
            lines.append(f"| {DATASET_LABELS.get(ds, ds)} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "Queries: " + "; ".join(f"{ds}: {s}" for ds, s in sources.items())
              + ". 5 candidates per query: chance is 20 % accuracy, 50 % AUC."]
    return _command(data) + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- procedure learning

SSPL_MODELS = (
    ("random", "Random (each frame one of k ids)"),
    ("uniform", "Uniform segmentation (k equal segments)"),
    ("teacher_initial", "Teacher alone (k-means + subset selection, untrained features)"),
    ("teacher_final", "Teacher of the trained run (learned attention features)"),
    ("sspl,true_task", "Trained network (key-steps of the true task)"),
    ("sspl,predicted_task", "Trained network (key-steps of the predicted task)"),
)


def _sspl_cell(results: dict, prefix: str, get, scale: float = 100.0) -> str:
    keys = sorted(k for k in results if k.rsplit("/seed=", 1)[0] == prefix)
    return mean_std([get(results[k]) for k in keys], scale, 1) if keys else "n/a"


def _sspl_seeds(results: dict, prefix: str) -> int:
    return sum(1 for k in results if k.rsplit("/seed=", 1)[0] == prefix)


def render_sspl_table1(data: dict) -> str:
    res, ks = data["results"], data["settings"]["ks"]
    out = [_command(data).rstrip("\n") + "\n"]
    for dataset, title in (("synthetic", "Generated region data"),
                           ("breakfast", "Breakfast-scripted data (real step orders and durations, simulated features)")):
        out.append(f"**{title}**: frame F1 / recall (%, mean ± std over seeds), per-task Hungarian "
                   "matching, every frame assigned to a key-step.\n")
        header = ["method", *[f"k={k} F1" for k in ks], *[f"k={k} R" for k in ks]]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model, label in SSPL_MODELS:
            f1 = [_sspl_cell(res, f"{dataset}/k={k}/base", lambda r: r["models"].get(model, {}).get("f1")) for k in ks]
            rc = [_sspl_cell(res, f"{dataset}/k={k}/base", lambda r: r["models"].get(model, {}).get("recall")) for k in ks]
            lines.append(f"| {label} | " + " | ".join(f1 + rc) + " |")
        acc = [_sspl_cell(res, f"{dataset}/k={k}/base", lambda r: r.get("task_accuracy")) for k in ks]
        lines.append("| Task accuracy (trained network) | " + " | ".join(acc) + " |" + " |" * len(ks))
        agree = [_sspl_cell(res, f"{dataset}/k={k}/base", lambda r: r.get("agreement_with_teacher")) for k in ks]
        lines.append("| Network = its final teacher (% test frames) | " + " | ".join(agree) + " |" + " |" * len(ks))
        att = [_sspl_cell(res, f"{dataset}/k={k}/base", lambda r: r.get("attention_on_evidence")) for k in ks]
        lines.append("| Attention mass on the key-step regions (%) | " + " | ".join(att) + " |" + " |" * len(ks))
        spe = [_sspl_cell(res, f"{dataset}/k={k}/base", lambda r: r.get("seconds_per_epoch"), 1.0) for k in ks]
        lines.append("| Seconds / epoch (1 thread) | " + " | ".join(spe) + " |" + " |" * len(ks))
        seeds = [_sspl_seeds(res, f"{dataset}/k={k}/base") for k in ks]
        out.append("\n".join(lines) + f"\n\nSeeds per column: {seeds}.\n")
    return "\n".join(out)


def render_sspl_ablations(data: dict) -> str:
    res = data["results"]
    rows = [
        ("Attention + learned pooling (both)", "synthetic/k=7/base"),
        ("Attention only (beta = 1/M)", "synthetic/k=7/attention_only"),
        ("Learned pooling only (mean region)", "synthetic/k=7/pooling_only"),
        ("Neither", "synthetic/k=7/neither"),
        ("lambda = 0 (no task loss)", "synthetic/k=7/lambda=0.0"),
        ("lambda = 0.25", "synthetic/k=7/lambda=0.25"),
        ("lambda = 0.5 (paper)", "synthetic/k=7/base"),
        ("lambda = 1", "synthetic/k=7/lambda=1.0"),
        ("no self-supervision (task labels only)", "synthetic/k=7/no_self_supervision"),
        ("cross-entropy instead of ranking (Remark 3)", "synthetic/k=7/cross_entropy"),
    ]
    header = ["variant (synthetic, k = 7)", "task acc.", "F1 (true task)", "R (true task)",
              "F1 (predicted task)", "F1 final teacher", "attention on key-step regions", "seeds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, prefix in rows:
        cells = [
            _sspl_cell(res, prefix, lambda r: r.get("task_accuracy")),
            _sspl_cell(res, prefix, lambda r: r["models"]["sspl,true_task"]["f1"]),
            _sspl_cell(res, prefix, lambda r: r["models"]["sspl,true_task"]["recall"]),
            _sspl_cell(res, prefix, lambda r: r["models"]["sspl,predicted_task"]["f1"]),
            _sspl_cell(res, prefix, lambda r: r["models"]["teacher_final"]["f1"]),
            _sspl_cell(res, prefix, lambda r: r.get("attention_on_evidence")),
            str(_sspl_seeds(res, prefix)),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return _command(data) + "\n".join(lines) + "\n"


def render_weaksvr_fine(data: dict) -> str:
    lines = [
        "| dataset | variant | fine head: argmax over own steps % | Viterbi % | chance % | runs |",
        "|---|---|---|---|---|---|",
    ]
    for ds, runs in data["results"].items():
        for variant, dist, label, _ in WEAKSVR_ROWS:
            rs = [r for r in runs.get(variant, []) if r.get("fine") and dist == "weaksvr"]
            if not rs:
                continue
            cells = [mean_std([r["fine"].get(k) for r in rs], 100, 1)
                     for k in ("argmax", "viterbi", "chance")]
            lines.append(f"| {DATASET_LABELS.get(ds, ds)} | {label} | " + " | ".join(cells)
                         + f" | {len(rs)} |")
    lines += ["", "Share of the non-background frames of each test video's centre clip whose "
              "own step sentence (the true script position) is the fine head's most similar "
              "one (argmax) or its monotone Viterbi label."]
    return _command(data) + "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- generalisation

GEN_CPA_ROWS = (
    ("cpa", "CPA (trained, configs/cpa_folder.yaml; eval T/K chosen on validation pairs)"),
    ("dtw", "DTW over CPA's trained frame embeddings"),
    ("dtw_window", "worst-window DTW over CPA's trained frame embeddings (window 0.2 of the path)"),
    ("fullres_dtw", "baseline: full-resolution DTW (norm / smoothing chosen on validation)"),
    ("fullres_dtw_window", "baseline: full-resolution DTW, worst window of the path (norm / "
                           "smoothing / window chosen on validation)"),
    ("fullres_soft_dtw", "baseline: full-resolution soft-DTW (chosen on validation)"),
    ("fullres_mean", "baseline: mean pooling (bag of frames)"),
    ("raw_dtw", "baseline: DTW on the T sampled input frames"),
)
GEN_DATASETS = {"nuisance": "nuisance generator (folder)",
                "csv": "CSV-scripted, simulated frames (folder)"}


def render_generalisation(data: dict) -> str:
    lines = ["| dataset | row | test AUC % (mean ± std) | margin over best baseline (pts) |",
             "|---|---|---|---|"]
    notes = []
    for ds, res in data["results"].items():
        runs = res.get("cpa", [])
        if not runs:
            continue
        best = []
        for r in runs:
            best.append(max(v["value"] for k, v in r["auc"].items()
                            if k.startswith(("fullres_", "raw_"))))
        for key, label in GEN_CPA_ROWS:
            vals = [r["auc"][key]["value"] for r in runs if key in r["auc"]]
            if not vals:
                continue
            margin = "–"
            if key in ("cpa", "dtw", "dtw_window"):
                margin = mean_std([r["auc"][key]["value"] - b for r, b in zip(runs, best)], 100, 1)
            lines.append(f"| {GEN_DATASETS.get(ds, ds)} | {label} | {mean_std(vals, 100, 1)} | "
                         f"{margin} |")
        ceil = res.get("ceiling", [])
        if ceil:
            lines.append(f"| {GEN_DATASETS.get(ds, ds)} | not a baseline: DTW (path mean) on the "
                         f"generator's noise-free signal, same pairs | "
                         f"{mean_std([c['auc'] for c in ceil], 100, 1)} | – |")
            if all("window_auc" in c for c in ceil):
                lines.append(f"| {GEN_DATASETS.get(ds, ds)} | not a baseline: worst-window DTW "
                             f"on the noise-free signal, same pairs | "
                             f"{mean_std([c['window_auc'] for c in ceil], 100, 1)} | – |")
        weak = res.get("weaksvr", [])
        if weak:
            vals = [r["auc"]["weaksvr"]["value"] for r in weak]
            margins = [r["auc"]["weaksvr"]["value"] - max(
                r["auc"][k]["value"] for k in r["auc"] if k.startswith(("fullres_", "raw_")))
                for r in weak]
            lines.append(f"| {GEN_DATASETS.get(ds, ds)} | WeakSVR (trained, "
                         f"configs/weaksvr_folder.yaml; same test pairs, own baselines) | "
                         f"{mean_std(vals, 100, 1)} | {mean_std(margins, 100, 1)} |")
        settings = sorted({(r["auto"] or {}).get("data.num_frames", {}).get("value", "-")
                           for r in runs} - {"-"})
        ks = sorted({(r["auto"] or {}).get("model.steps", {}).get("value", "-") for r in runs}
                    - {"-"})
        ev = [f"T={r['eval_setting']['num_frames']},K={r['eval_setting']['steps']}"
              for r in runs if r.get("eval_setting")]
        notes.append(f"{GEN_DATASETS.get(ds, ds)}: training T chosen {settings}, K {ks}; "
                     f"evaluation T/K chosen on validation: {', '.join(ev) or 'none'}; "
                     f"selected epochs {[r['selected_epoch'] for r in runs]}; "
                     f"{runs[0]['num_pairs']} test pairs.")
    lrows = ["", "| dataset | inputs | DTW-alignment accuracy | Kendall's tau_a | tau_a gap to static |",
             "|---|---|---|---|---|"]
    names = {"lrprop": "LRProp (trained, configs/lrprop_folder.yaml)",
             "raw_inputs": "raw inputs (dataset standardisation)",
             "fullres_inputs": "inputs, per-video norm + smoothing chosen on training videos"}
    have_lrprop = False
    for ds, res in data["results"].items():
        runs = res.get("lrprop", [])
        for model, label in names.items():
            vals = [r["rows"].get(model, {}) for r in runs]
            if not any(vals):
                continue
            have_lrprop = True
            cell = lambda k: mean_std([v[k] for v in vals if k in v])  # noqa: E731
            lrows.append(f"| {GEN_DATASETS.get(ds, ds)} | {label} | "
                         f"{cell('dtw_alignment_accuracy@real')} | {cell('kendalls_tau@real')} | "
                         f"{cell('kendalls_tau@gap_static')} |")
    srows = ["", "| dataset | key-steps from | frame F1 % | IoU % | margin in F1 over best "
             "model-free row (pts) |", "|---|---|---|---|---|"]
    snames = {"sspl,true_task": "SSPL network (trained, configs/sspl_folder.yaml; true task)",
              "sspl,predicted_task": "SSPL network (its own predicted task)",
              "teacher_initial": "model-free: k-means + subset selection on the inputs (normalised as the run)",
              "uniform": "model-free: k equal segments", "random": "model-free: random"}
    have_sspl = False
    for ds, res in data["results"].items():
        runs = res.get("sspl", [])
        if not runs:
            continue
        have_sspl = True
        free = [max(r["rows"][m]["f1"] for m in ("teacher_initial", "uniform", "random")
                    if m in r["rows"]) for r in runs]
        for name, label in snames.items():
            vals = [r["rows"].get(name, {}) for r in runs]
            if not all("f1" in v for v in vals):
                continue
            margin = (mean_std([v["f1"] - b for v, b in zip(vals, free)], 100, 1)
                      if name.startswith("sspl") else "–")
            srows.append(f"| {GEN_DATASETS.get(ds, ds)} | {label} | "
                         f"{mean_std([v['f1'] for v in vals], 100, 1)} | "
                         f"{mean_std([v['iou'] for v in vals], 100, 1)} | {margin} |")
        chosen = [r.get("selected_epoch") for r in runs]
        notes.append(f"{GEN_DATASETS.get(ds, ds)} (sspl): k = {sorted({r['k'] for r in runs})} "
                     "from the steps column" + (f"; epochs chosen by validation F1 {chosen}"
                                                if any(c is not None for c in chosen) else "") + ".")
    meta = data["meta"]
    tail = ["", *notes, f"Seeds {data['seeds']}; {meta['machine']}; torch {meta['torch']}; "
            f"{meta.get('threads', 1)} thread."]
    body = lines + (lrows if have_lrprop else []) + (srows if have_sspl else []) + tail
    return _command(data) + "\n".join(body) + "\n"


def render_csv_bounds(data: dict) -> str:
    """Issue 15's measured why: DTW and CPA's lattice over ideal encoders' features (no
    training; CPA's K / scale chosen on the test pairs: the best of a grid), next to trained CPA
    and the best baseline of benchmarks/generalisation.py on the same folders and pairs."""
    runs = data["results"]
    seeds = list(runs)
    trained = load("generalisation")["results"].get("csv", {}).get("cpa", [])
    kinds = {"noisy": "the folder's inputs, per-video standardised (what the baselines see)",
             "noisy_steps": "the same, true background frames dropped (a perfect background "
                            "detector alone)",
             "clean": "the generator's noise-free signal, standardised (a perfect denoiser)",
             "clean_steps": "the noise-free signal, true background frames dropped",
             "onehot": "the true step of every frame, one-hot (a perfect step recogniser)",
             "onehot_steps": "the true steps, one-hot, background frames dropped (a recogniser "
                             "that also finds background)"}
    lines = ["| frame features | DTW, path mean | DTW, worst window (best fraction) | "
             "CPA lattice, Eq. 10 (best of the grid on test) | CPA's best setting per seed |",
             "|---|---|---|---|---|"]
    for kind, label in kinds.items():
        if not all(kind in runs[s] for s in seeds):  # a kind added after these runs
            continue
        rows = [runs[s][kind] for s in seeds]
        lines.append(
            f"| {label} | {mean_std([r['dtw'] for r in rows], 100, 1)} | "
            f"{mean_std([max(r['dtw_window'].values()) for r in rows], 100, 1)} | "
            f"{mean_std([r['cpa_best'] for r in rows], 100, 1)} | "
            f"{'; '.join(r['cpa_best_setting'] for r in rows)} |")
    lines.append(f"| the true step lists (0 when two scripts are equal, 1 otherwise) | – | – | "
                 f"{mean_std([runs[s]['scripts_auc'] for s in seeds], 100, 1)} (not CPA: "
                 f"the scripts themselves) | – |")
    if trained:
        best = [max(v["value"] for k, v in r["auc"].items() if k.startswith(("fullres_", "raw_")))
                for r in trained]
        cpa = [r["auc"]["cpa"]["value"] for r in trained]
        same_setting = []  # the untrained lattice at each trained run's own validation choice
        for seed, r in zip(seeds, trained):
            ev = r.get("eval_setting") or {}
            key = f"T={ev.get('num_frames')},K={ev.get('steps')},scale=1"
            same_setting.append(runs[seed]["noisy"]["cpa_grid"].get(key))
        lines += ["", f"Trained CPA on the same folders and pairs (benchmarks/generalisation.py, "
                  f"{len(trained)} seeds): {mean_std(cpa, 100, 1)}; the best baseline "
                  f"{mean_std(best, 100, 1)}; +3 points would need "
                  f"{mean_std([b + 0.03 for b in best], 100, 1)}."]
        if None not in same_setting:
            lines.append(
                f"The untrained lattice over the standardised inputs at each trained run's own "
                f"evaluation T / K (chosen on validation pairs) and scale 1, nothing chosen on "
                f"test: {mean_std(same_setting, 100, 1)} (per seed "
                f"{' / '.join(f'{100 * v:.1f}' for v in same_setting)}; trained "
                f"{' / '.join(f'{100 * v:.1f}' for v in cpa)}).")
    grid = data["grid"]
    var = grid.get("variants")
    with_variants = [s for s in seeds if all(runs[s][k].get("variants") for k in var["inputs"])] \
        if var else []
    if with_variants:
        cols = {"clean": "noise-free signal", "onehot_steps": "true steps, background dropped"}
        names = list(runs[with_variants[0]][var["inputs"][0]]["variants"])
        lines += ["", f"CPA's other lattice settings, one change each from the folder config's "
                  f"(best of K {var['K']} x scale {var['scale']} at T={var['frames']}, chosen on "
                  f"test; seeds {', '.join(with_variants)}):", "",
                  "| lattice | " + " | ".join(cols.get(k, k) for k in var["inputs"]) + " |",
                  "|---|" + "---|" * len(var["inputs"])]
        for name in names:
            cells = [mean_std([runs[s][k]["variants"][name]["best"] for s in with_variants],
                              100, 1) for k in var["inputs"]]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"CPA grid: K {grid['K']}, feature scale {grid['scale']}, clip frames "
              f"{' / '.join(map(str, grid['frames']))}; {runs[seeds[0]]['num_pairs']} test pairs per seed; seeds "
              f"{', '.join(seeds)} (the folders of benchmarks/generalisation.py)."]
    return _command(data) + "\n".join(lines) + "\n"


RENDERERS = {
    "cpa_sv": ("cpa_sv", render_cpa_sv),
    "cpa_ksweep": ("cpa_sv", render_cpa_ksweep),
    "cpa_quality": ("cpa_sv", render_cpa_quality),
    "lrprop_penn": ("lrprop", render_lrprop_penn),
    "lrprop_synthetic": ("lrprop", render_lrprop_synthetic),
    "lrprop_video": ("lrprop", render_lrprop_video),
    "weaksvr_sv": ("weaksvr", render_weaksvr_sv),
    "weaksvr_matching": ("weaksvr", render_weaksvr_matching),
    "weaksvr_fine": ("weaksvr", render_weaksvr_fine),
    "sspl_table1": ("sspl", render_sspl_table1),
    "sspl_ablations": ("sspl", render_sspl_ablations),
    "generalisation": ("generalisation", render_generalisation),
    "csv_bounds": ("csv_bounds", render_csv_bounds),
}


def render(name: str) -> str:
    if name not in RENDERERS:
        raise KeyError(f"unknown table {name!r}; known: {sorted(RENDERERS)}")
    source, fn = RENDERERS[name]
    return fn(load(source))


def blocks(text: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in BLOCK.finditer(text)}


def write(doc: Path = DOC) -> None:
    text = doc.read_text()
    doc.write_text(BLOCK.sub(lambda m: f"<!-- table: {m.group(1)} -->\n{render(m.group(1))}<!-- /table -->", text))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true")
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    if args.write:
        write()
    if args.check:
        bad = [n for n, body in blocks(DOC.read_text()).items() if body != render(n)]
        if bad:
            print(f"tables that differ from their JSON: {bad}", file=sys.stderr)
            return 1
        return 0
    for name in RENDERERS:
        try:
            print(f"## {name}\n\n{render(name)}")
        except FileNotFoundError as exc:
            print(f"## {name}\n\n({exc})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
