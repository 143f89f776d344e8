"""Run the bad inputs of docs/reliability.md through the real CLI; print the message each gets.

Each case builds its input in a temporary folder, runs ``procalign ...`` in a subprocess and
records the exit code and the last stderr line (the one-line error). Writes
benchmarks/results/bad_inputs.json and prints a markdown table.

    python benchmarks/bad_inputs.py            # every case
    python benchmarks/bad_inputs.py Ctrl-C     # only the cases whose name contains "Ctrl-C"
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.reliability import TINY

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
FOLDER = ["data.dataset=folder", "train.epochs=1", "data.num_frames=8", "data.pairs_per_epoch=8",
          "train.batch_size=4", "model.steps=3", "eval.pairs=sampled", "eval.num_pairs=8",
          "data.threshold_pairs=8",
          "model.temporal_args={dim: 8, layers: 1, heads: 2, dropout: 0.0, positions: false}",
          "eval.distances=[cpa]"]


def _default_sigint() -> None:
    # A shell starts background jobs with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default, as a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args: str, interrupt_when=None) -> tuple[int, str]:
    """Run ``procalign ARGS``; with ``interrupt_when`` (a callable), send SIGINT (Ctrl-C) as
    soon as it returns True (polled every 20 ms)."""
    cmd = [sys.executable, "-m", "procalign.cli.main", *map(str, args)]
    if interrupt_when is None:
        p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=ROOT, check=False)
        return p.returncode, p.stdout + p.stderr
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         preexec_fn=_default_sigint)  # noqa: PLW1509 - no threads here
    while p.poll() is None and not interrupt_when():
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate()
    return p.returncode, err


def last_line(err: str) -> str:
    """The error line (with the first item when it introduces a list), else the last line."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    for i, ln in enumerate(lines):
        if "error:" in ln or "interrupted" in ln:
            return ln.strip() + (" " + lines[i + 1].strip() if ln.endswith(":") and i + 1 < len(lines) else "")
    fails = [ln for ln in lines if "fail" in ln.lower()]
    return " / ".join(x.strip() for x in fails[:2]) if fails else (lines or [""])[-1].strip()


ONLY: list[str] = []


def main() -> int:
    from procalign.data.render import render_video, write_video

    rows = []
    with tempfile.TemporaryDirectory(prefix="procalign-bad-") as tmp:
        t = Path(tmp)
        rng = np.random.default_rng(0)

        def case(what: str, *args, **kw):
            if ONLY and not any(o in what for o in ONLY):
                return
            rc, err = cli(*args, **kw)
            msg = last_line(err).replace(str(t), "TMP")
            tb = "Traceback" in err
            rows.append({"input": what, "exit": rc, "message": msg, "traceback": tb})
            print(f"| {what} | {rc} | `{msg}` |", flush=True)

        # a tiny folder dataset written by procalign synth, then spoiled file by file
        rc, err = cli("synth", t / "ds", "--tasks", "1", "--procedures", "2", "--videos-per-procedure", "4",
                      "--frames", "16", "--dim", "12", "--steps-per-task", "3", "--no-progress")
        assert rc == 0, err
        feats = sorted((t / "ds" / "features").glob("*.npy"))
        good = np.load(feats[0])
        np.save(t / "a.npy", good)
        np.save(t / "b.npy", np.load(feats[1]))
        np.save(t / "one_frame.npy", good[:1])
        nan = good.copy()
        nan[5, 2] = np.nan
        np.save(t / "nan.npy", nan)
        victim = np.load(feats[2])  # spoil this one, keeping its length (its labels must match)
        nan_victim = victim.copy()
        nan_victim[3, 1] = np.nan
        wrong_d = rng.standard_normal((len(victim), 5)).astype(np.float32)

        import shutil

        for name, arr in (("nan", nan_victim), ("wrong_d", wrong_d)):
            shutil.copytree(t / "ds", t / f"ds_{name}")
            np.save(t / f"ds_{name}" / "features" / feats[2].name, arr)
        case("NaN in one features file (train)", "train", "cpa", *FOLDER, f"data.root={t / 'ds_nan'}",
             "--out", t / "r_nan")
        case("wrong D in one features file (train)", "train", "cpa", *FOLDER, f"data.root={t / 'ds_wrong_d'}",
             "--out", t / "r_d")
        case("NaN features (align)", "align", t / "nan.npy", t / "b.npy")
        case("K > T (align -k 50)", "align", t / "a.npy", t / "b.npy", "-k", "50")
        case("missing file (align)", "align", t / "missing.npy", t / "b.npy")
        case("unknown method", "train", "nope")
        case("unknown config key", "train", "cpa", "model.nope=1", "--out", t / "r_key")
        case("config value that is not YAML", "train", "cpa", "optim.lr=[1,2", "--out", t / "r_yaml")
        case("config value of the wrong type", "train", "cpa", "train.epochs=abc", "--out", t / "r_type")
        case("missing config file", "train", "cpa", "--config", t / "missing.yaml", "--out", t / "r_cfg")
        # a finished tiny run, then a changed rerun, verify on a 1-frame input, missing run
        rc, err = cli("train", "cpa", *TINY, "train.epochs=1", "--out", t / "run", "--quiet")
        assert rc == 0, err
        case("changed config on rerun (model.steps=2)", "train", "cpa", *TINY, "train.epochs=1", "model.steps=2",
             "--out", t / "run")
        case("more epochs on rerun without --extend", "train", "cpa", *TINY, "train.epochs=2", "--out", t / "run")
        case("1-frame input for verify", "verify", t / "one_frame.npy", t / "b.npy", "--run", t / "run")
        case("wrong D for verify", "verify", t / "ds_wrong_d" / "features" / feats[2].name, t / "b.npy",
             "--run", t / "run")
        case("missing run folder (eval)", "eval", "cpa", "--run", t / "no_run")
        case("missing run folder (verify)", "verify", t / "a.npy", t / "b.npy", "--run", t / "no_run")
        # extraction of spoiled videos
        vids = t / "vids"
        vids.mkdir()
        render_video(vids / "good.mp4", np.repeat(np.arange(3), 4), np.tile(np.linspace(0, 1, 4), 3), size=32)
        raw = (vids / "good.mp4").read_bytes()
        for name, data in (("zero_byte.mp4", b""), ("truncated.mp4", raw[: len(raw) // 3]),
                           ("corrupt.mp4", b"\x00" * 64 + raw[64:][::-1]),
                           ("garbage.mp4", rng.integers(0, 256, 2048, dtype=np.uint8).tobytes())):
            one = t / f"vid_{name.split('.')[0]}"
            one.mkdir()
            (one / name).write_bytes(data)
            case(f"{name.split('.')[0].replace('_', '-')} video (extract)", "extract", one, t / f"out_{name}",
                 "--encoder", "tiny_cnn", "--no-progress")
        import av

        one = t / "vid_audio"
        one.mkdir()
        with av.open(str(one / "audio_only.mp4"), "w") as c:  # a codec/stream that is not video
            s = c.add_stream("aac", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 8000
            for pkt in s.encode(frame):
                c.mux(pkt)
            for pkt in s.encode():
                c.mux(pkt)
        case("no video stream / wrong codec (extract)", "extract", one, t / "out_audio", "--encoder", "tiny_cnn",
             "--no-progress")
        one = t / "vid_webm_as_mp4"
        one.mkdir()
        write_video(one / "x.webm", np.zeros((4, 32, 32, 3), np.uint8))
        (one / "x.webm").rename(one / "x.mp4")
        case("webm bytes named .mp4 (extract)", "extract", one, t / "out_webm", "--encoder", "tiny_cnn",
             "--no-progress")
        case("missing input folder (extract)", "extract", t / "nothing", t / "out_none", "--encoder", "tiny_cnn")
        case("unknown encoder (extract)", "extract", vids, t / "out_enc", "--encoder", "resnet9000")
        case("Ctrl-C during train (after the first checkpoint)", "train", "cpa", *TINY, "train.epochs=200",
             "--out", t / "run_int", "--quiet",
             interrupt_when=lambda: (t / "run_int" / "checkpoints" / "LATEST").exists())
        many = t / "many"
        many.mkdir()
        for i in range(40):
            shutil.copy(vids / "good.mp4", many / f"v{i:02d}.mp4")
        case("Ctrl-C during extract (after the first video)", "extract", many, t / "out_int", "--encoder",
             "tiny_cnn", "--no-progress", interrupt_when=lambda: any((t / "out_int").rglob("*.npy")))
        case("rerun of the interrupted extract", "extract", many, t / "out_int", "--encoder", "tiny_cnn",
             "--no-progress")
    out = ROOT / "benchmarks" / "results" / "bad_inputs.json"
    if ONLY and out.exists():  # refresh only the cases that ran
        fresh = {r["input"]: r for r in rows}
        old = json.loads(out.read_text())
        rows = [fresh.pop(r["input"], r) for r in old] + list(fresh.values())
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    ONLY[:] = sys.argv[1:]  # optional substrings: rerun only the cases whose name contains one
    sys.exit(main())
