"""How an image becomes an aligned face crop: one frozen object shared by extraction, scoring, augmentation and the
service.

:class:`DetectionSettings` holds every reading and detection knob (pre-aligned or not, which face, detector
confidence, image size limits, decode time limit). :class:`fiqa.detect.pipeline.FacePipeline` is built from it, and
:func:`fiqa.embed.extract.embed_source`, :class:`fiqa.score.Scorer`, :func:`fiqa.score.ray_scoring.score_images_ray`
and ``fiqa serve`` take one instead of their own copies of these parameters.

>>> settings = DetectionSettings(policy="central")
>>> settings.params()["policy"], settings.aligned
('central', False)
>>> DetectionSettings(score_threshold=1.5)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
fiqa.core.errors.InvalidParameterError: The 'score_threshold' parameter of DetectionSettings ... Got 1.5 instead.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fiqa.core.params import Boolean, Constraint, Interval, Options, validate
from fiqa.io.decoder import DEFAULT_DECODE_TIMEOUT
from fiqa.io.image import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE

__all__ = ["POLICIES", "DetectionSettings"]

POLICIES = ("largest", "central")
"""Which face :class:`fiqa.detect.FaceAligner` keeps when an image holds several."""

_POSITIVE: list[Constraint | None] = [Interval(int, 1, None, closed="left")]
_CONSTRAINTS: dict[str, list[Constraint | None]] = {"aligned": [Boolean()], "policy": [Options(POLICIES)],
                "score_threshold": [Interval(float, 0, 1, closed="neither")], "max_pixels": _POSITIVE,
                "min_side": _POSITIVE, "decode_timeout": [Interval(float, 0, None, closed="neither")]}


@dataclass(frozen=True)
class DetectionSettings:
    """Reading and detection settings: what turns an image into the aligned crop every stage reads.

    Parameters
    ----------
    aligned : bool, default False
        The images are already aligned face crops: no detection, resized to 112x112 when needed (``n_faces`` -1).
    policy : {"largest", "central"}, default "largest"
        Which face to keep when the detector finds several (:class:`fiqa.detect.FaceAligner`).
    score_threshold : float in (0, 1), default 0.7
        The detector's minimum confidence for a face to count.
    max_pixels, min_side : int >= 1
        Image size limits (``TOO_LARGE`` / ``TOO_SMALL``), see :func:`fiqa.io.read_image`.
    decode_timeout : float > 0, seconds
        Longest decode of one image given as bytes; the decoding worker is killed after it (:mod:`fiqa.io.decoder`).
    """

    aligned: bool = False
    policy: str = "largest"
    score_threshold: float = 0.7
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    decode_timeout: float = DEFAULT_DECODE_TIMEOUT

    def __post_init__(self) -> None:
        validate("DetectionSettings", {name: getattr(self, name) for name in _CONSTRAINTS}, _CONSTRAINTS)
        for name, kind in (("aligned", bool), ("score_threshold", float), ("max_pixels", int), ("min_side", int),
                           ("decode_timeout", float)):
            object.__setattr__(self, name, kind(getattr(self, name)))

    def params(self) -> dict[str, Any]:
        """The settings a store or a table records in ``meta["params"]`` (all but ``decode_timeout``, which does
        not change a result that is recorded)."""
        return {name: getattr(self, name) for name in _CONSTRAINTS if name != "decode_timeout"}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DetectionSettings:
        """The settings recorded by :meth:`params` (e.g. a store's ``meta["params"]``); absent ones take their
        defaults and other keys are ignored."""
        return cls(**{name: params[name] for name in _CONSTRAINTS if name in params})
