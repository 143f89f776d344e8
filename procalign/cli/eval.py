"""``procalign eval``: score prediction files, write a JSON report and print a table.

Each metric family is a sub-verb with one documented input format::

    procalign eval verification --pairs pairs.csv [--out report.json]
    procalign eval keystep      --frames frames.csv [--background -1]
    procalign eval quality      --scores scores.csv [--score-range 0 100]
    procalign eval matching     --scores matching.npz [--ks 1 2 3]
    procalign eval alignment    --test test.npz [--train train.npz] [--stride 5]

Input formats (CSV files need a header row; extra columns are ignored):

* verification, CSV, one row per video pair: ``distance`` (lower = same procedure), ``same``
  (1/0 or true/false); for WDR either ``steps_1`` and ``steps_2`` (the two procedures' step ids,
  separated by ``|``, or by spaces when there is no ``|``) or ``label_1`` and ``label_2`` with
  ``--label-bank label_bank.json`` (SVIP's procedure -> step list file).
* keystep, CSV, one row per frame, frames in temporal order within each video: ``video``,
  ``pred``, ``true`` (integer key-step ids; ``--background`` marks background), optional ``task``
  and ``pred_task`` (constant within a video).
* quality, CSV, one row per video: ``pred``, ``true`` (scores), optional ``pred_transitions`` and
  ``true_transitions`` (space-separated transition frames) and ``length`` (frames, for
  ``--aiou-variant phases``) to add AIoU.
* matching, ``.npz``: ``scores`` (B, C) (higher = better match), ``correct`` (B,) index of the
  right candidate.
* alignment, ``.npz``: ``embs`` (B, T, D) frame embeddings (padded), optional ``lengths`` (B,)
  and ``labels`` (B, T) integer phase labels; ``--train`` (same format, with labels) adds phase
  classification and progression.

Every report row names its metric's variant. New sub-verbs (e.g. evaluating a method from a
checkpoint) plug in with :func:`register_subverb`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple


class Subverb(NamedTuple):
    """One ``procalign eval <name>``: help text, argument builder, runner returning a report."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict[str, Any]]


SUBVERBS: dict[str, Subverb] = {}


def register_subverb(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], dict[str, Any]],
) -> None:
    """Add ``procalign eval <name>``; ``run(args)`` returns ``{"metrics": [rows], ...}``."""
    key = name.lower()
    if key in SUBVERBS:
        raise ValueError(f"eval sub-verb {key!r} is already registered")
    SUBVERBS[key] = Subverb(help, add_arguments, run)


# --------------------------------------------------------------------------------------------
# File readers
# --------------------------------------------------------------------------------------------


def _read_csv(path: str, required: tuple[str, ...]) -> list[dict[str, str]]:
    import csv

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with p.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            fields = [f.strip() for f in reader.fieldnames or []]
            missing = [c for c in required if c not in fields]
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {', '.join(missing)}; "
                    f"found {', '.join(fields) or 'none'}"
                )
            rows = [
                {(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader
            ]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: not a readable UTF-8 CSV file ({exc})") from None
    if not rows:
        raise ValueError(f"{path}: no data rows")
    return rows


def _number(value: str, column: str, line: int, path: str, kind: type = float) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(
            f"{path} line {line}: column {column} = {value!r} is not a {kind.__name__}"
        ) from None
    if kind is float and not math.isfinite(number):
        raise ValueError(
            f"{path} line {line}: column {column} = {value!r} is not finite; metrics are "
            "undefined for NaN or infinite values"
        )
    return number


def _boolean(value: str, line: int, path: str) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise ValueError(f"{path} line {line}: column same = {value!r} must be 1/0 or true/false")


def _load_npz(path: str, required: tuple[str, ...]) -> dict[str, Any]:
    import numpy as np

    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        data = np.load(path, allow_pickle=False)
        if not hasattr(data, "files"):
            raise ValueError("it holds one array (.npy), not named arrays (.npz, np.savez)")
        with data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file of numeric arrays ({exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; found {sorted(arrays)}")
    return arrays


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------


def _args_verification(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pairs", required=True, help="CSV: distance,same[,steps_1,steps_2 | ,label_1,label_2]"
    )
    p.add_argument(
        "--label-bank",
        default=None,
        help="JSON {procedure label: [step, ...]} (SVIP's label_bank.json): take the step lists "
        "of columns label_1,label_2 from it for WDR",
    )


def _steps(text: str) -> list[str]:
    """Step ids separated by '|' (names with spaces), else by whitespace."""
    parts = text.split("|") if "|" in text else text.split()
    return [x.strip() for x in parts if x.strip()]


def _run_verification(args: argparse.Namespace) -> dict[str, Any]:
    from procalign.eval import VerificationMeter

    rows = _read_csv(args.pairs, ("distance", "same"))
    # `procalign score` output: pairs naming a video without features (listed in `missing`,
    # no distance) are left out, and said so
    lacking = [bool((r.get("missing") or "").strip()) for r in rows]
    unscored = [r for r, x in zip(rows, lacking) if x]
    if unscored:
        rows = [r for r, x in zip(rows, lacking) if not x]
        print(f"eval: {len(unscored)} pair(s) left out: their videos have no features "
              f"(column missing, e.g. {unscored[0]['missing']!r})", file=sys.stderr)
        if not rows:
            raise ValueError(f"{args.pairs}: every pair names a video without features")
    meter = VerificationMeter()
    distances = [_number(r["distance"], "distance", i + 2, args.pairs) for i, r in enumerate(rows)]
    same = [_boolean(r["same"], i + 2, args.pairs) for i, r in enumerate(rows)]
    steps_1 = steps_2 = None
    if args.label_bank is not None:
        bank_path = Path(args.label_bank)
        if not bank_path.is_file():
            raise FileNotFoundError(f"no such file: {args.label_bank}")
        try:
            bank = json.loads(bank_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{args.label_bank}: not a valid JSON label bank ({exc})") from None
        bad = []
        if isinstance(bank, dict):
            bad = [k for k, v in bank.items() if not isinstance(v, list)]
        if not isinstance(bank, dict) or bad:
            raise ValueError(
                f"{args.label_bank}: must map each procedure label to a list of steps"
                + (f"; label {bad[0]!r} maps to {type(bank[bad[0]]).__name__}" if bad else "")
            )
        if "label_1" not in rows[0] or "label_2" not in rows[0]:
            raise ValueError(f"{args.pairs}: --label-bank needs columns label_1 and label_2")
        unknown = sorted({r[c] for r in rows for c in ("label_1", "label_2")} - set(bank))
        if unknown:
            raise ValueError(f"{args.label_bank}: no step list for label(s) {unknown[:5]}")
        steps_1 = [bank[r["label_1"]] for r in rows]
        steps_2 = [bank[r["label_2"]] for r in rows]
    elif all(r.get("steps_1") is not None and r.get("steps_2") is not None for r in rows):
        steps_1 = [_steps(r["steps_1"]) for r in rows]
        steps_2 = [_steps(r["steps_2"]) for r in rows]
    meter.update(distances, same, steps_1, steps_2)
    return {"inputs": {"pairs": args.pairs, "num_pairs": len(rows),
                       "left_out_missing": len(unscored)}, "metrics": meter.report()}


def _args_keystep(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", required=True, help="CSV: video,pred,true[,task][,pred_task]")
    p.add_argument("--background", type=int, default=-1, help="background label (default -1)")


def _run_keystep(args: argparse.Namespace) -> dict[str, Any]:
    from procalign.eval import KeystepMeter

    rows = _read_csv(args.frames, ("video", "pred", "true"))
    videos: dict[str, dict[str, Any]] = {}
    for i, r in enumerate(rows):
        v = videos.setdefault(
            r["video"],
            {"pred": [], "true": [], "task": r.get("task"), "pred_task": r.get("pred_task")},
        )
        for key in ("task", "pred_task"):
            if r.get(key) != v[key]:
                raise ValueError(
                    f"{args.frames} line {i + 2}: {key} changes within video {r['video']!r}"
                )
        v["pred"].append(_number(r["pred"], "pred", i + 2, args.frames, int))
        v["true"].append(_number(r["true"], "true", i + 2, args.frames, int))
    vids = list(videos.values())
    has_task = all(v["task"] is not None for v in vids)
    has_pred_task = has_task and all(v["pred_task"] is not None for v in vids)
    meter = KeystepMeter(background=args.background)
    meter.update(
        [v["pred"] for v in vids],
        [v["true"] for v in vids],
        [v["task"] for v in vids] if has_task else None,
        [v["pred_task"] for v in vids] if has_pred_task else None,
    )
    result = meter.compute()
    per_task = {
        str(t): {
            **{k: s[k] for k in ("recall", "precision", "f1", "mof", "iou", "frames")},
            "matching": {str(p): g for p, g in s["matching"].items()},
        }
        for t, s in result["per_task"].items()
    }
    return {
        "inputs": {"frames": args.frames, "num_videos": len(vids), "background": args.background},
        "metrics": meter.report(),
        "per_task": per_task,
    }


def _args_quality(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scores",
        required=True,
        help="CSV: pred,true[,pred_transitions,true_transitions[,length]]",
    )
    p.add_argument(
        "--score-range",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=None,
        help="the dataset's score range for R-L2 (default: range of the true scores, as TSA)",
    )
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75])
    p.add_argument("--aiou-variant", choices=("tsa", "phases"), default="tsa")


def _run_quality(args: argparse.Namespace) -> dict[str, Any]:
    from procalign.eval import QualityMeter

    rows = _read_csv(args.scores, ("pred", "true"))
    path = args.scores
    pred = [_number(r["pred"], "pred", i + 2, path) for i, r in enumerate(rows)]
    true = [_number(r["true"], "true", i + 2, path) for i, r in enumerate(rows)]
    meter = QualityMeter(args.score_range, args.thresholds, args.aiou_variant)
    if all(r.get("pred_transitions") and r.get("true_transitions") for r in rows):

        def parse(col: str) -> list[list[float]]:
            return [
                [_number(x, col, i + 2, path) for x in r[col].split()] for i, r in enumerate(rows)
            ]

        lengths = None
        if all(r.get("length") for r in rows):
            lengths = [_number(r["length"], "length", i + 2, path) for i, r in enumerate(rows)]
        meter.update(pred, true, parse("pred_transitions"), parse("true_transitions"), lengths)
    else:
        meter.update(pred, true)
    return {"inputs": {"scores": path, "num_videos": len(rows)}, "metrics": meter.report()}


def _args_matching(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scores", required=True, help=".npz: scores (B, C), correct (B,)")
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 3], help="k of top-k accuracy")


def _run_matching(args: argparse.Namespace) -> dict[str, Any]:
    from procalign.eval import MatchingMeter

    data = _load_npz(args.scores, ("scores", "correct"))
    meter = MatchingMeter(ks=args.ks)
    meter.update(data["scores"], data["correct"])
    q, c = data["scores"].shape
    return {
        "inputs": {"scores": args.scores, "num_queries": int(q), "num_candidates": int(c)},
        "metrics": meter.report(),
    }


def _args_alignment(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--test", required=True, help=".npz: embs (B, T, D)[, lengths (B,), labels (B, T)]"
    )
    p.add_argument("--train", default=None, help="same format with labels: adds the linear probes")
    p.add_argument(
        "--stride",
        type=int,
        default=1,
        help="frame stride for Kendall's tau, cycle-consistency and AP@K (TCC/CARL report 5)",
    )
    p.add_argument(
        "--distance", choices=("sqeuclidean", "euclidean", "cosine"), default="sqeuclidean"
    )
    p.add_argument("--ks", type=int, nargs="+", default=[5, 10, 15], help="K of AP@K")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.75, 1.0])
    p.add_argument(
        "--classifiers",
        nargs="+",
        choices=("linear_svm", "rbf_svm", "logistic"),
        default=["linear_svm", "logistic"],
        help="phase-classification probes",
    )


def _videos(data: dict[str, Any], path: str) -> tuple[list[Any], list[Any] | None]:
    import numpy as np

    embs = data["embs"]
    if embs.ndim != 3:
        raise ValueError(f"{path}: embs must be (B, T, D), got shape {embs.shape}")
    lengths = data.get("lengths")
    if lengths is None:
        lengths = np.full(embs.shape[0], embs.shape[1])
    if lengths.shape != (embs.shape[0],) or lengths.min() < 1 or lengths.max() > embs.shape[1]:
        raise ValueError(f"{path}: lengths must be (B,) in [1, {embs.shape[1]}], got {lengths}")
    out_e = [embs[v, : int(n)] for v, n in enumerate(lengths)]
    for v, e in enumerate(out_e):
        if e.dtype.kind in "fc" and not np.isfinite(e).all():
            t, d = (int(i) for i in np.argwhere(~np.isfinite(e))[0])
            raise ValueError(
                f"{path}: embs[{v}, {t}, {d}] = {e[t, d]} (video {v}, frame {t} within its "
                "length); metrics are undefined for NaN or infinite embeddings"
            )
    labels = data.get("labels")
    if labels is None:
        return out_e, None
    if labels.shape != embs.shape[:2]:
        raise ValueError(f"{path}: labels must be (B, T) = {embs.shape[:2]}, got {labels.shape}")
    return out_e, [labels[v, : int(n)] for v, n in enumerate(lengths)]


def _run_alignment(args: argparse.Namespace) -> dict[str, Any]:
    """The frame-alignment protocol (:func:`procalign.eval.protocols.frame_alignment`) on given
    embeddings: the same code a trained method's evaluation runs, with the identity embedder."""
    from types import SimpleNamespace

    from procalign.eval import protocols as P

    data = _load_npz(args.test, ("embs",))
    embs, labels = _videos(data, args.test)
    if len(embs) < 2:
        raise ValueError(f"{args.test}: alignment metrics need at least 2 test videos")
    test = [SimpleNamespace(features=e, phases=lab) for e, lab in
            zip(embs, labels if labels is not None else [None] * len(embs))]
    train: list[Any] = []
    inputs: dict[str, Any] = {"test": args.test, "num_test_videos": len(embs)}
    num_phases = None
    if args.train is not None:
        if labels is None:
            raise ValueError(f"{args.test}: the probes need labels in the test file")
        tr_embs, tr_labels = _videos(_load_npz(args.train, ("embs", "labels")), args.train)
        inputs.update(train=args.train, num_train_videos=len(tr_embs))
        train = [SimpleNamespace(features=e, phases=lab) for e, lab in zip(tr_embs, tr_labels)]
        num_phases = int(max(max(x.max() for x in tr_labels), max(x.max() for x in labels))) + 1
    per = P.frame_alignment(
        ["all"], {"all": test}, {"all": train}, {"all": lambda xs: list(xs)},
        {"all": num_phases} if num_phases else None, stride=args.stride,
        distance=args.distance, normalize=False, ks=args.ks, fractions=args.fractions,
        classifiers=args.classifiers, controls=(), ap_variants=("carl", "lav"),
    )
    settings = f"stride={args.stride},{args.distance}"

    def variant_of(metric: str) -> str:
        if metric == "cycle_consistency":
            return f"two_way,{settings}"
        if metric == "dtw_alignment_accuracy":
            return f"procalign.dp.dtw,{args.distance}"
        if metric.startswith("phase_classification"):
            return "first_videos"
        if metric == "phase_progression":
            return f"tcc_event_completion_r2,num_phases={num_phases}"
        return settings

    rows = [r for r in P.mean_rows(per, variant_of, count=False)]
    return {"inputs": inputs, "metrics": rows}


register_subverb(
    "verification",
    "sequence verification from pair distances (AUC, EER, WDR)",
    _args_verification,
    _run_verification,
)
register_subverb(
    "keystep",
    "key-step localization from per-frame labels (Hungarian per task)",
    _args_keystep,
    _run_keystep,
)
register_subverb("quality", "action quality (Spearman, R-L2, AIoU)", _args_quality, _run_quality)
register_subverb(
    "matching", "text-to-video matching (accuracy, top-k, AUC)", _args_matching, _run_matching
)
register_subverb(
    "alignment",
    "frame-embedding alignment metrics (TCC / LAV / CARL variants)",
    _args_alignment,
    _run_alignment,
)


def _method_subverb(name: str) -> None:
    """``procalign eval METHOD --run DIR [key=value ...]`` for every registered method."""

    def add(p: argparse.ArgumentParser) -> None:
        # --run-dir: the spelling torchrun lets through (its parser takes --run for an
        # abbreviation of its own --run-path and stops)
        p.add_argument("--run", "--run-dir", dest="run", required=True,
                       help=f"run folder of `procalign train {name}` (--run-dir under torchrun)")
        p.add_argument("overrides", nargs="*", help="config overrides, e.g. eval.max_pairs=100")
        p.add_argument(
            "--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bars"
        )

    def run(args: argparse.Namespace) -> dict[str, Any]:
        from procalign.methods import load_recipes
        from procalign.train import distributed as dd
        from procalign.train.runner import evaluate_run

        recipe = load_recipes().build(name)
        report = evaluate_run(
            recipe, args.run, tuple(args.overrides), progress=not args.quiet
        )
        if not dd.is_main():  # under torchrun, rank 0 alone reports
            return report
        if "pairs" in report:
            print(f"pairs: {report['pairs']}", file=sys.stderr)
        for note in report.get("warnings", []):
            print(f"warning: {note}", file=sys.stderr)
        if "baselines" in report:
            print(f"baselines: {report['baselines']['validation']}", file=sys.stderr)
        if "verdict" in report:
            print(f"verdict: {report['verdict']['line']}", file=sys.stderr)
        return report

    register_subverb(name, f"a trained {name} run (through the method registry)", add, run)


def _register_methods() -> None:
    from procalign.methods import METHOD_NAMES

    for name in METHOD_NAMES:
        _method_subverb(name)


_register_methods()


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def format_table(metrics: list[dict[str, Any]]) -> str:
    """A plain-text table of report rows (:func:`procalign.eval.report.format_table`)."""
    from procalign.eval.report import format_table as table

    return table(metrics)


def _strict_json(x: Any) -> Any:
    from procalign.eval.report import strict_json

    return strict_json(x)


def _run(args: argparse.Namespace) -> int:
    import procalign

    if args.family is None:
        args.eval_parser.print_help()
        return 2
    result = SUBVERBS[args.family].run(args)
    # `procalign eval METHOD` under torchrun (the process group is joined by evaluate_run):
    # rank 0 alone prints and writes the report; the file families never import torch here
    dd = sys.modules.get("procalign.train.distributed")
    if dd is not None and not dd.is_main():
        dd.shutdown()
        return 0
    report = {"procalign_version": procalign.__version__, "family": args.family, **result}
    print(format_table(report["metrics"]))
    # The JSON report is always written: to --out (a file, or a folder to put it in), else into
    # the evaluated run folder, else the working directory. A trained run's evaluation has
    # written its eval.json already (evaluate_run): without --out nothing else is written.
    from procalign.methods import METHOD_NAMES

    if args.family in METHOD_NAMES and not args.out:
        print(f"report written to {Path(args.run) / 'eval.json'}", file=sys.stderr)
        if dd is not None:
            dd.shutdown()
        return 0
    default_name = f"eval_{args.family}.json"
    if args.out:
        out = Path(args.out)
        if out.is_dir() or args.out.endswith(("/", "\\")):
            out = out / default_name
    else:
        run_dir = getattr(args, "run", None)
        out = Path(run_dir) / default_name if run_dir and Path(run_dir).is_dir() else Path(default_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_strict_json(report), indent=2, allow_nan=False) + "\n")
    print(f"report written to {out}", file=sys.stderr)
    if dd is not None:
        dd.shutdown()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate predictions: verification, keystep, quality, matching, alignment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    families = parser.add_subparsers(dest="family", metavar="FAMILY")
    for name, sub in SUBVERBS.items():
        p = families.add_parser(name, help=sub.help, description=sub.help)
        sub.add_arguments(p)
        p.add_argument("--out", default=None,
                       help="JSON report file or folder (default: a trained run's own eval.json, "
                       "else ./eval_FAMILY.json)")
    parser.set_defaults(func=_run, eval_parser=parser, out=None)
