"""Feature extraction throughput and peak memory on one long video: procalign's streaming
pipeline against a plain PyAV + PIL loop with the same encoder, in the same run.

    python benchmarks/extract.py                      # 5,400 frames 320x240, 64 and 224 px
    python benchmarks/extract.py --frames 1800 --sizes 64 --encoder efficientnet_lite0

Contenders (each run in a fresh subprocess, so its peak RSS is its own; order alternates and
the best of ``--repeats`` wall times is kept):

- ``plain``: what procalign did before (and what a first script does): decode every frame with
  PyAV, ``to_ndarray(format="rgb24")`` at full size, PIL bilinear resize + centre crop one frame
  at a time, keep every frame until the video ends, then encode in batches of 64.
- ``procalign``: :func:`procalign.data.extraction.extract_features` with every frame kept
  (``--all-frames``): a decode thread streams frames, converts only kept frames with one reused
  swscale context at the target size, batches of :func:`auto_batch_size` frames, at most
  ``prefetch`` batches in flight, while the main thread encodes.

Prints a Markdown table (frames/s, wall seconds, peak RSS MB, speed-up) for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def render_long_video(path: Path, frames: int, width: int = 320, height: int = 240) -> Path:
    """A moving-texture clip (gradients, a bright square on a Lissajous path), 30 fps, H.264."""
    import av

    if path.is_file():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [(xx * 255 // width), (yy * 255 // height), ((xx + yy) * 255 // (width + height))], -1
    ).astype(np.uint8)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for i in range(frames):
            img = np.roll(base, (i % height, (2 * i) % width), axis=(0, 1))
            cx = int(width / 2 + 0.4 * width * np.sin(i / 40))
            cy = int(height / 2 + 0.35 * height * np.cos(i / 50))
            img[max(0, cy - 20) : cy + 20, max(0, cx - 20) : cx + 20] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path


def _plain(video: Path, encoder, size: int) -> int:
    """Decode everything, PIL-resize frame by frame, hold all frames, encode in batches of 64."""
    import av
    import torch
    from PIL import Image

    frames = []
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            h, w = rgb.shape[:2]
            s = size / min(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            img = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR))
            top, left = (nh - size) // 2, (nw - size) // 2
            frames.append(np.ascontiguousarray(img[top : top + size, left : left + size]))
    arr = np.stack(frames)
    out = []
    with torch.no_grad():
        for start in range(0, len(arr), 64):
            x = torch.from_numpy(arr[start : start + 64]).permute(0, 3, 1, 2)[None]
            out.append(encoder(x)[0].float().numpy())
    return int(np.concatenate(out).shape[0])


def _procalign(video: Path, encoder, name: str, size: int, workdir: Path) -> int:
    from procalign.data.extraction import auto_batch_size, extract_features
    from procalign.data.features import discover_sources
    from procalign.data.sampling import SamplingPolicy
    from procalign.data.video import ResizePolicy

    resize = ResizePolicy("shorter_side", size, size)
    report = extract_features(
        discover_sources(video),
        workdir,
        encoder,
        extractor=name,
        sampling=SamplingPolicy("all"),
        resize=resize,
        batch_size=auto_batch_size(resize),
        overwrite=True,
        progress=False,
    )
    if report.failed:
        raise RuntimeError(f"extraction failed: {report.failed}")
    return report.frames


def child(args: argparse.Namespace) -> None:
    import torch

    from procalign.models.encoders import build_encoder

    torch.set_num_threads(args.threads)
    encoder = build_encoder(args.encoder).eval()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.child == "plain":
            frames = _plain(Path(args.video), encoder, args.size)
        else:
            frames = _procalign(Path(args.video), encoder, args.encoder, args.size, Path(tmp))
    wall = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(json.dumps({"frames": frames, "wall": wall, "rss_mb": rss}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=5400, help="frames of the rendered video")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--encoder", default="tiny_cnn", help="same encoder for both contenders")
    p.add_argument("--repeats", type=int, default=2, help="runs per contender (best wall kept)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the 2-core target)")
    p.add_argument("--video", default=None, help="use this video instead of rendering one")
    p.add_argument("--child", choices=["plain", "procalign"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    if args.video:
        video = Path(args.video)
    else:
        video = Path(tempfile.gettempdir()) / f"procalign-bench-{args.frames}f-320x240.mp4"
        t = time.perf_counter()
        render_long_video(video, args.frames)
        print(f"video: {video} ({args.frames} frames 320x240, {time.perf_counter() - t:.0f} s)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    rows = []
    for size in args.sizes:
        best: dict[str, dict] = {}
        for r in range(args.repeats):
            order = ["plain", "procalign"] if r % 2 == 0 else ["procalign", "plain"]
            for who in order:
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    who,
                    "--size",
                    str(size),
                    "--encoder",
                    args.encoder,
                    "--threads",
                    str(args.threads),
                    "--video",
                    str(video),
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
                if res.returncode != 0:
                    raise SystemExit(f"{who} at {size} px failed:\n{res.stderr[-2000:]}")
                got = json.loads(res.stdout.strip().splitlines()[-1])
                print(
                    f"  {size} px {who:9s} run {r + 1}: {got['frames'] / got['wall']:7.0f} "
                    f"frames/s, {got['wall']:6.1f} s, peak RSS {got['rss_mb']:6.0f} MB",
                    flush=True,
                )
                keep = best.get(who)
                if keep is None or got["wall"] < keep["wall"]:
                    best[who] = {**got, "rss_mb": max(got["rss_mb"], (keep or got)["rss_mb"])}
        rows.append((size, best))
    print(
        f"\nencoder {args.encoder}, {args.frames} frames 320x240, torch threads {args.threads}, "
        f"best of {args.repeats}\n"
    )
    print("| size | contender | frames/s | wall s | peak RSS MB | speed-up |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for size, best in rows:
        base = best["plain"]["wall"]
        for who in ("plain", "procalign"):
            b = best[who]
            print(
                f"| {size} | {who} | {b['frames'] / b['wall']:.0f} | {b['wall']:.1f} | "
                f"{b['rss_mb']:.0f} | {base / b['wall']:.2f}x |"
            )


if __name__ == "__main__":
    main()
