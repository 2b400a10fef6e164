"""Pseudo quality labels from embeddings and identities: one module per method, all behind one registry.

>>> from fiqa.label import create_labeler, list_labelers
>>> labels = create_labeler("sdd", random_state=0).fit(vectors, identities).labels_   # doctest: +SKIP

Every module of this package is imported here, so a new method file registers itself with
:func:`fiqa.label.base.register_labeler`.
"""
from __future__ import annotations

import importlib
import pkgutil

from fiqa.label.base import (
    LABELERS,
    Labeler,
    LabelInput,
    LabelResult,
    create_labeler,
    label_store,
    list_labelers,
    register_labeler,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["LABELERS", "LabelInput", "LabelResult", "Labeler", "create_labeler", "label_store", "list_labelers",
           "register_labeler"]
