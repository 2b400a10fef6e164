"""Declarative parameter constraints, checked in one place (scikit-learn's ``_parameter_constraints`` style).

A parameter's constraints are a list: the value must satisfy at least one of them, and ``None`` in the list allows
``None``. :func:`validate` checks a mapping of values against such lists and raises
:class:`~fiqa.core.errors.InvalidParameterError` with one wording everywhere::

    >>> validate("SDDLabeler", {"n_repeats": 0}, {"n_repeats": [Interval(int, 1, None, closed="left")]})
    Traceback (most recent call last):
    ...
    fiqa.core.errors.InvalidParameterError: The 'n_repeats' parameter of SDDLabeler must be an int >= 1. Got 0 instead.

Registered classes (labellers, recognisers, quality methods, regressor shapes) declare theirs as a
``param_specs`` class attribute, a mapping of name to :class:`Param` (default, constraints, meaning); the registry
(:mod:`fiqa.core.registry`) checks ``create(name, **params)`` against it before constructing anything.
"""
from __future__ import annotations

import math
import numbers
import os
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fiqa.core.errors import InvalidParameterError

__all__ = ["REQUIRED", "Boolean", "Constraint", "InstanceOf", "Interval", "Options", "Param", "PathLike", "validate"]


class Constraint(ABC):
    """One acceptable form of a parameter; ``str(constraint)`` completes "must be ..." in an error message."""

    @abstractmethod
    def is_satisfied_by(self, value: object) -> bool:
        """Whether ``value`` has this form."""

    @abstractmethod
    def __str__(self) -> str: ...


@dataclass(frozen=True)
class Interval(Constraint):
    """An int (Python or numpy, not a bool) or a finite real number, between ``left`` and ``right``.

    Parameters
    ----------
    kind : int or float
        ``int`` accepts integers only; ``float`` accepts any finite real number (ints included).
    left, right : number or None
        The bounds; ``None`` leaves that side open-ended.
    closed : {"left", "right", "both", "neither"}
        Which bounds belong to the interval.
    """

    kind: type
    left: float | None
    right: float | None
    closed: Literal["left", "right", "both", "neither"] = "both"

    def __post_init__(self) -> None:
        if self.kind not in (int, float) or self.closed not in ("left", "right", "both", "neither"):
            raise TypeError(f"Interval({self.kind!r}, closed={self.closed!r}): kind must be int or float and closed "
                            f"one of 'left', 'right', 'both', 'neither'")

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return False
        if self.kind is int:
            if not isinstance(value, numbers.Integral):
                return False
        elif not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            return False
        number: float = int(value) if self.kind is int else float(value)  # type: ignore[call-overload]
        low_closed, high_closed = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.left is not None and not (number >= self.left if low_closed else number > self.left):
            return False
        return self.right is None or (number <= self.right if high_closed else number < self.right)

    def __str__(self) -> str:
        what = "an int" if self.kind is int else "a float"
        low_closed, high_closed = self.closed in ("left", "both"), self.closed in ("right", "both")
        if self.left is not None and self.right is not None:
            return f"{what} in {'[' if low_closed else '('}{self.left}, {self.right}{']' if high_closed else ')'}"
        if self.left is not None:
            return f"{what} {'>=' if low_closed else '>'} {self.left}"
        if self.right is not None:
            return f"{what} {'<=' if high_closed else '<'} {self.right}"
        return what


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed collection of strings or numbers (a bool never matches: use :class:`Boolean`)."""

    values: Collection[object]

    def is_satisfied_by(self, value: object) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, numbers.Number)):
            return False
        return any(isinstance(value, str) == isinstance(option, str) and value == option for option in self.values)

    def __str__(self) -> str:
        return f"one of {', '.join(map(repr, self.values))}"


@dataclass(frozen=True)
class Boolean(Constraint):
    """``True`` or ``False`` (Python or numpy bools, not 0 or 1)."""

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "a bool"


@dataclass(frozen=True)
class PathLike(Constraint):
    """A file system path: a ``str`` or an ``os.PathLike``."""

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, (str, os.PathLike))

    def __str__(self) -> str:
        return "a path"


@dataclass(frozen=True)
class InstanceOf(Constraint):
    """An instance of ``kind`` (a type or a tuple of types), described as ``description``."""

    kind: type | tuple[type, ...]
    description: str = ""

    def is_satisfied_by(self, value: object) -> bool:
        return isinstance(value, self.kind)

    def __str__(self) -> str:
        if self.description:
            return self.description
        kinds = self.kind if isinstance(self.kind, tuple) else (self.kind,)
        return " or ".join(f"a {kind.__name__}" for kind in kinds)


class _Required:
    def __repr__(self) -> str:
        return "(required)"


REQUIRED: Any = _Required()
"""The default of a :class:`Param` that must be given."""


@dataclass(frozen=True)
class Param:
    """A parameter as an entry declares it: default, constraints and meaning (read by ``fiqa label --list``).

    Attributes
    ----------
    default : object
        The constructor's default (a test keeps the two equal); :data:`REQUIRED` when there is none.
    constraints : list of Constraint or None
        The value satisfies at least one; ``None`` allows ``None``.
    meaning : str
        One or two sentences for users.
    """

    default: Any
    constraints: Sequence[Constraint | None]
    meaning: str = ""
    required: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "required", self.default is REQUIRED)


def describe(constraints: Iterable[Constraint | None]) -> str:
    """What a value satisfying one of ``constraints`` is, as it ends "must be ..." ("an int >= 1 or None")."""
    items = list(constraints)
    words = [str(c) for c in items if c is not None] + (["None"] if None in items else [])
    return " or ".join(words)


def is_valid(value: object, constraints: Iterable[Constraint | None]) -> bool:
    """Whether ``value`` satisfies one of ``constraints``."""
    return any(value is None if c is None else c.is_satisfied_by(value) for c in constraints)


def validate(owner: str, params: Mapping[str, object],
             constraints: Mapping[str, Sequence[Constraint | None] | Param]) -> None:
    """Check every value of ``params`` against its constraints (a list, or a :class:`Param`'s).

    Parameters
    ----------
    owner : str
        Who the parameters belong to, as the message names it (``"SDDLabeler"``, ``"FaceAligner"``).
    params : mapping of str to object
        The values to check; a name without constraints is refused too.
    constraints : mapping of str to list of Constraint or None, or to Param

    Raises
    ------
    fiqa.core.errors.InvalidParameterError
        "The 'n_pairs' parameter of SDDLabeler must be an int >= 1. Got 0 instead.", or for a name without
        constraints "The 'bogus' parameter is not a parameter of SDDLabeler. Its parameters: ...".
    """
    for name, value in params.items():
        if name not in constraints:
            raise InvalidParameterError.unknown(owner, name, sorted(constraints), value)
        spec = constraints[name]
        allowed = spec.constraints if isinstance(spec, Param) else spec
        if not is_valid(value, allowed):
            raise InvalidParameterError(owner, name, describe(allowed), value)
