"""``procalign verify A B --run DIR``: are two videos the same procedure, and where do they differ?

A and B are feature files (``.npy``, (L, D) with the D the run was trained on) or videos (mp4,
avi, webm, mkv, or a folder of frames). Videos are decoded and encoded with the run's frame
encoder: the model's own when it takes frames, else ``data.video_encoder`` of the run's config
(the encoder that made its cached features).

Works for every method (the run's ``meta.json`` names it). Prints the method's distance, the
decision at the threshold stored with the run (``threshold.json``; ``--threshold`` overrides
it) and, for CPA, the K mined steps ranked by how much they disagree.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="same procedure or not: distance, decision and (CPA) disagreeing steps of two videos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="first video: .npy features (L, D), a video file or a frame folder")
    p.add_argument("b", help="second video (same kinds)")
    p.add_argument("--run", required=True, help="run folder of `procalign train METHOD`")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="decision threshold on the distance (default: the run's threshold.json)",
    )
    p.add_argument("-k", "--steps", type=int, default=None, help="steps K to mine (CPA; default: run's)")
    p.add_argument("--top", type=int, default=3, help="how many disagreeing steps to list")
    p.add_argument("--json", default=None, help="write the full result as JSON")
    p.add_argument("--plot", default=None, help="PNG of the relational matrix with mined steps")
    p.add_argument("--html", default=None,
                   help="a self-contained HTML page of the pair: verdict, alignment, steps")
    p.set_defaults(func=run)


def load_input(path: str, cfg, in_dim: int, frames: bool = False):
    """(L, D) float features or (L, H, W, 3) uint8 frames, from a file or folder."""
    import numpy as np

    from procalign.data.video import is_video_input

    f = Path(path)
    if not f.exists():
        raise FileNotFoundError(f"no such file or folder: {f}")
    if f.is_file() and f.suffix == ".npy":
        try:
            x = np.load(f, allow_pickle=False)
        except Exception as exc:
            from procalign._io import npy_problem

            raise ValueError(f"{f}: not a readable .npy file: {npy_problem(f, exc)}") from exc
        if x.ndim != 2 or x.shape[0] < 1:
            raise ValueError(f"{f}: expected features of shape (L, D), got {x.shape}")
        if x.shape[1] != in_dim:
            raise ValueError(f"{f}: features have D={x.shape[1]}, but the run was trained on D={in_dim}")
        if not np.isfinite(x).all():
            raise ValueError(f"{f}: features contain NaN or infinite values")
        return x.astype(np.float32)
    if not is_video_input(f):
        raise ValueError(
            f"{f}: not a .npy feature file, a video (mp4, avi, webm, mkv) or a folder of frames"
        )
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy, read_video

    size = cfg.data.video_size
    if frames:
        return read_video(f, SamplingPolicy(mode="all"), ResizePolicy("fixed", size, None)).frames[0]
    from procalign.data.featureset import encode_video
    from procalign.models.encoders import build_encoder

    encoder = build_encoder(cfg.data.video_encoder, **dict(cfg.data.video_encoder_args)).eval()
    x = encode_video(f, encoder, size)
    if x.shape[1] != in_dim:
        raise ValueError(
            f"the run's video encoder {cfg.data.video_encoder!r} gives D={x.shape[1]} features, "
            f"but the model was trained on D={in_dim}; set data.video_encoder(_args) of the run "
            "to the encoder that made its features"
        )
    return x


def run(args: argparse.Namespace) -> int:
    from procalign.train.runner import load_run, recipe_of_run

    recipe = recipe_of_run(args.run)
    cfg, meta, models = load_run(recipe, args.run)
    frames = any(getattr(getattr(m, "encoder", None), "input_kind", "") == "frames" for m in models.values())
    threshold, source = args.threshold, "--threshold"
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"--threshold must be a finite number, got {threshold}")
    if threshold is None:
        tfile = Path(args.run) / "threshold.json"
        if tfile.is_file():
            threshold = float(json.loads(tfile.read_text())["threshold"])
            source = str(tfile)
    a = load_input(args.a, cfg, int(meta["in_dim"]), frames)
    b = load_input(args.b, cfg, int(meta["in_dim"]), frames)
    from procalign.data.video import is_video_input
    from procalign.train.runner import random_features

    videos = any(is_video_input(Path(p)) for p in (args.a, args.b))
    if random_features(cfg, args.run, videos=videos and not frames):
        from procalign.models.encoders import random_weights_warning

        print(random_weights_warning("the inputs of this run"), file=sys.stderr)
    r = recipe.verify(cfg, models, meta, a, b, threshold, steps=args.steps)
    name_a, name_b = Path(args.a).stem, Path(args.b).stem
    clips = f", mean of {len(r['clip_distances'])} clips" if "clip_distances" in r else ""
    print(f"distance ({recipe.name}{clips}): {r['distance']:.5f}")
    if r["same"] is None:
        print("decision: none (no threshold.json in the run; pass --threshold)")
    else:
        unit = getattr(recipe, "same_means", "procedure")
        verdict = f"SAME {unit}" if r["same"] else f"DIFFERENT {unit}s"
        print(f"decision: {verdict} (threshold {threshold:.5f} from {source})")
    if "steps" in r:
        print(f"mined steps (K={r['K']}, T={r['T']} sampled frames, centre clip), most disagreeing first:")
        print(f"  {'step':>4s}  {name_a[:14] + ' frames':>20s}  {name_b[:14] + ' frames':>20s}  "
              f"{'cost':>7s}  {'cosine':>7s}")
        by_step = {s["step"]: s for s in r["steps"]}
        for k in r["most_disagreeing"][: max(0, args.top)]:
            s = by_step[k]
            fa, fb = "{}-{}".format(*s["source_frames_a"]), "{}-{}".format(*s["source_frames_b"])
            print(f"  {k:>4d}  {fa:>20s}  {fb:>20s}  {s['cost']:7.3f}  {s['cosine']:7.3f}")
    if args.plot:
        if "sim" not in r:
            raise ValueError(f"--plot needs a method that mines steps (cpa), not {recipe.name}")
        from procalign.viz.alignment import plot_alignment

        plot_alignment(r["sim"], None, r["bounds_a"], r["bounds_b"], out=args.plot,
                       title=f"{name_a} vs {name_b}: distance {r['distance']:.4f}")
        print(f"plot: {args.plot}")
    if args.html:
        from procalign.viz.report import verify_page

        frames = None
        if all(is_video_input(Path(p)) for p in (args.a, args.b)) and a.ndim == 2:
            from procalign.data.sampling import SamplingPolicy
            from procalign.data.video import ResizePolicy, read_video

            fa, fb = (read_video(p, SamplingPolicy(mode="all"), ResizePolicy("fixed", 64, None)).frames[0]
                      for p in (args.a, args.b))  # every frame, as the features were encoded
            frames = (fa, fb) if (len(fa), len(fb)) == (len(a), len(b)) else None
        page = verify_page(recipe, cfg, models, meta, a, b, name_a, name_b, r, threshold,
                           args.html, source, frames)
        print(f"html: {page}")
    if args.json:
        out = {k: v for k, v in r.items() if k not in ("sim", "bounds_a", "bounds_b")}
        out.update(a=str(args.a), b=str(args.b), run=str(args.run), threshold_source=source,
                   method=recipe.name)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0
