"""torchrun data-parallel training (procalign.train.distributed) on CPU with gloo.

* 2 ranks end with the weights of 1 process on the same global batch and seed (CPA: the rows
  of each batch split over the ranks; LRProp: whole batches, 1 process accumulating 2);
* a rank killed mid-run ends the other with a one-line error naming it, well under 60 s, and
  the last checkpoint still loads;
* a run resumes only under the world size it started with.

Workers are real processes (``procalign train`` under torchrun's environment variables, or
torchrun itself), one torch thread each.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.methods.test_contract import TINY

ROOT = Path(__file__).resolve().parents[2]
# no dropout, centre step features: the only randomness is the batches (a function of the seed)
CPA = [*TINY["cpa"][:-1], "eval.distances=[cpa]", "train.epochs=2", "train.batch_size=6",
       "model.step_features=center", "train.eval_every=0"]
LRPROP = [*TINY["lrprop"], "model.dropout=0.0", "train.epochs=2", "train.batch_size=2",
          "eval.max_queries=1"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               NUMBA_NUM_THREADS="1", PROCALIGN_DIST_TIMEOUT="40")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(extra)
    return env


def _train_cmd(method: str, args: list[str], out: Path) -> list[str]:
    return ["-m", "procalign.cli.main", "train", method, *args, "--out", str(out), "--quiet"]


def _ranks(method: str, args: list[str], out: Path, n: int = 2) -> list[subprocess.Popen]:
    """n worker processes with torchrun's variables (what torchrun would start)."""
    port = str(_port())
    return [
        subprocess.Popen(
            [sys.executable, *_train_cmd(method, args, out)],
            env=_env(RANK=str(r), WORLD_SIZE=str(n), LOCAL_RANK=str(r),
                     MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        )
        for r in range(n)
    ]


def _wait(procs: list[subprocess.Popen], timeout: float = 120) -> list[tuple[int, str]]:
    out = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        out.append((p.returncode, err))
    return out


def _one(method: str, args: list[str], out: Path) -> None:
    res = subprocess.run([sys.executable, *_train_cmd(method, args, out)], env=_env(),
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


def _weights(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    files = sorted(p for p in run.rglob("model.safetensors") if "checkpoints" not in p.parts)
    assert files, f"no final weights under {run}"
    return {str(p.relative_to(run)): load_file(str(p)) for p in files}


def _same(a: dict, b: dict, atol: float = 1e-5) -> None:
    """Equal to ``atol``, except the attention *key* biases: softmax is invariant to them, so
    their true gradient is 0 and Adam normalises float noise into steps of up to ~lr; those
    must only stay within lr x steps of each other."""
    assert a.keys() == b.keys()
    for part in a:
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            x, y = a[part][k].clone(), b[part][k].clone()
            if k.endswith("self_attn.in_proj_bias"):
                d = x.shape[0] // 3
                assert (x[d : 2 * d] - y[d : 2 * d]).abs().max() < 1e-3 * 8, k
                x[d : 2 * d] = y[d : 2 * d] = 0
            diff = (x - y).abs().max().item() if x.numel() else 0.0
            assert diff <= atol, f"{part}:{k} differs by {diff}"


@pytest.mark.slow
def test_cpa_two_gloo_ranks_under_torchrun_match_one_process(tmp_path):
    """``torchrun --nproc_per_node=2 procalign train cpa ...`` with no other change."""
    _one("cpa", CPA, tmp_path / "one")
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "procalign.cli.main",
         *_train_cmd("cpa", CPA, tmp_path / "two")[2:]],
        env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=150,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    _same(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
    import json

    meta = json.loads((tmp_path / "two" / "meta.json").read_text())
    assert meta["world_size"] == 2
    # rank 0 alone wrote the run: one summary printed, one log line per epoch
    log = (tmp_path / "two" / "log.jsonl").read_text().splitlines()
    assert len([x for x in log if '"epoch"' in x and '"event": "epoch"' in x]) == 2
    assert res.stdout.count('"finished": true') == 1
    # the epoch's loss is the global batch's, as in one process
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert abs(one[-1]["loss"] - two[-1]["loss"]) < 1e-4
    # resuming under another world size is refused with one line naming both sizes
    again = subprocess.run([sys.executable, *_train_cmd("cpa", CPA, tmp_path / "two")],
                           env=_env(), capture_output=True, text=True, cwd=ROOT, timeout=120)
    err = again.stderr.strip().splitlines()
    assert again.returncode == 2 and len(err) == 1, again.stderr
    assert "world size 2" in err[0] and "world size 1" in err[0]


@pytest.mark.slow
def test_lrprop_two_ranks_take_whole_batches_like_one_process_accumulating_two(tmp_path):
    _one("lrprop", [*LRPROP, "train.accumulate=2"], tmp_path / "one")
    results = _wait(_ranks("lrprop", LRPROP, tmp_path / "two"))
    for code, err in results:
        assert code == 0, err[-3000:]
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert len(one) == 2  # one model per class
    _same(one, two)


@pytest.mark.slow
def test_a_killed_rank_ends_the_other_with_an_error_and_the_checkpoint_loads(tmp_path):
    run = tmp_path / "run"
    args = [*CPA[:-2], "train.epochs=200", "data.pairs_per_epoch=24"]
    procs = _ranks("cpa", args, run)
    latest = run / "checkpoints" / "LATEST"
    deadline = time.monotonic() + 90
    while not latest.exists() and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs]
        time.sleep(0.2)
    assert latest.exists(), "no checkpoint within 90 s"
    os.kill(procs[1].pid, signal.SIGKILL)
    t0 = time.monotonic()
    try:
        _, err = procs[0].communicate(timeout=60)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        pytest.fail("rank 0 still running 60 s after rank 1 was killed")
    took = time.monotonic() - t0
    procs[1].wait()
    assert procs[0].returncode != 0 and took < 60
    last = err.strip().splitlines()[-1]
    assert "rank 0 of 2 lost contact with rank 1" in last, err[-2000:]
    from procalign.config import load_config
    from procalign.methods import load_recipes
    from procalign.train.checkpoint import Checkpointer
    from procalign.train.runner import RunFolder

    recipe = load_recipes().build("cpa")
    config = load_config(recipe.config_cls, run / "config.yaml")
    model = recipe.build(config, RunFolder(run).meta())[""]
    state = Checkpointer(run).load(model)
    assert state["epoch"] >= 1 and state["world_size"] == 2


def test_sharding_weights_reproduce_the_mean_of_one_process():
    from procalign.train import distributed as dd

    batch = {"x": torch.arange(10.0)[:, None], "ids": list("abcdefghij")}
    parts = [dd.shard_batch(batch, r, 3) for r in range(3)]
    assert [p[1] for p in parts] == [4, 3, 3]
    assert [i for p in parts for i in p[0]["ids"]] == batch["ids"]
    # a mean-over-rows loss: ranks' weighted slice means, averaged by DDP, = the global mean
    for n in (1, 2, 3, 4):
        group = [batch, {"x": torch.arange(3.0)[:, None], "ids": list("xyz")}]
        total = 0.0
        for r in range(n):
            for b, w in dd.rank_share(group, "items", 1, r, n):
                total += w * float(b["x"].mean()) / n
        want = (float(batch["x"].mean()) + 1.0) / 2
        assert abs(total - want) < 1e-9, n
    # whole batches: 3 batches over 2 ranks = one process accumulating 3
    group = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([6.0])]
    total = sum(w * float(b.mean()) / 2 for r in range(2)
                for b, w in dd.rank_share(group, "batches", 2, r, 2))
    assert abs(total - 3.0) < 1e-9
    with pytest.raises(ValueError, match="different leading sizes"):
        dd.shard_batch({"a": torch.zeros(2), "b": torch.zeros(3)}, 0, 2)


@pytest.mark.slow
def test_sspl_two_ranks_split_the_rows_like_one_process(tmp_path):
    args = [*TINY["sspl"], "train.epochs=2", "train.batch_size=4"]
    _one("sspl", args, tmp_path / "one")
    for code, err in _wait(_ranks("sspl", args, tmp_path / "two")):
        assert code == 0, err[-3000:]
    _same(_weights(tmp_path / "one"), _weights(tmp_path / "two"))
