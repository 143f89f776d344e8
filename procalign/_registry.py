"""A minimal name -> factory registry, shared by datasets, encoders and methods."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps lowercase names to factories.

    >>> encoders = Registry("encoder")
    >>> @encoders.register("tiny")
    ... def tiny(dim: int = 8):
    ...     return dim
    >>> encoders.build("tiny", dim=4)
    4
    >>> "tiny" in encoders
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        key = name.lower()

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable[..., T]:
        key = str(name).lower()
        if key not in self._items:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}")
        return self._items[key]

    def build(self, name: str, *args: Any, **kwargs: Any) -> T:
        """``factory(*args, **kwargs)``; a setting the factory does not take is a ValueError
        naming it (e.g. the ``heads`` of a transformer given to a convolution)."""
        factory = self.get(name)
        try:
            return factory(*args, **kwargs)
        except TypeError as exc:
            m = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
            if m is None or m.group(1) not in kwargs:
                raise
            raise ValueError(
                f"{self.kind} {name!r} does not take the setting {m.group(1)!r} "
                f"(given: {', '.join(sorted(kwargs))})"
            ) from exc

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
