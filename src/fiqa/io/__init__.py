"""Reading data: image decoding, data sources, and the one on-disk table format (``fiqa.io.table``)."""
from __future__ import annotations

from fiqa.io.image import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIDE,
    ImageReadError,
    read_image,
)
from fiqa.io.sources import KINDS, DataSource, open_source

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MIN_SIDE", "KINDS", "DataSource", "ImageReadError", "open_source",
           "read_image"]
