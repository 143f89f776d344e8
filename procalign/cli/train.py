"""``procalign train METHOD [--config FILE] [--out DIR] [--extend] [key=value ...]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from procalign.methods import METHOD_NAMES

    p = sub.add_parser(
        "train",
        help="train a method (" + ", ".join(METHOD_NAMES) + ") from a YAML config plus key=value overrides",
        description="Train a method. A run folder keeps config.yaml, meta.json, log.jsonl, "
        "checkpoints and model.safetensors. Under `torchrun --nproc_per_node=N procalign train ...` "
        "the N processes train one run together (docs/scaling.md). Running the same command again resumes from the last "
        "checkpoint; a rerun with other settings is refused (the run is left as it was). Without "
        "--config, an existing run's own config.yaml is the base.",
    )
    p.add_argument("method", help="method name: " + ", ".join(METHOD_NAMES))
    p.add_argument("--config", default=None, help="YAML config file (see configs/)")
    p.add_argument("--out", default=None, help="run folder (default runs/<method>)")
    p.add_argument("--no-resume", action="store_true", help="start the run folder over")
    p.add_argument(
        "--extend", action="store_true",
        help="accept a larger train.epochs for a finished run and train the extra epochs",
    )
    p.add_argument(
        "--print-config", action="store_true",
        help="print the full resolved config (every default filled in) and exit",
    )
    p.add_argument(
        "--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars"
    )
    p.add_argument("overrides", nargs="*", help="config overrides such as optim.lr=1e-4 train.epochs=5")
    p.set_defaults(func=run)


def _check_method(run_dir: Path, method: str) -> None:
    """A run folder of another method is refused by name, before its config is read as ours."""
    from procalign.train.runner import RunConflict, RunFolder

    meta = RunFolder(run_dir).meta() if (run_dir / "meta.json").is_file() else None
    other = (meta or {}).get("method")
    if other not in (None, method):
        raise RunConflict(
            f"{run_dir} is a {other!r} run, not {method!r}: train {method} into another folder "
            f"(--out NEW), or resume that run with `procalign train {other} --out {run_dir}`"
        )


def run(args: argparse.Namespace) -> int:
    import json

    from procalign.config import dump_yaml, load_config
    from procalign.methods import load_recipes
    from procalign.train.runner import train_run

    recipe = load_recipes().build(args.method)
    run_dir = Path(args.out or f"runs/{args.method}")
    _check_method(run_dir, args.method)
    base = args.config
    if base is None and (run_dir / "config.yaml").is_file() and not args.no_resume:
        base = run_dir / "config.yaml"
    config = load_config(recipe.config_cls, base, args.overrides)
    recipe.validate(config)
    if args.print_config:
        print(dump_yaml(config), end="")
        return 0
    from procalign.train import distributed as dd

    summary = train_run(
        recipe, config, run_dir, resume=not args.no_resume, extend=args.extend,
        progress=not args.quiet,
    )
    if dd.is_main():  # under torchrun, rank 0 alone reports
        print(json.dumps(summary, indent=2, default=str))
    dd.shutdown()
    return 0
