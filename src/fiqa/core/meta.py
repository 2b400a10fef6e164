"""The typed metadata of fiqa's two on-disk formats: :class:`StoreMeta` (``meta.json`` of an embedding store) and
:class:`TableMeta` (the JSON sidecar of a quality table, labels or scores).

Each is turned from JSON into its dataclass in one place (``from_json``, which checks every field's type and refuses
a malformed or mismatched file with a one-line :class:`~fiqa.core.errors.StoreError` naming it) and back in one
place (``to_json``). Free-form provenance (parameters, versions, the producer's own record) stays a mapping field;
nothing else is read from these files by key.

Metadata written before this module existed reads as it is; older spellings are mapped on reading: a store's
``embedder`` (now ``backend``) and a table's ``seed`` (now ``random_state``).

These classes live at the core level because :class:`fiqa.core.types.EmbeddingStore` and
:class:`fiqa.core.types.QualityTable` hold them; :mod:`fiqa.store` hands them on.

>>> meta = TableMeta.from_json({"method": "sdd", "seed": 3, "n_identities": 40}, "labels.parquet.json")
>>> meta.method, meta.random_state, dict(meta.record)
('sdd', 3, {'n_identities': 40})
>>> TableMeta.from_json({"method": 7}, "labels.parquet.json")
Traceback (most recent call last):
...
fiqa.core.errors.StoreError: labels.parquet.json: 'method' must be a string, found 7
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

import numpy as np

from fiqa.core.atomic import read_json, write_json
from fiqa.core.errors import StoreError

__all__ = ["STORE_FORMAT", "StoreMeta", "TableMeta"]

STORE_FORMAT = 1
"""The layout version written to a store's ``meta.json`` (``store_format``) and ``samples.parquet``; others are
refused."""


def _required_text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{where}: {key!r} must be a string, found {value!r}")
    return value


def _text(where: str, key: str, value: Any) -> str | None:
    return None if value is None else _required_text(where, key, value)


def _count(where: str, key: str, value: Any, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise StoreError(f"{where}: {key!r} must be an integer, found {value!r}")
    return int(value)


def _mapping(where: str, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise StoreError(f"{where}: {key!r} must be a JSON object, found {value!r}")
    return dict(value)


def _optional_mapping(where: str, key: str, value: Any) -> dict[str, Any] | None:
    return None if value is None else _mapping(where, key, value)


def _counts(where: str, key: str, value: Any) -> dict[str, int]:
    counts = _mapping(where, key, value)
    for name, number in counts.items():
        _count(where, f"{key}.{name}", number, optional=False)
    return counts


def _strings(where: str, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise StoreError(f"{where}: {key!r} must be a list of strings, found {value!r}")
    return tuple(value)


def _non_empty(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without the fields that hold nothing (None, an empty mapping or list)."""
    return {key: value for key, value in data.items()
            if value is not None and not (isinstance(value, (Mapping, tuple, list)) and not value)}


class _JSONView(Mapping[str, Any]):
    """Read-only mapping access to the JSON form (``meta["key"]``, ``meta.get("key")``, ``{**meta}``), for code
    written when the metadata was a dict; fiqa itself reads the attributes."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    @cached_property
    def _json(self) -> dict[str, Any]:
        return self.to_json()

    def __getitem__(self, key: str) -> Any:
        return self._json[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._json)

    def __len__(self) -> int:
        return len(self._json)


def _plain_fields(meta: Any, skip: str) -> dict[str, Any]:
    """A metadata class's fields but ``skip``, as JSON values (mappings as dicts, tuples as lists)."""
    def plain(value: Any) -> Any:
        return dict(value) if isinstance(value, Mapping) else list(value) if isinstance(value, tuple) else value

    return {f.name: plain(getattr(meta, f.name)) for f in fields(meta) if f.name != skip}


def _refuse_field_names(meta: Any, name: str, free: Mapping[str, Any]) -> None:
    """A metadata class's free-form mapping (``name``) may not hold one of the class's own field names."""
    clash = sorted({f.name for f in fields(meta)} & set(free))
    if clash:
        raise ValueError(f"{type(meta).__name__}.{name} holds field name(s) {clash}; set the fields instead")


@dataclass(frozen=True, eq=True)
class StoreMeta(_JSONView):
    """``meta.json`` of an embedding store (see :mod:`fiqa.store`).

    Attributes
    ----------
    dim : int or None
        Embedding width d of ``vectors.npy``; None only for a store made in memory.
    aligned : bool
        The source images were aligned crops (no detection).
    backend : mapping
        The recogniser's ``describe()`` (``backend``, ``model_sha256``, preprocessing, ...).
    preprocessing, alignment, source, plan : mapping
        The recogniser's preprocessing spec, the alignment policy, the data source's ``describe()`` (``kind``,
        ...), and what determined the extraction (``samples_sha256``, ...; a resumed run must match it).
    n_samples : int or None
        Rows of the store.
    counts : mapping of str to int
        Samples per status.
    features : mapping or None
        ``features.npy`` when the store holds feature columns: ``columns``, ``dim``, ``dtype``, ``file``, ``spec``.
    augmentation : mapping or None
        What :func:`fiqa.augment.copies.augment_store` did (parent store, recipes, counts); None for other stores.
    params, versions : mapping
        Provenance: the call's settings and the package versions.
    created_utc : str or None
    argv : tuple of str
        The command line of the run that wrote the store.
    extra : mapping
        Keys this version does not know (written by a newer fiqa), kept so that rewriting the metadata keeps them.
    store_format : int
        Always :data:`STORE_FORMAT`; a file with another is refused.
    """

    dim: int | None = None
    aligned: bool = False
    backend: Mapping[str, Any] = field(default_factory=dict)
    preprocessing: Mapping[str, Any] = field(default_factory=dict)
    alignment: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    plan: Mapping[str, Any] = field(default_factory=dict)
    n_samples: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    features: Mapping[str, Any] | None = None
    augmentation: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, Any] = field(default_factory=dict)
    created_utc: str | None = None
    argv: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)
    store_format: int = STORE_FORMAT

    def __post_init__(self) -> None:
        _refuse_field_names(self, "extra", self.extra)

    @property
    def source_kind(self) -> str:
        """The data source's kind (``folder``, ``list``, ``recordio``, ``images``), ``""`` when not recorded."""
        return str(self.source.get("kind", ""))

    @property
    def samples_sha256(self) -> str | None:
        """The fingerprint of the samples the store was made from (``plan.samples_sha256``), when recorded."""
        recorded = self.plan.get("samples_sha256")
        return None if recorded is None else str(recorded)

    @property
    def feature_dim(self) -> int | None:
        """Width of ``features.npy``; None when the store holds no feature columns."""
        return None if not self.features else int(self.features["dim"])

    @classmethod
    def from_json(cls, data: Any, where: str | os.PathLike) -> StoreMeta:
        """The metadata of ``data`` (a parsed ``meta.json``), every field's type checked.

        Raises
        ------
        StoreError
            One line naming ``where``: not a JSON object, another ``store_format``, a field of the wrong type.
        """
        where = os.fspath(where)
        if not isinstance(data, Mapping):
            raise StoreError(f"{where}: store metadata must be a JSON object, found {type(data).__name__}")
        data = dict(data)
        if data.get("store_format") != STORE_FORMAT:
            raise StoreError(f"{where}: unsupported store format {data.get('store_format')!r} (expected "
                             f"{STORE_FORMAT})")
        if "backend" not in data and "embedder" in data:  # the first stores' spelling
            data["backend"] = data.pop("embedder")
        if isinstance(data.get("backend"), str):  # a bare backend name
            data["backend"] = {"backend": data["backend"]}
        features = _optional_mapping(where, "features", data.get("features")) or None
        if features is not None:
            _count(where, "features.dim", features.get("dim"), optional=False)
        aligned = data.get("aligned", False)
        if not isinstance(aligned, bool):
            raise StoreError(f"{where}: 'aligned' must be true or false, found {aligned!r}")
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            dim=_count(where, "dim", data.get("dim")), aligned=aligned,
            backend=_mapping(where, "backend", data.get("backend") or {}),
            preprocessing=_mapping(where, "preprocessing", data.get("preprocessing", {})),
            alignment=_mapping(where, "alignment", data.get("alignment", {})),
            source=_mapping(where, "source", data.get("source", {})),
            plan=_mapping(where, "plan", data.get("plan") or {}),
            n_samples=_count(where, "n_samples", data.get("n_samples")),
            counts=_counts(where, "counts", data.get("counts", {})), features=features,
            augmentation=_optional_mapping(where, "augmentation", data.get("augmentation")),
            params=_mapping(where, "params", data.get("params", {})),
            versions=_mapping(where, "versions", data.get("versions", {})),
            created_utc=_text(where, "created_utc", data.get("created_utc")),
            argv=_strings(where, "argv", data.get("argv", [])),
            extra={key: value for key, value in data.items() if key not in known and key != "embedder"})

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``meta.json`` holds (:meth:`from_json` reads it back equal)."""
        data = _plain_fields(self, skip="extra")
        for optional in ("dim", "n_samples", "features", "augmentation", "created_utc"):
            if data[optional] is None:
                del data[optional]
        return {**dict(self.extra), **data}

    @classmethod
    def read(cls, path: str | os.PathLike) -> StoreMeta:
        """Read a store's ``meta.json``; :class:`StoreError` naming the file when it is missing or malformed."""
        return cls.from_json(read_json(path), path)

    def write(self, path: str | os.PathLike) -> None:
        """Write ``meta.json`` atomically."""
        write_json(path, self.to_json())


@dataclass(frozen=True, eq=True)
class TableMeta(_JSONView):
    """The sidecar of a quality table (``<table>.json``): what made the table.

    Attributes
    ----------
    method : str
        The name used in reports (a labeller's, ``model:<name>``, a training-free method's).
    kind : str or None
        ``label``, ``model``, ``baseline`` or ``component`` when the producer says so
        (:func:`fiqa.evaluate.run.method_kind` decides otherwise).
    params : mapping
        The method's parameters and the run's settings.
    random_state : int or None
        The seed a labeller used (``seed`` in tables written before the rename).
    store, store_sha256 : str or None
        The store the table was computed on: its folder and :func:`fiqa.store.store_fingerprint`.
    n_rows : int or None
    status_counts : mapping of str to int
        Rows per status.
    joined_by : str or None
        ``"location"`` when a table of photos was matched to a store's samples by location.
    versions : mapping
    created_utc : str or None
    argv : tuple of str
    record : mapping
        Everything else the producer recorded (a labeller's own figures, a model's hash and card, timings, ...).
    """

    method: str = "unnamed"
    kind: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    random_state: int | None = None
    store: str | None = None
    store_sha256: str | None = None
    n_rows: int | None = None
    status_counts: Mapping[str, int] = field(default_factory=dict)
    joined_by: str | None = None
    versions: Mapping[str, Any] = field(default_factory=dict)
    created_utc: str | None = None
    argv: tuple[str, ...] = ()
    record: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _refuse_field_names(self, "record", self.record)

    @classmethod
    def from_json(cls, data: Any, where: str | os.PathLike) -> TableMeta:
        """The metadata of ``data`` (a parsed sidecar, or a producer's mapping), every field's type checked.

        Raises
        ------
        StoreError
            One line naming ``where``: not a JSON object, or a field of the wrong type.
        """
        where = os.fspath(where)
        if not isinstance(data, Mapping):
            raise StoreError(f"{where}: table metadata must be a JSON object, found {type(data).__name__}")
        data = dict(data)
        if "random_state" not in data and "seed" in data:  # tables written before the rename
            data["random_state"] = data.pop("seed")
        known = {f.name for f in fields(cls)} - {"record"}
        return cls(
            method=_required_text(where, "method", data.get("method", "unnamed")),
            kind=_text(where, "kind", data.get("kind")),
            params=_mapping(where, "params", data.get("params", {})),
            random_state=_count(where, "random_state", data.get("random_state")),
            store=_text(where, "store", data.get("store")),
            store_sha256=_text(where, "store_sha256", data.get("store_sha256")),
            n_rows=_count(where, "n_rows", data.get("n_rows")),
            status_counts=_counts(where, "status_counts", data.get("status_counts", {})),
            joined_by=_text(where, "joined_by", data.get("joined_by")),
            versions=_mapping(where, "versions", data.get("versions", {})),
            created_utc=_text(where, "created_utc", data.get("created_utc")),
            argv=_strings(where, "argv", data.get("argv", [])),
            record={key: value for key, value in data.items() if key not in known})

    def to_json(self) -> dict[str, Any]:
        """The JSON object the sidecar holds: the fields that hold something, then :attr:`record`'s keys
        (:meth:`from_json` reads it back equal)."""
        data = _plain_fields(self, skip="record")
        return {**dict(self.record), **_non_empty(data), "method": self.method}

    def updated(self, **changes: Any) -> TableMeta:
        """A copy with ``changes`` applied, field or record key alike (checked as :meth:`from_json` checks)."""
        return TableMeta.from_json({**self.to_json(), **changes}, "TableMeta.updated")
