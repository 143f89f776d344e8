"""``procalign extract INPUT OUT_DIR``: encode videos, frame folders or features into a cache."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path


def _encoder_arg(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--encoder-arg must look like name=value, got {text!r}")
    key, value = text.split("=", 1)
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"none": None, "true": True, "false": False}.get(value.lower(), value)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "extract",
        help="extract per-frame features into features/<video_id>.npy + manifest.json",
        description=(
            "Decode every video (mp4, avi, webm, mkv), frame folder (jpg, png) or .npy feature "
            "file in INPUT (a folder of them, or a folder-layout dataset with index.csv) and write "
            "OUT_DIR/features/<video_id>.npy (T, D) float32 plus a manifest keyed by a hash of the "
            "settings. Re-running skips finished videos; --shard i/n splits the work across "
            "machines. A video that fails is recorded in the manifest and the run goes on; the "
            "exit code is 1 when any video failed."
        ),
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="folder of videos / frame folders / .npy files, or a folder dataset",
    )
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--encoder",
        default="tiny_cnn",
        help="registered frame encoder: tiny_cnn, resnet50, open_clip, identity",
    )
    p.add_argument(
        "--encoder-arg",
        action="append",
        type=_encoder_arg,
        default=[],
        metavar="NAME=VALUE",
        help="keyword for the encoder, repeatable (e.g. dim=64, seed=0, weights=IMAGENET1K_V2)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="keep T frames, one per equal segment at --offset (default: every frame)",
    )
    p.add_argument(
        "--offset",
        type=float,
        default=0.5,
        help="position inside each segment with --frames (default 0.5)",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="resample videos to this frame rate (without --frames)",
    )
    p.add_argument("--resize", choices=["shorter_side", "fixed", "none"], default="shorter_side")
    p.add_argument(
        "--size",
        type=int,
        default=64,
        help="shorter side (or square side with --resize fixed), default 64",
    )
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        help="centre crop side after --resize shorter_side (default: --size)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="frames per encoder call")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--shard", default="0/1", metavar="I/N", help="process only shard I of N (default 0/1)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="re-extract everything, even with other settings"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # SIGTERM (kill, job schedulers) ends the run like Ctrl-C, so the manifest is flushed first.
    if threading.current_thread() is not threading.main_thread():
        return _run(args)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(
            f"extract: interrupted; finished videos and the manifest in {args.out_dir} are kept, "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from procalign.data.features import discover_sources, extract_features, parse_shard
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy
    import torch

    from procalign.models.encoders import build_encoder

    shard = parse_shard(args.shard)
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ValueError(f"OUT_DIR {args.out_dir} exists and is not a folder")
    if args.frames is not None and args.fps is not None:
        raise ValueError("--frames and --fps exclude each other")
    if args.frames is not None:
        sampling = SamplingPolicy(mode="eval", num_frames=args.frames, offset=args.offset)
    else:
        sampling = SamplingPolicy(mode="all", fps=args.fps)
    if args.resize == "shorter_side":
        resize = ResizePolicy(
            "shorter_side", args.size, args.crop if args.crop is not None else args.size
        )
    elif args.resize == "fixed":
        resize = ResizePolicy("fixed", args.size, None)
    else:
        resize = ResizePolicy("none", None, None)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here (use --device cpu)")
    try:
        encoder = build_encoder(args.encoder, **dict(args.encoder_arg))
    except ImportError as exc:  # an optional extra (torchvision, open_clip) is missing
        print(f"procalign extract: error: {exc}", file=sys.stderr)
        return 2
    sources = discover_sources(args.input, prefer=getattr(encoder, "input_kind", "frames"))
    report = extract_features(
        sources,
        args.out_dir,
        encoder,
        extractor=args.encoder,
        sampling=sampling,
        resize=resize,
        batch_size=args.batch_size,
        device=args.device,
        shard=shard,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(
        f"extract: {len(report.done)} extracted, {len(report.skipped)} already cached, "
        f"{len(report.failed)} failed, {report.not_in_shard} in other shards; key {report.key}; "
        f"manifest {report.manifest}"
    )
    for vid, err in sorted(report.failed.items())[:10]:
        print(f"  failed {vid}: {err}")
    return 1 if report.failed else 0
