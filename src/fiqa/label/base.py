"""The labeller interface shared by every pseudo-quality method, and its registry.

A labeller is scikit-learn style: ``__init__`` only stores keyword-only parameters (``random_state`` among them),
``fit(vectors, identities)`` computes the labels and returns ``self``, and the labels are then in ``labels_`` as a
:class:`fiqa.core.types.QualityTable`.

The base class does the work every method shares, once:

- validates the inputs and the parameters, with messages naming the parameter and the bad value;
- gives rows with a non-finite or all-zero vector ``Status.INVALID_VECTOR``;
- gives identities with fewer usable samples than the method needs ``Status.SINGLETON`` (one sample) or
  ``Status.SMALL_CLASS`` (below a ``min_class_size`` option);
- codes identities as contiguous integers and resolves the random generator from ``random_state``;
- assembles the table (score, status, reason, the method's component columns, and metadata with the method name,
  parameters, seed and package versions).

A method subclasses :class:`Labeler`, sets ``name``, declares its parameters in ``param_specs`` (default,
constraints and meaning of each, :class:`fiqa.core.params.Param`), implements :meth:`Labeler._label` on clean input
(a :class:`LabelInput`) and registers itself with ``LABELERS.register(name, cls, summary=..., reference=...)`` at
the end of its module; ``fiqa.label`` imports every method module.

Usable rows that are not labelled (singletons, small classes) stay available to a method as *other identities*
(negatives, competing centres): they are real people, only their own label is undefined.
"""
from __future__ import annotations

import logging
import numbers
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fiqa.core.cache import cached
from fiqa.core.comparisons import identity_codes
from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError
from fiqa.core.meta import TableMeta
from fiqa.core.params import Interval, Param, validate
from fiqa.core.provenance import versions
from fiqa.core.registry import Registry
from fiqa.core.types import EmbeddingStore, QualityTable, Status
from fiqa.io.table import load_quality, save_quality
from fiqa.store import store_fingerprint, table_key

logger = logging.getLogger(__name__)

LABELERS: Registry[Labeler] = Registry("labeller")
"""Every labelling method by name; see :func:`create_labeler` and :func:`list_labelers`."""

#: Rows per block when the base class scans the vectors (bounded memory for memory-mapped input).
_SCAN_ROWS = 8192
#: Largest accepted deviation of a row's L2 norm from 1. A row normalised in float32 by any code is within
#: gamma_{d+3} (< 2.5e-4 for d <= 4096; fiqa.core.numerics) of unit length, and one that went through float16 storage
#: within 2 u16 = 2 * 2**-11 (9.8e-4); vectors that were never normalised miss 1 by far more (docs/numerics.md).
_UNIT_NORM_TOLERANCE = 1e-3


def create_labeler(name: str, **params: Any) -> Labeler:
    """Create the labeller registered as ``name`` with keyword parameters ``params``.

    Raises
    ------
    fiqa.core.errors.UnknownNameError
        ``name`` is not registered (the message suggests close names).
    fiqa.core.errors.InvalidParameterError
        A parameter the method does not have, or a value outside its declared constraints (checked here, and
        again at ``fit`` for values set after construction).
    """
    return LABELERS.create(name, **params)


def list_labelers() -> list[str]:
    """Names of every registered labelling method, sorted."""
    return LABELERS.names()


@dataclass(frozen=True)
class LabelInput:
    """The clean, validated input a method labels (built by :meth:`Labeler.fit`).

    Attributes
    ----------
    vectors : ndarray of shape (n, d), float32
        The usable rows only, L2-normalised. When every input row is usable this is the caller's array itself
        (possibly an ``np.memmap``); methods must read it in blocks and never modify it.
    codes : ndarray of shape (n,), int64
        Identity code of each row, ``0 .. n_identities - 1``; ``names[codes]`` are the original identities.
    names : ndarray of shape (n_identities,)
        The original identity value of each code (sorted, as ``np.unique`` returns them).
    labelled : ndarray of shape (n,), bool
        Rows that need a label (their identity has at least the method's minimum class size). The other rows
        are still valid samples of other identities.
    norms : ndarray of shape (n,), float32, or None
        Raw embedding norms of the usable rows, when the caller gave them.
    captures : ndarray of shape (n,), int64, or None
        Capture group of each usable row, when the caller gave them: rows that share a value are one capture
        (e.g. a photo and its augmented copies, ``fiqa.augment.copies``); methods that reason about near-duplicates
        treat a capture as one burst.
    """

    vectors: np.ndarray
    codes: np.ndarray
    names: np.ndarray
    labelled: np.ndarray
    norms: np.ndarray | None = None
    captures: np.ndarray | None = None

    @property
    def n_identities(self) -> int:
        return len(self.names)


@dataclass
class LabelResult:
    """What a method returns for the ``n`` rows of its :class:`LabelInput`.

    Only the rows where ``LabelInput.labelled`` is true are read; the base class fills the others.

    Attributes
    ----------
    score : ndarray of shape (n,), float64
        Quality label, higher is better.
    columns : dict of str to ndarray of shape (n,)
        The method's components (``mean_positive``, ``mean_negative``, ``w1``, ``ccs``, ``nnccs``, ...).
    status, reason : ndarray of shape (n,), object (str), or None
        Per-row status set by the method itself (e.g. ``Status.TRIMMED``); ``None`` means every labelled row is ok.
        Rows whose status is not ok must have a NaN score.
    meta : dict
        Values the method derived from the data (e.g. an operating threshold), merged into the table's metadata.
    """

    score: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    status: np.ndarray | None = None
    reason: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Labeler(ABC):
    """Base class of pseudo quality labellers.

    Parameters
    ----------
    random_state : int or None, default=0
        Seed of ``numpy.random.default_rng`` for every random choice the method makes. ``None`` draws fresh
        entropy; the seed actually used is recorded in ``labels_.meta.random_state`` either way.

    Attributes
    ----------
    labels_ : QualityTable
        After :meth:`fit`: one row per input row, in input order.
    seed_ : int
        The seed that was used.
    """

    #: Registry name, also ``labels_.meta.method``.
    name: ClassVar[str] = ""
    #: Whether :meth:`fit` needs the raw embedding norms.
    requires_norms: ClassVar[bool] = False
    #: Every keyword parameter of ``__init__``: default, constraints, meaning (checked by ``create_labeler`` and
    #: :meth:`fit`; ``fiqa label --list`` prints it).
    param_specs: ClassVar[dict[str, Param]] = {
        "random_state": Param(0, [Interval(int, 0, None, closed="left"), None],
                              "Seed of every random draw (None: fresh entropy, recorded in the labels' metadata)."),
    }

    def __init__(self, *, random_state: int | None = 0) -> None:
        self.random_state = random_state

    # ---- parameters (scikit-learn conventions) ------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        """The declared parameters (``param_specs``, the keyword-only parameters of ``__init__``), sorted."""
        return sorted(cls.param_specs)

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters and their values."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    def _validate_params(self) -> None:
        """Check every parameter against ``param_specs``; subclasses add the checks that tie parameters together
        (call ``super()._validate_params()`` first)."""
        validate(type(self).__name__, self.get_params(), self.param_specs)

    def _min_class_size(self) -> int:
        """Fewest usable samples an identity needs for its samples to be labelled (2 = at least one positive)."""
        return 2

    # ---- fitting ----------------------------------------------------------------------------------------------------
    def fit(self, vectors: np.ndarray, identities: np.ndarray, *, sample_id: np.ndarray | None = None,
            norms: np.ndarray | None = None, captures: np.ndarray | None = None) -> Labeler:
        """Compute pseudo quality labels.

        Parameters
        ----------
        vectors : ndarray of shape (N, d), float32
            L2-normalised embeddings (an ``np.memmap`` works and is read in blocks). Rows that are non-finite or
            all zero get ``Status.INVALID_VECTOR``; other rows must have unit norm.
        identities : ndarray of shape (N,), int or str
            Identity of each row.
        sample_id : ndarray of shape (N,), int64, optional
            Ids for the output table; default ``0 .. N-1``.
        norms : ndarray of shape (N,), float, optional
            Raw embedding norms before normalisation (needed by methods with ``requires_norms``); a non-finite
            or non-positive norm makes the row ``Status.INVALID_VECTOR``.
        captures : ndarray of shape (N,), int, optional
            Capture group per row: rows sharing a value are one capture (a photo and its augmented copies share
            their parent's ``sample_id``). ``reference-consensus`` keeps a capture inside one burst, so that a
            photo's own copies are never its evidence; methods without bursts ignore it.

        Returns
        -------
        self
        """
        owner = type(self).__name__
        self._validate_params()
        vectors, identities, sample_id, norms = self._validate_inputs(vectors, identities, sample_id, norms)
        n_rows = len(identities)
        if captures is not None:
            captures = np.asarray(captures)
            if captures.shape != (n_rows,) or captures.dtype.kind not in "iu":
                raise InvalidParameterError(owner, "captures", f"an int array of shape ({n_rows},)",
                                            f"an array of shape {captures.shape} and dtype {captures.dtype}")

        status = np.full(n_rows, Status.OK.value, dtype=object)
        reason = np.full(n_rows, "", dtype=object)
        usable = self._mark_invalid_vectors(vectors, norms, status, reason)

        random_state = self.random_state
        if random_state is None:
            random_state = int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
        rng = np.random.default_rng(random_state)

        usable_index = np.flatnonzero(usable)
        names, codes = identity_codes(identities[usable_index])
        counts = np.bincount(codes, minlength=len(names))
        minimum = self._min_class_size()
        labelled = counts[codes] >= minimum
        self._mark_small_classes(usable_index, identities, codes, counts, minimum, status, reason)
        if not labelled.any():
            raise NoUsableSamplesError(
                f"{owner}: no identity has at least {minimum} usable samples "
                f"({len(usable_index)} usable of {n_rows} rows, {len(names)} identities); nothing to label")

        clean_vectors = vectors if len(usable_index) == n_rows else np.ascontiguousarray(vectors[usable_index])
        data = LabelInput(clean_vectors, codes, names, labelled,
                          None if norms is None else norms[usable_index].astype(np.float32),
                          None if captures is None else captures[usable_index].astype(np.int64))
        logger.info("%s: labelling %d of %d rows (%d identities)", owner, int(labelled.sum()), n_rows, len(names))
        result = self._label(data, rng)
        self.labels_ = self._assemble(result, data, usable_index, identities, sample_id, status, reason, random_state)
        self.seed_ = random_state
        return self

    @abstractmethod
    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        """Label the rows of ``data`` (see :class:`LabelInput` and :class:`LabelResult`)."""

    # ---- helpers of fit -----------------------------------------------------------------------------------------
    def _validate_inputs(self, vectors, identities, sample_id, norms):
        owner = type(self).__name__
        if not isinstance(vectors, np.ndarray):
            vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise InvalidParameterError(owner, "vectors", "a non-empty 2-D array of shape (N, d)",
                                        f"an array of shape {vectors.shape}")
        if vectors.dtype != np.float32:
            if not np.issubdtype(vectors.dtype, np.floating):
                raise InvalidParameterError(owner, "vectors", "a float32 array", f"dtype {vectors.dtype}")
            vectors = vectors.astype(np.float32)
        n_rows = vectors.shape[0]
        identities = np.asarray(identities)
        if identities.shape != (n_rows,):
            raise InvalidParameterError(owner, "identities", f"a 1-D array of length {n_rows} (one per vector)",
                                        f"an array of shape {identities.shape}")
        if identities.dtype.kind not in "iuUO":
            raise InvalidParameterError(owner, "identities", "an array of int or str", f"dtype {identities.dtype}")
        if identities.dtype.kind == "O":
            kinds = {type(v) for v in identities[:1000]}
            if not all(issubclass(k, (str, numbers.Integral)) for k in kinds) or len(
                    {issubclass(k, str) for k in kinds}) > 1:
                raise InvalidParameterError(owner, "identities", "an array of int or str (not mixed)",
                                            f"values of types {sorted(k.__name__ for k in kinds)}")
            identities = identities.astype(str) if issubclass(next(iter(kinds)), str) else identities.astype(np.int64)
        if sample_id is None:
            sample_id = np.arange(n_rows, dtype=np.int64)
        else:
            sample_id = np.asarray(sample_id)
            if sample_id.shape != (n_rows,) or sample_id.dtype.kind not in "iu":
                raise InvalidParameterError(owner, "sample_id", f"an int array of shape ({n_rows},)",
                                            f"an array of shape {sample_id.shape} and dtype {sample_id.dtype}")
            sample_id = sample_id.astype(np.int64)
        if norms is None:
            if self.requires_norms:
                raise InvalidParameterError(owner, "norms", "an array of raw embedding norms (this method needs "
                                            "them)", None)
        else:
            norms = np.asarray(norms, dtype=np.float64)
            if norms.shape != (n_rows,):
                raise InvalidParameterError(owner, "norms", f"a 1-D array of length {n_rows} (one per vector)",
                                            f"an array of shape {norms.shape}")
        return vectors, identities, sample_id, norms

    def _mark_invalid_vectors(self, vectors, norms, status, reason) -> np.ndarray:
        """Flag non-finite / zero rows in blocks; raise when a valid row is not unit length. Returns ``usable``."""
        n_rows = vectors.shape[0]
        usable = np.ones(n_rows, dtype=bool)
        for start in range(0, n_rows, _SCAN_ROWS):
            block = np.asarray(vectors[start:start + _SCAN_ROWS])
            finite = np.isfinite(block).all(axis=1)
            with np.errstate(invalid="ignore", over="ignore"):
                lengths = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
            zero = finite & (lengths == 0)
            bad_length = finite & ~zero & (np.abs(lengths - 1.0) > _UNIT_NORM_TOLERANCE)
            if bad_length.any():
                row = start + int(np.flatnonzero(bad_length)[0])
                raise InvalidParameterError(
                    type(self).__name__, "vectors", "L2-normalised rows (unit length)",
                    f"row {row} with length {lengths[row - start]:.6g} ({int(bad_length.sum())} such rows in "
                    f"rows {start}..{start + len(block) - 1})")
            rows = np.arange(start, start + len(block))
            status[rows[~finite]] = Status.INVALID_VECTOR.value
            reason[rows[~finite]] = "embedding has non-finite values"
            status[rows[zero]] = Status.INVALID_VECTOR.value
            reason[rows[zero]] = "embedding is all zeros"
            usable[rows] = finite & ~zero
        if norms is not None:
            bad_norm = usable & ~(np.isfinite(norms) & (norms > 0))
            status[bad_norm] = Status.INVALID_VECTOR.value
            reason[bad_norm] = "raw embedding norm is missing, non-finite or not positive"
            usable &= ~bad_norm
        n_invalid = int((~usable).sum())
        if n_invalid:
            logger.warning("%s: %d of %d rows have an invalid embedding", type(self).__name__, n_invalid, n_rows)
        return usable

    def _mark_small_classes(self, usable_index, identities, codes, counts, minimum, status, reason) -> None:
        small = counts[codes] < minimum
        if not small.any():
            return
        for row, code in zip(usable_index[small], codes[small]):
            count = counts[code]
            if count == 1:
                status[row] = Status.SINGLETON.value
                reason[row] = f"only usable sample of identity {_name(identities[row])}: no positives to compare with"
            else:
                status[row] = Status.SMALL_CLASS.value
                reason[row] = (f"identity {_name(identities[row])} has {count} usable samples, fewer than "
                               f"min_class_size={minimum}")

    def _assemble(self, result: LabelResult, data: LabelInput, usable_index, identities, sample_id, status, reason,
                  random_state) -> QualityTable:
        n_rows = len(identities)
        n_usable = len(usable_index)
        owner = type(self).__name__
        if np.shape(result.score) != (n_usable,):
            raise RuntimeError(f"{owner}._label returned a score of shape {np.shape(result.score)}, "
                               f"expected ({n_usable},)")
        labelled_rows = usable_index[data.labelled]
        score = np.full(n_rows, np.nan)
        score[labelled_rows] = np.asarray(result.score, dtype=np.float64)[data.labelled]
        if result.status is not None:
            own_status = np.asarray(result.status, dtype=object)[data.labelled]
            own_reason = (np.asarray(result.reason, dtype=object)[data.labelled] if result.reason is not None
                          else np.full(len(own_status), "", dtype=object))
            status[labelled_rows] = own_status
            reason[labelled_rows] = own_reason
            score[labelled_rows[own_status != Status.OK.value]] = np.nan
        columns: dict[str, np.ndarray] = {"identity": identities.astype(object) if identities.dtype.kind == "U"
                                          else identities}
        for key, values in result.columns.items():
            values = np.asarray(values)
            if values.shape != (n_usable,):
                raise RuntimeError(f"{owner}._label returned column {key!r} of shape {values.shape}, "
                                   f"expected ({n_usable},)")
            columns[key] = _scatter(values[data.labelled], labelled_rows, n_rows)
        counts = {s.value: int((status == s.value).sum()) for s in Status if (status == s.value).any()}
        params = {key: (f"<array of shape {value.shape} and dtype {value.dtype}>" if isinstance(value, np.ndarray)
                        else str(value) if not isinstance(value, (int, float, str, bool, type(None))) else value)
                  for key, value in self.get_params().items()}
        meta = {"method": self.name, "params": params, "random_state": int(random_state), "versions": versions(),
                "n_rows": n_rows, "n_identities": int(data.n_identities), "status_counts": counts, **result.meta}
        return QualityTable(sample_id, score, status, reason, columns, TableMeta.from_json(meta, owner))


def rescale_to_100(values: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Min-max rescaling to 0..100 along the last axis, with the minimum and maximum taken over the ``where``
    entries (default all; NaN ignored): ``100 * (v - min) / (max - min)``. A constant row becomes 50 everywhere
    (nothing says better or worse). The one rescaling every labeller uses.

    Parameters
    ----------
    values : ndarray of shape (..., n), float
    where : ndarray of shape (n,), bool, optional

    Returns
    -------
    ndarray of the same shape, float64
    """
    values = np.asarray(values, dtype=np.float64)
    chosen = values if where is None else values[..., where]
    low = np.nanmin(chosen, axis=-1, keepdims=True)
    high = np.nanmax(chosen, axis=-1, keepdims=True)
    span = high - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, 100.0 * (values - low) / safe, 50.0)


def class_sums(vectors: np.ndarray, codes: np.ndarray, n_classes: int, *,
               block_rows: int = _SCAN_ROWS) -> np.ndarray:
    """Sum of the vectors of each class, read in blocks (works on memory-mapped input).

    Parameters
    ----------
    vectors : ndarray of shape (n, d), float32
    codes : ndarray of shape (n,), int64
        Class of each row, ``0 .. n_classes - 1``.
    n_classes : int

    Returns
    -------
    ndarray of shape (n_classes, d), float64
    """
    order = np.argsort(codes, kind="stable")
    sums = np.zeros((n_classes, vectors.shape[1]), dtype=np.float64)
    for start in range(0, len(order), block_rows):
        rows = order[start:start + block_rows]
        block_codes = codes[rows]
        first = np.concatenate([[0], np.flatnonzero(np.diff(block_codes)) + 1])
        partial = np.add.reduceat(np.asarray(vectors[rows], dtype=np.float64), first, axis=0)
        sums[block_codes[first]] += partial  # block codes are sorted, so each class appears once per block
    return sums


def rowwise_dot(vectors: np.ndarray, matrix: np.ndarray, index: np.ndarray, *,
                block_rows: int = _SCAN_ROWS) -> np.ndarray:
    """``vectors[i] . matrix[index[i]]`` for every row, in blocks.

    Parameters
    ----------
    vectors : ndarray of shape (n, d)
    matrix : ndarray of shape (k, d)
    index : ndarray of shape (n,), int

    Returns
    -------
    ndarray of shape (n,), float64
    """
    out = np.empty(len(index))
    for start in range(0, len(index), block_rows):
        stop = start + block_rows
        out[start:stop] = np.einsum("ij,ij->i", np.asarray(vectors[start:stop], dtype=np.float64),
                                    matrix[index[start:stop]])
    return out


def _scatter(values: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """A column of length ``n_rows`` holding ``values`` at ``rows``; NaN / -1 / "" elsewhere."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        full = np.full(n_rows, np.nan, dtype=np.float64)
    elif values.dtype.kind in "iub":
        full = np.full(n_rows, -1, dtype=np.int64)
    else:
        full = np.full(n_rows, "", dtype=object)
    full[rows] = values
    return full


def store_captures(store: EmbeddingStore) -> np.ndarray:
    """Capture group of every store row, shape (N,), int64: a derived copy (``fiqa.augment.copies``) shares its parent's
    ``sample_id``, every other row is its own capture."""
    sample_id = np.asarray(store.samples.sample_id, np.int64)
    if store.parent_id is None:
        return sample_id.copy()
    parent = np.asarray(store.parent_id, np.int64)
    return np.where(parent >= 0, parent, sample_id)


def label_store(store: EmbeddingStore, labeler: Labeler, *, rows: np.ndarray | None = None) -> QualityTable:
    """Label the usable samples of an embedding store (or of some of its rows).

    Rows the store could not embed keep their store status and reason (score NaN); the others are labelled by
    ``labeler.fit`` with the store's vectors, identities, sample ids, raw norms and capture groups (a photo and its
    augmented copies are one capture, :func:`store_captures`). When every sample is usable and no ``rows`` are
    given the memory-mapped vectors are passed as they are; otherwise the usable rows are copied into memory once.

    Parameters
    ----------
    store : EmbeddingStore
    labeler : Labeler
    rows : ndarray of shape (k,), int, optional
        Label only these store rows, as a data set of their own (e.g. one side of an identity split: the other
        rows are neither labelled nor references). Default every row.

    Returns
    -------
    QualityTable
        One row per store sample (or per ``rows``), in store order; ``meta.store`` names the store folder and
        ``meta.store_sha256`` its fingerprint.
    """

    selected = np.arange(len(store)) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    if len(selected) and (selected[0] < 0 or selected[-1] >= len(store)):
        raise InvalidParameterError("label_store", "rows", f"row indices in [0, {len(store)})", selected[:5].tolist())
    ok_index = selected[np.asarray(store.ok)[selected]]
    if len(ok_index) == 0:
        raise NoUsableSamplesError(f"{store.root}: the embedding store has no usable embedding to label")
    vectors = store.vectors if len(ok_index) == len(store) else store.vectors[ok_index]
    identities = store.samples.identity.astype(str)
    fitted = labeler.fit(vectors, identities[ok_index], sample_id=store.samples.sample_id[ok_index],
                         norms=np.asarray(store.norms)[ok_index], captures=store_captures(store)[ok_index])
    part = fitted.labels_
    n_rows = len(store)
    score = np.full(n_rows, np.nan)
    status = np.asarray(store.status, dtype=object).copy()
    reason = np.asarray(store.reason, dtype=object).copy()
    score[ok_index] = part.score
    status[ok_index] = part.status
    reason[ok_index] = part.reason
    columns: dict[str, np.ndarray] = {"identity": identities.astype(object)[selected]}
    for key, values in part.columns.items():
        if key == "identity":
            continue
        columns[key] = _scatter(values, ok_index, n_rows)[selected]
    status, reason = status[selected], reason[selected]
    meta = part.meta.updated(
        n_rows=len(selected), store=str(store.root), store_sha256=store_fingerprint(store),
        store_meta={"backend": dict(store.meta.backend)} if store.meta.backend else {},
        status_counts={s.value: int((status == s.value).sum()) for s in Status if (status == s.value).any()})
    return QualityTable(store.samples.sample_id[selected], score[selected], status, reason, columns, meta)


def _name(identity: Any) -> str:
    """An identity for messages: quoted strings, plain ints."""
    return repr(str(identity)) if isinstance(identity, (str, np.str_)) else str(identity)


def label_rows(store: EmbeddingStore, rows: np.ndarray, method: str, random_state: int,
               path: str | os.PathLike) -> QualityTable:
    """Labels of ``method`` computed on the store rows ``rows`` only (e.g. one side of an identity split), cached
    at ``path``: the table there is reused only when it was made from the same store, rows, method and
    ``random_state`` (and package versions; :func:`fiqa.core.cache.cached`), else recomputed.

    Parameters
    ----------
    store : EmbeddingStore
    rows : ndarray of shape (k,), int
        Store rows with ok embeddings.
    method : str
        A registered labeller (:func:`list_labelers`), created with ``random_state``.
    random_state : int
    path : str or path
        Parquet file of the labels (written atomically).
    """
    def compute() -> QualityTable:
        table = label_store(store, create_labeler(method, random_state=random_state), rows=rows)
        save_quality(table, Path(path))
        return table

    return cached(path, table_key("labels", store, rows, method=method, random_state=random_state), compute,
                  load_quality)
