"""Data-parallel training across processes: ``torchrun --nproc_per_node=N procalign train ...``.

The process group comes from the environment torchrun (or Slurm's ``srun`` with the same
variables) sets: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``.
Without them everything here is a no-op for one process, so single-process code paths are
unchanged. The backend is gloo on CPU and nccl on CUDA.

What is synced (see docs/scaling.md):

* every rank builds the epoch's *global* batch list (a pure function of seed and epoch, the role
  of ``DistributedSampler.set_epoch``) and trains on its share of each optimiser step: a slice
  of the rows of each batch (``shard="items"``: CPA, SSPL, WeakSVR) or whole batches
  (``shard="batches"``: LRProp, whose loss couples the videos of a batch);
* gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel`; each rank's loss
  is re-weighted by its share of the global step (:func:`item_weights`, :func:`batch_weights`),
  so N ranks take the very step one process takes on the same global batch (exact for losses
  that are means over the rows of a batch);
* rank 0 alone writes the run folder, checkpoints, logs and progress bars; early-stop
  decisions are rank 0's, broadcast to every rank;
* evaluation is split: the pair scoring of verification (:func:`procalign.eval.protocols.
  pair_distances`) and the per-class loop of frame alignment give each rank a contiguous
  share (:func:`split_gather`) and all-gather the results, so every rank holds the full,
  identically ordered distances and computes the same metrics (``procalign eval`` under
  torchrun: rank 0 alone prints and writes the report); code that runs on rank 0 alone
  wraps itself in :func:`local_only`;
* a collective that fails because a peer died raises :class:`RankLost` (one line naming the
  rank(s) lost) instead of hanging; ``PROCALIGN_DIST_TIMEOUT`` (seconds, default 1800) bounds
  the wait for a peer that is alive but stuck.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "RankLost",
    "all_gather_objects",
    "barrier",
    "batch_weights",
    "broadcast_object",
    "env_world",
    "init_from_env",
    "is_distributed",
    "is_main",
    "item_weights",
    "local_only",
    "rank",
    "shard_batch",
    "split_gather",
    "splits_work",
    "world_size",
]

#: seconds a collective waits for a peer before failing (a dead peer usually fails at once)
DEFAULT_TIMEOUT = 1800.0


class RankLost(ConnectionError):
    """A peer process of a distributed run died or stopped answering."""


def env_world() -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` from torchrun's environment, or None outside one."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        r, n = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", r))
    except ValueError as exc:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc})") from None
    if not 0 <= r < n:
        raise ValueError(f"RANK={r} is not in [0, WORLD_SIZE={n})")
    return r, n, local


def timeout_seconds() -> float:
    raw = os.environ.get("PROCALIGN_DIST_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"PROCALIGN_DIST_TIMEOUT must be seconds, got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"PROCALIGN_DIST_TIMEOUT must be > 0, got {raw!r}")
    return value


def init_from_env(device: torch.device | str = "cpu") -> bool:
    """Join the process group named by the environment (once); True when one is active.

    gloo on CPU, nccl on CUDA (each rank then uses ``cuda:LOCAL_RANK``). A world of size 1 is
    not initialised: it is plain single-process training.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    world = env_world()
    if world is None or world[1] == 1:
        return False
    if not dist.is_available():  # pragma: no cover - torch built without distributed
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    r, n, local = world
    device = torch.device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
    for key in ("MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"WORLD_SIZE={n} but {key} is not set (launch with torchrun)")
    dist.init_process_group(
        backend, rank=r, world_size=n, timeout=timedelta(seconds=timeout_seconds())
    )
    return True


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Processes training together: the live process group's, else torchrun's environment."""
    if is_distributed():
        return dist.get_world_size()
    world = env_world()
    return world[1] if world is not None else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one that writes files and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` for a CUDA run under torchrun, else ``device``."""
    world = env_world()
    if device.type == "cuda" and world is not None and world[1] > 1 and device.index is None:
        return torch.device("cuda", world[2])
    return device


def _lost(exc: BaseException, what: str) -> RankLost:
    r, n = rank(), world_size()
    others = [i for i in range(n) if i != r]
    who = f"rank {others[0]}" if len(others) == 1 else f"one of ranks {others}"
    return RankLost(
        f"rank {r} of {n} lost contact with {who} during {what} (the process died or stopped "
        f"answering: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); the job "
        "ends here, the last checkpoint is kept: rerun the same command to resume"
    )


def guarded(what: str):
    """Context manager turning a failed collective into :class:`RankLost` naming ``what``."""
    from contextlib import contextmanager

    @contextmanager
    def ctx():
        try:
            yield
        except RankLost:
            raise
        except (RuntimeError, ConnectionError, TimeoutError) as exc:
            if not is_distributed():
                raise
            raise _lost(exc, what) from exc

    return ctx()


def barrier(what: str = "a barrier") -> None:
    if is_distributed():
        with guarded(what):
            dist.barrier()


def broadcast_object(value: Any, what: str = "a broadcast", src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (any picklable object)."""
    if not is_distributed():
        return value
    box = [value]
    with guarded(what):
        dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(value: Any, what: str = "a gather") -> list[Any]:
    """``[value of rank 0, ..., value of rank N-1]`` on every rank."""
    if not is_distributed():
        return [value]
    out: list[Any] = [None] * world_size()
    with guarded(what):
        dist.all_gather_object(out, value)
    return out


def all_true(flag: bool, what: str = "a check") -> bool:
    """True when ``flag`` holds on every rank (one tiny all-reduce)."""
    if not is_distributed():
        return flag
    t = torch.tensor([0 if flag else 1], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    with guarded(what):
        dist.all_reduce(t)
    return int(t.item()) == 0


# --------------------------------------------------------------------------------- sharding
def _rows(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    if isinstance(batch, dict):
        sizes = {_rows(v) for v in batch.values() if isinstance(v, (torch.Tensor, list, tuple, dict))}
        if len(sizes) != 1:
            raise ValueError(
                f"cannot split a batch whose entries have different leading sizes {sorted(sizes)}"
            )
        return sizes.pop()
    if isinstance(batch, (list, tuple)):
        return len(batch)
    raise TypeError(f"cannot split a batch of type {type(batch).__name__} across ranks")


def _slice(batch: Any, lo: int, hi: int) -> Any:
    if isinstance(batch, dict):
        return {k: _slice(v, lo, hi) if isinstance(v, (torch.Tensor, list, tuple, dict)) else v
                for k, v in batch.items()}
    return batch[lo:hi]


def split_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges covering ``range(n)``, sizes differing by at most 1."""
    base, extra = divmod(n, parts)
    out, lo = [], 0
    for i in range(parts):
        hi = lo + base + (1 if i < extra else 0)
        out.append((lo, hi))
        lo = hi
    return out


def shard_batch(batch: Any, r: int | None = None, n: int | None = None) -> tuple[Any, int, int]:
    """Rank ``r``'s rows of a batch: ``(slice, rows in slice, rows in batch)``.

    A batch is a dict of (B, ...) tensors / lists (or one tensor / list); rank r of n gets the
    r-th of n contiguous slices (``split_bounds``). A rank whose slice is empty (B < n) gets
    the whole batch back with 0 rows, to be weighted 0 (every rank must run the step).
    """
    r = rank() if r is None else r
    n = world_size() if n is None else n
    B = _rows(batch)
    lo, hi = split_bounds(B, n)[r]
    if hi == lo:
        return batch, 0, B
    return _slice(batch, lo, hi), hi - lo, B


def item_weights(rows: Sequence[int], totals: Sequence[int], n: int) -> list[float]:
    """Loss weights of a rank's row slices so that DDP's gradient average equals one process.

    One process steps on ``mean_b loss_b`` over the G batches of a step (loss_b a mean over
    the B_b rows of batch b). A rank holding ``rows[b]`` of them and computing the mean over
    its slice contributes ``n * rows[b] / (B_b * G)`` times it; DDP divides the sum by n.
    """
    G = len(totals)
    return [n * s / (B * G) for s, B in zip(rows, totals)]


def batch_weights(own: int, total: int, n: int) -> float:
    """Weight of each of a rank's ``own`` whole batches when the step has ``total`` of them."""
    return n / total if own else 0.0


def step_groups(batches: Sequence[Any], per_step: int) -> list[list[Any]]:
    """Consecutive groups of ``per_step`` batches (the last one may be shorter)."""
    return [list(batches[i : i + per_step]) for i in range(0, len(batches), per_step)]


def rank_share(group: Sequence[Any], mode: str, accumulate: int, r: int, n: int):
    """``[(batch, weight), ...]`` of rank r in one optimiser step of ``group``.

    ``mode="items"``: every batch of the group, sliced to rank r's rows; ``"batches"``: rank
    r's ``accumulate`` whole batches of the group. The weights make the DDP-averaged gradient
    equal to the gradient of the mean batch loss of the group in one process; a rank with no
    rows or batches gets a weight-0 stand-in so every rank runs the same collectives.
    """
    if mode == "items":
        parts = [shard_batch(b, r, n) for b in group]
        weights = item_weights([p[1] for p in parts], [p[2] for p in parts], n)
        return [(p[0], w) for p, w in zip(parts, weights)]
    if mode != "batches":
        raise ValueError(f"shard must be 'items' or 'batches', got {mode!r}")
    own = list(group[r * accumulate : (r + 1) * accumulate])
    if not own:
        return [(group[0], 0.0)]
    w = batch_weights(len(own), len(group), n)
    return [(b, w) for b in own]


# ------------------------------------------------------------------------------ split work
_LOCAL_DEPTH = 0


@contextmanager
def local_only():
    """Within it, :func:`split_gather` does all the work on this rank, with no collective: for
    code that only some ranks run (rank 0 choosing thresholds after training)."""
    global _LOCAL_DEPTH
    _LOCAL_DEPTH += 1
    try:
        yield
    finally:
        _LOCAL_DEPTH -= 1


def splits_work() -> bool:
    """True when :func:`split_gather` shares work across ranks (a live group, not local)."""
    return is_distributed() and _LOCAL_DEPTH == 0


def split_gather(
    n: int, compute: Callable[[int, int], Sequence[Any]], what: str = "gathering the evaluation"
) -> list[Any]:
    """The ``n`` items ``compute(0, n)`` would return, each rank computing a contiguous share.

    ``compute(lo, hi)`` returns the items ``lo..hi-1`` (picklable). In one process (or under
    :func:`local_only`) it is simply ``list(compute(0, n))``; with N ranks rank r computes
    ``split_bounds(n, N)[r]`` and every rank gets the concatenation in rank order, i.e. the
    same list in the same order. An exception on any rank is raised on every rank (none is
    left waiting for a gather that will not come).
    """
    if not splits_work():
        return list(compute(0, n))
    lo, hi = split_bounds(n, world_size())[rank()]
    try:
        with local_only():  # a split inside this share is this rank's alone
            part: tuple[bool, Any] = (True, list(compute(lo, hi)) if hi > lo else [])
    except Exception as exc:  # noqa: BLE001 - handed to every rank, then raised
        import pickle

        try:
            pickle.loads(pickle.dumps(exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            exc = RuntimeError(f"rank {rank()}: {exc}")
        part = (False, exc)
    out: list[Any] = []
    parts = all_gather_objects(part, what)
    for ok, value in parts:
        if not ok:
            raise value
    for _, value in parts:
        out.extend(value)
    if len(out) != n:  # pragma: no cover - a compute that returned the wrong count
        raise RuntimeError(f"{what}: gathered {len(out)} items, expected {n}")
    return out


def broadcast_tensors(tensors: Any, what: str = "a broadcast", src: int = 0) -> None:
    """Overwrite ``tensors`` (an iterable, e.g. ``model.state_dict().values()``) in place with
    rank ``src``'s values."""
    if not is_distributed():
        return
    with guarded(what), torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data if isinstance(t, torch.nn.Parameter) else t, src=src)


def main_decides(fn: Any, what: str = "a decision") -> Any:
    """``fn()`` run on rank 0 alone, its value (or its exception) given to every rank.

    For reads that only rank 0 may do (the run folder may live on rank 0's disk alone) and
    checks that must stop every rank at once, not leave the others waiting.
    """
    if not is_distributed():
        return fn()
    payload: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            payload = (True, fn())
        except Exception as exc:  # noqa: BLE001 - handed to every rank, then raised
            import pickle

            try:
                pickle.loads(pickle.dumps(exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                exc = RuntimeError(str(exc))
            payload = (False, exc)
    ok, value = broadcast_object(payload, what)
    if not ok:
        raise value
    return value


def shutdown() -> None:
    """Leave the process group after a job that went well (a failed job just exits).

    Every rank meets at a barrier first: rank 0 hosts the rendezvous store, and a rank 0 that
    tore down and exited while a slower rank was still finishing once left that rank aborting
    in C++ at exit ("terminate called without an active exception", rc -6) under CPU load.
    """
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            barrier("leaving the process group")
        dist.destroy_process_group()
