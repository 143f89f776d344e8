"""kill -9 at a random moment, then resume: do training and extraction end bit-identical?

(a) ``procalign train cpa`` on the tiny synthetic config of tests/train/test_runner.py: one
    uninterrupted reference run, then N trials that start the same command in a subprocess,
    SIGKILL it a random delay after it created its run folder (uniform over the time the reference
    worked from that moment to its end), rerun the same
    command to completion and compare ``model.safetensors`` byte for byte (and ``threshold.json``).
(b) ``procalign extract VIDEOS OUT --encoder tiny_cnn`` on tiny rendered videos: the same, comparing
    every ``features/*.npy`` byte for byte and the manifest's video entries (complete, no failures).

Trials run two at a time (one torch thread each). Prints a table and writes
benchmarks/results/reliability.json.

    python benchmarks/reliability.py [--trials 20] [--seed 0] [--jobs 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    (
        "data.synthetic={num_tasks: 1, procedures_per_task: 2, videos_per_procedure: 6, "
        "num_frames: 24, dim: 12, steps_per_procedure: 3, seed: 0}"
    ),
    "data.num_frames=8",
    "data.pairs_per_epoch=12",
    "train.batch_size=6",
    "eval.pairs=sampled",
    "eval.num_pairs=16",
    "data.threshold_pairs=16",
    "model.steps=3",
    "model.temporal_args={dim: 8, layers: 1, heads: 2, dropout: 0.0, positions: false}",
    "eval.distances=[cpa]",
    "train.epochs=4",
    "train.threads=1",
]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "procalign.cli.main", *args]


def train_cmd(out: Path) -> list[str]:
    return cli("train", "cpa", *TINY, "--out", str(out), "--quiet")


def extract_cmd(videos: Path, out: Path) -> list[str]:
    return cli("extract", str(videos), str(out), "--encoder", "tiny_cnn", "--frames", "6",
               "--no-progress", "--batch-size", "2")


def run_to_end(cmd: list[str]) -> tuple[int, float, str]:
    t = time.perf_counter()
    p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=ROOT, check=False)
    return p.returncode, time.perf_counter() - t, p.stderr[-2000:]


def _out_of(cmd: list[str]) -> Path:
    return Path(cmd[cmd.index("--out") + 1]) if "--out" in cmd else Path(cmd[5])  # extract IN OUT


def _wait_for_output(p: subprocess.Popen, out: Path) -> None:
    """Until the command has created its output folder (start-up is over) or ended."""
    while p.poll() is None and not out.exists():
        time.sleep(0.01)


def reference(cmd: list[str]) -> tuple[int, float, str]:
    """Run ``cmd`` to the end; return its exit code, the seconds it worked after creating its
    output folder, and its stderr."""
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    _wait_for_output(p, _out_of(cmd))
    t = time.perf_counter()
    _, err = p.communicate()
    return p.returncode, time.perf_counter() - t, err[-2000:]


def killed_then_resumed(cmd: list[str], delay: float) -> dict:
    """Start ``cmd``; ``delay`` s after it created its output folder, SIGKILL it (unless it
    ended); then rerun it to the end."""
    out = _out_of(cmd)
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _wait_for_output(p, out)
    try:
        p.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed = True
    # what the killed run had left: checkpoints (train) or feature files (extract)
    left = len(list(out.glob("checkpoints/epoch_*"))) + len(list(out.glob("features/*.npy")))
    rc, wall, err = run_to_end(cmd)
    return {"delay_s": round(delay, 2), "killed": killed, "left_at_kill": left, "resume_rc": rc,
            "resume_s": round(wall, 1), "resume_stderr": err.strip().splitlines()[-1:] if rc else []}


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def train_outcome(run: Path) -> dict:
    return {"model": digest(run / "model.safetensors"), "threshold": digest(run / "threshold.json")}


def extract_outcome(out: Path) -> dict:
    feats = {p.name: digest(p) for p in sorted((out / "features").glob("*.npy"))} if (out / "features").is_dir() else {}
    try:
        from procalign.data.features import read_manifest

        m = read_manifest(out)
        videos = {k: {kk: vv for kk, vv in v.items() if kk in ("shape", "frames", "num_frames", "dim", "file", "path")}
                  for k, v in m["videos"].items()}
        failures = sorted(m["failures"])
    except (FileNotFoundError, ValueError) as exc:
        videos, failures = {"error": str(exc)}, []
    return {"features": feats, "manifest_videos": videos, "failures": failures}


def make_videos(folder: Path, n: int = 16) -> Path:
    from procalign.data.render import render_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        t = int(rng.integers(20, 40))
        steps = np.sort(rng.integers(0, 4, t))
        progress = np.linspace(0, 1, t)
        render_video(folder / f"v{i:02d}.mp4", steps, progress, size=32, seed=i)
    return folder


def trials(name: str, make_cmd, outcome, ref_out: Path, work: Path, n: int, rng: random.Random,
           jobs: int, keep: Path | None = None) -> dict:
    rc, ref_wall, err = reference(make_cmd(ref_out))
    if rc != 0:
        raise SystemExit(f"{name}: the reference run failed (exit {rc}):\n{err}")
    ref = outcome(ref_out)
    # Kill anywhere between the creation of the output folder (start-up is over) and the time
    # the reference needed from there to its end (the machine's load varies: a few trials end
    # first and are reported as not killed).
    delays = [rng.uniform(0.0, ref_wall) for _ in range(n)]

    def one(i: int) -> dict:
        out = work / f"{name}-{i:02d}"
        row = killed_then_resumed(make_cmd(out), delays[i])
        got = outcome(out)
        row["differs"] = sorted(k for k in ref if got.get(k) != ref[k])
        row["identical"] = row["resume_rc"] == 0 and not row["differs"]
        if row["identical"] or keep is None:
            shutil.rmtree(out, ignore_errors=True)
        else:
            shutil.move(out, keep / out.name)
            row["kept"] = str(keep / out.name)
        return row

    with ThreadPoolExecutor(jobs) as pool:
        rows = list(pool.map(one, range(n)))
    killed = [r for r in rows if r["killed"]]
    return {
        "reference_work_s": round(ref_wall, 1),
        "trials": n,
        "killed_before_the_end": len(killed),
        "resumed_identical": sum(r["identical"] for r in rows),
        "killed_and_identical": sum(r["identical"] for r in killed),
        "killed_with_work_on_disk": sum(r.get("left_at_kill", 0) > 0 for r in killed),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", choices=["train", "extract"], default=None)
    ap.add_argument("--keep", default=None, help="move run folders that differ here (and the reference)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
    results: dict = {"trials_per_kind": args.trials, "seed": args.seed, "jobs": args.jobs}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="procalign-reliability-") as tmp:
        work = Path(tmp)
        if args.only in (None, "train"):
            results["train"] = trials("train", train_cmd, train_outcome, work / "train-ref", work,
                                      args.trials, rng, args.jobs, keep)
            if keep:
                shutil.copytree(work / "train-ref", keep / "train-ref", dirs_exist_ok=True)
        if args.only in (None, "extract"):
            videos = make_videos(work / "videos")
            results["extract"] = trials("extract", lambda out: extract_cmd(videos, out), extract_outcome,
                                        work / "extract-ref", work, args.trials, rng, args.jobs, keep)
    results["total_wall_s"] = round(time.perf_counter() - t0, 1)
    print(f"{'command':<28} {'trials':>6} {'killed':>7} {'w/ work':>8} {'identical':>10} {'ref work s':>10}")
    for kind, label in (("train", "procalign train cpa"), ("extract", "procalign extract")):
        if kind in results:
            r = results[kind]
            print(f"{label:<28} {r['trials']:>6} {r['killed_before_the_end']:>7} {r['killed_with_work_on_disk']:>8} "
                  f"{r['resumed_identical']:>6}/{r['trials']:<3} {r['reference_work_s']:>10}")
            for row in r["rows"]:
                if not row["identical"]:
                    print(f"  NOT identical: {row}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out} ({results['total_wall_s']} s)")
    ok = all(results[k]["resumed_identical"] == results[k]["trials"] for k in ("train", "extract") if k in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
