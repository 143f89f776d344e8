"""``procalign match "step one; step two; ..." VIDEO... --run DIR``: which video shows these steps?

Ranks the videos by the cosine between each video's embedding and the paragraph embedding of the
step list (sentences separated by ``;``), with a WeakSVR run's model and text encoder. VIDEOs are
feature files (``.npy``, (L, D) with the run's D) or videos / frame folders (encoded with the
run's ``data.video_encoder``). Text-to-video matching as in WeakSVR's CSV-Matching.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "match",
        help="rank videos for a step list (text-to-video matching, WeakSVR runs)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("steps", help='the step sentences, separated by ";" (e.g. "open the lid; pour")')
    p.add_argument("videos", nargs="+", help="candidate videos: .npy features, video files or frame folders")
    p.add_argument("--run", required=True, help="run folder of `procalign train weaksvr`")
    p.add_argument("--json", default=None, help="write the ranking as JSON")
    p.set_defaults(func=run)


def parse_steps(text: str) -> list[str]:
    steps = [s.strip() for s in text.split(";")]
    steps = [s for s in steps if s]
    if not steps:
        raise ValueError('no step sentences: give them separated by ";", e.g. "take the cup; pour"')
    return steps


def run(args: argparse.Namespace) -> int:
    from procalign.cli.verify import load_input
    from procalign.train.runner import load_run, recipe_of_run

    recipe = recipe_of_run(args.run)
    if not hasattr(recipe, "match"):
        raise ValueError(
            f"{args.run} is a {recipe.name} run; text-to-video matching needs a method with a "
            "text side (weaksvr)"
        )
    steps = parse_steps(args.steps)
    cfg, meta, models = load_run(recipe, args.run)
    videos = [load_input(v, cfg, int(meta["in_dim"])) for v in args.videos]
    from procalign.data.video import is_video_input
    from procalign.train.runner import random_features

    if random_features(cfg, args.run, videos=any(is_video_input(Path(v)) for v in args.videos)):
        from procalign.models.encoders import random_weights_warning

        print(random_weights_warning("the inputs of this run"), file=sys.stderr)
    scores = recipe.match(cfg, models, meta, steps, videos)
    order = sorted(range(len(videos)), key=lambda i: -float(scores[i]))
    print(f"{len(steps)} steps: " + " | ".join(steps))
    print(f"{'rank':>4s}  {'score':>7s}  video")
    for r, i in enumerate(order, 1):
        print(f"{r:>4d}  {float(scores[i]):7.4f}  {args.videos[i]}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "steps": steps, "run": str(args.run), "method": recipe.name,
            "ranking": [{"video": args.videos[i], "score": float(scores[i])} for i in order],
        }, indent=2))
    return 0
