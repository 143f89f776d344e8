"""Run folders and the one driver every method trains, evaluates and verifies through.

A run folder belongs to the run that made it::

    config.yaml        the config actually used (defaults filled in)
    meta.json          method, procalign version, what the run knows about its data
    log.jsonl          one line per epoch / resume
    checkpoints/       resumable state (see procalign.train.checkpoint)
    model.safetensors  final weights (one part) or classes/<label>/... (one model per class)
    summary.json, eval.json, threshold.json

Rules (each tested):

* settings are compared before anything is written: a rerun whose config differs from
  ``config.yaml`` (other than the run-time keys ``train.threads``, ``train.device``,
  ``train.stop_after_epoch``) is refused with one line naming the keys, and the run stays as it
  was. ``extend=True`` accepts a larger ``train.epochs`` and really trains the new epochs (the
  learning-rate schedule is rebuilt for the new length);
* the data is loaded and validated before the first write, so bad data never touches a run;
* every file is replaced atomically and only after the step that produces it succeeded; a run
  killed at any moment resumes from its last checkpoint and ends bit-identical to an
  uninterrupted one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from procalign._io import atomic_write_text
from procalign.config import RUNTIME_KEYS, config_diff, dump_yaml, load_config
from procalign.train.checkpoint import Checkpointer, load_weights, write_json
from procalign.train.loop import cosine_warmup, fit
from procalign.train.threads import compute, resolve_device

__all__ = ["RunConflict", "RunFolder", "evaluate_run", "load_run", "train_run"]


class RunConflict(ValueError):
    """A command would change or misdescribe a run folder that holds other work; ``diff``: the
    settings that differ from the saved run's, when that is the conflict."""

    def __init__(self, message: str, diff: list[str] | None = None) -> None:
        super().__init__(message)
        self.diff = list(diff or [])


class RunFolder:
    """Reads and guards one run folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    def meta(self) -> dict[str, Any] | None:
        p = self.path / "meta.json"
        return json.loads(p.read_text()) if p.is_file() else None

    def saved_config(self, config_cls: type) -> Any | None:
        if not self.config_path.is_file():
            return None
        return load_config(config_cls, self.config_path)

    def part_dir(self, part: str) -> Path:
        return self.path / part if part else self.path

    def check(
        self, method: str, config: Any, *, resume: bool, extend: bool, world_size: int = 1
    ) -> list[str]:
        """Refuse (RunConflict) a config that does not belong to this run; returns the diff.

        A run resumes only under the world size (processes of ``torchrun``) it started with."""
        meta = self.meta()
        if meta is not None and meta.get("method") not in (None, method):
            raise RunConflict(
                f"{self.path} is a {meta['method']!r} run, not {method!r}; use another --out folder"
            )
        if meta is not None and resume:
            from procalign.train.loop import check_world_size

            try:
                check_world_size(int(meta.get("world_size", 1)), world_size, self.path)
            except ValueError as exc:
                raise RunConflict(str(exc)) from None
        saved = self.saved_config(type(config))
        if saved is None or not resume:
            return []
        # a key left to the data ("auto") is compared once it is chosen (train_run)
        diff = [d for d in config_diff(saved, config, ignore=RUNTIME_KEYS)
                if not d.endswith("-> auto")]
        if not diff:
            return []
        only_epochs = all(d.startswith("train.epochs:") for d in diff)
        if extend and only_epochs and config.train.epochs > saved.train.epochs:
            return diff
        hint = (
            " (--extend trains the extra epochs of this run)"
            if only_epochs and config.train.epochs > saved.train.epochs
            else ""
        )
        raise RunConflict(
            f"{self.path} holds a run with other settings ({'; '.join(diff)}); it is left "
            f"unchanged: train into a new folder with --out NEW{hint}, or rerun without "
            "--config to resume it as it is",
            diff,
        )

    def write_start(self, config: Any, meta: dict[str, Any], fresh: bool = False) -> None:
        """Record the run's config and data facts (atomically). ``fresh``: the run starts over,
        so the previous run's checkpoints, weights and logs are removed first."""
        saved = self.meta()
        if fresh and saved is not None:
            self._clear()
            saved = None
        if saved is not None:
            for key in ("in_dim", "classes"):
                if key in saved and key in meta and saved[key] != meta[key]:
                    raise RunConflict(
                        f"{self.path} was trained on data with {key}={saved[key]!r}; the data "
                        f"now has {key}={meta[key]!r}. Train into a new folder with --out NEW"
                    )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, dump_yaml(config))
        write_json(self.path / "meta.json", meta)


    def _clear(self) -> None:
        import shutil

        for ckpt in self.path.rglob("checkpoints"):
            shutil.rmtree(ckpt, ignore_errors=True)
        for name in ("model.safetensors", "log.jsonl", "history.json", "summary.json",
                     "eval.json", "threshold.json"):
            for f in self.path.rglob(name):
                if "features" not in f.parts:
                    f.unlink()


def _optimizer(model: torch.nn.Module, optim: Any) -> torch.optim.Optimizer:
    # foreach: the multi-tensor implementation, bit for bit the per-parameter loop's result
    # (checked in tests/train/test_runner.py) but one call per operation over all parameters; on
    # CPU torch picks the loop by default, which took 1.5 ms of a 25 ms CPA step (0.8 ms this way)
    kw = {"lr": optim.lr, "weight_decay": optim.weight_decay, "foreach": True}
    if optim.name == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), **kw)
    cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
    return cls(model.parameters(), **kw)


def _finished(part_dir: Path, epochs: int) -> bool:
    """Weights of a part whose last checkpoint reached ``epochs``."""
    if not (part_dir / "model.safetensors").is_file():
        return False
    latest = Checkpointer(part_dir).latest()
    if latest is None:
        return True
    return int(latest.name.split("_")[-1]) >= epochs


def train_run(
    recipe: Any,
    config: Any,
    run_dir: str | Path,
    *,
    resume: bool = True,
    extend: bool = False,
    progress: bool = True,
    data: Any = None,
) -> dict[str, Any]:
    """Train every part of ``recipe`` into ``run_dir``; returns the summary (``summary.json``).

    ``resume=False`` starts the folder over; ``data`` reuses an already loaded FeatureSet.
    """
    import procalign
    from procalign.train import distributed as dd

    recipe.validate(config)
    run = RunFolder(run_dir)
    device = dd.local_device(resolve_device(config.train.device))
    dd.init_from_env(device)  # torchrun: join the process group (gloo on CPU, nccl on CUDA)
    main, world = dd.is_main(), dd.world_size()
    dd.main_decides(lambda: run.check(recipe.name, config, resume=resume, extend=extend,
                                      world_size=world), "checking the run folder")
    t0 = time.perf_counter()
    with compute(config.train.threads):
        if data is None:  # rank 0 first: features computed on the fly are cached once
            if main:
                data = recipe.load_data(config, run.path, progress)
            dd.barrier("loading the data on rank 0")
            if not main:
                data = recipe.load_data(config, run.path, False)
        chosen = recipe.resolve(config, data)  # the same data: the same choice on every rank
        if chosen:  # the values chosen from the data must fit the run folder too
            recipe.validate(config)
            dd.main_decides(lambda: run.check(recipe.name, config, resume=resume, extend=extend,
                                              world_size=world), "checking the run folder")
        recipe.check_data(config, data)
        warnings = recipe.data_warnings(config, data)
        if main:
            for w in warnings:
                print(f"train {recipe.name}: warning: {w}", file=sys.stderr, flush=True)
        info = {"method": recipe.name, "procalign_version": procalign.__version__}
        info.update(recipe.describe(config, data))
        if world > 1:
            info["world_size"] = world
        # built before anything is written: a setting the model refuses (an unknown temporal
        # encoder, say) leaves no run folder behind to block the corrected command
        models = recipe.build(config, info)
        dd.main_decides(lambda: run.write_start(config, info, fresh=not resume),
                        "writing the run folder")
        parts = []
        for part, model in models.items():
            part_dir = run.part_dir(part)
            spec = recipe.trainer(config, data, info, part, model)
            model.to(device)
            done = resume and dd.main_decides(lambda: _finished(part_dir, spec.epochs))
            if done:
                dd.main_decides(lambda: load_weights(model, part_dir / "model.safetensors")
                                and None)
                dd.broadcast_tensors(model.state_dict().values(), "sharing trained weights")
                parts.append({"part": part, "status": "already trained", **spec.summary})
                continue
            if progress and main and len(models) > 1:
                print(f"{recipe.name}: training {part}", flush=True)
            opt = _optimizer(model, spec.optim)
            sched = (
                cosine_warmup(opt, spec.epochs, spec.optim.warmup)
                if spec.optim.schedule == "cosine"
                else None
            )
            result = fit(
                model,
                _on_device(spec.loss, device),
                spec.batches,
                opt,
                spec.epochs,
                part_dir,
                scheduler=sched,
                eval_fn=spec.eval_fn,
                eval_every=max(1, config.train.eval_every),
                resume=resume,
                seed=spec.seed,
                grad_clip=spec.optim.grad_clip,
                progress=progress and main,
                metadata={"method": recipe.name, **spec.metadata},
                stop_after_epoch=config.train.stop_after_epoch,
                select=spec.select,
                patience=getattr(config.train, "patience", 0),
                shard=spec.shard,
                accumulate=getattr(config.train, "accumulate", 1),
            )
            times = result.seconds_per_epoch
            parts.append(
                {
                    "part": part,
                    "epochs_done": len(result.history),
                    "resumed_from_epoch": result.resumed_from_epoch,
                    "seconds_per_epoch": sum(times) / len(times) if times else None,
                    "last_epoch": result.history[-1] if result.history else None,
                    "selected": result.best,
                    "stopped_early": result.stopped_early,
                    **spec.summary,
                }
            )
            if len(result.history) < spec.epochs and not result.stopped_early:
                break  # stopped as if killed (stop_after_epoch): the next parts wait
        finished = len(parts) == len(models) and all(
            p.get("status") == "already trained" or p["epochs_done"] >= config.train.epochs
            or p.get("stopped_early")
            for p in parts
        )
        summary: dict[str, Any] = {
            "method": recipe.name,
            "run_dir": str(run.path),
            "data": data.description,
            "finished": finished,
            "parts": parts,
            "wall_seconds": time.perf_counter() - t0,
        }
        if chosen:
            summary["auto"] = chosen
        if warnings:
            summary["warnings"] = warnings
        if world > 1:
            summary["world_size"] = world
        if not main:  # rank 0 alone chooses thresholds and writes the summary
            return summary
        if finished:
            with dd.local_only():  # rank 0 alone: its evaluation splits nothing
                summary.update(recipe.finish(config, data, models, run.path))
        write_json(run.path / "summary.json", summary)
        return summary


def _on_device(loss, device: torch.device):
    if device.type == "cpu":
        return loss

    def moved(model, batch):
        if isinstance(batch, dict):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return loss(model, batch)

    return moved


def random_features(config: Any, run_dir: str | Path | None = None, videos: bool = False) -> bool:
    """True when the run's inputs come from an encoder with random weights: its feature cache
    (``data.features_dir``, or features the run encoded itself under ``<run>/features``) says
    so, or ``videos`` are encoded now with a random ``data.video_encoder``."""
    from procalign.data.featureset import expand_path
    from procalign.models.encoders import is_random_weights

    data = config.data
    if videos and is_random_weights(data.video_encoder, **dict(data.video_encoder_args)):
        return True
    from procalign.data.features import manifest_random_weights

    places = [expand_path(data.features_dir)] if data.features_dir else []
    if run_dir is not None:
        places.append(str(Path(run_dir) / "features"))
    return any(p and Path(p).exists() and manifest_random_weights(p) for p in places)


def load_run(
    recipe: Any, run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> tuple[Any, dict[str, Any], dict[str, torch.nn.Module]]:
    """(config, meta, models with trained weights in eval mode) of a finished run."""
    run = RunFolder(run_dir)
    for name in ("config.yaml", "meta.json"):
        if not (run.path / name).is_file():
            raise FileNotFoundError(
                f"{run.path} is not a finished {recipe.name} run: no {name} (train with "
                f"`procalign train {recipe.name} --out {run.path}`)"
            )
    meta = run.meta() or {}
    if meta.get("method") not in (None, recipe.name):
        raise RunConflict(f"{run.path} is a {meta['method']!r} run, not {recipe.name!r}")
    config = load_config(recipe.config_cls, run.config_path, list(overrides))
    recipe.validate(config)
    models = recipe.build(config, meta)
    from procalign.train.distributed import local_device

    device = local_device(resolve_device(config.train.device))  # cuda:LOCAL_RANK under torchrun
    for part, model in models.items():
        path = run.part_dir(part) / "model.safetensors"
        if not path.is_file():
            raise FileNotFoundError(
                f"{run.path}: {part or 'the model'} has no trained weights ({path}); finish "
                f"training with `procalign train {recipe.name} --out {run.path}`"
            )
        load_weights(model, path)
        model.to(device).eval()
    return config, meta, models


def recipe_of_run(run_dir: str | Path):
    """The registered recipe of the method that trained ``run_dir`` (named in its meta.json)."""
    from procalign.methods import load_recipes

    meta = RunFolder(run_dir).meta()
    if meta is None:
        raise FileNotFoundError(f"{run_dir} is not a run folder (no meta.json)")
    return load_recipes().build(meta.get("method", "cpa"))


def evaluate_run(
    recipe: Any,
    run_dir: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    progress: bool = True,
    data: Any = None,
) -> dict[str, Any]:
    """Evaluate a finished run; writes ``eval.json`` in it and returns the report.

    Under torchrun (``torchrun --nproc_per_node=N -m procalign.cli.main eval METHOD --run
    DIR``) every rank joins the process group, loads the run and the data (rank 0 first, so
    features computed on the fly are cached once) and scores its share of the pairs / classes
    (:func:`procalign.train.distributed.split_gather`); every rank returns the same report,
    rank 0 alone writes ``eval.json`` and shows progress.
    """
    import procalign
    from procalign.eval.report import check_report
    from procalign.train import distributed as dd

    config, meta, models = load_run(recipe, run_dir, overrides)
    # torchrun: join the process group (gloo on CPU, nccl on CUDA)
    dd.init_from_env(dd.local_device(resolve_device(config.train.device)))
    main = dd.is_main()
    progress = progress and main
    t0 = time.perf_counter()
    with compute(config.train.threads):
        if data is None:
            if main:
                data = recipe.load_data(config, Path(run_dir), progress)
            dd.barrier("loading the data on rank 0")
            if not main:
                data = recipe.load_data(config, Path(run_dir), False)
        if int(meta.get("in_dim", data.in_dim)) != data.in_dim:
            raise ValueError(
                f"the run was trained on D={meta['in_dim']} inputs, the data has D={data.in_dim}"
            )
        report = recipe.evaluate(config, data, models, meta, progress)
    if random_features(config, run_dir):
        from procalign.models.encoders import random_weights_warning

        report.setdefault("warnings", []).insert(0, random_weights_warning("the run's features"))
    report = {
        "method": recipe.name,
        "procalign_version": procalign.__version__,
        "run_dir": str(run_dir),
        "overrides": list(overrides),
        "data": data.description,
        **report,
        "eval_seconds": time.perf_counter() - t0,
    }
    check_report(report)
    if main:
        write_json(Path(run_dir) / "eval.json", report)
    return report
