"""Typed data that the pipeline stages hand to each other.

Conventions everywhere in fiqa:
- higher quality is better; a *similarity* (cosine, higher = more alike) is never called a distance;
- per-sample arrays are aligned with ``sample_id`` (row ``i`` describes sample ``sample_id[i]``);
- a sample that a stage could not process keeps its row, with ``status != "ok"``, a ``reason``, and NaN values.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np


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
    """

    sample_id: np.ndarray
    location: np.ndarray
    identity: np.ndarray
    source: str

    def __post_init__(self) -> None:
        n = len(self.sample_id)
        if len(self.location) != n or len(self.identity) != n:
            raise ValueError("sample_id, location and identity must have the same length")

    def __len__(self) -> int:
        return len(self.sample_id)

    def identity_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(codes, names)``: int64 codes of shape (N,) with ``names[codes] == identity``."""
        names, codes = np.unique(self.identity.astype(str), return_inverse=True)
        return codes.astype(np.int64), names.astype(object)

    def subset(self, index: np.ndarray) -> SampleTable:
        return SampleTable(self.sample_id[index], self.location[index], self.identity[index], self.source)


@dataclass(frozen=True)
class EmbeddingStore:
    """An opened embedding store (see ``fiqa.embed.store``): every sample of a source with its embedding.

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
    meta : mapping
        Backend, model file hash, preprocessing spec, alignment policy, versions, counts per status.
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
    meta: Mapping[str, Any] = field(default_factory=dict)
    parent_id: np.ndarray | None = None
    recipe: np.ndarray | None = None

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
    meta : mapping
        ``method`` (the name used in reports), ``params``, ``seed``, ``versions``, the input it came from.
    """

    sample_id: np.ndarray
    score: np.ndarray
    status: np.ndarray
    reason: np.ndarray
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.sample_id)
        for name, values in [("score", self.score), ("status", self.status), ("reason", self.reason),
                             *self.columns.items()]:
            if len(values) != n:
                raise ValueError(f"QualityTable column {name!r} has {len(values)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.sample_id)

    @property
    def method(self) -> str:
        return str(self.meta.get("method", "unnamed"))

    @property
    def ok(self) -> np.ndarray:
        return self.status == Status.OK.value

    def aligned_to(self, sample_id: np.ndarray) -> np.ndarray:
        """Scores re-ordered to ``sample_id`` (shape (M,), float64); NaN for samples this table lacks."""
        order = np.argsort(self.sample_id, kind="stable")
        sorted_ids = self.sample_id[order]
        pos = np.searchsorted(sorted_ids, sample_id)
        pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
        found = (sorted_ids[pos] == sample_id) if len(sorted_ids) else np.zeros(len(sample_id), bool)
        out = np.full(len(sample_id), np.nan)
        out[found] = self.score[order[pos[found]]]
        return out


PathLike = str | Path
