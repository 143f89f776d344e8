"""Configuration: nested dataclasses loaded from YAML plus ``key=value`` overrides.

Only the command line and method recipes read configs; models, losses, the DP engine and metrics
take plain arguments. Unknown keys are errors that list the known ones, so a typo never silently
falls back to a default.

Example: ``load_config(CPAConfig, "configs/cpa_synthetic.yaml", ["optim.lr=1e-4"])``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"config key {key!r} must be a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(f"config key {key!r}: {value!r} fits none of {tp}: {errors}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept any float literal
            try:
                return float(value)
            except ValueError:
                raise ValueError(f"config key {key!r} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"config key {key!r} must be a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type[C], data: dict[str, Any], prefix: str = "") -> C:
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(prefix + u for u in unknown)}; "
            f"known under {prefix or 'top level'}: {', '.join(sorted(types_))}"
        )
    kwargs = {}
    defaults = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
    for name, tp in types_.items():
        if name not in data:
            continue
        value = data[name]
        f = defaults.get(name)
        # a partly given section starts from *this* class's default for it (a recipe's own
        # optimiser / training defaults), not from the section class's generic defaults
        if isinstance(value, dict) and f is not None and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if dataclasses.is_dataclass(default):
                base = dataclasses.asdict(default)
                for key in [k for k in base if k.endswith("_args")]:
                    # ``<name>_args`` are the settings of module ``<name>``: when the config
                    # picks another module, the default module's settings do not apply to it
                    module = key[: -len("_args")]
                    if module in value and value[module] != base.get(module):
                        base[key] = {}
                value = _merge(base, value)
        kwargs[name] = _coerce(value, tp, prefix + name)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ValueError(f"cannot set {dotted!r}: {p!r} is not a section")
        node = nxt
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> nested dict with YAML-typed values."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. optim.lr=1e-4)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ValueError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
            raise ValueError(f"override {item!r}: the value is not valid YAML ({problem})") from exc
        _set_dotted(tree, key, value)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def check_choice(value: Any, name: str, options: Any) -> None:
    """Raise ValueError naming the key ``name`` when ``value`` is not one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")


def load_config(cls: type[C], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> C:
    """Build ``cls`` from an optional YAML file and ``key=value`` overrides (overrides win)."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"no config file at {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f"{p} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"{p} must hold a mapping at the top level, got {type(loaded).__name__}")
        data = loaded
    data = _merge(data, parse_overrides(list(overrides)))
    return _build(cls, data)


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim.lr": 1e-3, ...}``: every leaf of a config (dataclass or mapping) by dotted key."""
    tree = to_dict(config) if dataclasses.is_dataclass(config) else config
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(old: Any, new: Any, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two configs, as ``"key: old -> new"`` lines.

    Keys equal to or under an entry of ``ignore`` are left out.

    >>> from dataclasses import make_dataclass
    >>> C = make_dataclass("C", [("a", int, 1), ("b", int, 2)])
    >>> config_diff(C(), C(b=3))
    ['b: 2 -> 3']
    """
    a, b = flatten(old), flatten(new)

    def ignored(k: str) -> bool:
        return any(k == i or k.startswith(i + ".") for i in ignore)

    keys = sorted(k for k in set(a) | set(b) if not ignored(k))
    missing = object()
    return [
        f"{k}: {a.get(k, '(unset)')} -> {b.get(k, '(unset)')}"
        for k in keys
        if a.get(k, missing) != b.get(k, missing)
    ]


# ---------------------------------------------------------------------------------------------
# Sections every method shares (a recipe may give other defaults through default_factory)
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class OptimConfig:
    """The optimiser and its schedule (one per trained model).

    Attributes:
        name: ``"adamw"`` (decoupled weight decay), ``"adam"`` (L2 in the gradient) or
            ``"rmsprop"`` (torch defaults, L2 in the gradient).
        lr, weight_decay: its settings.
        schedule: ``"cosine"`` (linear warm-up for ``warmup`` epochs, then cosine decay to 0 at
            the last epoch) or ``"constant"``.
        warmup: warm-up epochs of the cosine schedule.
        grad_clip: maximum gradient norm, or None.
    """

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup: int = 0
    grad_clip: float | None = None


@dataclasses.dataclass
class TrainConfig:
    """How long, how, and where to train (same keys for every method).

    Attributes:
        epochs: passes over the training data (per model).
        seed: seeds initialisation, batches and augmentation; training is deterministic for a
            fixed seed, thread count and device.
        batch_size: training examples per step (pairs for CPA, videos for LRProp).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        threads: torch and numba threads for the command, an integer, ``"auto"`` (the cores
            not already busy when the command starts) or None (the process's settings); the one
            policy of :mod:`procalign.train.threads`.
        eval_every: evaluate every N epochs during training (0 = only at the end, by ``eval``).
        stop_after_epoch: stop after this epoch as if killed (tests, time limits); rerunning
            resumes. Not part of the run's identity.
        per_class: per-class overrides of a method that trains one model per class (LRProp's
            Table 5: ``{label: {num_frames, lambda1, lambda2}}``).
        val_fraction: share of the training videos held out as a validation split (``val``),
            by procedure when the test procedures are unseen in training, else by video
            (:func:`procalign.eval.fullres.validation_split`); 0 = train on all of them. A
            method that supports it evaluates on the validation split every ``eval_every``
            epochs (1 when unset) and keeps the best epoch's weights.
        patience: with a validation split, stop after this many evaluations without a new
            best (0 = train every epoch).
        accumulate: batches per optimiser step (their mean loss; gradient accumulation). Under
            ``torchrun --nproc_per_node=N`` a method that gives each rank whole batches (LRProp,
            WeakSVR) steps on N x accumulate batches, as one process with N x accumulate does;
            the others split every batch's rows over the ranks (the global batch stays
            ``batch_size``). See docs/scaling.md.
    """

    epochs: int = 20
    seed: int = 0
    batch_size: int = 16
    device: str = "cpu"
    threads: int | str | None = 1
    eval_every: int = 0
    stop_after_epoch: int | None = None
    per_class: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    val_fraction: float = 0.0
    patience: int = 0
    accumulate: int = 1


#: Keys that say how a run is executed, not what it computes: a rerun may change them.
RUNTIME_KEYS = ("train.threads", "train.device", "train.stop_after_epoch")

OPTIMIZERS = ("adamw", "adam", "rmsprop")
SCHEDULES = ("cosine", "constant")


def validate_shared(optim: OptimConfig, train: TrainConfig) -> None:
    """Errors naming the key for bad values of the shared sections."""
    if optim.name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim.name!r}")
    if optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {optim.schedule!r}")
    if not optim.lr > 0:
        raise ValueError(f"optim.lr must be > 0, got {optim.lr}")
    if optim.weight_decay < 0 or optim.warmup < 0:
        raise ValueError("optim.weight_decay and optim.warmup must be >= 0")
    if optim.grad_clip is not None and not optim.grad_clip > 0:
        raise ValueError(f"optim.grad_clip must be None or > 0, got {optim.grad_clip}")
    for key in ("epochs", "batch_size"):
        if getattr(train, key) < 1:
            raise ValueError(f"train.{key} must be >= 1, got {getattr(train, key)}")
    from procalign.train.threads import resolve_threads

    try:
        resolve_threads(train.threads)
    except ValueError:
        raise ValueError(f"train.threads must be None, 'auto' or >= 1, got {train.threads!r}") from None
    if train.eval_every < 0:
        raise ValueError(f"train.eval_every must be >= 0, got {train.eval_every}")
    if not 0 <= train.val_fraction < 1:
        raise ValueError(f"train.val_fraction must be in [0, 1), got {train.val_fraction}")
    if isinstance(train.patience, bool) or not isinstance(train.patience, int) or train.patience < 0:
        raise ValueError(f"train.patience must be an integer >= 0, got {train.patience!r}")
    acc = getattr(train, "accumulate", 1)
    if isinstance(acc, bool) or not isinstance(acc, int) or acc < 1:
        raise ValueError(f"train.accumulate must be an integer >= 1, got {acc!r}")
    if not isinstance(train.per_class, dict):
        raise ValueError(f"train.per_class must be a mapping, got {train.per_class!r}")
