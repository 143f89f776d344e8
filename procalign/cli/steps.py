"""``procalign steps VIDEO --run DIR``: the key-steps a procedure-learning run finds in a video.

VIDEO is a feature file (``.npy``, (T, R * D) as the run was trained on) or the id of a video of
the run's dataset (then its ground truth is known). Prints the predicted task and each discovered
key-step with its frame span; a key-step is a state id of the run's teacher, named after the
ground-truth step it was matched to by the run's evaluation (``eval.json``) when there is one.
``--plot`` writes a timeline PNG of the discovered key-steps under the ground truth (when known).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "steps",
        help="discovered key-steps of one video (procedure learning run), with frame spans",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("video", help=".npy features (T, R*D) or a video id of the run's dataset")
    p.add_argument("--run", required=True, help="run folder of `procalign train sspl`")
    p.add_argument("--task", default=None, help="use this task's key-steps (default: predicted)")
    p.add_argument("--plot", default=None, help="write a timeline PNG here")
    p.add_argument("--json", default=None, help="write the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from procalign.train.runner import load_run, recipe_of_run

    recipe = recipe_of_run(args.run)
    if not hasattr(recipe, "key_steps"):
        raise ValueError(f"{args.run} is a {recipe.name!r} run; `steps` needs a procedure-learning run (sspl)")
    cfg, meta, models = load_run(recipe, args.run)
    truth = names = None
    true_task = None
    path = Path(args.video)
    if path.suffix == ".npy":
        from procalign.cli.verify import load_input

        x = load_input(str(path), cfg, int(meta["in_dim"]))
        name = path.stem
    else:
        from procalign.methods.sspl import frame_truth, step_vocabulary

        data = recipe.load_data(cfg, Path(args.run), False)
        try:
            video = data.get(args.video)
        except KeyError:
            raise ValueError(f"{args.video!r} is neither a .npy file nor a video of {data.description}") from None
        x = np.asarray(video.features, np.float32)
        names = step_vocabulary(data)
        truth = frame_truth(video, {s: i for i, s in enumerate(names)}, cfg.eval.background_label)
        true_task, name = video.label, video.video_id
    r = recipe.key_steps(cfg, models, meta, x, args.task)
    matched: dict[int, str] = {}
    ev = Path(args.run) / "eval.json"
    if ev.is_file():
        rep = json.loads(ev.read_text())
        m = rep.get("per_task", {}).get("sspl,true_task", {}).get(r["task"], {}).get("matching", {})
        vocab = rep.get("step_names", [])
        matched = {int(s): vocab[g] for s, g in m.items() if 0 <= g < len(vocab)}
    print(f"video {name}: {len(x)} frames; predicted task {r['predicted_task']} "
          f"(p = {r['task_probability']:.3f})" + (f"; true task {true_task}" if true_task else ""))
    print(f"key-steps of task {r['task']} (state id, frames first-last, matched step):")
    for lab, a, b in r["spans"]:
        label = "background" if lab < 0 else f"state {lab:3d}"
        print(f"  {label}  frames {a:5d}-{b:5d}  ({b - a + 1:4d})  {matched.get(lab, '')}")
    if args.plot:
        from procalign.viz.keysteps import plot_keysteps

        plot_keysteps(r["labels"], truth, args.plot, f"{name}: task {r['task']}", matched, names)
        print(f"timeline written to {args.plot}")
    if args.json:
        out = {k: v for k, v in r.items() if k != "labels"}
        out.update(labels=r["labels"].tolist(), video=name, matched_steps=matched)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0
