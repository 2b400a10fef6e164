"""Reading data: image decoding, data sources, and the one on-disk table format (``fiqa.io.table``).

Names are imported lazily: reading a table (``fiqa.io.table``, as the store does) loads no image library.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from fiqa.core.lazy import lazy_exports

if TYPE_CHECKING:
    from fiqa.io.image import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, ImageReadError, read_image
    from fiqa.io.sources import KINDS, DataSource, open_source

_EXPORTS = {
    "DEFAULT_MAX_PIXELS": "fiqa.io.image",
    "DEFAULT_MIN_SIDE": "fiqa.io.image",
    "ImageReadError": "fiqa.io.image",
    "read_image": "fiqa.io.image",
    "KINDS": "fiqa.io.sources",
    "DataSource": "fiqa.io.sources",
    "open_source": "fiqa.io.sources",
}

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_MIN_SIDE", "KINDS", "DataSource", "ImageReadError", "open_source",
           "read_image"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
