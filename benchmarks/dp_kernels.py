"""Benchmark procalign.dp against the best existing implementations, on the same inputs, in one run.

    python benchmarks/dp_kernels.py [--quick] [--only soft_dtw] [--threads N] [--repeats N] [--json OUT.json]

Anchors: tslearn (``dtw_path_from_metric`` with a precomputed cost; ``SoftDTWLossPyTorch`` with a
bmm squared-Euclidean distance) and pysdtw (``SoftDTW(use_cuda=False)``, same distance). Soft-DTW
runs on two input distributions (standard normal features, and unit-norm features), end to end
(gradient w.r.t. the features through the cost) and DP only (gradient w.r.t. a precomputed
cost, the anchors fed the same matrix), and ends with a check against issue 12's goal. With a
CUDA device present, the torch wavefront is also timed there next to pysdtw's CUDA kernel (a
pytorch-softdtw-cuda port). No
library implements CPA's block partition or the frame-to-step lattice batched, so those rows
compare the compiled kernels with procalign's own vectorised torch recursion (the GPU path), and
the frame-to-step row also with a plain per-frame torch loop of the kind CPA's public code uses.
Times are the best of the repeats (``--median``: medians) after a warm-up (which absorbs numba
compilation), the same statistic for every contender: on a shared machine the minimum is the
least disturbed run. Each timed call starts from a fresh leaf tensor on the input's storage
(``detach().requires_grad_()``, since session 10; before, a ``clone()``, which timed an 8 MB copy
of the cost with every DP-only contender at B=32, T=256).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from procalign import dp


def sqeuclid_bmm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,N,D), (B,M,D) -> (B,N,M) squared distances via one bmm (the same for every contender)."""
    return ((x * x).sum(-1)[:, :, None] + (y * y).sum(-1)[:, None, :] - 2 * torch.bmm(x, y.transpose(1, 2))).clamp_min(0)


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) if BEST_OF else statistics.median(times)


#: report the best of the repeats (the least disturbed run on a shared machine) rather than the
#: median; the same statistic for every contender (``--median`` for the median)
BEST_OF = True


ROWS: list[dict] = []


def report(task: str, name: str, seconds: float, cells: float, anchor_best: float | None) -> None:
    row = {"task": task, "impl": name, "ms": seconds * 1e3, "Mcells_per_s": cells / seconds / 1e6}
    if anchor_best is not None:
        row["speedup_vs_best_anchor"] = anchor_best / seconds
    ROWS.append(row)
    ratio = f"{anchor_best / seconds:7.2f}x" if anchor_best is not None else "      -"
    print(f"  {name:<34s} {seconds * 1e3:10.2f} ms {cells / seconds / 1e6:10.1f} Mcell/s  {ratio}")


def bench_dtw(repeats: int, B: int, T: int, D: int) -> None:
    from scipy.spatial.distance import cdist
    from tslearn.metrics import dtw_path_from_metric

    print(f"\nDTW value + path, {B} pairs of {T}x{T}, D={D}, cost matrix included")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, D, generator=g)
    y = torch.randn(B, T, D, generator=g)
    xn, yn = x.double().numpy(), y.double().numpy()
    cells = B * T * T

    def tslearn_pipeline():  # what a tslearn user runs: per-pair cost, then the DP
        return [dtw_path_from_metric(cdist(xn[b], yn[b], "sqeuclidean"), metric="precomputed") for b in range(B)]

    def tslearn_batched_cost():  # tslearn's DP fed procalign's batched cost matrix
        c = dp.pairwise_costs(x, y).double().numpy()
        return [dtw_path_from_metric(c[b], metric="precomputed") for b in range(B)]

    def ours():
        return dp.dtw(dp.pairwise_costs(x, y))

    ref = tslearn_pipeline()
    r = ours()
    for b in range(B):
        assert abs(float(r.values[b]) - ref[b][1]) < 1e-3 * max(1.0, ref[b][1]), "DTW value mismatch"
    t_ts = timeit(tslearn_pipeline, repeats)
    t_tsb = timeit(tslearn_batched_cost, repeats)
    report("dtw", "tslearn (scipy cdist + DP per pair)", t_ts, cells, t_ts)
    report("dtw", "tslearn DP on procalign's cost", t_tsb, cells, t_ts)
    t_us = timeit(ours, repeats)
    report("dtw", "procalign dtw (numba)", t_us, cells, t_ts)
    t_torch = timeit(lambda: dp.dtw(dp.pairwise_costs(x, y), backend="torch"), max(1, repeats // 2))
    report("dtw", "procalign dtw (torch wavefront)", t_torch, cells, t_ts)
    c = dp.pairwise_costs(x, y)
    cd = c.double().numpy()
    print("  DP only, cost matrix precomputed (ratio vs tslearn DP):")
    t_dp_ts = timeit(lambda: [dtw_path_from_metric(cd[b], metric="precomputed") for b in range(B)], repeats)
    report("dtw_dp_only", "tslearn dtw_path_from_metric", t_dp_ts, cells, t_dp_ts)
    report("dtw_dp_only", "procalign dtw (numba)", timeit(lambda: dp.dtw(c), repeats), cells, t_dp_ts)


DISTRIBUTIONS = {
    # name: (description, feature sampler)
    "randn": ("standard normal features, squared-Euclidean cost", lambda x: x),
    "unit": ("unit-norm random features, squared-Euclidean cost",
             lambda x: torch.nn.functional.normalize(x, dim=-1)),
}

#: Issue 12's goal for soft-DTW forward + backward, 2 threads, B=32, T=256.
GOAL_CELLS_PER_S = 0.3e9
GOAL_SPEEDUP = 5.0


def _precomputed(c: torch.Tensor):
    """A ``dist_func`` for the anchors that returns a precomputed cost (DP-only timing)."""
    return lambda x, y: c


def bench_soft_dtw(repeats: int, B: int, T: int, D: int, gamma: float, dist: str = "randn") -> None:
    import pysdtw
    from tslearn.metrics import SoftDTWLossPyTorch

    desc, sample = DISTRIBUTIONS[dist]
    task = f"soft_dtw_T{T}_{dist}"
    print(f"\nsoft-DTW value + gradient, B={B}, T={T}, D={D}, gamma={gamma}: {desc}")
    g = torch.Generator().manual_seed(1)
    x0 = sample(torch.randn(B, T, D, generator=g))
    y = sample(torch.randn(B, T, D, generator=g))
    cells = B * T * T

    def run(loss_fn):
        def f():
            x = x0.detach().requires_grad_(True)  # a fresh leaf on the same storage: no copy timed
            loss_fn(x, y).sum().backward()
            return x.grad

        return f

    ts = SoftDTWLossPyTorch(gamma=gamma, dist_func=sqeuclid_bmm)
    ps = pysdtw.SoftDTW(gamma=gamma, dist_func=sqeuclid_bmm, use_cuda=False)
    ours = lambda x, y: dp.soft_dtw(dp.pairwise_costs(x, y), gamma)  # noqa: E731
    ours_t = lambda x, y: dp.soft_dtw(dp.pairwise_costs(x, y), gamma, backend="torch")  # noqa: E731
    # accuracy: each float32 gradient against a float64 reference (procalign's float64 path, which
    # the test suite checks against tslearn's float64 SoftDTW to 1e-7)
    x64 = x0.double().requires_grad_(True)
    dp.soft_dtw(dp.pairwise_costs(x64, y.double()), gamma).sum().backward()
    scale = x64.grad.abs().max()
    for name, fn in (("tslearn", ts), ("pysdtw", ps), ("procalign numba", ours), ("procalign torch", ours_t)):
        err = float((run(fn)().double() - x64.grad).abs().max() / scale)
        if name == "procalign numba":
            e2e_err = err
        print(f"  float32 gradient error vs float64 reference, {name:<16s}: {err:.1e} (relative to max |grad|)")
        ROWS.append({"task": task, "impl": name, "grad_rel_error": err})
    # the floor a float32 cost sets: the same float32 cost, an exact (float64) DP and backward
    floor = run(lambda x, y: dp.soft_dtw(dp.pairwise_costs(x, y).double(), gamma))()
    floor_err = float((floor.double() - x64.grad).abs().max() / scale)
    print(f"  float32 cost + float64 DP (the floor of any float32 cost)  : {floor_err:.1e}")
    ROWS.append({"task": task, "impl": "float32 cost, float64 DP", "grad_rel_error": floor_err})
    print("  end to end: features -> cost -> soft-DTW -> gradient w.r.t. features")
    t_ts = timeit(run(ts), repeats)
    t_ps = timeit(run(ps), repeats)
    best = min(t_ts, t_ps)
    report(task, "tslearn SoftDTWLossPyTorch", t_ts, cells, best)
    report(task, "pysdtw SoftDTW (cpu)", t_ps, cells, best)
    t_us = timeit(run(ours), repeats)
    report(task, "procalign soft_dtw (numba)", t_us, cells, best)
    report(task, "procalign soft_dtw (torch wavefront)", timeit(run(ours_t), max(1, repeats // 2)), cells, best)
    # what end to end cannot go below: the cost alone, forward + backward w.r.t. the features
    # (two (B, T, D) x (B, D, T) matmuls in BLAS), no DP; the same for every contender
    t_cost = timeit(run(lambda x, y: dp.pairwise_costs(x, y)), repeats)
    print(f"  the cost alone (forward + gradient, two {D}-deep batched matmuls, no DP): "
          f"{t_cost * 1e3:.2f} ms, {100 * t_cost / t_us:.0f} % of procalign's end to end")
    ROWS.append({"task": task, "impl": "cost only (pairwise_costs fwd+bwd)", "ms": t_cost * 1e3})

    # the DP alone: value and gradient w.r.t. a precomputed cost matrix, every contender
    print("  DP only: value + gradient w.r.t. a precomputed (B, T, T) cost")
    c0 = dp.pairwise_costs(x0, y).detach()
    dummy = torch.zeros(B, T, 1)

    def run_dp(make):
        def f():
            c = c0.detach().requires_grad_(True)  # a fresh leaf on the same storage: no copy timed
            make(c).sum().backward()
            return c.grad

        return f

    dp_rows = {
        "tslearn SoftDTWLossPyTorch": lambda c: SoftDTWLossPyTorch(gamma=gamma, dist_func=_precomputed(c))(dummy, dummy),
        "pysdtw SoftDTW (cpu)": lambda c: pysdtw.SoftDTW(gamma=gamma, dist_func=_precomputed(c), use_cuda=False)(dummy, dummy),
    }
    g64 = run_dp(lambda c: dp.soft_dtw(c.double(), gamma))()
    gscale = g64.abs().max()
    t_dp = {name: timeit(run_dp(fn), repeats) for name, fn in dp_rows.items()}
    best_dp = min(t_dp.values())
    for name, t in t_dp.items():
        report(task + "_dp_only", name, t, cells, best_dp)
    t_dp_us = timeit(run_dp(lambda c: dp.soft_dtw(c, gamma)), repeats)
    report(task + "_dp_only", "procalign soft_dtw (numba)", t_dp_us, cells, best_dp)
    err_dp = float((run_dp(lambda c: dp.soft_dtw(c, gamma))().double() - g64).abs().max() / gscale)
    print(f"  float32 DP gradient error vs float64: {err_dp:.1e}")
    ROWS.append({"task": task + "_dp_only", "impl": "procalign numba", "grad_rel_error": err_dp})
    if T == 256 and B == 32:
        GOALS.append({
            "distribution": dist,
            "dp_cells_per_s": cells / t_dp_us,
            "dp_speedup": best_dp / t_dp_us,
            "e2e_cells_per_s": cells / t_us,
            "e2e_speedup": best / t_us,
            "e2e_cost_ms": t_cost * 1e3,
            "grad_rel_error": err_dp,
            "e2e_grad_rel_error": e2e_err,
            "e2e_grad_floor": floor_err,
        })
    if DEVICE == "cuda":
        bench_soft_dtw_cuda(repeats, x0, y, gamma, cells, task, cells / t_us)


GOALS: list[dict] = []
#: "cuda" when the GPU rows run (``--device cuda``, or ``auto`` with a CUDA device present)
DEVICE = "cpu"


def bench_soft_dtw_cuda(repeats: int, x0, y, gamma: float, cells: int, task: str, cpu_rate: float) -> None:
    """The torch wavefront on the GPU next to the CPU kernel and a pytorch-softdtw-cuda style
    anchor (pysdtw's numba-CUDA kernel, a port of Maghoumi's pytorch-softdtw-cuda)."""
    dev = torch.device("cuda")
    xg, yg = x0.to(dev), y.to(dev)

    def run(loss_fn):
        def f():
            x = xg.detach().requires_grad_(True)  # a fresh leaf on the same storage: no copy timed
            loss_fn(x, yg).sum().backward()
            torch.cuda.synchronize()
            return x.grad

        return f

    print(f"  CUDA ({torch.cuda.get_device_name(0)}), end to end; CPU numba kernel: {cpu_rate / 1e6:.1f} M cells/s")
    contenders = {"procalign soft_dtw (torch wavefront, cuda)":
                  lambda a, b: dp.soft_dtw(dp.pairwise_costs(a, b), gamma, backend="torch")}
    try:
        import pysdtw

        ps = pysdtw.SoftDTW(gamma=gamma, dist_func=sqeuclid_bmm, use_cuda=True)
        run(ps)()
        contenders["pysdtw SoftDTW (cuda, pytorch-softdtw-cuda style)"] = ps
    except Exception as exc:  # noqa: BLE001 - the anchor needs numba-CUDA; report and go on
        print(f"  pysdtw cuda unavailable: {type(exc).__name__}: {exc}")
    times = {name: timeit(run(fn), repeats) for name, fn in contenders.items()}
    anchor = times.get("pysdtw SoftDTW (cuda, pytorch-softdtw-cuda style)")
    for name, t in times.items():
        report(task + "_cuda", name, t, cells, anchor)
    x64 = x0.double().requires_grad_(True)
    dp.soft_dtw(dp.pairwise_costs(x64, y.double()), gamma).sum().backward()
    got = run(contenders["procalign soft_dtw (torch wavefront, cuda)"])().cpu().double()
    err = float((got - x64.grad).abs().max() / x64.grad.abs().max())
    print(f"  float32 gradient error of the cuda torch path vs float64 CPU: {err:.1e}")
    ROWS.append({"task": task + "_cuda", "impl": "procalign torch cuda", "grad_rel_error": err})


def print_goals() -> None:
    if not GOALS:
        return
    print(f"\nIssue 12 goal (2 threads, B=32, T=256): soft-DTW forward + backward >= "
          f"{GOAL_CELLS_PER_S / 1e9:.1f} G cells/s, >= {GOAL_SPEEDUP:.0f}x the best anchor on every "
          "distribution, float32 gradient error <= ~1e-5")
    for g in GOALS:
        ok = lambda v, t: "met" if v >= t else "NOT met"  # noqa: E731
        print(f"  {g['distribution']:>6s}: DP {g['dp_cells_per_s'] / 1e9:.3f} G cells/s ({ok(g['dp_cells_per_s'], GOAL_CELLS_PER_S)}), "
              f"{g['dp_speedup']:.1f}x best anchor ({ok(g['dp_speedup'], GOAL_SPEEDUP)}), gradient error "
              f"{g['grad_rel_error']:.1e} ({'met' if g['grad_rel_error'] <= 1e-5 else 'NOT met'}); "
              f"end to end {g['e2e_speedup']:.1f}x best anchor ({ok(g['e2e_speedup'], GOAL_SPEEDUP)}), "
              f"{g['e2e_cells_per_s'] / 1e9:.3f} G cells/s of which the cost's matmuls "
              f"{g['e2e_cost_ms']:.1f} ms, gradient error {g['e2e_grad_rel_error']:.1e} "
              f"(a float64 DP over the same float32 cost: {g['e2e_grad_floor']:.1e})")
        ROWS.append({"task": "goal", **g})


def bench_block(repeats: int, B: int, T: int, K: int) -> None:
    print(f"\nblock_partition value + boundaries + backward, B={B}, T={T}, K={K} (no external anchor)")
    g = torch.Generator().manual_seed(2)
    sim0 = torch.rand(B, T, T, generator=g).softmax(-1)
    cells = B * K * T**4 / 4  # inner-loop visits, roughly

    def run(backend):
        def f():
            sim = sim0.detach().requires_grad_(True)  # a fresh leaf on the same storage: no copy timed
            r = dp.block_partition(sim, K, backend=backend)
            r.values.sum().backward()
            return r.bounds_n

        return f

    t_nb = timeit(run("numba"), repeats)
    t_torch = None
    if T <= 32:
        t_torch = timeit(run("torch"), max(1, repeats // 3))
        report(f"block_T{T}_K{K}", "procalign torch recursion", t_torch, cells, t_torch)
    report(f"block_T{T}_K{K}", "procalign block_partition (numba)", t_nb, cells, t_torch)


def naive_step_forward(log_probs: torch.Tensor) -> torch.Tensor:
    """Per-frame torch loop with autograd, as in CPA's public code (log space for fairness)."""
    B, T, K = log_probs.shape
    neg = torch.full((B, 1), -1e30, dtype=log_probs.dtype)
    alpha = torch.cat([log_probs[:, 0, :1], neg.expand(B, K - 1)], dim=1)
    for t in range(1, T):
        shifted = torch.cat([neg, alpha[:, :-1]], dim=1)
        alpha = log_probs[:, t] + torch.logaddexp(alpha, shifted)
    return alpha[:, -1]


def bench_step(repeats: int, B: int, T: int, K: int) -> None:
    print(f"\nstep_forward forward + backward, B={B}, T={T}, K={K}")
    g = torch.Generator().manual_seed(3)
    lp0 = torch.randn(B, T, K, generator=g).log_softmax(-1)
    cells = B * T * K

    def run(fn):
        def f():
            lp = lp0.detach().requires_grad_(True)  # a fresh leaf on the same storage: no copy timed
            fn(lp).sum().backward()
            return lp.grad

        return f

    assert torch.allclose(run(naive_step_forward)(), run(dp.step_forward)(), atol=1e-4)
    t_naive = timeit(run(naive_step_forward), repeats)
    report("step_forward", "per-frame torch loop (CPA-style)", t_naive, cells, t_naive)
    report("step_forward", "procalign torch recursion", timeit(run(lambda x: dp.step_forward(x, backend="torch")), repeats), cells, t_naive)
    report("step_forward", "procalign step_forward (numba)", timeit(run(dp.step_forward), repeats), cells, t_naive)


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    ap.add_argument("--markdown", default=None, help="also write the rows as a markdown table")
    ap.add_argument("--only", choices=["all", "soft_dtw"], default="all",
                    help="run every benchmark, or the soft-DTW ones only")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="cuda: also time the torch path on the GPU next to pysdtw's CUDA kernel "
                    "(skipped with a message when no CUDA device is present); auto: when one is")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for torch and numba alike (default: all cores)")
    ap.add_argument("--median", action="store_true", help="report medians instead of the best of the repeats")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 256],
                    help="soft-DTW sequence lengths T (B = 32, D = 128); 256 is the goal's")
    args = ap.parse_args(argv)
    global BEST_OF
    BEST_OF = not args.median
    if args.threads:
        import numba

        torch.set_num_threads(args.threads)
        numba.set_num_threads(args.threads)
    global DEVICE
    print(f"procalign dp benchmark | python {platform.python_version()} | torch {torch.__version__} "
          f"| threads torch {torch.get_num_threads()} numba {_numba_threads()} | {platform.processor() or platform.machine()} "
          f"| {'best of' if BEST_OF else 'median of'} {args.repeats}")
    if args.device == "cpu":
        DEVICE = "cpu"
    elif torch.cuda.is_available():
        DEVICE = "cuda"
        print(f"CUDA device: {torch.cuda.get_device_name(0)} (GPU rows follow each soft-DTW table)")
    else:
        DEVICE = "cpu"
        print(("--device cuda: " if args.device == "cuda" else "") +
              "no CUDA device is present here: the GPU rows are skipped (CPU rows only)")
    r = args.repeats
    if args.quick:
        bench_dtw(r, 8, 64, 32)
        for dist in DISTRIBUTIONS:
            bench_soft_dtw(r, 8, 64, 32, 0.1, dist)
        bench_block(r, 2, 16, 6)
        bench_step(r, 4, 64, 8)
    elif args.only == "soft_dtw":
        for dist in DISTRIBUTIONS:
            for T in args.sizes:
                bench_soft_dtw(r, 32, T, 128, 0.1, dist)
    else:
        bench_dtw(r, 64, 256, 128)
        for dist in DISTRIBUTIONS:
            for T in args.sizes:
                bench_soft_dtw(r, 32, T, 128, 0.1, dist)
        for T in (16, 32, 64):
            for K in (6, 13):
                bench_block(r, 8, T, K)
        bench_step(r, 32, 256, 16)
    print_goals()
    if args.markdown:
        lines = ["| task | implementation | ms | M cells/s | speed-up vs best anchor | float32 grad error |",
                 "|---|---|---:|---:|---:|---:|"]
        errs = {(r["task"], r["impl"]): r["grad_rel_error"] for r in ROWS if "grad_rel_error" in r and "impl" in r}
        short = {"procalign soft_dtw (numba)": "procalign numba", "procalign soft_dtw (torch wavefront)": "procalign torch",
                 "tslearn SoftDTWLossPyTorch": "tslearn", "pysdtw SoftDTW (cpu)": "pysdtw"}
        for r in ROWS:
            if "ms" not in r or r["task"] == "goal":
                continue
            err = errs.get((r["task"], short.get(r["impl"], "")))
            ratio = r.get("speedup_vs_best_anchor")
            lines.append(f"| {r['task']} | {r['impl']} | {r['ms']:.1f} | {r['Mcells_per_s']:.1f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}x'} | {'' if err is None else f'{err:.1e}'} |")
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": ROWS, "torch_threads": torch.get_num_threads(), "numpy": np.__version__}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
