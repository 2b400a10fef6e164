"""A monotone map from a regressor's raw score to a calibrated 0-100 quality.

The map sends the p-quantile of the raw predictions on the training images to the p-quantile of the training
labels, rescaled so that the smallest training label is 0 and the largest 100. It is piecewise linear between
``n_knots`` quantiles (flat outside them), non-decreasing, and it is evaluated the same way in numpy,
PyTorch (:class:`fiqa.train.models.PiecewiseLinear`) and inside the exported ONNX graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError


@dataclass(frozen=True)
class QuantileCalibration:
    """Piecewise-linear, non-decreasing map ``raw -> quality``.

    Attributes
    ----------
    raw_knots : ndarray of shape (K,), float64
        Strictly increasing raw-score knots (K >= 2).
    quality_knots : ndarray of shape (K,), float64
        Non-decreasing calibrated values in [0, 100] at the knots.
    """

    raw_knots: np.ndarray
    quality_knots: np.ndarray

    def __post_init__(self) -> None:
        raw, quality = np.asarray(self.raw_knots, float), np.asarray(self.quality_knots, float)
        if raw.ndim != 1 or raw.shape != quality.shape or len(raw) < 2:
            raise ValueError("raw_knots and quality_knots must be 1-D of the same length >= 2")
        if np.any(np.diff(raw) <= 0) or np.any(np.diff(quality) < 0):
            raise ValueError("raw_knots must increase strictly and quality_knots must not decrease")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated quality, shape of ``raw``, float64 in [0, 100]."""
        return np.interp(np.asarray(raw, float), self.raw_knots, self.quality_knots)

    def segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``(starts, widths, slopes, base)`` of shape (K-1,) each:
        ``q = base + sum slopes * clip(r - starts, 0, widths)``.

        This sum-of-ramps form needs no branching, so PyTorch and ONNX evaluate it with elementwise ops.
        """
        widths = np.diff(self.raw_knots)
        slopes = np.diff(self.quality_knots) / widths
        return self.raw_knots[:-1], widths, slopes, float(self.quality_knots[0])

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "quantile", "raw_knots": self.raw_knots.tolist(), "quality_knots": self.quality_knots.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantileCalibration:
        return cls(np.asarray(data["raw_knots"], float), np.asarray(data["quality_knots"], float))


def fit_quantile_calibration(raw_scores: np.ndarray, labels: np.ndarray, n_knots: int = 101) -> QuantileCalibration:
    """Fit the quantile-matching map on the training images.

    Parameters
    ----------
    raw_scores : ndarray of shape (N,), float
        The regressor's raw predictions on the training images.
    labels : ndarray of shape (N,), float
        Their labels (any scale; rescaled to 0..100 by their minimum and maximum).
    n_knots : int >= 2
        Quantiles used as knots (evenly spaced probabilities from 0 to 1).

    Returns
    -------
    QuantileCalibration
        Raw knots that tie (a constant stretch of predictions) are merged, keeping the mean of their qualities.
    """
    if not isinstance(n_knots, (int, np.integer)) or isinstance(n_knots, bool) or n_knots < 2:
        raise InvalidParameterError("fit_quantile_calibration", "n_knots", "an int >= 2", n_knots)
    raw_scores, labels = np.asarray(raw_scores, float), np.asarray(labels, float)
    if raw_scores.shape != labels.shape or raw_scores.ndim != 1:
        raise ValueError(f"raw_scores {raw_scores.shape} and labels {labels.shape} must be 1-D of equal length")
    finite = np.isfinite(raw_scores) & np.isfinite(labels)
    raw_scores, labels = raw_scores[finite], labels[finite]
    low, high = (labels.min(), labels.max()) if len(labels) else (0.0, 0.0)
    if len(labels) < 2 or high <= low or np.ptp(raw_scores) == 0:
        raise NoUsableSamplesError(
            "Cannot calibrate: need at least 2 finite training predictions and labels, neither all equal "
            f"(got {len(labels)} pairs, label range [{low}, {high}], "
            f"raw range {np.ptp(raw_scores) if len(raw_scores) else 0})")
    probabilities = np.linspace(0.0, 1.0, n_knots)
    raw_knots = np.quantile(raw_scores, probabilities)
    quality_knots = 100.0 * (np.quantile(labels, probabilities) - low) / (high - low)
    unique, group = np.unique(raw_knots, return_inverse=True)
    merged = np.bincount(group, weights=quality_knots) / np.bincount(group)
    return QuantileCalibration(unique, np.clip(np.maximum.accumulate(merged), 0.0, 100.0))
