"""A tiny named registry shared by embedders, labellers and models (one way to look things up)."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

from fiqa.core.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names fail with "did you mean" suggestions.

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages ("labeller", "embedder", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._summaries: dict[str, str] = {}

    def register(self, name: str, summary: str = "") -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[name] = factory
            doc = (getattr(factory, "__doc__", None) or "").strip().splitlines()
            self._summaries[name] = summary or (doc[0] if doc else "")
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._factories)

    def summary(self, name: str) -> str:
        self.get(name)
        return self._summaries[name]

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names()) or '(none)'}."
            ) from None

    def create(self, name: str, **params: object) -> T:
        return self.get(name)(**params)

    def __contains__(self, name: object) -> bool:
        return name in self._factories
