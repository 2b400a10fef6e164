"""The embedding store: one folder per data source and recognition backend, read and written with numpy and pyarrow
only (opening and reading a store loads no model runtime and no image library).

>>> store = open_store("runs/lfw.store")                  # doctest: +SKIP
>>> store.vectors.shape, store.norms.shape                # memory-mapped read-only  # doctest: +SKIP
((13233, 128), (13233,))

Layout (``STORE_FORMAT`` 1)::

    <store>/meta.json           :class:`StoreMeta`: backend describe(), preprocessing, alignment, source, versions,
                                counts per status
    <store>/samples.parquet     sample_id, location, identity, status, reason, n_faces, detection_score
    <store>/vectors.npy         (N, d) float32, L2-normalised, NaN rows where status != "ok"; memory-mapped
    <store>/norms.npy           (N,) float32, the raw embedding norm; NaN where status != "ok"
    <store>/landmarks.npy       (N, 5, 2) float32, five landmarks in source-image pixels; NaN where none
    <store>/features.npy        optional: (N, k) float16, feature columns of the recogniser computed in the same
                                run as the embeddings (``fiqa embed --features``); NaN rows where status != "ok";
                                memory-mapped. ``StoreMeta.features`` says which: ``columns`` (names of the
                                layout of the :class:`fiqa.embed.features.FeatureSpec` ``spec``), ``dim`` (k),
                                ``dtype``, ``file``. Read with :func:`open_features`.

Stores written by :func:`fiqa.augment.copies.augment_store` have two more columns in ``samples.parquet``: ``parent_id``
(int64, the ``sample_id`` a derived row was made from, -1 for original rows) and ``recipe`` (the JSON
:class:`fiqa.augment.copies.Recipe` applied to the parent's image, ``""`` for original rows).

While extraction runs, finished chunks accumulate in ``<store>.partial/`` (see :class:`PartialStore`); the store
folder itself appears only when complete, by an atomic rename. Reading is in :mod:`fiqa.store.reader`, writing in
:mod:`fiqa.store.writer`; both are handed on here.
"""
from __future__ import annotations

from fiqa.core.atomic import read_jsonable
from fiqa.core.meta import STORE_FORMAT, StoreMeta, TableMeta
from fiqa.store.join import join_by_location
from fiqa.store.reader import (
    FEATURES_FILE,
    check_table_matches,
    is_store,
    open_features,
    open_store,
    partial_path,
    samples_fingerprint,
    store_fingerprint,
    table_key,
)
from fiqa.store.writer import (
    Chunk,
    PartialStore,
    StoreBuild,
    check_out_path,
    normalise_rows,
    raw_norms,
    status_counts,
)

__all__ = [
    "FEATURES_FILE",
    "STORE_FORMAT",
    "Chunk",
    "PartialStore",
    "StoreBuild",
    "StoreMeta",
    "TableMeta",
    "check_out_path",
    "check_table_matches",
    "is_store",
    "join_by_location",
    "normalise_rows",
    "open_features",
    "open_store",
    "partial_path",
    "raw_norms",
    "read_jsonable",
    "samples_fingerprint",
    "status_counts",
    "store_fingerprint",
    "table_key",
]
