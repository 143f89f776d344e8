"""``procalign score PAIRS.csv --run DIR --out SCORES [--shard i/n] [--merge] [--ray]``.

Distances and same/different verdicts of a pair list (CSV: ``video_id_1``, ``video_id_2``,
optional ``pair_id``, ``same``) with a trained run, on cached features: the run's own data, or
``--features`` (a ``procalign extract`` folder). The list is cut into ``--shards N`` shards of
contiguous rows, each written atomically as ``SCORES/shard-0000i-of-0000N.csv``; a rerun skips
finished shards. ``--shard i/n`` scores one shard (one job per machine or GPU), ``--merge``
checks that every shard is there and writes ``SCORES/scores.csv``. Without ``--shard`` every
shard is scored in turn and merged. Pairs naming videos without features are listed by id (and
left unscored in the output); the rest are scored. ``--ray`` scores the shards as Ray Data
``map_batches`` tasks (``procalign[ray]``; docs/scaling.md).
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="distances and same/different verdicts of a pair list, in resumable shards",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pairs", metavar="PAIRS.csv", help="pair list: video_id_1, video_id_2 [, pair_id, same]")
    p.add_argument("--run", default=None, help="run folder of `procalign train METHOD` (not needed with --merge)")
    p.add_argument("--out", required=True, help="scores folder (shard files, scores.csv)")
    p.add_argument("--shard", default=None, metavar="I/N", help="score only shard I of N")
    p.add_argument("--shards", type=int, default=None,
                   help="shards to cut the list into when scoring all of them (default 1; "
                        "with --ray: 4 per worker)")
    p.add_argument("--merge", action="store_true",
                   help="only check that every shard is present and write scores.csv")
    p.add_argument("--features", default=None,
                   help="features folder (`procalign extract` output); default: the run's data")
    p.add_argument("--threshold", type=float, default=None,
                   help="decision threshold (default: the run's threshold.json)")
    p.add_argument("--chunk", type=int, default=2048, help="pairs per distance call (default 2048)")
    p.add_argument("--ray", action="store_true",
                   help="score the shards with Ray Data (RAY_ADDRESS or a local instance)")
    p.add_argument("--ray-workers", type=int, default=2, help="Ray actors scoring at once (default 2)")
    p.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _report_missing(missing: dict[str, str]) -> None:
    if not missing:
        return
    items = sorted(missing.items())
    shown = ", ".join(f"pair {pid} ({ids})" for pid, ids in items[:10])
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    print(f"score: {len(items)} pair(s) name videos without features, left unscored: "
          f"{shown}{more}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from procalign.data.features import parse_shard
    from procalign.eval import scoring as S

    if args.merge:
        if args.shard is not None:
            raise ValueError("--merge and --shard exclude each other")
        info = S.merge_shards(args.out)
        _report_missing(info["missing"])
        print(f"score: merged {info['shards']} shard(s), {info['pairs']} pairs -> {info['scores']}")
        return 0
    if args.run is None:
        raise ValueError("--run RUN is needed to score (only --merge works without it)")
    if args.chunk < 1 or args.ray_workers < 1:
        raise ValueError("--chunk and --ray-workers must be >= 1")
    if args.shard is not None:
        i, n = parse_shard(args.shard)
        if args.shards is not None and args.shards != n:
            raise ValueError(f"--shard {args.shard} names {n} shards, --shards says {args.shards}")
        which = [i]
    else:
        n = args.shards or (4 * args.ray_workers if args.ray else 1)
        which = None
    pairs, _ = S.prepare(args.pairs, args.run, args.out, n)
    if args.ray:
        from procalign.integrations.ray import score_with_ray

        res = score_with_ray(pairs, args.run, args.out, n, which, features=args.features,
                             threshold=args.threshold, workers=args.ray_workers,
                             chunk=args.chunk, progress=not args.quiet)
    else:
        pending = [j for j in (which if which is not None else range(n))
                   if not S.shard_path(args.out, j, n).is_file()]
        scorer = S.PairScorer(args.run, args.features, args.threshold) if pending else None
        res = S.score_shards(pairs, scorer, args.out, n, which, chunk=args.chunk,
                             progress=not args.quiet)
    _report_missing(res["missing"])
    print(f"score: {len(res['done'])} shard(s) scored ({res['pairs']} pairs), "
          f"{len(res['skipped'])} already done, of {n}; in {args.out}")
    if which is None:
        info = S.merge_shards(args.out)
        print(f"score: merged -> {info['scores']}")
    return 0
