"""``procalign report RUN``: one self-contained HTML page of a run (opens from disk, no network).

Config, training curves, the evaluation table with baselines, the ROC curve with the run's
threshold, the similarity matrices (DTW path; CPA: mined steps and frame-to-step probabilities)
of the most and least confident test pairs, and a t-SNE of the test videos' embeddings.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="a self-contained HTML report of a run: curves, metrics, ROC, aligned pairs, t-SNE",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="run folder of `procalign train METHOD`")
    p.add_argument("--pairs", type=int, default=3, help="most and least confident pairs to draw")
    p.add_argument("--out", default=None, help="HTML file (default RUN/report.html)")
    p.add_argument(
        "--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from procalign.viz.report import build_report

    out = build_report(args.run, args.out, args.pairs, progress=not args.quiet)
    print(f"report: {out}")
    return 0
