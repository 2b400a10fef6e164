"""What a quality component is: its name, group, raw unit, meaning, and the mapping of its raw value to 0-100.

Every component has a raw value in physical units (pixels, degrees, a fraction of the face, grey levels, stops)
and a 0-100 scalar, higher is better, from a documented monotone or band mapping built from logistic functions
(as OFIQ maps its raw measures with sigmoids). A scalar is never a unified quality: it says how well one factor
of the capture meets its ideal.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Band", "Component", "Falling", "Mapping", "Rising"]


def _logistic(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class Rising:
    """``100 / (1 + exp(-(raw - centre) / width))``: higher raw is better; 50 at ``centre``."""

    centre: float
    width: float

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return 100.0 * _logistic((np.asarray(raw, dtype=np.float64) - self.centre) / self.width)

    def describe(self) -> str:
        return f"100 / (1 + exp(-(raw - {self.centre:g}) / {self.width:g}))"


@dataclass(frozen=True)
class Falling:
    """``100 / (1 + exp((|raw| - centre) / width))`` (``|raw|`` when ``absolute``): lower raw is better."""

    centre: float
    width: float
    absolute: bool = False

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        value = np.asarray(raw, dtype=np.float64)
        value = np.abs(value) if self.absolute else value
        return 100.0 * _logistic((self.centre - value) / self.width)

    def describe(self) -> str:
        raw = "|raw|" if self.absolute else "raw"
        return f"100 / (1 + exp(({raw} - {self.centre:g}) / {self.width:g}))"


@dataclass(frozen=True)
class Band:
    """``100 * s((raw - low) / width) * s((high - raw) / width)``, ``s`` the logistic: best inside
    ``[low, high]``."""

    low: float
    high: float
    width: float

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        value = np.asarray(raw, dtype=np.float64)
        return 100.0 * _logistic((value - self.low) / self.width) * _logistic((self.high - value) / self.width)

    def describe(self) -> str:
        return (f"100 * s((raw - {self.low:g}) / {self.width:g}) * s(({self.high:g} - raw) / {self.width:g}), "
                f"s the logistic")


Mapping = Rising | Falling | Band


@dataclass(frozen=True)
class Component:
    """One quality component.

    Attributes
    ----------
    name : str
        Column name (``<name>`` holds the 0-100 scalar, ``<name>_raw`` the raw value).
    group : {"capture", "subject", "geometry"}
    unit : str
        Unit of the raw value.
    meaning : str
        What the raw value measures, in one line.
    mapping : Rising, Falling or Band
        Raw value -> 0-100 scalar (NaN stays NaN).
    iso : str
        The ISO/IEC 29794-5 quality component it follows ("" where the standard has none).
    """

    name: str
    group: str
    unit: str
    meaning: str
    mapping: Mapping
    iso: str = ""

    def scalar(self, raw: np.ndarray) -> np.ndarray:
        """The 0-100 scalar of raw values (NaN where raw is NaN; an infinite raw value maps to its limit)."""
        raw = np.asarray(raw, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            out = self.mapping(np.where(np.isnan(raw), 0.0, raw))
        return np.where(np.isnan(raw), math.nan, np.nan_to_num(out, nan=0.0))

    def describe(self) -> dict[str, str]:
        """JSON-able description: group, unit, meaning, mapping, ISO name."""
        return {"group": self.group, "unit": self.unit, "meaning": self.meaning, "mapping": self.mapping.describe(),
                "iso": self.iso}
