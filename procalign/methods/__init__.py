"""Methods: CPA, LRProp, procedure learning, WeakSVR and baselines.

Each method registers a *recipe* in :data:`METHODS`: an object with

* ``config_cls``: its nested config dataclass (defaults documented field by field);
* ``train(config, run_dir, resume=True, progress=True) -> dict``: trains and saves a run folder
  (``config.yaml``, ``log.jsonl``, checkpoints, ``model.safetensors``) and returns a summary;
* ``evaluate(run_dir, overrides=(), progress=True) -> dict``: a JSON-able report whose metrics
  name their variants.

Recipes are the boundary where configs become plain objects; below them nothing reads a config.
"""

from __future__ import annotations

import importlib

from procalign._registry import Registry

METHODS: Registry = Registry("method")

#: Modules that register recipes; imported on first use so ``procalign --help`` stays fast.
_RECIPE_MODULES = ("procalign.methods.cpa", "procalign.methods.lrprop")


def load_recipes() -> Registry:
    for name in _RECIPE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
    return METHODS
