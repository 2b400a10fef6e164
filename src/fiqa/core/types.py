"""Typed data that the pipeline stages hand to each other.

Conventions everywhere in fiqa:
- higher quality is better; a *similarity* (cosine, higher = more alike) is never called a distance;
- per-sample arrays are aligned with ``sample_id`` (row ``i`` describes sample ``sample_id[i]``);
- a sample that a stage could not process keeps its row, with ``status != "ok"``, a ``reason``, and NaN values.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fiqa.core.meta import StoreMeta, TableMeta

if TYPE_CHECKING:
    import pyarrow as pa

ESCAPED_TEXT = {b"fiqa_encoding": b"utf-8/surrogateescape"}
"""Arrow field metadata of a text column stored as bytes because some string in it is not valid Unicode (a file name
that is not valid UTF-8 comes from the operating system with surrogate escapes, PEP 383)."""
META_KEY = b"fiqa.meta"
"""Arrow schema metadata key of a table's metadata (JSON) in :meth:`QualityTable.to_arrow`."""


def arrow_table(columns: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None) -> pa.Table:
    """Equal-length 1-D columns as a ``pyarrow.Table``; ``meta`` (JSON-able) goes into the schema metadata.

    Object columns become strings, or bytes marked :data:`ESCAPED_TEXT` when some string is not valid Unicode,
    so every file name round-trips (``fiqa.io.table.read_table`` decodes them back).
    """
    import pyarrow as pa

    fields, arrays = [], []
    for name, values in columns.items():
        values = np.asarray(values)
        field_meta = None
        if values.dtype == object:
            strings = values.astype(str).tolist()
            try:
                array = pa.array(strings, type=pa.string())
            except (UnicodeEncodeError, pa.ArrowInvalid):
                array = pa.array([v.encode("utf-8", "surrogateescape") for v in strings], type=pa.binary())
                field_meta = ESCAPED_TEXT
        else:
            array = pa.array(values)
        fields.append(pa.field(name, array.type, metadata=field_meta))
        arrays.append(array)
    schema_meta = None
    if meta is not None:
        from fiqa.core.atomic import to_jsonable

        schema_meta = {META_KEY: json.dumps(to_jsonable(dict(meta)), sort_keys=True).encode()}
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=schema_meta))


def pandas_frame(columns: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> Any:
    """Columns as a ``pandas.DataFrame`` (strings stay Python strings), ``attrs`` in ``DataFrame.attrs``.

    Raises
    ------
    ImportError
        When pandas is not installed, saying how to install it (fiqa itself does not need it).
    """
    try:
        pandas = importlib.import_module("pandas")
    except ImportError:
        raise ImportError("to_pandas() needs pandas, which fiqa does not install: pip install pandas "
                          "(or use to_arrow(), which needs nothing more)") from None
    # object columns stay Python strings (pandas >= 3 would make Arrow strings, which refuse a file name that is not
    # valid Unicode)
    frame = pandas.DataFrame({name: pandas.Series(values, dtype=object if values.dtype == object else None)
                              for name, values in ((n, np.asarray(v)) for n, v in columns.items())})
    frame.attrs.update(attrs)
    return frame


class Status(StrEnum):
    """Why a sample has (or lacks) a result. Stored as plain strings on disk."""

    OK = "ok"
    UNREADABLE = "unreadable"          # the file or record cannot be read (missing, permission, I/O error)
    NOT_AN_IMAGE = "not_an_image"      # bytes that do not decode as an image (corrupt, truncated, other format)
    TOO_LARGE = "too_large"            # above the pixel limit (decompression-bomb guard)
    TOO_SMALL = "too_small"            # too few pixels to hold a face
    NO_FACE = "no_face"                # the detector found no face
    INVALID_VECTOR = "invalid_vector"  # a NaN, infinite or zero embedding
    INVALID_SCORE = "invalid_score"    # the quality model returned a NaN or infinite score
    SINGLETON = "singleton"            # the only usable sample of its identity: no positives to compare with
    SMALL_CLASS = "small_class"        # the identity is below a labeller's min_class_size
    TRIMMED = "trimmed"                # removed by a labeller's trim_top refinement
    NOT_LABELLED = "not_labelled"      # absent from a labels table that a later stage joined on


@dataclass(frozen=True)
class SampleTable:
    """The samples of a data source, one row each.

    Attributes
    ----------
    sample_id : ndarray of shape (N,), int64
        Unique ids, ``0..N-1`` in the source's deterministic order.
    location : ndarray of shape (N,), object (str)
        Where the image is: a file path, or ``"<path to .rec>#<record key>"`` for RecordIO.
        ``fiqa.io.read_image(location)`` reads any of them.
    identity : ndarray of shape (N,), object (str)
        Identity name; ``""`` where the source has none (loose images to score).
    source : str
        ``"folder"``, ``"list"``, ``"recordio"`` or ``"images"``.
    refused : ndarray of shape (N,), object (str), or None
        Why the source refuses to let a sample be read, ``""`` where it does not: a list file's entry that resolves
        outside the list file's folder (:func:`fiqa.io.sources.list_source`). Every reader records such a row as
        ``unreadable`` with this reason instead of opening the file. None: no sample is refused.
    confined_to : str or None
        The resolved folder every file read must lie inside, checked again on the opened file when it is read (a
        list file's folder, unless its entries may lie outside): a symbolic link changed after the source was
        opened cannot lead a read out of it. None: no such folder.
    """

    sample_id: np.ndarray
    location: np.ndarray
    identity: np.ndarray
    source: str
    refused: np.ndarray | None = None
    confined_to: str | None = None

    def __post_init__(self) -> None:
        n = len(self.sample_id)
        if len(self.location) != n or len(self.identity) != n:
            raise ValueError("sample_id, location and identity must have the same length")
        if self.refused is not None and len(self.refused) != n:
            raise ValueError("refused must have one entry per sample")

    def refusal(self, index: int) -> str:
        """Why sample ``index`` (a row number) must not be read; ``""`` when it may."""
        return "" if self.refused is None else str(self.refused[index])

    def refused_fingerprint(self) -> str | None:
        """SHA-256 of :attr:`refused` in row order (an extraction's plan records it); None when nothing is refused."""
        if self.refused is None:
            return None
        text = "\n".join(str(reason) for reason in self.refused)
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def __len__(self) -> int:
        return len(self.sample_id)

    def identity_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(codes, names)``: int64 codes of shape (N,) with ``names[codes] == identity``."""
        names, codes = np.unique(self.identity.astype(str), return_inverse=True)
        return codes.astype(np.int64), names.astype(object)

    def subset(self, index: np.ndarray) -> SampleTable:
        return SampleTable(self.sample_id[index], self.location[index], self.identity[index], self.source,
                           None if self.refused is None else self.refused[index], self.confined_to)

    def _columns(self) -> dict[str, np.ndarray]:
        return {"sample_id": np.asarray(self.sample_id, dtype=np.int64), "location": self.location,
                "identity": self.identity}

    def to_arrow(self) -> pa.Table:
        """The samples as a ``pyarrow.Table``: columns ``sample_id`` (int64), ``location``, ``identity`` (string;
        bytes marked :data:`ESCAPED_TEXT` when a name is not valid Unicode), ``source`` in the schema metadata."""
        return arrow_table(self._columns(), {"source": self.source})

    def to_pandas(self) -> Any:
        """The samples as a ``pandas.DataFrame`` (columns as :meth:`to_arrow`; ``attrs["source"]``).

        Raises
        ------
        ImportError
            When pandas is not installed (``pip install pandas``).
        """
        return pandas_frame(self._columns(), {"source": self.source})


@dataclass(frozen=True)
class EmbeddingStore:
    """An opened embedding store (see ``fiqa.store``): every sample of a source with its embedding.

    Attributes
    ----------
    root : Path
        The store folder.
    samples : SampleTable
        All samples, including those that failed.
    status, reason : ndarray of shape (N,), object (str)
        ``Status`` value and a human-readable reason (``""`` when ok).
    vectors : ndarray of shape (N, d), float32
        L2-normalised embeddings, memory-mapped; rows of failed samples are NaN.
    norms : ndarray of shape (N,), float32
        The raw embedding norm before normalisation; NaN where not ok.
    landmarks : ndarray of shape (N, 5, 2), float32
        The five landmarks (eyes, nose, mouth corners) in source-image pixels; NaN where none.
    n_faces : ndarray of shape (N,), int32
        Faces the detector found; ``-1`` when detection was skipped (pre-aligned input).
    meta : StoreMeta
        Backend, preprocessing spec, alignment policy, versions, counts per status (``meta.json``). A mapping given
        here is read as :meth:`StoreMeta.from_json` reads the file (a store made in memory).
    parent_id : ndarray of shape (N,), int64, or None
        Stores written by ``fiqa.augment.copies``: the ``sample_id`` of the sample a row was derived from, ``-1`` for
        original rows. None for stores without derived rows' columns.
    recipe : ndarray of shape (N,), object (str), or None
        Stores written by ``fiqa.augment``: the JSON ``fiqa.augment.Recipe`` that turns the parent's image into the
        row's crop, ``""`` for original rows. None for stores without derived rows' columns.
    """

    root: Path
    samples: SampleTable
    status: np.ndarray
    reason: np.ndarray
    vectors: np.ndarray
    norms: np.ndarray
    landmarks: np.ndarray
    n_faces: np.ndarray
    meta: StoreMeta = field(default_factory=StoreMeta)
    parent_id: np.ndarray | None = None
    recipe: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.meta, StoreMeta):
            object.__setattr__(self, "meta", StoreMeta.from_json({"store_format": StoreMeta.store_format,
                                                                  **self.meta}, "EmbeddingStore meta"))

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def derived(self) -> np.ndarray:
        """Boolean mask of shape (N,): rows made by ``fiqa.augment.copies`` from a parent row (all False otherwise)."""
        if self.parent_id is None:
            return np.zeros(len(self.samples), bool)
        return np.asarray(self.parent_id) >= 0

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of shape (N,): samples with a usable embedding."""
        return self.status == Status.OK.value

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])


@dataclass(frozen=True)
class QualityTable:
    """Per-sample quality values: pseudo-labels from a labeller, or scores from a model.

    Attributes
    ----------
    sample_id : ndarray of shape (N,), int64
    score : ndarray of shape (N,), float64
        Quality, higher is better; NaN where ``status != "ok"``.
    status, reason : ndarray of shape (N,), object (str)
    columns : mapping of str to ndarray of shape (N,)
        Further per-sample columns: ``identity``, a method's components (``mean_positive``, ``mean_negative``,
        ``w1``, ``ccs``, ``nnccs``), ``raw_score``, ``location``, ...
    meta : TableMeta
        ``method`` (the name used in reports), ``params``, ``random_state``, ``versions``, the store it came from
        (the sidecar on disk). A mapping given here is read as :meth:`TableMeta.from_json` reads a sidecar.
    """

    sample_id: np.ndarray
    score: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: TableMeta = field(default_factory=TableMeta)

    def __post_init__(self) -> None:
        if not isinstance(self.meta, TableMeta):
            object.__setattr__(self, "meta", TableMeta.from_json(self.meta, "QualityTable meta"))
        n = len(self.sample_id)
        for name, values in [("score", self.score), ("status", self.status), ("reason", self.reason),
                             *self.columns.items()]:
            if len(values) != n:
                raise ValueError(f"QualityTable column {name!r} has {len(values)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.sample_id)

    @property
    def method(self) -> str:
        return self.meta.method

    def all_columns(self) -> dict[str, np.ndarray]:
        """``sample_id``, ``score``, ``status``, ``reason``, then :attr:`columns`: the columns of the table on disk."""
        return {"sample_id": self.sample_id, "score": self.score, "status": self.status, "reason": self.reason,
                **self.columns}

    def to_arrow(self) -> pa.Table:
        """The table as a ``pyarrow.Table`` (columns as :meth:`all_columns`; text as strings, or bytes marked
        :data:`ESCAPED_TEXT` when a value is not valid Unicode); :attr:`meta` as JSON under the schema metadata key
        :data:`META_KEY`."""
        return arrow_table(self.all_columns(), self.meta.to_json())

    def to_pandas(self) -> Any:
        """The table as a ``pandas.DataFrame`` (columns as :meth:`all_columns`, NaN scores where not ok), with
        :attr:`meta` in ``DataFrame.attrs``.

        Raises
        ------
        ImportError
            When pandas is not installed (``pip install pandas``).
        """
        return pandas_frame(self.all_columns(), self.meta.to_json())

    @property
    def ok(self) -> np.ndarray:
        return self.status == Status.OK.value

    def aligned_to(self, sample_id: np.ndarray) -> np.ndarray:
        """Scores re-ordered to ``sample_id`` (shape (M,), float64); NaN for samples this table lacks."""
        rows, found = locate_ids(self.sample_id, sample_id)
        out = np.full(len(sample_id), np.nan)
        out[found] = self.score[rows[found]]
        return out


def locate_ids(sample_id: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one ``sample_id`` join: where each of ``wanted`` (shape (M,)) is in ``sample_id`` (shape (N,), unique,
    any order).

    Returns
    -------
    rows : ndarray of shape (M,), int64
        Index into ``sample_id``; meaningless where not ``found``.
    found : ndarray of shape (M,), bool
    """
    sample_id, wanted = np.asarray(sample_id), np.asarray(wanted)
    if len(sample_id) == 0:
        return np.zeros(len(wanted), np.int64), np.zeros(len(wanted), bool)
    order = np.argsort(sample_id, kind="stable")
    position = np.clip(np.searchsorted(sample_id, wanted, sorter=order), 0, len(sample_id) - 1)
    rows = order[position].astype(np.int64)
    return rows, sample_id[rows] == wanted


PathLike = str | Path
