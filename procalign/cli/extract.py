"""``procalign extract INPUT OUT_DIR``: encode videos, frame folders or features into a cache."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path

DEFAULT_FPS = 8.0  # procalign.data.extraction.DEFAULT_FPS (not imported: keeps --help fast)


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
        default=None,
        help="registered encoder (default efficientnet_lite0, ImageNet-pretrained, offline): "
        "efficientnet_lite0, mediapipe_pose, resnet50, open_clip, timm, identity; tiny_cnn has "
        "random weights (tests only) and is used only when named",
    )
    p.add_argument(
        "--weights",
        default=None,
        metavar="PATH",
        help="local weights file for the encoder (resnet50, open_clip, timm, efficientnet_lite0)",
    )
    p.add_argument(
        "--encoder-arg",
        action="append",
        type=_encoder_arg,
        default=[],
        metavar="NAME=VALUE",
        help="keyword for the encoder, repeatable (e.g. dim=64, seed=0, model_name=ViT-B-32)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="keep T frames, one per equal segment at --offset (default: a fixed frame rate)",
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
        help=f"sample videos at this frame rate (default {DEFAULT_FPS:g}; frame folders, which "
        "have no rate, then keep every frame)",
    )
    p.add_argument(
        "--all-frames",
        action="store_true",
        help="keep every frame of every video (no frame-rate sampling)",
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
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per encoder call (default: by frame size, 100 at 64 px, 8 at 224 px)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="decode threads (videos decoded at once, overlapping the encoder; default 1)",
    )
    p.add_argument(
        "--prefetch",
        type=int,
        default=4,
        help="decoded batches that may wait for the encoder (bounds memory; default 4)",
    )
    p.add_argument(
        "--float16", action="store_true", help="store features as float16 (half the disk)"
    )
    p.add_argument(
        "--allow-truncated",
        action="store_true",
        help="keep videos that decode fewer frames than their header promises",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--shard", default="0/1", metavar="I/N", help="process only shard I of N (default 0/1)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="re-extract everything, even with other settings"
    )
    p.add_argument(
        "--ray", action="store_true",
        help="run the shards as Ray Data tasks (procalign[ray]; RAY_ADDRESS or a local instance)",
    )
    p.add_argument("--ray-workers", type=int, default=2,
                   help="Ray actors extracting at once (default 2)")
    p.add_argument("--ray-shards", type=int, default=None,
                   help="shards for --ray (default 4 per worker)")
    p.add_argument(
        "--no-progress", "--quiet", dest="no_progress", action="store_true",
        help="hide the progress bar",
    )
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
    import torch

    from procalign.data.extraction import auto_batch_size, extract_features
    from procalign.data.features import discover_sources, parse_shard
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy
    from procalign.models.encoders import (
        DEFAULT_VIDEO_ENCODER,
        build_encoder,
        is_random_weights,
        random_weights_warning,
    )

    shard = parse_shard(args.shard)
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise ValueError(f"OUT_DIR {args.out_dir} exists and is not a folder")
    chosen = [
        f
        for f, on in (
            ("--frames", args.frames is not None),
            ("--fps", args.fps is not None),
            ("--all-frames", args.all_frames),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ValueError(f"{' and '.join(chosen)} exclude each other")
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise ValueError(f"--fps must be a positive number, got {args.fps}")
    for name in ("workers", "prefetch", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    name = args.encoder or DEFAULT_VIDEO_ENCODER
    kwargs = dict(args.encoder_arg)
    if args.weights is not None:
        kwargs["weights"] = args.weights
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: CUDA is not available here (use --device cpu)")
    try:
        encoder = build_encoder(name, **kwargs)
    except ImportError as exc:  # an optional extra (torchvision, open_clip, mediapipe) is missing
        print(f"procalign extract: error: {exc}", file=sys.stderr)
        return 2
    if is_random_weights(encoder):
        print(f"extract: {random_weights_warning(f'features of {name!r}')}", file=sys.stderr)
    kind = getattr(encoder, "input_kind", "frames")
    folder_sampling = None
    if args.frames is not None:
        sampling = SamplingPolicy(mode="eval", num_frames=args.frames, offset=args.offset)
    elif args.all_frames or kind == "features":
        sampling = SamplingPolicy(mode="all", fps=args.fps)
    else:
        sampling = SamplingPolicy(mode="all", fps=args.fps or DEFAULT_FPS)
        if args.fps is None:  # the default rate: frame folders (no rate) keep every frame
            folder_sampling = SamplingPolicy(mode="all")
    if args.resize == "shorter_side":
        resize = ResizePolicy(
            "shorter_side", args.size, args.crop if args.crop is not None else args.size
        )
    elif args.resize == "fixed":
        resize = ResizePolicy("fixed", args.size, None)
    else:
        resize = ResizePolicy("none", None, None)
    common = dict(
        sampling=sampling,
        resize=resize,
        batch_size=args.batch_size or auto_batch_size(resize),
        device=args.device,
        overwrite=args.overwrite,
        workers=args.workers,
        prefetch=args.prefetch,
        dtype="float16" if args.float16 else "float32",
        frame_folder_sampling=folder_sampling,
        allow_truncated=args.allow_truncated,
    )
    if args.ray:
        if args.shard != "0/1":
            raise ValueError("--ray cuts the work into --ray-shards itself; leave out --shard")
        if args.overwrite:
            raise ValueError("--overwrite and --ray exclude each other (shards would race to "
                             "remove the old manifests); overwrite without --ray first")
        if args.ray_workers < 1 or (args.ray_shards is not None and args.ray_shards < 1):
            raise ValueError("--ray-workers and --ray-shards must be >= 1")
        from procalign.integrations.ray import extract_with_ray

        n = args.ray_shards or 4 * args.ray_workers
        common.pop("overwrite")
        got = extract_with_ray(args.input, args.out_dir, n, name, kwargs,
                               actors=args.ray_workers, **common)
        print(
            f"extract: {got['extracted']} extracted, {got['skipped']} already cached, "
            f"{got['failed']} failed, in {got['shards']} Ray shard(s); encoder {name}; "
            f"manifests {args.out_dir}/manifest.shard-*-of-{n}.json"
        )
        return 1 if got["failed"] else 0
    sources = discover_sources(args.input, prefer=kind)
    report = extract_features(
        sources,
        args.out_dir,
        encoder,
        extractor=name,
        shard=shard,
        progress=not args.no_progress,
        **common,
    )
    rate = f", {report.frames / report.seconds:.0f} frames/s" if report.seconds > 0 else ""
    print(
        f"extract: {len(report.done)} extracted, {len(report.skipped)} already cached, "
        f"{len(report.failed)} failed, {report.not_in_shard} in other shards{rate}; "
        f"encoder {name}; key {report.key}; manifest {report.manifest}"
    )
    for vid, err in sorted(report.failed.items())[:10]:
        print(f"  failed {vid}: {err}")
    if len(report.failed) > 10:
        print(f"  ... and {len(report.failed) - 10} more (see failures in the manifest)")
    return 1 if report.failed else 0
