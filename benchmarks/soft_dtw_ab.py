"""A/B timing of soft-DTW kernel versions, interleaved in one process (issue 12).

    python benchmarks/soft_dtw_ab.py [--threads N] [--rounds R] REV_OR_FILE [REV_OR_FILE ...]

Each argument is a git revision (its ``procalign/dp/_numba_sdtw.py`` is extracted) or a path to
a copy of that module. Every version is imported as its own module and compiled, then the
versions' tiled forward and backward kernels run in turn, round after round, on the same
inputs (B=32, T=256, D=128, gamma=0.1, squared-Euclidean costs of standard-normal and unit-norm
features). On a shared VM, where two runs of one command differ by 10-30 %, interleaving puts
every version through the same disturbances; the best and the 25th percentile of the rounds are
printed, and each version's float32 value and gradient against the float64 kernel of the same
version.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
import torch

from procalign import dp

MODULE = "procalign/dp/_numba_sdtw.py"


def load(spec: str, tmp: str):
    if os.path.isfile(spec):
        path = spec
    else:
        src = subprocess.run(["git", "show", f"{spec}:{MODULE}"], check=True, capture_output=True, text=True).stdout
        path = os.path.join(tmp, f"sdtw_{len(os.listdir(tmp))}.py")
        with open(path, "w") as fh:
            fh.write(src)
    name = f"sdtw_ab_{abs(hash(path))}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("versions", nargs="+")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    numba.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    B, T, D, gamma = 32, 256, 128, 0.1
    with tempfile.TemporaryDirectory() as tmp:
        mods = {v: load(v, tmp) for v in args.versions}
        g = torch.Generator().manual_seed(1)
        x = torch.randn(B, T, D, generator=g)
        y = torch.randn(B, T, D, generator=g)
        unit = torch.nn.functional.normalize
        print(f"soft-DTW kernels, B={B} T={T} D={D} gamma={gamma}, {args.threads} thread(s), "
              f"{args.rounds} interleaved rounds; ms: best (p25)")
        for dist, (xs, ys) in {"randn": (x, y), "unit": (unit(x, dim=-1), unit(y, dim=-1))}.items():
            C = np.ascontiguousarray(dp.pairwise_costs(xs, ys).detach().numpy())
            ln = np.full(B, T, dtype=np.int64)
            lm = ln.copy()
            runs = {}
            for v, S in mods.items():
                tiles, counts, _ = S.make_tiles(ln, lm)
                W = np.empty((len(tiles), T + 1, T + 1, getattr(S, "WEIGHTS", 3), S.LANES), np.float32)
                out, G, gr = np.empty(B), np.empty(C.shape, np.float32), np.ones(B)
                fwd = lambda S=S, t=tiles, c=counts, W=W, o=out: S.forward(C, ln, lm, t, c, gamma, o, W)  # noqa: E731
                bwd = lambda S=S, t=tiles, c=counts, W=W, G=G: S.backward(W, ln, lm, t, c, gr, G)  # noqa: E731
                fwd()
                bwd()
                C64 = C.astype(np.float64)
                W64 = np.empty(W.shape, np.float64)
                o64, G64 = np.empty(B), np.empty(C.shape)
                S.forward(C64, ln, lm, tiles, counts, gamma, o64, W64)
                S.backward(W64, ln, lm, tiles, counts, gr, G64)
                err = (np.abs(out - o64).max() / np.abs(o64).max(), np.abs(G - G64).max() / np.abs(G64).max())
                runs[v] = (fwd, bwd, [], [], err)
            for _ in range(args.rounds):
                for fwd, bwd, tf, tb, _ in runs.values():
                    t0 = time.perf_counter()
                    fwd()
                    t1 = time.perf_counter()
                    bwd()
                    tf.append(t1 - t0)
                    tb.append(time.perf_counter() - t1)
            for v, (_, _, tf, tb, err) in runs.items():
                f, b = np.array(tf) * 1e3, np.array(tb) * 1e3
                print(f"  {dist:5s} {v:>28s}: forward {f.min():6.2f} ({np.percentile(f, 25):6.2f})  "
                      f"backward {b.min():5.2f} ({np.percentile(b, 25):5.2f})  "
                      f"float32 vs float64: value {err[0]:.1e}, gradient {err[1]:.1e}")


if __name__ == "__main__":
    sys.exit(main())
