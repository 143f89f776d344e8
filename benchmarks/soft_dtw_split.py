"""Time splits of soft-DTW at B=32, T=256, D=128, gamma=0.1 (issue 12): the tiled kernels alone(forward, backward), the DP-only step (value + gradient w.r.t. a precomputed cost, through theautograd wrapper) and end to end (features -> squared-Euclidean cost -> soft-DTW -> gradient),best of N, on both input distributions of benchmarks/dp_kernels.py.
    python benchmarks/soft_dtw_split.py [THREADS] [REPEATS]"""

import sys
import time

import numba
import numpy as np
import torch

from procalign import dp
from procalign.dp import _numba_sdtw as S
nth = int(sys.argv[1]) if len(sys.argv) > 1 else 1
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(nth); numba.set_num_threads(nth)
B, T, D, gamma = 32, 256, 128, 0.1
g = torch.Generator().manual_seed(1)
x0 = torch.randn(B, T, D, generator=g); y = torch.randn(B, T, D, generator=g)
def best(f, r=reps):
    f(); ts = []
    for _ in range(r):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts) * 1e3
for name, xs, ys in (("randn", x0, y), ("unit", torch.nn.functional.normalize(x0, dim=-1), torch.nn.functional.normalize(y, dim=-1))):
    c0 = dp.pairwise_costs(xs, ys).detach()
    C = np.ascontiguousarray(c0.numpy())
    ln = np.full(B, T, dtype=np.int64); lm = ln.copy()
    tiles, counts, single = S.make_tiles(ln, lm)
    W = np.empty((len(tiles), T + 1, T + 1, S.WEIGHTS, S.LANES), dtype=C.dtype)
    out = np.empty(B)
    G = np.zeros(C.shape, dtype=C.dtype)
    gr = np.ones(B)
    tf = best(lambda: S.forward(C, ln, lm, tiles, counts, gamma, out, W))
    tb = best(lambda: S.backward(W, ln, lm, tiles, counts, gr, G))
    def dponly():
        c = c0.clone().requires_grad_(True)
        dp.soft_dtw(c, gamma).sum().backward()
    td = best(dponly)
    def e2e():
        x = xs.clone().requires_grad_(True)
        dp.soft_dtw(dp.pairwise_costs(x, ys), gamma).sum().backward()
    te = best(e2e)
    cells = B * T * T
    print(f"{name} thr={nth}: kfwd {tf:.2f} kbwd {tb:.2f} sum {tf+tb:.2f} | dp-only {td:.2f} ({cells/td/1e6:.3f} Gc/s) | e2e {te:.2f} ({cells/te/1e6:.3f} Gc/s)")
