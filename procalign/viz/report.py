"""One self-contained HTML page per run: what was trained, how well, and what was aligned.

:func:`build_report` writes a single file (every figure an inline base64 PNG, no script or style
from the network, so it opens from disk anywhere) with

* the run's config and training curves (every logged number per epoch, from ``log.jsonl``);
* the evaluation table with its baselines (``eval.json``; evaluated here when missing);
* for methods that verify pairs: the ROC curve of the test pairs with the run's threshold, and,
  for the N most and the N least confident pairs, the similarity matrix of their frame
  embeddings with the DTW path and, for CPA, the mined step blocks and the frame-to-step
  probabilities (``dp.step_marginals``); when the source videos exist (features made by
  ``procalign extract``, whose manifest names each video and its sampling), thumbnails of the
  matched frames side by side, step by step (CPA) or along the DTW path;
* a t-SNE (scikit-learn) of the test videos' embeddings coloured by procedure.

The page checks itself when opened: a script counts the figures that decoded and records any
script error in ``<body data-figures=... data-errors=...>`` (what the browser test reads).
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>procalign report: $title</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
     color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem} h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.85rem} td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem;max-height:24rem}
figure{margin:1rem 0;display:inline-block;vertical-align:top} figcaption{font-size:.8rem;color:#555;max-width:560px}
img{max-width:100%;border:1px solid #eee} .pairs{display:flex;flex-wrap:wrap;gap:1rem}
.warn{background:#fff4e5;border-left:4px solid #f0a000;padding:.4rem .8rem}
.verdict-same{color:#0a7d20;font-weight:bold} .verdict-diff{color:#b00020;font-weight:bold}
</style></head>
<body data-figures="pending" data-errors="">
<h1>$title</h1>
<p>$summary</p>
$warnings
$sections
<script>
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e)); });
  window.addEventListener("load", function () {
    var imgs = document.querySelectorAll("img"), ok = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } else { errors.push("figure " + i + " did not decode"); }
    }
    document.body.setAttribute("data-figures", ok + "/" + imgs.length);
    document.body.setAttribute("data-errors", errors.join(" | "));
  });
})();
</script>
</body></html>
""")


def _png(fig) -> str:
    """A matplotlib figure as an inline ``<img>`` (base64 PNG); closes the figure."""
    from procalign.viz.alignment import pyplot

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _figure(img: str, caption: str) -> str:
    return f"<figure>{img}<figcaption>{html.escape(caption)}</figcaption></figure>"


def _table(rows: Sequence[dict], keys: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = []
    for r in rows:
        cells = []
        for k in keys:
            v = r.get(k, "")
            if isinstance(v, float):
                cells.append(f'<td class="num">{v:.4f}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _section(title: str, body: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{body}\n"


def training_curves(run_dir: Path) -> str | None:
    """Every numeric field of the epoch events of ``log.jsonl``, one panel each."""
    from procalign.viz.alignment import pyplot

    logs = sorted(run_dir.rglob("log.jsonl"))  # one per part (LRProp: classes/<label>/)
    events = []
    for log in logs:
        part = str(log.parent.relative_to(run_dir)) if log.parent != run_dir else ""
        for line in log.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill: the rest of the log still counts
            if e.get("event") == "epoch":
                events.append({**e, "part": e.get("part", part)})
    if not events:
        return None
    skip = {"event", "epoch", "batches", "part"}
    keys = sorted({k for e in events for k, v in e.items()
                   if k not in skip and isinstance(v, (int, float))})
    parts = sorted({str(e.get("part", "")) for e in events})
    plt = pyplot()
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.ravel(), keys):
        for part in parts[:8]:
            ev = [e for e in events if str(e.get("part", "")) == part and key in e]
            ax.plot([e["epoch"] for e in ev], [e[key] for e in ev], marker=".", label=part or None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(keys):]:
        ax.set_axis_off()
    fig.tight_layout()
    return _figure(_png(fig), f"training log ({len(events)} epoch records"
                   + (f", {len(parts)} parts" if len(parts) > 1 else "") + ")")


def roc_figure(dist: np.ndarray, same: np.ndarray, threshold: float | None) -> str:
    from sklearn.metrics import roc_auc_score, roc_curve

    from procalign.viz.alignment import pyplot

    fpr, tpr, _ = roc_curve(same.astype(int), -dist)
    auc = roc_auc_score(same.astype(int), -dist)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot(fpr, tpr, lw=2, label=f"AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], ls="--", color="#999", lw=1)
    if threshold is not None:
        pred = dist <= threshold
        tp = (pred & same).sum() / max(same.sum(), 1)
        fp = (pred & ~same).sum() / max((~same).sum(), 1)
        ax.plot([fp], [tp], "o", color="crimson", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _figure(_png(fig), f"ROC of {len(dist)} test pairs ({int(same.sum())} positive); "
                   "a pair is 'same' when its distance <= threshold")


def pair_figure(recipe, cfg, models, info, data, pair, dist: float, threshold: float | None) -> str:
    """A test pair of the run's data: see :func:`pair_view`."""
    a, b = data.get(pair.video_id_1), data.get(pair.video_id_2)
    truth = "same procedure" if pair.same else "different procedures"
    frames = (source_frames(a), source_frames(b))
    return pair_view(recipe, cfg, models, info, np.asarray(a.features), np.asarray(b.features),
                     a.video_id, b.video_id, dist, threshold, truth,
                     frames if all(f is not None for f in frames) else None)[0]


def pair_view(recipe, cfg, models, info, xa: np.ndarray, xb: np.ndarray, name_a: str,
              name_b: str, dist: float, threshold: float | None, truth: str | None = None,
              frames: tuple[np.ndarray, np.ndarray] | None = None):
    """(figure HTML, CPA's verify result or None): similarity matrix of the frame embeddings
    with the DTW path, and for CPA the mined step blocks and the frame-to-step probabilities."""
    import torch

    from procalign import dp
    from procalign.viz.alignment import plot_alignment, pyplot

    ea = recipe.report_frames(cfg, models, info, xa)
    eb = recipe.report_frames(cfg, models, info, xb)
    na = ea / np.maximum(np.linalg.norm(ea, axis=1, keepdims=True), 1e-12)
    nb = eb / np.maximum(np.linalg.norm(eb, axis=1, keepdims=True), 1e-12)
    sim = na @ nb.T
    bounds_a = bounds_b = r = None
    extra = ""
    if recipe.name == "cpa":
        r = recipe.verify(cfg, models, info, xa, xb, threshold)
        bounds_a, bounds_b, sim = r["bounds_a"], r["bounds_b"], r["sim"]
        extra = f"; steps that disagree most: {r['most_disagreeing'][:2]}"
    path = dp.dtw(torch.from_numpy(1.0 - np.asarray(sim, np.float64))[None]).path[0].numpy()
    verdict = "" if threshold is None else ("same" if dist <= threshold else "different")
    fig = plot_alignment(sim, path, bounds_a, bounds_b, None, f"{name_a} vs {name_b}"[:60])
    imgs = [_png(fig)]
    if bounds_b is not None:  # CPA: frame-to-step posterior of A over B's mined steps
        Fb = torch.from_numpy(np.asarray(sim, np.float64))
        K = len(bounds_b) - 1
        steps = torch.stack([Fb[:, bounds_b[k]:bounds_b[k + 1]].mean(1) for k in range(K)], 1)
        post = dp.step_marginals(torch.log_softmax(steps * 10.0, -1)[None])[0].numpy()
        plt = pyplot()
        f2, ax = plt.subplots(figsize=(5, 3))
        ax.imshow(post.T, aspect="auto", cmap="magma", interpolation="nearest")
        ax.set_xlabel("frames of A")
        ax.set_ylabel("mined step of B")
        ax.set_title("frame-to-step probabilities (dp.step_marginals)", fontsize=9)
        f2.tight_layout()
        imgs.append(_png(f2))
        extra += "; below: frame-to-step probabilities of A over B's mined steps"
    if frames is not None:  # aligned source frames, step by step (CPA) or along the DTW path
        rows_a = recipe.report_rows(cfg, len(xa), info)
        rows_b = recipe.report_rows(cfg, len(xb), info)
        if bounds_a is not None:
            mid = [((bounds_a[k] + bounds_a[k + 1] - 1) // 2, (bounds_b[k] + bounds_b[k + 1] - 1) // 2)
                   for k in range(len(bounds_a) - 1)]
            labels = [f"step {k + 1}" for k in range(len(mid))]
        else:
            cells = np.argwhere(path > 0)
            pick = np.linspace(0, len(cells) - 1, min(8, len(cells))).round().astype(int)
            mid = [tuple(cells[p]) for p in pick]
            labels = [f"match {c + 1}" for c in range(len(mid))]
        matches = [(int(rows_a[i]), int(rows_b[j])) for i, j in mid]
        imgs.append(frame_strip(frames[0], frames[1], matches, labels, name_a, name_b))
        extra += "; aligned source frames (A above B)"
    cls = "verdict-same" if verdict == "same" else "verdict-diff"
    cap = (f"distance {dist:.4f}" + (f"; truth: {truth}" if truth else "")
           + (f"; verdict: {verdict}" if verdict else "") + extra)
    head = f'<p class="{cls}">{html.escape(verdict.upper() or "no threshold")}</p>'
    page = "<figure>" + head + "".join(imgs) + f"<figcaption>{html.escape(cap)}</figcaption></figure>"
    return page, r


def verify_page(recipe, cfg, models, info, xa, xb, name_a: str, name_b: str, result: dict,
                threshold: float | None, out: str | Path, source: str = "",
                frames: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """The report page of one verified pair: verdict, distance, alignment figures and (CPA) the
    mined steps, the most disagreeing ones highlighted."""
    fig, r = pair_view(recipe, cfg, models, info, xa, xb, name_a, name_b,
                       float(result["distance"]), threshold, frames=frames)
    parts = [fig]
    steps = (r or result).get("steps") if (r or result) else None
    if steps:
        worst = set((r or result)["most_disagreeing"][:3])
        rows = []
        for st in steps:
            style = ' style="background:#ffe0e0"' if st["step"] in worst else ""
            rows.append(f"<tr{style}><td>{st['step']}</td><td>{html.escape(str(st['source_frames_a']))}"
                        f"</td><td>{html.escape(str(st['source_frames_b']))}</td>"
                        f'<td class="num">{st["cost"]:.3f}</td><td class="num">{st["cosine"]:.3f}</td></tr>')
        parts.append("<table><tr><th>step</th><th>frames of A</th><th>frames of B</th><th>cost</th>"
                     "<th>cosine</th></tr>" + "".join(rows) + "</table>"
                     "<p>highlighted: the three steps that disagree most</p>")
    verdict = result.get("same")
    unit = getattr(recipe, "same_means", "procedure")
    word = "no threshold" if verdict is None else (f"SAME {unit}" if verdict else f"DIFFERENT {unit}s")
    summary = (f"method <b>{html.escape(recipe.name)}</b>; distance {float(result['distance']):.5f}; "
               f"decision: <b>{html.escape(word)}</b>"
               + (f" (threshold {threshold:.5f} from {html.escape(source)})" if threshold is not None else ""))
    page = PAGE.substitute(title=html.escape(f"{name_a} vs {name_b}"), summary=summary,
                           warnings="", sections=_section("Alignment", "\n".join(parts)))
    from procalign._io import atomic_write_text

    atomic_write_text(Path(out), page)
    return Path(out)


def source_frames(video, size: int = 64) -> np.ndarray | None:
    """(L, H, W, 3) uint8 frames matching ``video``'s feature rows one to one, or None.

    Found through the extraction manifest beside its feature file (``procalign extract``
    records each video's source file and sampling policy): the source is decoded again with the
    same policy, so row i of the features and frame i here are the same moment."""
    from procalign.data.features import read_manifest
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy, read_video

    path = getattr(video, "path", None)
    if path is None:
        return None
    for folder in (Path(path).parent, Path(path).parent.parent):
        try:
            manifest = read_manifest(folder)
        except (FileNotFoundError, ValueError):
            continue
        entry = manifest.get("videos", {}).get(video.video_id)
        if not entry or not Path(entry.get("source", "")).exists():
            return None
        policy = entry.get("policy") or {}
        sampling = SamplingPolicy(**(policy.get("sampling") or {"mode": "all"}))
        try:
            frames = read_video(entry["source"], sampling, ResizePolicy("fixed", size, None)).frames[0]
        except Exception:  # a source that moved or changed: the report goes on without strips
            return None
        return frames if len(frames) == len(video.features) else None
    return None


def frame_strip(fa: np.ndarray, fb: np.ndarray, matches: list[tuple[int, int]], labels: list[str],
                name_a: str, name_b: str) -> str:
    """Thumbnails of matched frames, A above B, one column per match."""
    from procalign.viz.alignment import pyplot

    plt = pyplot()
    n = len(matches)
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n + 0.6, 3.0), squeeze=False)
    for c, ((i, j), lab) in enumerate(zip(matches, labels)):
        for r, (frames, k) in enumerate(((fa, i), (fb, j))):
            ax = axes[r, c]
            ax.imshow(frames[k])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(lab, fontsize=7)
            ax.set_xlabel(f"frame {k}", fontsize=6)
    axes[0, 0].set_ylabel(name_a[:14], fontsize=7)
    axes[1, 0].set_ylabel(name_b[:14], fontsize=7)
    fig.tight_layout()
    return _png(fig)


def tsne_figure(recipe, cfg, models, info, videos, which: str = "test") -> str | None:
    from sklearn.manifold import TSNE

    from procalign.viz.alignment import pyplot

    if len(videos) < 4:
        return None
    X = np.stack([recipe.report_frames(cfg, models, info, np.asarray(v.features)).mean(0)
                  for v in videos])
    Y = TSNE(n_components=2, perplexity=min(30.0, len(videos) - 1.0), init="pca",
             random_state=0).fit_transform(X)
    labels = [str(v.label) for v in videos]
    uniq = sorted(set(labels))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.6))
    cmap = plt.get_cmap("tab20")
    for i, lab in enumerate(uniq):
        m = np.array([x == lab for x in labels])
        ax.scatter(Y[m, 0], Y[m, 1], s=14, color=cmap(i % 20), label=lab if len(uniq) <= 20 else None)
    if len(uniq) <= 20:
        ax.legend(fontsize=6, ncol=2, loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return _figure(_png(fig), f"t-SNE of {len(videos)} {which} videos (mean frame embedding), "
                   f"coloured by procedure ({len(uniq)} procedures)")


def build_report(run_dir: str | Path, out: str | Path | None = None, pairs: int = 3,
                 data: Any = None, progress: bool = False) -> Path:
    """Write the HTML report of a finished run; returns its path (default ``RUN/report.html``)."""
    from procalign.eval import protocols as P
    from procalign.train.runner import evaluate_run, load_run, recipe_of_run

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    if pairs < 0:
        raise ValueError(f"--pairs must be >= 0, got {pairs}")
    recipe = recipe_of_run(run_dir)
    cfg, meta, models = load_run(recipe, run_dir)
    data = data if data is not None else recipe.load_data(cfg, run_dir, progress)
    ev_path = run_dir / "eval.json"
    report = (json.loads(ev_path.read_text()) if ev_path.is_file()
              else evaluate_run(recipe, run_dir, progress=progress, data=data))
    sections = []
    cfg_text = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    sections.append(_section("Config", f"<pre>{html.escape(cfg_text)}</pre>"))
    curves = training_curves(run_dir)
    if curves:
        sections.append(_section("Training", curves))
    rows = report.get("metrics", [])
    sections.append(_section("Evaluation", _table(rows, ["metric", "variant", "value"])
                             + f"<p>{html.escape(str(report.get('pairs', '')))}</p>"))
    thr_file = run_dir / "threshold.json"
    threshold = json.loads(thr_file.read_text())["threshold"] if thr_file.is_file() else None
    split = getattr(cfg.eval, "split", cfg.data.test_split)
    test = data.split(split)
    if recipe.verifies_pairs and len(test) >= 2:
        own = data.pairs if split == cfg.data.test_split else []
        plist, source, _ = P.evaluation_pairs(test, own, getattr(cfg.eval, "pairs", "auto"),
                                              getattr(cfg.eval, "num_pairs", 400),
                                              "prefer_same_task", 7,
                                              getattr(cfg.eval, "max_pairs", None))
        dist = recipe.pair_distances(cfg, data, models, meta, plist)
        same = np.array([bool(p.same) for p in plist])
        body = []
        if same.any() and (~same).any():
            body.append(roc_figure(dist, same, threshold))
        centre = threshold if threshold is not None else float(np.median(dist))
        margin = np.abs(dist - centre)
        order = np.argsort(-margin)
        chosen = [("most confident", order[:pairs]), ("least confident", order[::-1][:pairs])]
        for name, idx in chosen:
            figs = [pair_figure(recipe, cfg, models, meta, data, plist[i], float(dist[i]),
                                threshold) for i in idx]
            body.append(f"<h3>{name} pairs</h3><div class='pairs'>{''.join(figs)}</div>")
        sections.append(_section(f"Test pairs ({source})", "\n".join(body)))
    pool, which = (test, "test") if len(test) >= 10 else (data.videos, "all")
    tsne = tsne_figure(recipe, cfg, models, meta, pool[:300], which)
    if tsne:
        sections.append(_section("Embeddings", tsne))
    warnings = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in report.get("warnings", []))
    summary = (f"method <b>{html.escape(recipe.name)}</b>; data: {html.escape(str(data.description))}; "
               f"{len(data.videos)} videos; report built in {time.perf_counter() - t0:.1f} s")
    page = PAGE.substitute(title=html.escape(f"{recipe.name} run {run_dir.name}"),
                           summary=summary, warnings=warnings, sections="\n".join(sections))
    out = Path(out) if out is not None else run_dir / "report.html"
    from procalign._io import atomic_write_text

    atomic_write_text(out, page)
    return out
