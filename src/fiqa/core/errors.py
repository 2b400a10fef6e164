"""Errors a user can act on. Every message names the file, parameter or value at fault."""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Literal, overload

import numpy as np


class FIQAError(Exception):
    """Base class of every error fiqa raises on purpose."""


class InvalidParameterError(FIQAError, ValueError):
    """A parameter has a value outside its documented domain."""

    def __init__(self, owner: str, name: str, expected: str, got: object, *, message: str | None = None) -> None:
        super().__init__(message or f"The {name!r} parameter of {owner} must be {expected}. Got {got!r} instead.")
        self.owner, self.name, self.expected, self.got = owner, name, expected, got

    @classmethod
    def unknown(cls, owner: str, name: str, accepted: Sequence[str], got: object) -> InvalidParameterError:
        """The error for a parameter ``owner`` does not have ("The 'bogus' parameter is not a parameter of ...")."""
        return cls(owner, name, f"one of its parameters ({', '.join(accepted) or 'none'})", got,
                   message=f"The {name!r} parameter is not a parameter of {owner}. Its parameters: "
                           f"{', '.join(accepted) or '(none)'}.")

    @classmethod
    def missing(cls, owner: str, name: str) -> InvalidParameterError:
        """The error for a required parameter left out ("The 'model' parameter of ... must be given ...")."""
        return cls(owner, name, "given (it has no default)", None,
                   message=f"The {name!r} parameter of {owner} must be given (it has no default).")


@overload
def check_int(owner: str, name: str, value: object, minimum: int | None = None, *,
              allow_none: Literal[False] = False) -> int: ...
@overload
def check_int(owner: str, name: str, value: object, minimum: int | None = None, *,
              allow_none: bool) -> int | None: ...
def check_int(owner: str, name: str, value: object, minimum: int | None = None, *,
              allow_none: bool = False) -> int | None:
    """Return ``value`` as an int, or raise :class:`InvalidParameterError` naming ``owner`` and ``name``.

    Accepts Python and numpy integers (not bools) ``>= minimum``; ``None`` too when ``allow_none``. The one-value
    shorthand of ``fiqa.core.params.validate`` with ``Interval(int, minimum, None, closed="left")`` (same wording;
    it stays here because :mod:`fiqa.core.params` builds on this module).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (minimum is not None and value < minimum):
        expected = "an int" + (f" >= {minimum}" if minimum is not None else "") + (" or None" if allow_none else "")
        raise InvalidParameterError(owner, name, expected, value)
    return int(value)


def check_fraction(owner: str, name: str, value: object, *, low_open: bool, high_open: bool) -> float:
    """``value`` as a float in (0, 1), [0, 1], (0, 1] or [0, 1) as the flags say, else an
    :class:`InvalidParameterError`."""
    v = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else np.nan
    if not (np.isfinite(v) and (v > 0 if low_open else v >= 0) and (v < 1 if high_open else v <= 1)):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise InvalidParameterError(owner, name, f"a float in {interval}", value)
    return v


def check_scores(owner: str, name: str, values: object) -> np.ndarray:
    """Scores as a 1-D finite float64 array, or an :class:`InvalidParameterError` naming the parameter."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise InvalidParameterError(owner, name, "a 1-D array", f"an array of shape {array.shape}")
    bad = ~np.isfinite(array)
    if bad.any():
        raise InvalidParameterError(owner, name, "finite values", f"{int(bad.sum())} non-finite value(s)")
    return array



class UnknownNameError(FIQAError, KeyError):
    """A name looked up in a registry (method, backend, ...) does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class DataSourceError(FIQAError):
    """A data source (folder, list file, RecordIO, images) cannot be read as a whole."""


class ModelFileError(FIQAError):
    """A model file is missing, corrupt, or not the model it claims to be."""


class StoreError(FIQAError):
    """An on-disk artifact (embedding store, table) is missing, incomplete or inconsistent."""


class NoUsableSamplesError(FIQAError):
    """A stage had input but could not process any of it."""
