"""Evaluation split across torchrun ranks and gathered (procalign.train.distributed.split_gather).

* the helper: 2 gloo ranks each compute a contiguous share and both end with the full list in
  order; an error on one rank is raised on both; ``local_only`` computes everything locally;
* the pair-scoring core (:func:`procalign.eval.protocols.pair_distances`) and the per-class
  loop of :func:`~procalign.eval.protocols.frame_alignment` under 2 ranks return what one
  process returns (the same batches: bit-identical);
* ``torchrun --nproc_per_node=2 -m procalign.cli.main eval cpa --run-dir DIR`` writes the
  report of one process (rank 0 alone writes and prints). (torchrun's own parser rejects
  ``--run``, an abbreviation of its ``--run-path``.)
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from procalign.eval import protocols as P
from procalign.train import distributed as dd

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fn(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).sum((1, 2))


def _pairs_case():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 3, 5, 4, generator=g)  # V=7 videos, C=3 clips, T=5, D=4
    ids = [f"v{i}" for i in range(7)]
    index = {v: i for i, v in enumerate(ids)}
    pairs = [(ids[i], ids[j]) for i in range(7) for j in range(7) if i != j][:23]
    return emb, index, pairs


def _align_case():
    rng = np.random.default_rng(0)
    test = {c: [SimpleNamespace(features=rng.normal(size=(12, 4)), phases=None)
                for _ in range(3)] for c in "abc"}
    return list(test), test


def _align(classes, test):
    per = P.frame_alignment(classes, test, {}, {c: (lambda xs: list(xs)) for c in classes},
                            stride=1, controls=(), fractions=(), classifiers=())
    return {c: {k: v for k, v in m.items() if k != "eval_seconds"} for c, m in per.items()}


def _worker(r: int, n: int, port: int, out: str) -> None:
    import os

    torch.set_num_threads(1)
    os.environ.update(RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      PROCALIGN_DIST_TIMEOUT="30")
    assert dd.init_from_env("cpu")
    seen: list[tuple[int, int]] = []

    def compute(lo, hi):
        seen.append((lo, hi))
        return [f"item{i}" for i in range(lo, hi)]

    res: dict = {"full": dd.split_gather(11, compute), "seen": list(seen)}
    res["short"] = dd.split_gather(1, lambda lo, hi: [lo * 10 + 7 for _ in range(lo, hi)])
    with dd.local_only():
        res["local"] = dd.split_gather(4, lambda lo, hi: [(lo, hi)] * (hi - lo))

    def boom(lo, hi):
        if lo > 0:
            raise ValueError("rank 1 failed")
        return list(range(lo, hi))

    try:
        dd.split_gather(4, boom)
        res["error"] = None
    except ValueError as exc:
        res["error"] = str(exc)
    emb, index, pairs = _pairs_case()
    res["pairs"] = P.pair_distances(_fn, emb, index, pairs, batch_size=6).tolist()
    res["align"] = _align(*_align_case())
    Path(out, f"rank{r}.json").write_text(json.dumps(res))
    dd.shutdown()


@pytest.mark.slow
def test_split_gather_two_gloo_ranks_return_the_full_ordered_list(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, _port(), str(tmp_path)), nprocs=2, join=True)
    res = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    want = [f"item{i}" for i in range(11)]
    assert res[0]["full"] == res[1]["full"] == want
    assert res[0]["seen"] == [[0, 6]] and res[1]["seen"] == [[6, 11]]  # contiguous shares
    assert res[0]["short"] == res[1]["short"] == [7]  # rank 1 had nothing to do
    assert res[0]["local"] == res[1]["local"] == [[0, 4]] * 4
    assert res[0]["error"] == res[1]["error"] == "rank 1 failed"
    # the scoring core and the per-class loop: one process's numbers, bit for bit
    emb, index, pairs = _pairs_case()
    one = P.pair_distances(_fn, emb, index, pairs, batch_size=6).tolist()
    assert res[0]["pairs"] == res[1]["pairs"] == one
    assert res[0]["align"] == res[1]["align"] == _align(*_align_case())


def test_split_gather_in_one_process_is_the_plain_call():
    calls = []

    def compute(lo, hi):
        calls.append((lo, hi))
        return list(range(lo, hi))

    assert dd.split_gather(5, compute) == [0, 1, 2, 3, 4]
    assert calls == [(0, 5)]
    assert not dd.splits_work()


from tests.train.test_distributed import _env  # noqa: E402  one clean torchrun environment


def _values(report: dict) -> dict[tuple[str, str], float]:
    return {(r["metric"], r["variant"]): r["value"] for r in report["metrics"]}


@pytest.mark.slow
def test_cpa_eval_under_torchrun_two_ranks_matches_one_process(tmp_path):
    from tests.train.test_distributed import CPA

    run = tmp_path / "run"
    args = [*CPA, "train.epochs=1", "eval.num_pairs=30"]  # no eval during training
    res = subprocess.run(
        [sys.executable, "-m", "procalign.cli.main", "train", "cpa", *args, "--out", str(run),
         "--quiet"], env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    # 3 clips, 9 clips a call: 3 pairs a batch, so each rank scores several batches
    ev = ["eval", "cpa", "--run-dir", str(run), "eval.batch_size=9", "--quiet"]
    one = subprocess.run([sys.executable, "-m", "procalign.cli.main", "eval", "cpa", "--run",
                          str(run), "eval.batch_size=9", "--quiet", "--out",
                          str(tmp_path / "one.json")], env=_env(), capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    (run / "eval.json").rename(tmp_path / "eval_one.json")
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "procalign.cli.main", *ev, "--out", str(tmp_path / "two.json")],
        env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=150)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("report written to") == 1  # rank 0 alone reports
    assert one.stdout.strip() and one.stdout.count("auc") == two.stdout.count("auc")
    for a_name, b_name in (("one.json", "two.json"), ("eval_one.json", None)):
        a = json.loads((tmp_path / a_name).read_text())
        b = json.loads((tmp_path / b_name).read_text()) if b_name else json.loads(
            (run / "eval.json").read_text())
        va, vb = _values(a), _values(b)
        assert va.keys() == vb.keys() and len(va) >= 4
        for k in va:
            assert abs(va[k] - vb[k]) <= 1e-9, (k, va[k], vb[k])
    assert json.loads((tmp_path / "two.json").read_text())["num_pairs"] == 30


@pytest.mark.slow
def test_cpa_training_time_eval_is_split_and_every_epoch_matches_one_process(tmp_path):
    """eval_fn during torchrun training scores its pairs split over the ranks (every rank runs
    it, no rank waits): the per-epoch metrics are one process's on the same weights."""
    from tests.train.test_distributed import CPA

    args = [*CPA[:-1], "train.eval_every=1", "eval.batch_size=9", "eval.num_pairs=30"]
    cmd = ["-m", "procalign.cli.main", "train", "cpa", *args, "--quiet", "--out"]
    one = subprocess.run([sys.executable, *cmd, str(tmp_path / "one")], env=_env(),
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", *cmd, str(tmp_path / "two")], env=_env(),
                         capture_output=True, text=True, cwd=ROOT, timeout=150)
    assert two.returncode == 0, two.stderr[-3000:]
    h1 = json.loads((tmp_path / "one" / "history.json").read_text())
    h2 = json.loads((tmp_path / "two" / "history.json").read_text())
    keys = [k for k in h1[-1] if k.startswith("eval/")]
    assert keys and len(h1) == len(h2) == 2
    for a, b in zip(h1, h2):
        for k in keys:  # the weights agree to ~1e-6 (tests/train), so do the metrics
            assert abs(a[k] - b[k]) < 1e-4, (k, a[k], b[k])


@pytest.mark.slow
def test_lrprop_eval_under_torchrun_splits_the_classes_and_matches_one_process(tmp_path):
    """LRProp's frame alignment: each rank evaluates one of the 2 classes (one model each)."""
    from tests.train.test_distributed import LRPROP

    run = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, "-m", "procalign.cli.main", "train", "lrprop", *LRPROP, "--out",
         str(run), "--quiet"], env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    one = subprocess.run([sys.executable, "-m", "procalign.cli.main", "eval", "lrprop", "--run",
                          str(run), "--quiet", "--out", str(tmp_path / "one.json")], env=_env(),
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "procalign.cli.main", "eval", "lrprop", "--run-dir", str(run), "--quiet",
         "--out", str(tmp_path / "two.json")],
        env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=150)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("report written to") == 1

    def values(name):
        rows = json.loads((tmp_path / name).read_text())["metrics"]
        return {(r["metric"], r["variant"], r.get("control")): r["value"] for r in rows}

    a, b = values("one.json"), values("two.json")
    assert a.keys() == b.keys() and len(a) >= 10
    for k in a:
        assert a[k] == b[k] or abs(a[k] - b[k]) <= 1e-9 or (a[k] != a[k] and b[k] != b[k]), k
