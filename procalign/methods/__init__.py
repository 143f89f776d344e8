"""Methods: CPA, LRProp, procedure learning, WeakSVR and baselines.

Each method registers a *recipe* (:class:`procalign.methods.base.Recipe`) in :data:`METHODS`:
its config dataclass plus ``build`` / ``trainer`` / ``evaluate`` / ``verify``. The run folder,
loop, resume rules and report are shared (:mod:`procalign.train.runner`); the CLI verbs dispatch
through this registry. Recipes are the boundary where configs become plain objects; below them
nothing reads a config.
"""

from __future__ import annotations

import importlib

from procalign._registry import Registry

METHODS: Registry = Registry("method")

#: Modules that register recipes; imported on first use so ``procalign --help`` stays fast.
_RECIPE_MODULES = (
    "procalign.methods.cpa",
    "procalign.methods.lrprop",
    "procalign.methods.weaksvr",
    "procalign.methods.sspl",
)
#: Method names, known without importing torch (each module registers the name it ends with).
METHOD_NAMES = tuple(m.rsplit(".", 1)[1] for m in _RECIPE_MODULES)


def load_recipes() -> Registry:
    for name in _RECIPE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module
                raise
    return METHODS
