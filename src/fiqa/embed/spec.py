"""The explicit preprocessing a recognition network expects (never guessed from the graph)."""
from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fiqa.core.errors import InvalidParameterError, ModelFileError

CHANNEL_ORDERS = ("RGB", "BGR")
LAYOUTS = ("NCHW", "NHWC")
_OWNER = "PreprocessSpec"


def _triple(name: str, value: object, *, positive: bool) -> tuple[float, float, float]:
    values = (value,) * 3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    expected = "a number or 3 numbers" + (" > 0" if positive else "")
    try:
        floats = tuple(float(v) for v in values)  # type: ignore[attr-defined]  # anything else raises TypeError
    except (TypeError, ValueError):
        raise InvalidParameterError(_OWNER, name, expected, value) from None
    if len(floats) != 3 or not all(np.isfinite(floats)) or (positive and min(floats) <= 0):
        raise InvalidParameterError(_OWNER, name, expected, value)
    return floats[0], floats[1], floats[2]


@dataclass(frozen=True)
class PreprocessSpec:
    """How aligned BGR uint8 crops become a network's input tensor.

    ``input = (resize(crop, input_size)[channel_order] - mean) / std``, laid out as ``layout``.

    Parameters
    ----------
    input_size : int or (int, int), default=112
        Network input ``(height, width)``; an int means a square. Crops are resized with bilinear
        interpolation when it differs from 112x112.
    mean, std : float or 3 floats, default=0 and 1
        Per channel, in the pixel scale 0..255 and in ``channel_order`` (``mean[0]`` is red for ``"RGB"``).
    channel_order : {"RGB", "BGR"}, default="RGB"
    layout : {"NCHW", "NHWC"}, default="NCHW"
    """

    input_size: tuple[int, int] = (112, 112)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def __post_init__(self) -> None:
        given: Any = self.input_size
        given = (given, given) if isinstance(given, int) and not isinstance(given, bool) else given
        try:
            size = tuple(given)
        except TypeError:
            raise InvalidParameterError(_OWNER, "input_size", "an int >= 1 or (height, width) ints >= 1",
                                        self.input_size) from None
        if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
            raise InvalidParameterError(_OWNER, "input_size", "an int >= 1 or (height, width) ints >= 1",
                                        self.input_size)
        if self.channel_order not in CHANNEL_ORDERS:
            raise InvalidParameterError(_OWNER, "channel_order", f"one of {CHANNEL_ORDERS}", self.channel_order)
        if self.layout not in LAYOUTS:
            raise InvalidParameterError(_OWNER, "layout", f"one of {LAYOUTS}", self.layout)
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", _triple("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _triple("std", self.std, positive=True))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one sample's tensor without the batch axis."""
        height, width = self.input_size
        return (3, height, width) if self.layout == "NCHW" else (height, width, 3)

    def apply(self, crops: np.ndarray) -> np.ndarray:
        """Turn crops into the network's input.

        Parameters
        ----------
        crops : ndarray of shape (B, h, w, 3), uint8, BGR

        Returns
        -------
        ndarray of shape (B, 3, H, W) or (B, H, W, 3), float32
            ``(H, W) = input_size``; contiguous.
        """
        height, width = self.input_size
        if crops.shape[1:3] != (height, width):
            crops = np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in crops])
        pixels = crops[..., ::-1] if self.channel_order == "RGB" else crops
        mean = np.asarray(self.mean, np.float32)
        scale = np.float32(1.0) / np.asarray(self.std, np.float32)
        if self.layout == "NCHW":
            tensor = pixels.transpose(0, 3, 1, 2).astype(np.float32)
            tensor -= mean[None, :, None, None]
            tensor *= scale[None, :, None, None]
        else:
            tensor = pixels.astype(np.float32)
            tensor -= mean
            tensor *= scale
        return np.ascontiguousarray(tensor)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (lists for tuples); ``PreprocessSpec.from_dict`` reads it back."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PreprocessSpec:
        unknown = sorted(set(values) - {"input_size", "mean", "std", "channel_order", "layout"})
        if unknown:
            raise InvalidParameterError(_OWNER, "spec", "keys among input_size, mean, std, channel_order, layout",
                                        unknown)
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**fields)

    @classmethod
    def from_file(cls, path: str | Path) -> PreprocessSpec:
        """Read a spec from a ``.json`` or ``.toml`` file with the fields above as top-level keys.

        Raises
        ------
        fiqa.core.errors.ModelFileError
            The file is missing, unparsable, or holds invalid values (the message names the file).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelFileError(f"Cannot read preprocessing spec file {str(path)!r}: {exc.strerror or exc}") from None
        try:
            if path.suffix.lower() == ".toml":
                values = tomllib.loads(text)
            elif path.suffix.lower() == ".json":
                values = json.loads(text)
            else:
                raise ModelFileError(f"Preprocessing spec file {str(path)!r} must end in .json or .toml.")
            if not isinstance(values, dict):
                raise ModelFileError(f"Preprocessing spec file {str(path)!r} must hold a table of keys.")
            return cls.from_dict(values)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError, InvalidParameterError) as exc:
            raise ModelFileError(f"Invalid preprocessing spec file {str(path)!r}: {exc}") from None


def resolve_spec(spec: object, owner: str) -> PreprocessSpec:
    """Accept a PreprocessSpec, a mapping of its fields, or a path to a JSON/TOML spec file."""
    if isinstance(spec, PreprocessSpec):
        return spec
    if isinstance(spec, Mapping):
        return PreprocessSpec.from_dict(spec)
    if isinstance(spec, (str, Path)):
        return PreprocessSpec.from_file(spec)
    raise InvalidParameterError(owner, "spec", "a PreprocessSpec, a mapping of its fields, or a .json/.toml path",
                                spec)
