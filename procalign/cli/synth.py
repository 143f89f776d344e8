"""``procalign synth OUT_DIR``: write a synthetic procedural dataset in the ``folder`` layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="write a synthetic procedural dataset (features, labels, pairs, optional videos)",
        description=(
            "Generate synthetic procedural videos with ground truth (per-frame steps, phases, "
            "progress) and write them in the folder layout: index.csv, features/<id>.npy, "
            "labels/<id>.txt, phases/<id>.txt, pairs.csv, meta.json, and videos/<id>.<ext> with "
            "--render-videos. Procedures of one task differ by swapped, moved or replaced steps, "
            "so video-level mean pooling cannot tell order-only procedures apart."
        ),
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created)")
    p.add_argument(
        "--tasks", type=int, default=None, help="tasks, each with its own step vocabulary (default 3)"
    )
    p.add_argument(
        "--procedures", type=int, default=None, help="procedures per task, >= 2 (default 4)"
    )
    p.add_argument(
        "--videos-per-procedure", type=int, default=None, help="videos per procedure (default 20)"
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="mean frames per video, T (default 48; lengths jitter +-25%%)",
    )
    p.add_argument("--dim", type=int, default=None, help="feature size D (default 64)")
    p.add_argument(
        "--steps-per-task", type=int, default=None, help="step vocabulary per task (default 6)"
    )
    p.add_argument(
        "--steps-per-procedure", type=int, default=None, help="script length incl. repeats (default 5)"
    )
    p.add_argument(
        "--split-by",
        choices=["video", "procedure"],
        default=None,
        help="test split: held-out videos of every procedure, or held-out procedures (SVIP-like)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="everything is a deterministic function of the seed"
    )
    p.add_argument(
        "--preset",
        default=None,
        help="start from named generator settings (procalign.data.synthetic.PRESETS: "
        "'nuisance' = subject offsets and mixing, time warps, idle gaps, shared steps, background "
        "activity, unseen test procedures; docs/generalisation.md); options given win",
    )
    p.add_argument(
        "--render-videos", action="store_true", help="also render videos/<id>.<ext> with PyAV"
    )
    p.add_argument("--video-ext", choices=["mp4", "avi", "webm", "mkv"], default="mp4")
    p.add_argument(
        "--video-size",
        type=int,
        default=32,
        help="rendered frame side in pixels (even, default 32)",
    )
    p.add_argument(
        "--render-style",
        choices=["plain", "cluttered"],
        default="plain",
        help="plain: a colour per step; cluttered: per-video hue, striped background and "
        "lighting, so only shape and motion tell steps apart (tells pretrained from random "
        "encoders)",
    )
    p.add_argument(
        "--from-svip",
        metavar="ROOT",
        default=None,
        help="simulate the videos of a real SVIP benchmark folder (label_bank.json, "
        "*_split.txt, test_pairs.txt; e.g. ../shared/data/svip/CSV), keeping its ids, splits "
        "and test pairs; --tasks/--procedures/--videos-per-procedure are then ignored",
    )
    p.add_argument(
        "--max-videos", type=int, default=None, help="with --from-svip: first N videos per split"
    )
    p.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true",
        help="hide the progress bar",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from procalign.data import synthetic, synthetic_io

    out = Path(args.out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUT_DIR {str(out)!r} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"OUT_DIR {str(out)!r} is not empty; delete it or choose a new folder (files of "
            "another dataset left there would mix with this one)"
        )
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.max_videos is not None and not args.from_svip:
        raise ValueError("--max-videos only applies with --from-svip")
    if args.max_videos is not None and args.max_videos < 1:
        raise ValueError(f"--max-videos must be >= 1, got {args.max_videos}")
    given = {
        "num_tasks": args.tasks, "procedures_per_task": args.procedures,
        "videos_per_procedure": args.videos_per_procedure, "num_frames": args.frames,
        "dim": args.dim, "steps_per_task": args.steps_per_task,
        "steps_per_procedure": args.steps_per_procedure, "split_by": args.split_by,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if args.preset is not None:
        base = synthetic.preset_settings({"preset": args.preset})
    else:  # the generator's own defaults, 64-D features
        base = {"dim": 64}
    config = {**base, **given, "seed": args.seed}
    show = not args.no_progress
    if args.from_svip:
        keep = ("num_frames", "dim", "seed") if args.preset is None else tuple(config)
        settings = {k: v for k, v in config.items()
                    if k in keep and k not in ("num_tasks", "procedures_per_task",
                                               "videos_per_procedure", "split_by",
                                               "test_fraction")}
        ds = synthetic_io.from_svip(
            args.from_svip, max_videos=args.max_videos, progress=show, **settings
        )
    else:
        ds = synthetic.make_dataset(progress=show, **config)
    root = synthetic_io.write_folder(
        ds,
        args.out_dir,
        render_videos=args.render_videos,
        video_ext=args.video_ext,
        video_size=args.video_size,
        video_style=args.render_style,
        progress=show,
    )
    n_train = len(ds.split("train"))
    if n_train == len(ds):
        print(
            "synth: warning: no test videos (raise --videos-per-procedure to 3 or more, or use "
            "--split-by procedure)",
            file=sys.stderr,
        )
    elif not ds.pairs:
        hint = "--max-videos" if args.from_svip else "--videos-per-procedure"
        print(
            f"synth: warning: no test pairs (pairs.csv is empty), so verification has nothing to "
            f"score; raise {hint}",
            file=sys.stderr,
        )
    print(
        f"wrote {len(ds)} videos ({n_train} train, {len(ds) - n_train} test), "
        f"{len(ds.procedures)} procedures, {len(ds.pairs)} test pairs, D={ds.meta['config']['dim']} to {root}"
    )
    return 0
