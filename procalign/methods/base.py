"""The method contract: what a recipe supplies, and nothing more.

A recipe is a config dataclass (sections ``data``, ``model``, ``loss``, ``optim``, ``train``,
``eval``) plus a few functions that turn the config into plain objects:

* :meth:`Recipe.describe` - what the run records about its data (``meta.json``: input size,
  class names, ...), from which :meth:`Recipe.build` rebuilds the models without the data;
* :meth:`Recipe.build` - ``{part name: model}``: one model (``""``) or several (LRProp's one model
  per class, ``"classes/<label>"``), initialised from the seed;
* :meth:`Recipe.trainer` - for one part: its loss ``(model, batch) -> (loss, logs)``, its batch
  source ``epoch -> batches`` (deterministic in seed and epoch), seed and optimiser settings;
* :meth:`Recipe.evaluate` - the evaluation protocols of :mod:`procalign.eval.protocols` it
  uses, called with an ``embed`` callable; returns report rows;
* :meth:`Recipe.verify` - are two videos the same procedure, and where do they differ.

Everything else (run folder, loop, checkpoints, resume / refuse / extend, threads and device,
logging, the JSON report, CLI verbs) is shared: :mod:`procalign.train.runner`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from procalign.config import OptimConfig, validate_shared
from procalign.data.featureset import FeatureSet, load_featureset


@dataclass
class TrainSpec:
    """How one model (part) of a run is trained.

    Attributes:
        loss: ``(model, batch) -> (loss, logs)``; logs are floats averaged per epoch.
        batches: ``epoch -> iterable of batches``, a pure function of (seed, epoch).
        seed: seeds the loop (and the resumed RNG state).
        optim: optimiser and schedule.
        epochs: epochs of this part.
        metadata: strings stored in its safetensors files.
        eval_fn: optional ``(model, epoch) -> {metric: value}`` logged during training.
        summary: facts about the part for ``summary.json``.
        select: an ``eval_fn`` metric (higher is better) whose best epoch's weights the run
            keeps (:func:`procalign.train.loop.fit`); None keeps the last epoch's.
        shard: how ranks of a torchrun job share a step (:func:`procalign.train.loop.fit`):
            ``"items"`` (the rows of each batch; a loss that is a mean over rows) or
            ``"batches"`` (whole batches; a loss that couples the rows of a batch).
    """

    loss: Callable[[nn.Module, Any], Any]
    batches: Callable[[int], Iterable[Any]]
    seed: int
    optim: OptimConfig
    epochs: int
    metadata: dict[str, str] = field(default_factory=dict)
    eval_fn: Callable[[nn.Module, int], dict[str, float]] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    select: str | None = None
    shard: str = "items"


class Recipe:
    """Base class of every method's recipe (register one with ``@METHODS.register(name)``)."""

    name: str = ""
    config_cls: type = object
    #: evaluation protocols the method reports (names in :mod:`procalign.eval.protocols`)
    protocols: tuple[str, ...] = ()
    #: whether :meth:`verify` / :meth:`pair_distances` answer "same procedure?" (the report's ROC)
    verifies_pairs: bool = True
    #: what a "same" verdict of :meth:`verify` means: the same procedure, or (SSPL, whose
    #: distance compares task probabilities and whose labels are tasks) the same task
    same_means: str = "procedure"
    #: config keys (``section.key``) that may be ``auto``: frames per clip, chosen from the
    #: training videos' lengths, and (key, upper bound key or None) numbers of steps, chosen from
    #: their ``steps`` column (:meth:`resolve`)
    auto_frames: tuple[str, ...] = ()
    auto_steps: tuple[tuple[str, str | None], ...] = ()

    # ----------------------------------------------------------------- config and data
    def validate(self, config: Any) -> None:
        """Raise ValueError naming the key of any inconsistent setting (nothing runs first)."""
        validate_shared(config.optim, config.train)

    def load_data(self, config: Any, run_dir: Path | None, progress: bool) -> FeatureSet:
        """The run's videos (features computed on the fly are cached under ``run_dir``)."""
        cache = None if run_dir is None else Path(run_dir) / "features"
        data = load_featureset(config.data, cache, progress)
        fraction = getattr(config.train, "val_fraction", 0.0)
        if fraction:
            data = data.hold_out(fraction, config.train.seed, config.data.train_split,
                                 config.data.test_split)
        return data

    def resolve(self, config: Any, data: FeatureSet) -> dict[str, Any]:
        """Replace the config's ``auto`` values by settings chosen from the training videos
        (:mod:`procalign.methods.auto`; keys in :attr:`auto_frames` and :attr:`auto_steps`), in
        place; returns ``{dotted key: {"value", "why"}}`` of what was chosen (``summary.json:
        auto``). Called once, after the data is loaded and before anything is written, so
        ``config.yaml`` records the values used."""
        from procalign.methods import auto

        train = data.split(config.data.train_split)
        chosen: dict[str, Any] = {}

        def at(dotted: str) -> tuple[Any, str]:
            section, key = dotted.rsplit(".", 1)
            return getattr(config, section), key

        for dotted in self.auto_frames:
            section, key = at(dotted)
            found: dict[str, Any] = {}
            auto.resolve_frames(section, key, train, found)
            if key in found:
                chosen[dotted] = found[key]
        for dotted, upper in self.auto_steps:  # after the frames: K's bound may be T
            section, key = at(dotted)
            bound = None if upper is None else getattr(*at(upper))
            found = {}
            auto.resolve_steps(section, key, train, found, name=dotted, upper=bound)
            if key in found:
                chosen[dotted] = found[key]
        return chosen

    def data_warnings(self, config: Any, data: FeatureSet) -> list[str]:
        """Settings that run but waste work on this data (printed and kept in ``summary.json``):
        frames per clip (:attr:`auto_frames` keys) above the longest training video."""
        from procalign.methods.auto import is_auto

        lengths = [len(v.features) for v in data.split(config.data.train_split)]
        if not lengths:
            return []
        longest, out = max(lengths), []
        for dotted in self.auto_frames:
            section, key = dotted.rsplit(".", 1)
            value = getattr(getattr(config, section), key)
            if not is_auto(value) and isinstance(value, int) and value > longest:
                out.append(
                    f"{dotted}={value} is more than the longest training video ({longest} "
                    f"frames), so every clip repeats frames; set {dotted}=auto (chosen from the "
                    f"video lengths) or at most {longest}"
                )
        return out

    def min_frames(self, config: Any) -> tuple[int, str]:
        """(frames every video needs, why) for :meth:`FeatureSet.validate`."""
        return 1, ""

    def check_data(self, config: Any, data: FeatureSet) -> None:
        """Every problem of the inputs, named by file, before anything is written."""
        n, why = self.min_frames(config)
        data.validate(n, why)

    def describe(self, config: Any, data: FeatureSet) -> dict[str, Any]:
        """What ``meta.json`` records; :meth:`build` must work from it alone."""
        return {**data.info(), "classes": data.labels(config.data.train_split)}

    # ----------------------------------------------------------------- models and training
    def build(self, config: Any, info: Mapping[str, Any]) -> dict[str, nn.Module]:
        raise NotImplementedError

    def trainer(
        self, config: Any, data: FeatureSet, info: Mapping[str, Any], part: str, model: nn.Module
    ) -> TrainSpec:
        raise NotImplementedError

    def finish(
        self, config: Any, data: FeatureSet, models: dict[str, nn.Module], run_dir: Path
    ) -> dict[str, Any]:
        """After every part is trained (e.g. choose a decision threshold); returns facts."""
        return {}

    # ----------------------------------------------------------------- evaluation
    def evaluate(
        self,
        config: Any,
        data: FeatureSet,
        models: dict[str, nn.Module],
        info: Mapping[str, Any],
        progress: bool,
    ) -> dict[str, Any]:
        raise NotImplementedError

    def verify(
        self,
        config: Any,
        models: dict[str, nn.Module],
        info: Mapping[str, Any],
        a: np.ndarray,
        b: np.ndarray,
        threshold: float | None,
        **options: Any,
    ) -> dict[str, Any]:
        """``a``, ``b``: (L, D_in) inputs -> at least ``distance``, ``same`` (or None)."""
        raise NotImplementedError

    def pair_threshold(
        self, config: Any, data: FeatureSet, models: dict[str, nn.Module], run_dir: Path,
        num_pairs: int = 400,
    ) -> dict[str, Any]:
        """The same/different threshold of :meth:`verify`'s distance at the EER point of
        ``num_pairs`` training pairs (half positive, whole videos, :meth:`pair_distances`);
        written to ``run_dir/threshold.json``, which ``procalign verify`` / ``score`` read. For
        recipes without a protocol of their own (CPA and WeakSVR use the SVIP clips)."""
        from procalign.eval import protocols as P
        from procalign.train import write_json
        from procalign.train.runner import RunFolder

        try:
            pairs, _, _ = P.evaluation_pairs(
                data.split(config.data.train_split), [], "sampled", num_pairs, "prefer_same_task",
                config.train.seed + 11, num_pairs,
            )
        except ValueError as exc:  # one label, or one video per label: no pairs of both kinds
            return {"threshold": None, "why": f"no training pairs to choose it on ({exc})"}
        same = np.array([bool(p.same) for p in pairs])
        if same.all() or not same.any():
            return {"threshold": None, "why": "the training pairs are not of both kinds"}
        info = RunFolder(run_dir).meta() or {}
        d = self.pair_distances(config, data, models, info, pairs)
        out = P.threshold_record(d, same, self.name, None)
        write_json(Path(run_dir) / "threshold.json", out)
        return out

    # ----------------------------------------------------------------- report hooks
    def pair_distances(
        self, config: Any, data: FeatureSet, models: dict[str, nn.Module],
        info: Mapping[str, Any], pairs: list[Any],
    ) -> np.ndarray:
        """(P,) distances of ``pairs`` (records with ``video_id_1``, ``video_id_2``); the default
        calls :meth:`verify` pair by pair (recipes batch it)."""
        return np.array([
            self.verify(config, models, info, np.asarray(data.get(p.video_id_1).features),
                        np.asarray(data.get(p.video_id_2).features), None)["distance"]
            for p in pairs
        ])

    def report_frames(
        self, config: Any, models: dict[str, nn.Module], info: Mapping[str, Any], x: np.ndarray
    ) -> np.ndarray:
        """(L, D_in) inputs -> (T', D) frame embeddings the report draws similarity matrices of."""
        raise NotImplementedError

    def report_rows(self, config: Any, length: int, info: Any = None) -> np.ndarray:
        """(T',) the input rows (of L) that :meth:`report_frames` embeds, in order."""
        return np.arange(length)
