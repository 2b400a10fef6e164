"""Pseudo quality labels from embeddings and identities: one module per method, all behind one registry.

>>> from fiqa.datasets import make_embeddings
>>> from fiqa.label import create_labeler, list_labelers
>>> data = make_embeddings(300, 16, 30, random_state=0)           # vectors (300, 16), identities (300,)
>>> labels = create_labeler("sdd", random_state=0).fit(data.vectors, data.identities).labels_
>>> labels.score.shape, "sdd" in list_labelers()
((300,), True)

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
    label_rows,
    label_store,
    list_labelers,
)

__all__ = ["LABELERS", "LabelInput", "LabelResult", "Labeler", "create_labeler", "label_rows", "label_store",
           "list_labelers"]
