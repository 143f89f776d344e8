"""``procalign align A B``: align two feature sequences and draw what was aligned."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="align two sequences (.npy feature files, T x D)",
        description="Print DTW and soft-DTW distances and the K mined steps of two feature "
        "sequences; write a PNG of the similarity matrix with the path and the step blocks.",
    )
    p.add_argument("a", help="first sequence: .npy file of shape (T, D)")
    p.add_argument("b", help="second sequence: .npy file of shape (T, D)")
    p.add_argument("-k", "--steps", type=int, default=6, help="number of steps K to mine (default 6)")
    p.add_argument("--gamma", type=float, default=0.1, help="soft-DTW temperature (default 0.1)")
    p.add_argument("--cost", default="cosine", choices=["cosine", "sqeuclidean", "euclidean"],
                   help="frame cost for DTW / soft-DTW")
    p.add_argument("--sim", default="cosine", choices=["cosine", "relational"],
                   help="similarity for step mining: cosine, or CPA's relational softmax matrix")
    p.add_argument("--block-score", default="sqrt_area", choices=["sqrt_area", "mean"],
                   help="block score for step mining (mean = CPA Eq. 1; sqrt_area suits untrained features)")
    p.add_argument("--plot", default="alignment.png", help="PNG to write ('' to skip)")
    p.add_argument("--json", default=None, help="also write the result as JSON")
    p.set_defaults(func=run)


def load_sequence(path: str):
    import numpy as np

    f = Path(path)
    if not f.exists():
        raise FileNotFoundError(f"no such file: {f}")
    if f.suffix != ".npy":
        raise ValueError(f"{f}: expected a .npy feature file of shape (T, D)")
    try:
        x = np.load(f, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for corrupt files
        raise ValueError(f"{f}: not a readable .npy file ({exc})") from exc
    if x.ndim != 2:
        raise ValueError(f"{f}: expected shape (T, D), got {x.shape}")
    return x


def format_alignment(r, name_a: str = "A", name_b: str = "B") -> str:
    lines = [
        f"DTW distance (per path step): {r.dtw_distance:.4f}",
        f"soft-DTW (gamma={r.settings['gamma']:g}, per frame): {r.soft_dtw_distance:.4f}",
        f"soft-DTW divergence (per frame): {r.soft_dtw_divergence:.4f}",
        f"mined steps (K={r.settings['steps']}, total block score {r.steps_value:.4f}):",
        f"  {'step':>4s}  {name_a + ' frames':>14s}  {name_b + ' frames':>14s}  {'mean sim':>8s}",
    ]
    for k in range(len(r.bounds_a) - 1):
        fa = f"{r.bounds_a[k]}-{r.bounds_a[k + 1] - 1}"
        fb = f"{r.bounds_b[k]}-{r.bounds_b[k + 1] - 1}"
        lines.append(f"  {k + 1:>4d}  {fa:>14s}  {fb:>14s}  {r.block_scores[k]:8.3f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from procalign.align import align_pair

    a, b = load_sequence(args.a), load_sequence(args.b)
    r = align_pair(a, b, steps=args.steps, gamma=args.gamma, cost=args.cost, sim=args.sim,
                   block_score=args.block_score)
    print(format_alignment(r, Path(args.a).stem, Path(args.b).stem))
    if args.plot:
        from procalign.viz.alignment import plot_alignment

        plot_alignment(r.sim, r.path, r.bounds_a, r.bounds_b, out=args.plot,
                       title=f"{Path(args.a).stem} vs {Path(args.b).stem}")
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps(r.to_dict(), indent=2))
    return 0
