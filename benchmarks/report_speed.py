"""Seconds to build ``procalign report`` for a run scored on 600 test pairs.

    python benchmarks/report_speed.py [--method cpa|weaksvr] [--pairs 3] [--out DIR]

Trains a short run of the method on the built-in synthetic data (configs/<method>_synthetic.yaml,
600 sampled test pairs, 2 epochs: the report's cost does not depend on training length), then
times :func:`procalign.viz.report.build_report` (data loading included) three times and prints
the median, with the size of the page. 1 torch / numba thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="cpa", choices=["cpa", "weaksvr"])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--out", default="runs/bench/report")
    args = p.parse_args(argv)
    from procalign.config import load_config
    from procalign.methods import load_recipes
    from procalign.train.runner import evaluate_run, train_run
    from procalign.train.threads import compute
    from procalign.viz.report import build_report

    recipe = load_recipes().build(args.method)
    cfg = load_config(recipe.config_cls, str(ROOT / f"configs/{args.method}_synthetic.yaml"),
                      ["train.epochs=2", "eval.pairs=sampled", "eval.num_pairs=600"])
    run = Path(args.out) / args.method
    with compute(1):
        train_run(recipe, cfg, run, resume=False, progress=False)
        report = evaluate_run(recipe, run, progress=False)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            page = build_report(run, run / "report.html", args.pairs)
            times.append(time.perf_counter() - t0)
    print(f"{args.method}: {report['num_pairs']} test pairs, {2 * args.pairs} pairs drawn; "
          f"report in {statistics.median(times):.1f} s (median of 3: "
          + ", ".join(f"{t:.1f}" for t in times) + f"), {page.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
