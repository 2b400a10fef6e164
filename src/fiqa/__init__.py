"""fiqa: face image quality assessment, from a folder of faces to a deployable quality model."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import FIQAError  # noqa: E402
from .types import EmbeddingStore, QualityTable, SampleTable, Status  # noqa: E402

__all__ = ["__version__", "FIQAError", "EmbeddingStore", "QualityTable", "SampleTable", "Status"]
