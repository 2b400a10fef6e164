"""Score face images with an exported quality model: ``create_scorer(model).score(images)``."""
from __future__ import annotations

from .scorer import Scorer, create_scorer

__all__ = ["Scorer", "create_scorer"]
