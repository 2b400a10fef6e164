"""The one interface every recognition backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from fiqa.core.errors import InvalidParameterError
from fiqa.core.params import Param
from fiqa.detect import CROP_SIZE
from fiqa.embed.spec import PreprocessSpec


class Embedder(ABC):
    """A face-recognition network that maps aligned crops to embeddings.

    Attributes
    ----------
    name : str
        The registry name (``"sface"``, ``"onnx"``, ...).
    dim : int
        Embedding dimension ``d``.
    spec : PreprocessSpec
        The preprocessing applied to crops before the network.
    """

    name: str
    dim: int
    spec: PreprocessSpec
    #: The keyword parameters of ``__init__`` (default, constraints, meaning), checked by ``create_embedder``.
    param_specs: ClassVar[dict[str, Param]] = {}

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned crops.

        Parameters
        ----------
        crops : ndarray of shape (B, 112, 112, 3), uint8
            Aligned faces (BGR, ArcFace template), ``B >= 1``.

        Returns
        -------
        ndarray of shape (B, d), float32
            Raw embeddings, not L2-normalised (the store keeps the norm).
        """
        if not (isinstance(crops, np.ndarray) and crops.dtype == np.uint8 and crops.ndim == 4
                and crops.shape[1:] == (CROP_SIZE, CROP_SIZE, 3) and len(crops) >= 1):
            got = (f"{type(crops).__name__} of shape {getattr(crops, 'shape', None)}, "
                   f"dtype {getattr(crops, 'dtype', None)}")
            raise InvalidParameterError(f"the {self.name!r} embedder", "crops",
                                        f"a uint8 array of shape (B, {CROP_SIZE}, {CROP_SIZE}, 3) with B >= 1", got)
        vectors = np.asarray(self._embed(crops), dtype=np.float32)
        return vectors.reshape(len(crops), self.dim)

    @abstractmethod
    def _embed(self, crops: np.ndarray) -> np.ndarray:
        """Backend-specific embedding of validated crops, shape (B, d)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able description: ``backend``, ``model_path``, ``model_sha256``, ``spec``, ``dim`` and options."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"
