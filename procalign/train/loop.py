"""The training loop: ``fit(model, loss_fn, make_batches, optimizer, ...)``.

Plain objects in, plain objects out: no config reaches this module. Every epoch ends with a
checkpoint (weights + optimizer + scheduler + RNG state), so a run that is killed loses at most
the epoch in progress, and ``resume=True`` continues from the newest checkpoint. Because the
batches of an epoch are a function of ``(seed, epoch)`` (``make_batches(epoch)``) and the RNG state
is restored, a resumed run ends with exactly the weights of an uninterrupted one.
"""

from __future__ import annotations

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

    A non-finite loss raises ``FloatingPointError`` naming the epoch and step; the last checkpoint
    stays on disk.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpointer(run_dir)
    logger = JsonlLogger(run_dir / "log.jsonl")
    history: list[dict[str, Any]] = []
    start = 0
    best: dict[str, Any] | None = None
    stopped = False
    if patience < 0:
        raise ValueError(f"patience must be >= 0, got {patience}")
    seed_everything(seed)
    if resume and ckpt.latest() is not None:
        # a resumed run replays from its checkpoint; epochs already done are not redone
        state = ckpt.load(model)
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
            _refresh_lr(optimizer, scheduler)
        set_rng_state(state["rng"])
        start = int(state["epoch"])
        history = list(state.get("history", []))
        best, stopped = state.get("best"), bool(state.get("stopped", False))
        logger.log(event="resume", epoch=start)
    resumed_from = start
    times: list[float] = []
    for epoch in range(start, epochs):
        if stopped:
            break
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        count = 0
        batches = make_batches(epoch)
        bar = _progress(batches, progress, f"epoch {epoch + 1}/{epochs}")
        for step, batch in enumerate(bar):
            loss, logs = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss {float(loss.detach())} at epoch {epoch + 1}, step {step}; "
                    f"the last good checkpoint is in {ckpt.dir}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            logs = {"loss": float(loss.detach()), **{k: float(v) for k, v in logs.items()}}
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
        if scheduler is not None:
            scheduler.step()
        seconds = time.perf_counter() - t0
        times.append(seconds)
        record: dict[str, Any] = {"epoch": epoch + 1, "seconds": seconds, "batches": count}
        record.update({k: v / max(count, 1) for k, v in sums.items()})
        if eval_fn is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            model.eval()
            with torch.no_grad():
                record.update({f"eval/{k}": v for k, v in eval_fn(model, epoch + 1).items()})
            key = f"eval/{select}"
            if select is not None and key not in record:
                raise KeyError(f"eval_fn returned no {select!r} to select the best epoch by")
            if select is not None:
                if best is None or record[key] > best["value"]:
                    best = {"metric": select, "value": float(record[key]), "epoch": epoch + 1}
                    save_weights(model, run_dir / "best.safetensors", metadata)
                    record["best"] = True
                elif patience and sum(1 for h in history if f"eval/{select}" in h
                                      and h["epoch"] > best["epoch"]) + 1 >= patience:
                    stopped = True
        history.append(record)
        logger.log(event="epoch", **record)
        state = {
            "epoch": epoch + 1,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_state(),
            "history": history,
            "best": best,
            "stopped": stopped,
        }
        ckpt.save(model, state, f"epoch_{epoch + 1:04d}", metadata)
        if stopped:
            logger.log(event="early_stop", epoch=epoch + 1, best=best)
        if (stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < epochs
                and not stopped):
            return FitResult(history, run_dir, resumed_from, times, best)
    if best is not None:  # the selected epoch's weights are the run's weights
        from procalign.train.checkpoint import load_weights

        load_weights(model, run_dir / "best.safetensors")
    save_weights(model, run_dir / "model.safetensors", metadata)
    write_json(run_dir / "history.json", history)
    return FitResult(history, run_dir, resumed_from, times, best, stopped)


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
    from tqdm.auto import tqdm

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
