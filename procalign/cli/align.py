"""``procalign align A B``: align two sequences (feature files or videos) and draw what was aligned.

A and B are ``.npy`` feature files of shape (T, D), or videos (mp4, avi, webm, mkv, or a folder
of frames); videos are sampled at ``--fps`` and encoded with ``--encoder`` (ImageNet-pretrained
EfficientNet-Lite0 by default, the encoder of ``procalign extract``), so no run is needed."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="align two sequences (.npy features T x D, or videos) without a trained run",
        description="Print DTW and soft-DTW distances and the K mined steps of two sequences; "
        "with --plot, write a PNG of the similarity matrix with the path and the step blocks. "
        "Videos (mp4, avi, webm, mkv, frame folders) are encoded with --encoder first.",
    )
    p.add_argument("a", help="first sequence: .npy file of shape (T, D), a video or a frame folder")
    p.add_argument("b", help="second sequence (same kinds)")
    p.add_argument("-k", "--steps", type=int, default=6, help="number of steps K to mine (default 6)")
    p.add_argument("--gamma", type=float, default=0.1, help="soft-DTW temperature (default 0.1)")
    p.add_argument("--cost", default="cosine", choices=["cosine", "sqeuclidean", "euclidean"],
                   help="frame cost for DTW / soft-DTW")
    p.add_argument("--sim", default="cosine", choices=["cosine", "relational"],
                   help="similarity for step mining: cosine, or CPA's relational softmax matrix")
    p.add_argument("--block-score", default="sqrt_area", choices=["sqrt_area", "mean"],
                   help="block score for step mining (mean = CPA Eq. 1; sqrt_area suits untrained features)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write a PNG of the similarity matrix, DTW path and mined steps")
    p.add_argument("--json", default=None, help="also write the result as JSON")
    p.add_argument("--encoder", default=None,
                   help="frame encoder for video inputs (default efficientnet_lite0, pretrained, "
                   "offline; see `procalign extract --help` for the others)")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate videos are sampled at (default: extract's; frame folders "
                   "keep every frame)")
    p.add_argument("--size", type=int, default=64,
                   help="shorter side frames are resized to and centre-cropped at (default 64)")
    p.set_defaults(func=run)


def load_sequence(path: str, encoder=None, fps: float | None = None, size: int = 64):
    """(T, D) features from a .npy file, or from a video encoded with ``encoder`` (a frames
    encoder; None builds the default pretrained one)."""
    import numpy as np

    from procalign.data.video import is_video_input

    f = Path(path)
    if not f.exists():
        raise FileNotFoundError(f"no such file or folder: {f}")
    if is_video_input(f):
        return _encode(f, encoder, fps, size)
    if f.suffix != ".npy":
        raise ValueError(
            f"{f}: expected a .npy feature file of shape (T, D), a video (mp4, avi, webm, mkv) "
            "or a folder of frames"
        )
    try:
        x = np.load(f, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for corrupt files
        from procalign._io import npy_problem

        raise ValueError(f"{f}: not a readable .npy file: {npy_problem(f, exc)}") from exc
    if x.ndim != 2:
        raise ValueError(f"{f}: expected shape (T, D), got {x.shape}")
    return x


def _encode(f: Path, encoder, fps: float | None, size: int):
    import math

    from procalign.data.extraction import DEFAULT_FPS, encode_video
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy

    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"--fps must be a positive number, got {fps}")
    if size < 1:
        raise ValueError(f"--size must be >= 1, got {size}")
    if encoder is None:
        encoder = build_frame_encoder(None)
    rate = fps if fps is not None else (None if f.is_dir() else DEFAULT_FPS)
    x, _ = encode_video(f, encoder, sampling=SamplingPolicy(mode="all", fps=rate),
                        resize=ResizePolicy("shorter_side", size, size))
    return x


def build_frame_encoder(name: str | None):
    """The named registered encoder (default: extract's pretrained one); it must take frames."""
    import sys

    from procalign.models.encoders import (
        DEFAULT_VIDEO_ENCODER,
        build_encoder,
        is_random_weights,
        random_weights_warning,
    )

    name = name or DEFAULT_VIDEO_ENCODER
    encoder = build_encoder(name)
    if getattr(encoder, "input_kind", "frames") != "frames":
        raise ValueError(f"--encoder {name!r} does not take video frames")
    if is_random_weights(encoder):
        print(f"align: {random_weights_warning(f'features of {name!r}')}", file=sys.stderr)
    return encoder.eval()


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

    from procalign.data.video import is_video_input

    encoder = None
    if any(is_video_input(Path(p)) for p in (args.a, args.b)):
        encoder = build_frame_encoder(args.encoder)
    elif args.encoder is not None:
        raise ValueError("--encoder is for video inputs; A and B are feature files")
    a = load_sequence(args.a, encoder, args.fps, args.size)
    b = load_sequence(args.b, encoder, args.fps, args.size)
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
