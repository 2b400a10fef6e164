"""Augmentation: degraded and re-aligned copies of training faces, embedded into a new store beside their originals
(derived samples keep their parent and recipe), and the capture effects held out for evaluation.

>>> augmented = augment_store(store, "runs/train-aug", copies=2, random_state=0)   # doctest: +SKIP
>>> crops = load_crops(augmented, [0, 1, 2])                                # doctest: +SKIP
"""
from __future__ import annotations

from fiqa.augment.copies import (
    DEFAULT_KINDS,
    HELD_OUT_EFFECTS,
    Degradation,
    JitterRange,
    Recipe,
    apply_recipe,
    augment_store,
    degraded_store,
    embedder_for_store,
    sample_recipes,
)
from fiqa.augment.crops import load_crops
from fiqa.augment.degrade import (
    DEGRADATIONS,
    EVALUATION_DEGRADATIONS,
    degrade,
    degrade_batch,
)

__all__ = ["DEFAULT_KINDS", "DEGRADATIONS", "EVALUATION_DEGRADATIONS", "HELD_OUT_EFFECTS", "Degradation",
           "JitterRange", "Recipe", "apply_recipe", "augment_store", "degrade", "degrade_batch", "degraded_store",
           "embedder_for_store", "load_crops", "sample_recipes"]
