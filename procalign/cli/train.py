"""``procalign train METHOD [--config FILE] [--out DIR] [key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a method (cpa, lrprop, ...) from a YAML config plus key=value overrides",
        description="Train a method. A run folder keeps config.yaml, log.jsonl, checkpoints and "
        "model.safetensors; running the same command again resumes from the last checkpoint.",
    )
    p.add_argument("method", help="method name (e.g. cpa, lrprop)")
    p.add_argument("--config", default=None, help="YAML config file (see configs/)")
    p.add_argument("--out", default=None, help="run folder (default runs/<method>)")
    p.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="config overrides such as optim.lr=1e-4 train.epochs=5")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from procalign.config import load_config
    from procalign.methods import load_recipes

    recipe = load_recipes().build(args.method)
    config = load_config(recipe.config_cls, args.config, args.overrides)
    run_dir = Path(args.out or f"runs/{args.method}")
    summary = recipe.train(config, run_dir, resume=not args.no_resume, progress=not args.quiet)
    print(json.dumps(summary, indent=2, default=str))
    return 0
