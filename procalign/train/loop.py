"""The training loop: ``fit(model, loss_fn, make_batches, optimizer, ...)``.

Plain objects in, plain objects out: no config reaches this module. Every epoch ends with a
checkpoint (weights + optimizer + scheduler + RNG state), so a run that is killed loses at most
the epoch in progress, and ``resume=True`` continues from the newest checkpoint. Because the
batches of an epoch are a function of ``(seed, epoch)`` (``make_batches(epoch)``) and the RNG state
is restored, a resumed run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from procalign.train.checkpoint import Checkpointer, save_weights, write_json
from procalign.train.seed import rng_state, seed_everything, set_rng_state

LossFn = Callable[[torch.nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


class JsonlLogger:
    """Appends one JSON object per line; flushed on every write so a crash loses nothing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log(self, **record: Any) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


@dataclass
class FitResult:
    """What :func:`fit` leaves behind: the per-epoch history and where the run lives."""

    history: list[dict[str, Any]]
    run_dir: Path
    resumed_from_epoch: int = 0
    seconds_per_epoch: list[float] = field(default_factory=list)
    best: dict[str, Any] | None = None
    stopped_early: bool = False


def fit(
    model: torch.nn.Module,
    loss_fn: LossFn,
    make_batches: Callable[[int], Iterable[Any]],
    optimizer: torch.optim.Optimizer,
    epochs: int,
    run_dir: str | Path,
    *,
    scheduler: Any | None = None,
    eval_fn: Callable[[torch.nn.Module, int], dict[str, float]] | None = None,
    eval_every: int = 1,
    resume: bool = True,
    seed: int = 0,
    grad_clip: float | None = None,
    progress: bool = True,
    metadata: dict[str, str] | None = None,
    stop_after_epoch: int | None = None,
    select: str | None = None,
    patience: int = 0,
    shard: str = "items",
    accumulate: int = 1,
) -> FitResult:
    """Train ``model`` for ``epochs`` epochs, checkpointing after each.

    Args:
        loss_fn: ``(model, batch) -> (loss, logs)``; ``logs`` are floats averaged per epoch.
        make_batches: ``epoch -> iterable of batches``; must be deterministic given the epoch.
        scheduler: stepped once per epoch (after the optimizer steps of that epoch).
        eval_fn: ``(model, epoch) -> metrics``, run every ``eval_every`` epochs and at the end.
        resume: continue from the newest checkpoint in ``run_dir`` if there is one.
        stop_after_epoch: stop early after this epoch (as if killed), for tests and time limits.
        metadata: strings stored in every safetensors file (method name, config hash...).
        select: a key of ``eval_fn``'s metrics (higher is better, e.g. a validation AUC): the
            weights of the best evaluation are kept (``best.safetensors``) and become the final
            ``model.safetensors``; the history's last record names the selected epoch.
        patience: with ``select``, stop once this many evaluations in a row have not improved
            on the best (0 = train every epoch, still keeping the best).
        shard: how the ranks of a distributed run (:mod:`procalign.train.distributed`) share an
            optimiser step: ``"items"`` slices the rows of every batch (losses that are means
            over rows), ``"batches"`` gives each rank whole batches (losses that couple the
            rows of a batch); then one step takes ``world size x accumulate`` batches.
        accumulate: batches whose mean loss makes one optimiser step (gradient accumulation);
            1 process with ``accumulate=N`` and ``shard="batches"`` steps as N ranks do.

    Under torchrun (an initialised process group) the model is wrapped in
    DistributedDataParallel, and rank 0 alone writes files, logs and progress bars; every rank
    takes rank 0's evaluation metrics and early-stop decisions. A run resumes only under the
    world size it was started with.

    A non-finite loss raises ``FloatingPointError`` naming the epoch and step; the last checkpoint
    stays on disk.
    """
    from procalign.train import distributed as dd

    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
        raise ValueError(f"accumulate must be an integer >= 1, got {accumulate!r}")
    if shard not in ("items", "batches"):
        raise ValueError(f"shard must be 'items' or 'batches', got {shard!r}")
    if patience < 0:
        raise ValueError(f"patience must be >= 0, got {patience}")
    run_dir = Path(run_dir)
    main, r, n = dd.is_main(), dd.rank(), dd.world_size()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(run_dir)
    logger = JsonlLogger(run_dir / "log.jsonl") if main else None
    history: list[dict[str, Any]] = []
    start = 0
    best: dict[str, Any] | None = None
    stopped = False
    seed_everything(seed if r == 0 else seed + 7919 * r)  # per-sample randomness differs by rank
    state = None
    if resume:
        state = dd.main_decides(lambda: _resume_state(ckpt, model, n), "reading the checkpoint")
    if state is not None:
        # a resumed run replays from its checkpoint; epochs already done are not redone
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
            _refresh_lr(optimizer, scheduler)
        ranks = state.get("rng_ranks")
        set_rng_state(ranks[r] if ranks and len(ranks) == n else state["rng"])
        start = int(state["epoch"])
        history = list(state.get("history", []))
        best, stopped = state.get("best"), bool(state.get("stopped", False))
        if logger is not None:
            logger.log(event="resume", epoch=start, world_size=n)
    step_model = _StepModule(model, loss_fn)
    if n > 1:  # also broadcasts rank 0's (resumed) weights and buffers to every rank
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev = next(model.parameters()).device
        with dd.guarded("wrapping the model in DistributedDataParallel"):
            step_model = DDP(step_model, device_ids=[dev] if dev.type == "cuda" else None,
                             find_unused_parameters=True)
    per_step = accumulate * (n if shard == "batches" else 1)
    resumed_from = start
    times: list[float] = []
    for epoch in range(start, epochs):
        if stopped:
            break
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        groups = dd.step_groups(list(make_batches(epoch)), per_step)
        bar = _progress(groups, progress and main, f"epoch {epoch + 1}/{epochs}")
        for step, group in enumerate(bar):
            share = dd.rank_share(group, shard, accumulate, r, n) if per_step * n > 1 else [
                (group[0], 1.0)]
            optimizer.zero_grad(set_to_none=True)
            step_logs: dict[str, float] = {}
            for i, (batch, weight) in enumerate(share):
                sync = _no_sync(step_model) if i < len(share) - 1 else contextlib.nullcontext()
                with sync:
                    loss, logs = step_model(batch)
                    finite = bool(torch.isfinite(loss)) or weight == 0.0
                    if not dd.all_true(finite, f"epoch {epoch + 1}, step {step}"):
                        value = float(loss.detach()) if not finite else float("nan")
                        raise FloatingPointError(
                            f"non-finite loss {value} at epoch {epoch + 1}, step {step}"
                            + (f" (on rank {r} or a peer)" if n > 1 else "")
                            + f"; the last good checkpoint is in {ckpt.dir}"
                        )
                    with dd.guarded(f"the gradient all-reduce of epoch {epoch + 1}, step {step}"):
                        (loss * weight if weight != 1.0 else loss).backward()
                share_w = weight / n
                for k, v in {"loss": float(loss.detach()), **logs}.items():
                    step_logs[k] = step_logs.get(k, 0.0) + share_w * float(v)
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            for k, v in step_logs.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if hasattr(bar, "set_postfix") and n == 1:
                bar.set_postfix(loss=f"{step_logs['loss']:.4f}")
        if scheduler is not None:
            scheduler.step()
        if n > 1:  # the epoch's logs over every rank's share (equal to one process's)
            merged: dict[str, float] = {}
            for part in dd.all_gather_objects(sums, f"the logs of epoch {epoch + 1}"):
                for k, v in part.items():
                    merged[k] = merged.get(k, 0.0) + v
            sums = merged
        seconds = time.perf_counter() - t0
        times.append(seconds)
        record: dict[str, Any] = {"epoch": epoch + 1, "seconds": seconds, "batches": count}
        record.update({k: v / max(count, 1) for k, v in sums.items()})
        if eval_fn is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            model.eval()
            with torch.no_grad():
                metrics = eval_fn(model, epoch + 1)
            # every rank takes rank 0's numbers, so every rank decides the same
            metrics = dd.broadcast_object(metrics, f"the evaluation of epoch {epoch + 1}")
            record.update({f"eval/{k}": v for k, v in metrics.items()})
            key = f"eval/{select}"
            if select is not None and key not in record:
                raise KeyError(f"eval_fn returned no {select!r} to select the best epoch by")
            if select is not None:
                if best is None or record[key] > best["value"]:
                    best = {"metric": select, "value": float(record[key]), "epoch": epoch + 1}
                    if main:
                        save_weights(model, run_dir / "best.safetensors", metadata)
                    record["best"] = True
                elif patience and sum(1 for h in history if f"eval/{select}" in h
                                      and h["epoch"] > best["epoch"]) + 1 >= patience:
                    stopped = True
        history.append(record)
        rngs = dd.all_gather_objects(rng_state(), f"the checkpoint of epoch {epoch + 1}")
        if main:
            logger.log(event="epoch", **record)
            state = {
                "epoch": epoch + 1,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "rng": rngs[0],
                "history": history,
                "best": best,
                "stopped": stopped,
                "world_size": n,
            }
            if n > 1:
                state["rng_ranks"] = rngs
            ckpt.save(model, state, f"epoch_{epoch + 1:04d}", metadata)
            if stopped:
                logger.log(event="early_stop", epoch=epoch + 1, best=best)
        dd.barrier(f"saving the checkpoint of epoch {epoch + 1}")
        if (stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs
                and not stopped):
            return FitResult(history, run_dir, resumed_from, times, best)
    if best is not None and main:  # the selected epoch's weights are the run's weights
        from procalign.train.checkpoint import load_weights

        load_weights(model, run_dir / "best.safetensors")
    dd.broadcast_tensors(model.state_dict().values(), "sharing the final weights")
    if main:
        save_weights(model, run_dir / "model.safetensors", metadata)
        write_json(run_dir / "history.json", history)
    return FitResult(history, run_dir, resumed_from, times, best, stopped)


class _StepModule(torch.nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: the whole loss inside one ``forward``, so
    DistributedDataParallel sees every parameter the loss uses, whatever model methods it calls."""

    def __init__(self, model: torch.nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.__dict__["loss_fn"] = loss_fn  # not a submodule: its state is not the model's

    def forward(self, batch: Any):
        return self.loss_fn(self.model, batch)


def _no_sync(step_model: torch.nn.Module):
    """Skip DDP's all-reduce on all but the last backward of an accumulated step."""
    no_sync = getattr(step_model, "no_sync", None)
    return no_sync() if no_sync is not None else contextlib.nullcontext()


def _resume_state(ckpt: Checkpointer, model: torch.nn.Module, world: int) -> dict[str, Any] | None:
    """The newest checkpoint's state (weights loaded into ``model``), or None; refuses a
    checkpoint written under another world size."""
    if ckpt.latest() is None:
        return None
    state = ckpt.load(model)
    check_world_size(int(state.get("world_size", 1)), world, ckpt.run_dir)
    return state


def check_world_size(saved: int, now: int, run_dir: str | Path) -> None:
    """One line naming both sizes when a run is resumed under another world size."""
    if saved != now:
        raise ValueError(
            f"{run_dir} was trained with world size {saved}, this job has world size {now}; "
            f"resume it with {saved} process(es) (torchrun --nproc_per_node={saved}) or train "
            "into a new folder with --out NEW"
        )


def _refresh_lr(optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Learning rates from the schedule built for *this* run's length.

    The restored optimizer holds the rates of the old schedule; when a run is extended (more
    epochs), a cosine schedule that had reached 0 must continue from its value under the new
    length, or the extra epochs would not move the weights. For a resumed run of the same length
    this recomputes the very same numbers.
    """
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if lambdas is None:
        return
    for group, base, fn in zip(optimizer.param_groups, scheduler.base_lrs, lambdas):
        group["lr"] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def _progress(items: Iterable[Any], show: bool, desc: str):
    if not show:
        return items
    from procalign._progress import bar as tqdm

    total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    return tqdm(items, desc=desc, total=total, leave=False, dynamic_ncols=True)


def cosine_warmup(optimizer: torch.optim.Optimizer, epochs: int, warmup: int = 0):
    """Per-epoch LR multiplier: linear warm-up, then cosine decay to 0 (a LambdaLR)."""

    def factor(e: int) -> float:
        if e < warmup:
            return (e + 1) / (warmup + 1)
        span = max(1, epochs - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (e - warmup) / span)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
