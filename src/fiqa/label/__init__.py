"""Pseudo quality labels from embeddings and identities: one module per method, all behind one registry.

>>> from fiqa.label import create_labeler, list_labelers
>>> labels = create_labeler("sdd", random_state=0).fit(vectors, identities).labels_   # doctest: +SKIP

Each method module registers its labeller in :data:`LABELERS` (with its summary, reference and declared
parameters); this package imports every one of them.
"""
from __future__ import annotations

from fiqa.label import baselines, cr, reference, sdd  # noqa: F401  (each registers its labellers)
from fiqa.label.base import (
    LABELERS,
    Labeler,
    LabelInput,
    LabelResult,
    create_labeler,
    label_store,
    list_labelers,
)

__all__ = ["LABELERS", "LabelInput", "LabelResult", "Labeler", "create_labeler", "label_store", "list_labelers"]
