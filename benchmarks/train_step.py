"""Where one training step goes: data / model + loss forward and backward / DP / optimizer.

    python benchmarks/train_step.py [--methods cpa lrprop] [--steps 20] [--threads 1 2] [--markdown OUT.md]

For each method at its shipped synthetic config (``configs/cpa_synthetic.yaml``,
``configs/lrprop_synthetic.yaml``) the recipe builds its data, model, loss, batches and optimizer
exactly as ``procalign train`` does (``Recipe.trainer`` and ``runner._optimizer``), then runs
``--steps`` training steps after ``--warmup`` ones (which absorb numba compilation and torch's
first-call costs), timing each phase with ``time.perf_counter``:

* data: producing the next batch (``spec.batches(epoch)``: sampling, cropping, augmentation);
* forward: ``spec.loss(model, batch)`` (encoder, heads, cost matrices and the DP's forward);
* backward: ``loss.backward()`` (the DP's backward included);
* optimizer: ``zero_grad``, gradient clipping and ``optimizer.step``.

The DP share is measured inside those phases by wrapping the forward and backward of every
``procalign.dp`` autograd Function (soft-DTW, DTW, block partition, frame-to-step lattice, the
squared-distance cost matrix is reported apart as "cost"). "model + loss" is forward + backward
minus DP and cost. Times are per step, the best of ``--repeats`` passes over the same steps (the
machine this ran on was shared: the minimum is the least disturbed). ``--threads`` runs the whole
measurement under :func:`procalign.train.threads.compute` for each thread count in turn.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"cpa": ROOT / "configs" / "cpa_synthetic.yaml", "lrprop": ROOT / "configs" / "lrprop_synthetic.yaml"}

#: accumulated seconds of the wrapped dp Functions in the current step
_DP: dict[str, float] = defaultdict(float)
_DP_CLASSES = {
    "dp": [("procalign.dp.grid", "_SoftDTWNumba"), ("procalign.dp.grid", "_DTWNumba"),
           ("procalign.dp.grid", "_GridWavefront"), ("procalign.dp.block_partition", "_BlockNumba"),
           ("procalign.dp.step_lattice", "_StepNumba")],
    "cost": [("procalign.dp.grid", "_SqDistance")],
}


def _instrument() -> None:
    """Wrap forward and backward of the dp autograd Functions with timers (idempotent)."""
    import importlib

    for kind, items in _DP_CLASSES.items():
        for mod, name in items:
            cls = getattr(importlib.import_module(mod), name, None)
            if cls is None or getattr(cls, "_timed", False):
                continue
            for attr in ("forward", "backward"):
                orig = getattr(cls, attr)

                def timed(*a, _orig=orig, _kind=kind, **k):
                    t0 = time.perf_counter()
                    try:
                        return _orig(*a, **k)
                    finally:
                        _DP[_kind] += time.perf_counter() - t0

                setattr(cls, attr, staticmethod(functools.wraps(orig)(timed)))
            cls._timed = True


def _setup(method: str, overrides: list[str]):
    from procalign.config import load_config
    from procalign.methods import load_recipes
    from procalign.train.runner import _optimizer

    recipe = load_recipes().build(method)
    cfg = load_config(recipe.config_cls, CONFIGS[method], overrides)
    recipe.validate(cfg)
    tmp = tempfile.mkdtemp(prefix=f"train_step_{method}_")
    data = recipe.load_data(cfg, Path(tmp), False)
    recipe.check_data(cfg, data)
    info = {"method": recipe.name, **recipe.describe(cfg, data)}
    models = recipe.build(cfg, info)
    part, model = next(iter(models.items()))
    spec = recipe.trainer(cfg, data, info, part, model)
    opt = _optimizer(model, spec.optim)
    return cfg, spec, model, opt


def measure(method: str, steps: int, warmup: int, repeats: int, overrides: list[str]) -> dict[str, float]:
    """Per-step seconds of each phase (best of ``repeats`` passes over the same steps)."""
    _instrument()
    cfg, spec, model, opt = _setup(method, overrides)
    model.train()
    best: dict[str, float] | None = None
    for _ in range(repeats):
        torch.manual_seed(0)
        tot: dict[str, float] = defaultdict(float)
        it, epoch, per_batch = iter(()), 0, 0.0
        done = 0
        for step in range(warmup + steps):
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:  # start an epoch: what spec.batches costs up front (CPA
                # samples all pairs of an epoch at once) is spread over the epoch's batches
                tb = time.perf_counter()
                made = spec.batches(epoch)
                n = len(made) if hasattr(made, "__len__") else 0
                per_batch = (time.perf_counter() - tb) / n if n else 0.0
                it, epoch = iter(made), epoch + 1
                t0 = time.perf_counter()
                batch = next(it)
            t1 = time.perf_counter()
            _DP.clear()
            loss, _ = spec.loss(model, batch)
            t2 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            if spec.optim.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), spec.optim.grad_clip)
            opt.step()
            t4 = time.perf_counter()
            if step < warmup:
                continue
            done += 1
            tot["data"] += t1 - t0 + per_batch
            tot["dp"] += _DP["dp"]
            tot["cost"] += _DP["cost"]
            tot["model + loss"] += (t3 - t1) - _DP["dp"] - _DP["cost"]
            tot["optimizer"] += t4 - t3
            tot["step"] += t4 - t0
        per = {k: v / done for k, v in tot.items()}
        if best is None or per["step"] < best["step"]:
            best = per
    assert best is not None
    best["threads"] = torch.get_num_threads()
    best["batch_size"] = cfg.train.batch_size
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["cpa", "lrprop"], choices=sorted(CONFIGS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", nargs="+", default=["1"],
                    help="train.threads values (integers or auto; torch and numba alike, "
                    "procalign.train.threads) to measure")
    ap.add_argument("--load", type=int, nargs="+", default=[0],
                    help="busy background processes (pure-Python spin loops) running during the "
                    "measurement: 0 = the machine as it is, 1 = one core taken (a shared machine)")
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's top operators for one pass of the steps")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides for every method")
    args = ap.parse_args(argv)
    from procalign.train.threads import compute

    cols = ["data", "model + loss", "cost", "dp", "optimizer", "step"]
    lines = ["| method | load | threads | batch | " + " | ".join(f"{c} ms" for c in cols) + " | DP share |",
             "|---|---:|---:|---:|" + "---:|" * len(cols) + "---:|"]
    print(f"procalign train step | torch {torch.__version__} | {os.cpu_count()} cores | ms per step, "
          f"best of {args.repeats} x {args.steps} steps")
    for load in args.load:
        with busy(load):
            for method in args.methods:
                for t in args.threads:
                    n = int(t) if t.isdigit() else t
                    with compute(n):
                        used = torch.get_num_threads()
                        r = measure(method, args.steps, args.warmup, args.repeats, args.overrides)
                        if args.profile:
                            _profile(method, args.steps, args.overrides)
                    row = " | ".join(f"{r[c] * 1e3:.2f}" for c in cols)
                    share = r["dp"] / r["step"]
                    label = f"{t} ({used})" if t == "auto" else t
                    lines.append(f"| {method} | {load} | {label} | {r['batch_size']} | {row} | {share:.0%} |")
                    print(f"  {method:<7s} load {load} threads {label}: "
                          + ", ".join(f"{c} {r[c] * 1e3:.2f}" for c in cols)
                          + f" ms; DP {share:.0%} of the step", flush=True)
    print("\n" + "\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 0


@contextlib.contextmanager
def busy(n: int):
    """``n`` background processes spinning in pure Python for the duration (a shared machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        if procs:
            time.sleep(1.0)
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _profile(method: str, steps: int, overrides: list[str]) -> None:
    from torch.profiler import ProfilerActivity, profile

    _, spec, model, opt = _setup(method, overrides)
    it = iter(spec.batches(0))
    batches = [next(it) for _ in range(min(steps, 8))]
    for b in batches[:2]:  # warm-up outside the profile
        loss, _ = spec.loss(model, b)
        loss.backward()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches:
            loss, _ = spec.loss(model, b)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
