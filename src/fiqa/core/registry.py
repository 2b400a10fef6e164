"""The one registry every named kind uses: labellers, recognisers, training-free quality methods, shipped quality
models and regressor shapes (pyiqa's model registry in spirit).

Each entry is registered by one call after its factory is defined::

    LABELERS.register("sdd", SDDLabeler, summary="SDD-FIQA: ...", reference="Ou et al., CVPR 2021")

and holds its metadata: a summary, a reference, the parameters the factory declares (its ``param_specs`` class
attribute, a mapping of name to :class:`fiqa.core.params.Param`: default, constraints, meaning) and kind-specific
fields (``higher_is_better``, what the entry needs, ...). ``create(name, **params)`` checks the parameters
against the declaration before constructing, so every unknown or invalid parameter of every kind fails with the
same :class:`~fiqa.core.errors.InvalidParameterError` wording; an unknown name fails with "did you mean"
suggestions.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from fiqa.core.errors import InvalidParameterError, UnknownNameError
from fiqa.core.params import Param, validate

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered name and its metadata.

    Attributes
    ----------
    name : str
        The registered name.
    kind : str
        What the registry holds ("labeller", "recogniser", ...).
    factory : callable
        Builds the entry from keyword parameters (a class, usually).
    summary : str
        One line for listings.
    reference : str
        Where the method comes from (paper, source), or "".
    params : mapping of str to Param
        The declared parameters (the factory's ``param_specs``); ``create`` accepts exactly these.
    fields : mapping of str to object
        Kind-specific metadata (``higher_is_better``, ``needs``, ``input``, ...).
    """

    name: str
    kind: str
    factory: Callable[..., T]
    summary: str
    reference: str = ""
    params: Mapping[str, Param] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        """How errors name the entry: its class name, else "the 'NAME' KIND"."""
        return self.factory.__name__ if isinstance(self.factory, type) else f"the {self.name!r} {self.kind}"

    @property
    def defaults(self) -> dict[str, Any]:
        """The declared default of every parameter that has one."""
        return {name: param.default for name, param in self.params.items() if not param.required}

    def check(self, params: Mapping[str, object]) -> None:
        """Refuse an unknown parameter, an invalid value or a missing required parameter (in that order)."""
        for key, value in params.items():
            if key not in self.params:
                where = self.owner if self.owner.startswith("the ") else f"{self.owner} (the {self.name!r} {self.kind})"
                raise InvalidParameterError.unknown(where, key, sorted(self.params), value)
        validate(self.owner, params, self.params)
        for key, param in self.params.items():
            if param.required and key not in params:
                raise InvalidParameterError.missing(self.owner, key)


class Registry(Generic[T]):
    """Maps names to entries; unknown names fail with "did you mean" suggestions.

    Parameters
    ----------
    kind : str
        What the registry holds, used in messages ("labeller", "recogniser", ...).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, factory: Callable[..., T], *, summary: str, reference: str = "",
                 **fields: Any) -> Entry[T]:
        """Register ``factory`` as ``name``; its parameters are its ``param_specs`` attribute (none without one).

        Raises
        ------
        ValueError
            ``name`` is registered already, or ``summary`` is empty.
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        if not summary.strip():
            raise ValueError(f"{self.kind} {name!r} needs a summary")
        params = MappingProxyType(dict(getattr(factory, "param_specs", {})))
        entry = Entry(name, self.kind, factory, summary.strip(), reference, params, MappingProxyType(fields))
        self._entries[name] = entry
        return entry

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        """Every entry, sorted by name."""
        return [self._entries[name] for name in self.names()]

    def entry(self, name: object) -> Entry[T]:
        """The entry of ``name``.

        Raises
        ------
        fiqa.core.errors.UnknownNameError
            ``name`` is not registered; the message suggests close names and lists the others.
        """
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(str(name), self.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownNameError(f"Unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.names()) or '(none)'}.")

    def create(self, name: str, **params: Any) -> T:
        """Check ``params`` against the entry's declared parameters, then build it.

        Raises
        ------
        fiqa.core.errors.UnknownNameError
            ``name`` is not registered.
        fiqa.core.errors.InvalidParameterError
            A parameter the entry does not have, a value outside its constraints, or a required one missing;
            checked before anything is constructed (no model file is opened, no optional extra imported).
        """
        entry = self.entry(name)
        entry.check(params)
        return entry.factory(**params)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


__all__ = ["Entry", "Registry"]
