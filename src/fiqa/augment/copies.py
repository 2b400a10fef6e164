"""Augmentation: degraded copies of training faces, embedded into a new store beside their originals.

A labeller that scores every sample by its real match evidence then scores each copy too, and a quality regressor
trained on those labels sees what failure looks like (blur, low resolution, compression, noise, darkness,
occlusion, misalignment), not only the mostly good photographs of a web-collected data set.

Each derived row is described by a :class:`Recipe`: a geometric jitter (shift, scale, rotation, mirror) composed
with the similarity transform that aligns the *source* image onto the ArcFace template (so the jittered crop is
cut from the source, not from the 112x112 crop), then zero, one or two degradations of :data:`fiqa.augment.degrade.
DEGRADATIONS` in order. Recipes are drawn per (seed, parent sample_id, copy index), so a parent's copies never
depend on which other parents were selected or on the chunking. ``fiqa.augment.crops.load_crops`` re-creates a derived
row's crop from its parent's image and its recipe, so every later stage sees the degraded crop.

Example
-------
>>> store = augment_store("runs/store", "runs/store-aug", copies=2, random_state=0)     # doctest: +SKIP
>>> store.derived.sum(), store.recipe[store.derived][0]                           # doctest: +SKIP
(2000, '{"angle":-3.41,"degradations":[{"kind":"jpeg","seed":...,"severity":0.3702}],...}')
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from fiqa.augment.degrade import DEGRADATIONS, EVALUATION_DEGRADATIONS, degrade
from fiqa.core.errors import (
    InvalidParameterError,
    NoUsableSamplesError,
    StoreError,
    check_int,
)
from fiqa.core.outputs import check_not_in_inputs
from fiqa.core.params import Boolean, Interval, Options, validate
from fiqa.core.progress import tqdm
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, Status
from fiqa.detect.align import (
    ARCFACE_TEMPLATE,
    CROP_SIZE,
    check_resampling,
    estimate_similarity,
    warp_similarity,
    warp_to_template,
)
from fiqa.detect.pipeline import resize_aligned
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.batching import (  # the extraction's batching, read-ahead pool and resume bookkeeping
    BatchEmbedding,
    ordered_map,
    pending_chunks,
)
from fiqa.io.image import ImageReadError, read_image
from fiqa.io.table import read_table, write_table
from fiqa.store import (
    STORE_FORMAT,
    Chunk,
    PartialStore,
    StoreMeta,
    check_out_path,
    open_features,
    open_store,
    status_counts,
    store_fingerprint,
)

if TYPE_CHECKING:
    from fiqa.embed.features import FeatureEmbedder

__all__ = ["DEFAULT_KINDS", "HELD_OUT_EFFECTS", "Degradation", "JitterRange", "Recipe", "apply_recipe",
           "augment_store", "degraded_store", "embedder_for_store", "sample_recipes"]

logger = logging.getLogger(__name__)

DEFAULT_KINDS: tuple[str, ...] = tuple(DEGRADATIONS)
"""Every degradation of :data:`fiqa.augment.degrade.DEGRADATIONS`, in its order (the training kinds)."""
_KNOWN_KINDS = (*DEGRADATIONS, *EVALUATION_DEGRADATIONS)
"""Kinds a recipe may name: the training kinds, and the capture effects held out of training for evaluation sets
(``kinds=`` of :func:`augment_store` with ``keep_originals=False``)."""

PIVOT = tuple(float(v) for v in ARCFACE_TEMPLATE.mean(axis=0))
"""Centre of the geometric jitter in crop pixels: the centroid of the ArcFace template (the middle of the face)."""

_COPY_BLOCK = 1 << 16  # original rows copied per step (bounded memory)

_DerivedCrop = tuple[np.ndarray | None, str, str]
"""One derived row as a worker thread hands it over: ``(crop or None, status, reason)``."""


# --------------------------------------------------------------------------------------------------- recipes
@dataclass(frozen=True)
class Degradation:
    """One step of :func:`fiqa.augment.degrade.degrade`: ``kind`` at ``severity`` in [0, 1] with its own ``seed``."""

    kind: str
    severity: float
    random_state: int

    def __post_init__(self) -> None:
        validate("Degradation", {"kind": self.kind, "severity": self.severity, "random_state": self.random_state},
                 {"kind": [Options(sorted(_KNOWN_KINDS))], "severity": [Interval(float, 0, 1, closed="both")],
                  "random_state": [Interval(int, 0, None, closed="left")]})
        object.__setattr__(self, "severity", float(self.severity))
        object.__setattr__(self, "random_state", int(self.random_state))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "random_state": self.random_state}


@dataclass(frozen=True)
class Recipe:
    """How one derived crop is made from its parent's image.

    Attributes
    ----------
    dx, dy : float
        Shift of the face in pixels of the 112x112 crop (positive: right, down).
    scale : float > 0
        Zoom about the face centre (:data:`PIVOT`); > 1 makes the face larger in the crop.
    angle : float
        In-plane rotation in degrees about the face centre; positive turns the face counter-clockwise as displayed
        (the convention of ``cv2.getRotationMatrix2D``).
    flip : bool
        Mirror the crop left-right after the warp.
    degradations : tuple of Degradation
        Applied in order to the (jittered, mirrored) crop; empty for a clean copy.
    """

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0
    flip: bool = False
    degradations: tuple[Degradation, ...] = field(default=())

    def __post_init__(self) -> None:
        finite = [Interval(float, None, None)]
        validate("Recipe", {"dx": self.dx, "dy": self.dy, "scale": self.scale, "angle": self.angle, "flip": self.flip},
                 {"dx": finite, "dy": finite, "scale": [Interval(float, 0, None, closed="neither")], "angle": finite,
                  "flip": [Boolean()]})
        for name in ("dx", "dy", "scale", "angle"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "flip", bool(self.flip))
        steps = []
        for step in self.degradations:
            if isinstance(step, Degradation):
                steps.append(step)
            elif isinstance(step, Mapping):
                steps.append(Degradation(**step))
            elif isinstance(step, (tuple, list)) and len(step) == 3:
                steps.append(Degradation(*step))
            else:
                raise InvalidParameterError("Recipe", "degradations",
                                            "Degradation objects or (kind, severity, seed) triples", step)
        object.__setattr__(self, "degradations", tuple(steps))

    @property
    def identity_geometry(self) -> bool:
        """True when the crop is exactly the parent's aligned crop before degradations (no jitter, no mirror)."""
        return self.dx == 0.0 and self.dy == 0.0 and self.scale == 1.0 and self.angle == 0.0 and not self.flip

    def jitter_matrix(self) -> np.ndarray:
        """The jitter as a (2, 3) float64 affine map from aligned-crop pixels to jittered-crop pixels."""
        matrix = np.asarray(cv2.getRotationMatrix2D(PIVOT, self.angle, self.scale), dtype=np.float64)
        matrix[:, 2] += (self.dx, self.dy)
        return matrix

    def to_dict(self) -> dict[str, Any]:
        return {"dx": self.dx, "dy": self.dy, "scale": self.scale, "angle": self.angle, "flip": self.flip,
                "degradations": [step.to_dict() for step in self.degradations]}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Recipe:
        unknown = sorted(set(values) - {"dx", "dy", "scale", "angle", "flip", "degradations"})
        if unknown:
            raise InvalidParameterError("Recipe.from_dict", "values", "keys dx, dy, scale, angle, flip, degradations",
                                        f"unknown key(s) {unknown}")
        return cls(**{**values, "degradations": tuple(values.get("degradations", ()))})

    def to_json(self) -> str:
        """A stable JSON string (sorted keys, no spaces): equal recipes give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameterError("Recipe.from_json", "text", "a JSON recipe", f"{text[:60]!r} ({exc})") from None
        if not isinstance(values, dict):
            raise InvalidParameterError("Recipe.from_json", "text", "a JSON object", text[:60])
        return cls.from_dict(values)


@dataclass(frozen=True)
class JitterRange:
    """Ranges the geometric jitter of :func:`sample_recipes` is drawn from (uniformly).

    Attributes
    ----------
    max_shift : float >= 0
        ``dx`` and ``dy`` in ``[-max_shift, max_shift]`` crop pixels.
    scale : (float, float)
        ``scale`` in ``[scale[0], scale[1]]``, ``0 < scale[0] <= scale[1]``.
    max_angle : float >= 0
        ``angle`` in ``[-max_angle, max_angle]`` degrees.
    flip_probability : float in [0, 1]
        Probability of a mirrored copy.
    """

    max_shift: float = 6.0
    scale: tuple[float, float] = (0.85, 1.15)
    max_angle: float = 12.0
    flip_probability: float = 0.5

    def __post_init__(self) -> None:
        owner = "JitterRange"
        validate(owner, {"max_shift": self.max_shift, "max_angle": self.max_angle,
                         "flip_probability": self.flip_probability},
                 {"max_shift": [Interval(float, 0, None, closed="left")],
                  "max_angle": [Interval(float, 0, None, closed="left")],
                  "flip_probability": [Interval(float, 0, 1, closed="both")]})
        low_high = tuple(self.scale) if isinstance(self.scale, (tuple, list)) else ()
        if len(low_high) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in low_high) \
                or not 0.0 < float(low_high[0]) <= float(low_high[1]) < math.inf:
            raise InvalidParameterError(owner, "scale", "a pair (low, high) with 0 < low <= high", self.scale)
        object.__setattr__(self, "scale", (float(low_high[0]), float(low_high[1])))

    def to_dict(self) -> dict[str, Any]:
        return {"max_shift": float(self.max_shift), "scale": list(self.scale), "max_angle": float(self.max_angle),
                "flip_probability": float(self.flip_probability)}


def _resolve_geometry(geometry: bool | JitterRange, owner: str) -> JitterRange | None:
    if isinstance(geometry, JitterRange):
        return geometry
    if isinstance(geometry, (bool, np.bool_)):
        return JitterRange() if geometry else None
    raise InvalidParameterError(owner, "geometry", "a bool or a JitterRange", geometry)


def _resolve_kinds(kinds: Iterable[str] | str | None, owner: str) -> tuple[str, ...]:
    if kinds is None:
        return DEFAULT_KINDS
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in _KNOWN_KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        raise InvalidParameterError(owner, "kinds", f"distinct names among {list(_KNOWN_KINDS)} (at least one)",
                                    list(kinds))
    return kinds


def _resolve_severity(severity: Sequence[float], owner: str) -> tuple[float, float]:
    pair = tuple(severity) if isinstance(severity, (tuple, list, np.ndarray)) else ()
    if len(pair) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair) \
            or not 0.0 <= pair[0] <= pair[1] <= 1.0:
        raise InvalidParameterError(owner, "severity", "a pair (low, high) with 0 <= low <= high <= 1", severity)
    return float(pair[0]), float(pair[1])


def _fraction(value: object, name: str, owner: str) -> float:
    validate(owner, {name: value}, {name: [Interval(float, 0, 1, closed="both")]})
    return float(value)  # type: ignore[arg-type]


def sample_recipes(parents: int | Sequence[int] | np.ndarray, copies: int, random_state: int = 0, *,
                   kinds: Iterable[str] | None = None, severity: Sequence[float] = (0.2, 1.0),
                   geometry: bool | JitterRange = True, clean_fraction: float = 0.1,
                   combined_fraction: float = 0.25) -> list[Recipe]:
    """Draw ``copies`` recipes for each parent, deterministically.

    Copy ``c`` of parent ``p`` draws from ``numpy.random.SeedSequence(seed, spawn_key=(p, c))`` alone, so its recipe
    does not depend on the other parents, their number or order, or on chunking.

    Parameters
    ----------
    parents : int or array-like of shape (n,), int >= 0
        Parent keys (their ``sample_id``), or ``n`` for keys ``0..n-1``.
    copies : int >= 1
        Recipes per parent.
    random_state : int >= 0
    kinds : iterable of str, optional
        Degradations to draw from (uniformly); default every kind of :data:`fiqa.augment.degrade.DEGRADATIONS`.
    severity : (float, float), default (0.2, 1.0)
        Severity range. The first degradation of copy ``c`` takes a severity uniform in the ``c``-th of ``copies``
        equal strata of the range, so each parent's copies spread from mild to strong; a second degradation takes
        a severity uniform over the whole range.
    geometry : bool or JitterRange, default True
        Geometric jitter drawn from ``JitterRange()`` (True), the given ranges, or none (False).
    clean_fraction : float in [0, 1], default 0.1
        Expected fraction of copies with no degradation (geometry only).
    combined_fraction : float in [0, 1], default 0.25
        Expected fraction of copies with two different degradations in a row (needs two kinds; with one kind
        these copies get one). The rest get one. ``clean_fraction + combined_fraction <= 1``.

    Returns
    -------
    list of Recipe
        ``len(parents) * copies`` recipes, parent-major (``[p0c0, p0c1, ..., p1c0, ...]``).
    """
    owner = "sample_recipes"
    keys = np.arange(check_int(owner, "parents", parents, 0)) if isinstance(parents, numbers.Integral) \
        else np.asarray(parents)
    if keys.ndim != 1 or (len(keys) and (not np.issubdtype(keys.dtype, np.integer) or keys.min() < 0)):
        raise InvalidParameterError(owner, "parents", "an int or a 1-D array of ints >= 0", parents)
    copies = check_int(owner, "copies", copies, 1)
    random_state = check_int(owner, "random_state", random_state, 0)
    kinds = _resolve_kinds(kinds, owner)
    low, high = _resolve_severity(severity, owner)
    jitter = _resolve_geometry(geometry, owner)
    clean = _fraction(clean_fraction, "clean_fraction", owner)
    combined = _fraction(combined_fraction, "combined_fraction", owner)
    if clean + combined > 1.0 + 1e-12:
        raise InvalidParameterError(owner, "combined_fraction", f"<= 1 - clean_fraction = {1 - clean:g}", combined)

    recipes = []
    for key in keys.tolist():
        for copy in range(copies):
            rng = np.random.default_rng(np.random.SeedSequence(random_state, spawn_key=(int(key), copy)))
            # A fixed sequence of draws, whatever the options, so one option never shifts another's values.
            shift = rng.random(2)
            scale_u, angle_u, flip_u, category_u, severity_u = rng.random(5)
            order = rng.permutation(len(kinds))
            second_u = rng.random()
            seeds = rng.integers(0, 2 ** 32, size=2)
            geometric: dict[str, Any] = {}
            if jitter is not None:
                geometric = {"dx": round(float((2 * shift[0] - 1) * jitter.max_shift), 2),
                             "dy": round(float((2 * shift[1] - 1) * jitter.max_shift), 2),
                             "scale": round(float(jitter.scale[0] + scale_u * (jitter.scale[1] - jitter.scale[0])), 4),
                             "angle": round(float((2 * angle_u - 1) * jitter.max_angle), 2),
                             "flip": bool(flip_u < jitter.flip_probability)}
            n_steps = 0 if category_u < clean else 2 if category_u < clean + combined else 1
            n_steps = min(n_steps, len(kinds))
            severities = (low + (high - low) * (copy + severity_u) / copies, low + (high - low) * second_u)
            steps = tuple(Degradation(kinds[order[i]], float(np.clip(round(severities[i], 4), low, high)),
                                      int(seeds[i])) for i in range(n_steps))
            recipes.append(Recipe(**geometric, degradations=steps))
    return recipes


# ------------------------------------------------------------------------------------------------- applying
def apply_recipe(image_bgr: np.ndarray, landmarks: np.ndarray | None, recipe: Recipe) -> np.ndarray:
    """Make a derived crop: jittered alignment of the source image, mirror, then the degradations in order.

    Parameters
    ----------
    image_bgr : ndarray of shape (H, W, 3), uint8
        The parent's source image (BGR).
    landmarks : ndarray of shape (5, 2), or None
        The parent's five landmarks in source pixels (as ``fiqa.detect`` reports them). The jitter is composed
        with their similarity transform onto the ArcFace template, so the crop is cut from the source image
        (context instead of black borders). None for a pre-aligned image: it is resized to 112x112 and the jitter
        is applied to that crop (borders reflected).
    recipe : Recipe

    Returns
    -------
    ndarray of shape (112, 112, 3), uint8
        With identity geometry and no degradation, exactly the parent's crop
        (``warp_to_template(image_bgr, landmarks)``, or ``resize_aligned(image_bgr)``).
    """
    if not isinstance(recipe, Recipe):
        raise InvalidParameterError("apply_recipe", "recipe", "a Recipe", type(recipe).__name__)
    if not (isinstance(image_bgr, np.ndarray) and image_bgr.dtype == np.uint8 and image_bgr.ndim == 3
            and image_bgr.shape[2] == 3):
        raise InvalidParameterError("apply_recipe", "image_bgr", "a uint8 array of shape (H, W, 3)",
                                    f"{type(image_bgr).__name__} of shape {getattr(image_bgr, 'shape', None)}, "
                                    f"dtype {getattr(image_bgr, 'dtype', None)}")
    if landmarks is None:
        crop = resize_aligned(image_bgr)
        if not recipe.identity_geometry:
            crop = cv2.warpAffine(crop, recipe.jitter_matrix(), (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT101)
    elif recipe.identity_geometry:
        crop = warp_to_template(image_bgr, landmarks)
    else:
        points = np.asarray(landmarks, np.float64)
        if points.shape != (5, 2):
            raise InvalidParameterError("apply_recipe", "landmarks", "an array of shape (5, 2) or None",
                                        f"an array of shape {points.shape}")
        alignment = np.vstack([estimate_similarity(points, ARCFACE_TEMPLATE), (0, 0, 1)])
        crop = warp_similarity(image_bgr, (np.vstack([recipe.jitter_matrix(), (0, 0, 1)]) @ alignment)[:2])
    if recipe.flip:
        crop = crop[:, ::-1]
    crop = np.ascontiguousarray(crop)
    for step in recipe.degradations:
        crop = degrade(crop, step.kind, step.severity, random_state=step.random_state)
    return crop


# -------------------------------------------------------------------------------------------------- embedder
_EMBEDDER_IDENTITY = ("backend", "model_sha256", "dim", "spec", "conversion", "num_jitters")
"""Keys of ``describe()`` that decide the embedding itself (not batch size or threads)."""


def embedder_for_store(store: EmbeddingStore) -> Any:
    """Re-create the recognition backend that embedded ``store``, from its ``meta.backend``.

    Raises
    ------
    StoreError
        The metadata names no backend, or the model file found now is not the one the store was made with.
    fiqa.core.errors.UnknownNameError
        The backend is not registered (a custom embedder object: pass it as ``embedder=``).
    """
    from fiqa.embed import EMBEDDERS, create_embedder

    described = dict(store.meta.backend)
    name = described.get("backend")
    if not name:
        raise StoreError(f"{store.root}: meta.json does not name the backend the store was embedded with; pass "
                         f"the embedder object as embedder=")
    names = {"model": "model_path"}  # constructor parameter -> describe() key
    accepted = EMBEDDERS.entry(name).params
    params = {param: described[names.get(param, param)] for param in accepted
              if names.get(param, param) in described}
    embedder = create_embedder(name, **params)
    _check_same_embedder(store, embedder)
    return embedder


def _check_same_embedder(store: EmbeddingStore, embedder: Any) -> None:
    missing = [name for name in ("name", "dim", "embed", "describe") if not hasattr(embedder, name)]
    if missing:
        raise InvalidParameterError("augment_store", "embedder", "an embedder with name, dim, embed() and describe()",
                                    f"{type(embedder).__name__} lacking {', '.join(missing)}")
    parent = store.meta.backend
    ours = _json_round_trip(embedder.describe())
    differing = [key for key in _EMBEDDER_IDENTITY if (key in parent or key in ours)
                 and _json_round_trip({"v": parent.get(key)}) != _json_round_trip({"v": ours.get(key)})]
    if int(embedder.dim) != store.dim:
        differing.append("dim")
    if differing:
        detail = "; ".join(f"{key}: store {parent.get(key)!r}, embedder {ours.get(key)!r}"
                           for key in dict.fromkeys(differing))
        raise StoreError(f"{store.root}: derived crops must be embedded by the backend that embedded the store, "
                         f"but they differ ({detail})")


def _json_round_trip(data: Mapping[str, Any]) -> Any:
    return json.loads(json.dumps(dict(data), sort_keys=True, default=str))


# ---------------------------------------------------------------------------------------------------- store
def augment_store(store: EmbeddingStore | str | os.PathLike, out: str | os.PathLike, *, copies: int = 2,
                  random_state: int = 0, kinds: Iterable[str] | None = None, severity: Sequence[float] = (0.2, 1.0),
                  geometry: bool | JitterRange = True, clean_fraction: float = 0.1,
                  combined_fraction: float = 0.25, keep_originals: bool = True,
                  rows: np.ndarray | Sequence[int] | None = None, embedder: Any = None, batch_size: int = 64,
                  chunk_size: int = 1024, resume: bool = True, n_workers: int | None = None,
                  progress: bool = True) -> EmbeddingStore:
    """Write a store holding the rows of ``store`` followed by ``copies`` degraded copies of each parent row.

    Parameters
    ----------
    store : EmbeddingStore or path
        A finished embedding store (``fiqa embed``), not itself an augmented one.
    out : str or path
        The store folder to write; it appears only when complete (see :mod:`fiqa.store`).
    copies : int >= 1, default 2
        Derived rows per parent.
    random_state : int >= 0, default 0
    kinds, severity, geometry, clean_fraction, combined_fraction
        How recipes are drawn, see :func:`sample_recipes`.
    keep_originals : bool, default True
        Copy every row of ``store`` first (same ``sample_id``, vectors byte for byte). False: only derived rows,
        with ``sample_id`` ``0..M-1``.
    rows : array-like, optional
        Which rows of ``store`` may be parents: row indices (shape (k,), int) or a boolean mask (shape (N,)).
        Default every row. Rows that are not ``ok`` (or lack landmarks) get no copies; they are counted in
        ``meta.augmentation["skipped_parents"]``. Originals are copied whatever ``rows`` says.
    embedder : embedder object, optional
        Default: the store's backend re-created from its metadata (:func:`embedder_for_store`). An object given
        here must describe itself as the same model (backend, model hash, spec, dim).
    batch_size : int >= 1, default 64
        Crops per embedder call.
    chunk_size : int >= 1, default 1024
        Derived rows per resumable chunk.
    resume : bool, default True
        Continue an interrupted run into ``out`` (or return ``out`` when it is already complete with the same
        settings); a different setting is refused naming it. False starts over.
    n_workers : int >= 0, optional
        Decode-and-warp threads; default ``os.cpu_count()``; 0 works in the calling thread.
    progress : bool, default True

    Returns
    -------
    EmbeddingStore
        Rows: the originals (``parent_id == -1``, ``recipe == ""``), then for each parent in row order its copies
        (``parent_id`` = the parent's ``sample_id``; same identity, location and landmarks; the JSON recipe). A
        derived crop whose embedding is NaN, infinite or zero has status ``invalid_vector``; one whose image
        cannot be read any more has the read error's status. No row is dropped. When ``store`` holds feature
        columns (``fiqa embed --features``), so does this store: the originals' copied, the copies' computed in
        the same run as their embeddings (:class:`fiqa.embed.features.FeatureEmbedder`).

    Raises
    ------
    NoUsableSamplesError
        No selected row can be a parent.
    StoreError
        ``store`` is already augmented, ``out`` is ``store``, or ``out`` holds a run with other settings.
    """
    settings = _AugmentSettings.check(
        copies=copies, random_state=random_state, kinds=kinds, severity=severity, geometry=geometry,
        clean_fraction=clean_fraction, combined_fraction=combined_fraction, keep_originals=keep_originals,
        batch_size=batch_size, chunk_size=chunk_size, n_workers=n_workers)
    parent, out = _open_parent(store, out)
    selected, parents, skipped = _choose_parents(parent, rows)
    embedder = _parent_embedder(parent, embedder)
    features = _feature_embedder(parent, embedder)
    parent_ids = parent.samples.sample_id[parents].astype(np.int64)
    partial = PartialStore(out, _plan(parent, parent_ids, settings, embedder, features))
    if (existing := partial.finished(resume=resume)) is not None:
        return existing
    partial.start(resume=resume)
    recipes = settings.recipes(parent_ids)
    n_chunks = math.ceil(len(recipes) / settings.chunk_size)
    spans = pending_chunks(partial, n_chunks, settings.chunk_size, len(recipes))
    limits = read_limits(parent)
    table, _ = read_table(parent.root / "samples.parquet")
    _derive_chunks(partial, spans, parent, parents, recipes, table["detection_score"], embedder, settings,
                   limits=limits, progress=progress, features=features)
    return _finish(partial, parent, table, parents, parent_ids, recipes, n_chunks, settings.keep_originals, embedder,
                   settings.run_info(skipped=skipped, n_selected=len(selected), limits=limits))


@dataclass(frozen=True)
class _AugmentSettings:
    """The checked settings of one :func:`augment_store` run (how recipes are drawn, and how work is batched)."""

    copies: int
    random_state: int
    kinds: tuple[str, ...]
    severity: tuple[float, float]
    jitter: JitterRange | None
    clean_fraction: float
    combined_fraction: float
    keep_originals: bool
    batch_size: int
    chunk_size: int
    n_workers: int

    @classmethod
    def check(cls, *, copies: Any, random_state: Any, kinds: Any, severity: Any, geometry: Any, clean_fraction: Any,
              combined_fraction: Any, keep_originals: Any, batch_size: Any, chunk_size: Any,
              n_workers: Any) -> _AugmentSettings:
        """Validate every setting, naming the first bad one (``InvalidParameterError``)."""
        owner = "augment_store"
        copies = check_int(owner, "copies", copies, 1)
        random_state = check_int(owner, "random_state", random_state, 0)
        batch_size = check_int(owner, "batch_size", batch_size, 1)
        chunk_size = check_int(owner, "chunk_size", chunk_size, 1)
        n_workers = check_int(owner, "n_workers", n_workers, 0, allow_none=True)
        n_workers = (os.cpu_count() or 1) if n_workers is None else n_workers
        kinds = _resolve_kinds(kinds, owner)
        severity = _resolve_severity(severity, owner)
        jitter = _resolve_geometry(geometry, owner)
        clean_fraction = _fraction(clean_fraction, "clean_fraction", owner)
        combined_fraction = _fraction(combined_fraction, "combined_fraction", owner)
        if clean_fraction + combined_fraction > 1.0 + 1e-12:
            raise InvalidParameterError(owner, "combined_fraction", f"<= 1 - clean_fraction = {1 - clean_fraction:g}",
                                        combined_fraction)
        if not isinstance(keep_originals, (bool, np.bool_)):
            raise InvalidParameterError(owner, "keep_originals", "a bool", keep_originals)
        return cls(copies, random_state, kinds, severity, jitter, clean_fraction, combined_fraction,
                   bool(keep_originals),
                   batch_size, chunk_size, n_workers)

    def recipe_params(self) -> dict[str, Any]:
        """How the recipes are drawn, as recorded in the plan and the metadata."""
        return {"copies": self.copies, "random_state": self.random_state, "kinds": list(self.kinds),
                "severity": list(self.severity),
                "geometry": None if self.jitter is None else self.jitter.to_dict(),
                "clean_fraction": self.clean_fraction, "combined_fraction": self.combined_fraction}

    def run_info(self, *, skipped: Mapping[str, int], n_selected: int, limits: Mapping[str, int]) -> dict[str, Any]:
        """What :func:`_finish` records about the run besides the stores."""
        return {"recipe": self.recipe_params(), "skipped": skipped, "n_selected": int(n_selected), "limits": limits,
                "batch_size": self.batch_size, "chunk_size": self.chunk_size, "n_workers": self.n_workers}

    def recipes(self, parent_ids: np.ndarray) -> list[Recipe]:
        """The recipes of every copy of every parent, parent-major (see :func:`sample_recipes`)."""
        return sample_recipes(parent_ids, self.copies, self.random_state, kinds=self.kinds, severity=self.severity,
                              geometry=self.jitter or False, clean_fraction=self.clean_fraction,
                              combined_fraction=self.combined_fraction)


def _open_parent(store: EmbeddingStore | str | os.PathLike, out: str | os.PathLike) -> tuple[EmbeddingStore, Path]:
    """The store to augment and the output path, refusing an output onto itself and an augmented parent."""
    parent = open_store(store.root if isinstance(store, EmbeddingStore) else store)
    out = check_out_path(out)
    if out == parent.root:
        raise StoreError(f"{out}: the output store cannot be the store it is derived from; choose another --out")
    check_not_in_inputs(out, [parent])  # nor inside it
    check_resampling(parent.meta.alignment, str(parent.root))  # its crops are cut again from its photos
    if parent.derived.any():
        raise StoreError(f"{parent.root}: already holds {int(parent.derived.sum()):,} derived rows; augment the "
                         f"store it was made from instead (meta.json 'augmentation.parent.path')")
    return parent, out


def _choose_parents(parent: EmbeddingStore, rows: Any) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """``(selected rows, parent rows, status counts of the selected rows that cannot be parents)``.

    A parent is a selected ``ok`` row with landmarks (any ``ok`` row of a pre-aligned store).
    """
    selected = _selected_rows(rows, len(parent), "augment_store")
    aligned = parent.meta.aligned
    usable = parent.ok[selected] & (aligned | ~np.isnan(parent.landmarks[selected]).any(axis=(1, 2)))
    parents = selected[usable]
    skipped = status_counts(np.asarray(parent.status[selected[~usable]], dtype=object))
    if not len(parents):
        raise NoUsableSamplesError(f"{parent.root}: none of the {len(selected):,} selected rows can be a parent "
                                   f"(statuses: {skipped or 'no rows selected'}); augmentation needs ok samples")
    return selected, parents, skipped


def _parent_embedder(parent: EmbeddingStore, embedder: Any) -> Any:
    """The given embedder once checked against the store's backend, or that backend re-created."""
    if embedder is None:
        return embedder_for_store(parent)
    _check_same_embedder(parent, embedder)
    return embedder


def _feature_embedder(parent: EmbeddingStore, embedder: Any) -> FeatureEmbedder | None:
    """A :class:`fiqa.embed.features.FeatureEmbedder` computing the parent store's feature columns with
    ``embedder``, or None when the parent holds none."""
    opened = open_features(parent)
    if opened is None:
        return None
    from fiqa.embed.features import FeatureEmbedder, FeatureSpec

    info = opened[1]
    return FeatureEmbedder(embedder, spec=FeatureSpec.from_dict(info["spec"]), columns=list(info["columns"]))


def _plan(parent: EmbeddingStore, parent_ids: np.ndarray, settings: _AugmentSettings, embedder: Any,
          features: FeatureEmbedder | None) -> dict[str, Any]:
    """What a resumed run must agree on: the parent store, the parents, the recipes, the embedder and the feature
    columns (when the parent has any)."""
    plan = {"store_format": STORE_FORMAT, "stage": "augment", "parent_sha256": store_fingerprint(parent),
            "parents_sha256": hashlib.sha256(parent_ids.tobytes()).hexdigest(), "n_parents": int(len(parent_ids)),
            **settings.recipe_params(), "keep_originals": settings.keep_originals, "embedder": embedder.describe(),
            "batch_size": settings.batch_size, "chunk_size": settings.chunk_size}
    return plan if features is None else {**plan, "features": features.describe()}


def read_limits(store: EmbeddingStore) -> dict[str, int]:
    """The image size limits a store was extracted with (its images are read again with them)."""
    settings = DetectionSettings.from_params(store.meta.params)
    return {"max_pixels": settings.max_pixels, "min_side": settings.min_side}


def read_store_image(location: str, limits: Mapping[str, int]) -> np.ndarray:
    """A store's image read again with the store's size limits (:func:`read_limits`)."""
    return read_image(str(location), max_pixels=limits["max_pixels"], min_side=limits["min_side"])


def _derive_chunks(partial: PartialStore, spans: list[tuple[int, int, int]], parent: EmbeddingStore,
                   parents: np.ndarray, recipes: list[Recipe], detection_score: np.ndarray, embedder: Any,
                   settings: _AugmentSettings, *, limits: Mapping[str, int], progress: bool,
                   features: FeatureEmbedder | None = None) -> None:
    """Make the derived crops of ``spans`` in worker threads, embed them in row order and write each chunk."""
    aligned = parent.meta.aligned
    copies, batch_size, n_workers = settings.copies, settings.batch_size, settings.n_workers

    def prepare(segment: tuple[int, int, int]) -> list[_DerivedCrop]:
        """Crops of derived rows ``lo..hi-1``, all copies of the parent at position ``position``."""
        position, lo, hi = segment
        row = int(parents[position])
        try:
            image = read_store_image(parent.samples.location[row], limits)
        except ImageReadError as exc:
            return [(None, exc.status.value, f"the parent image cannot be read any more: {exc.reason}")] * (hi - lo)
        landmarks = None if aligned else np.asarray(parent.landmarks[row])
        return [(apply_recipe(image, landmarks, recipes[j]), Status.OK.value, "") for j in range(lo, hi)]

    n_derived = len(recipes)
    segments = [segment for _, start, stop in spans for segment in _segments(start, stop, copies)]
    with tqdm(total=n_derived, initial=n_derived - sum(stop - start for _, start, stop in spans), unit="img",
              desc="augment", disable=not progress) as bar, \
            ordered_map(prepare, segments, n_workers, window=max(2 * batch_size, 8 * max(n_workers, 1))) as results:
        for number, start, stop in spans:
            batches = _embed_chunk(start, stop, results, embedder, batch_size, bar, features)
            rows_of_chunk = parents[np.arange(start, stop) // copies]
            partial.write_chunk(number, Chunk(start, stop, batches.raw, batches.status, batches.reason,
                                              np.asarray(parent.landmarks[rows_of_chunk], np.float32),
                                              parent.n_faces[rows_of_chunk].astype(np.int32),
                                              detection_score[rows_of_chunk].astype(np.float32), batches.features))


def _selected_rows(rows: Any, n: int, owner: str) -> np.ndarray:
    if rows is None:
        return np.arange(n)
    array = np.asarray(rows)
    if array.dtype == bool:
        if array.shape != (n,):
            raise InvalidParameterError(owner, "rows", f"a boolean mask of shape ({n},)", f"shape {array.shape}")
        return np.flatnonzero(array)
    if array.ndim != 1 or (len(array) and not np.issubdtype(array.dtype, np.integer)):
        raise InvalidParameterError(owner, "rows", "a 1-D array of row indices or a boolean mask", rows)
    bad = array[(array < 0) | (array >= n)]
    if len(bad):
        raise InvalidParameterError(owner, "rows", f"row indices in [0, {n})", bad[:5].tolist())
    if len(np.unique(array)) != len(array):
        raise InvalidParameterError(owner, "rows", "distinct row indices", "repeated indices")
    return np.sort(array.astype(np.int64))


def _segments(start: int, stop: int, copies: int) -> Iterable[tuple[int, int, int]]:
    """Split derived rows ``start..stop-1`` into (parent position, lo, hi) runs sharing one parent image."""
    lo = start
    while lo < stop:
        position = lo // copies
        hi = min(stop, (position + 1) * copies)
        yield position, lo, hi
        lo = hi


def _embed_chunk(start: int, stop: int, results: Iterator[list[_DerivedCrop]], embedder: Any, batch_size: int,
                 bar: tqdm, features: FeatureEmbedder | None = None) -> BatchEmbedding:
    """Embed derived rows ``start..stop-1`` in batches formed in row order (so a resumed run is identical); with
    ``features`` (a FeatureEmbedder), their feature columns from the same run."""
    batches = BatchEmbedding(embedder, stop - start, batch_size, features=features)
    row = 0
    while row < stop - start:
        for crop, row_status, row_reason in next(results):
            if crop is None:
                batches.status[row], batches.reason[row] = row_status, row_reason
            else:
                batches.add(row, crop)
            row += 1
            bar.update(1)
    batches.flush()
    return batches


def _finish(partial: PartialStore, parent: EmbeddingStore, table: Mapping[str, np.ndarray], parents: np.ndarray,
            parent_ids: np.ndarray, recipes: list[Recipe], n_chunks: int, keep_originals: bool, embedder: Any,
            info: Mapping[str, Any]) -> EmbeddingStore:
    """Assemble originals and derived chunks into the final store and move it into place."""
    copies = int(info["recipe"]["copies"])
    n_originals = len(parent) if keep_originals else 0
    n_derived = len(recipes)
    n, dim = n_originals + n_derived, parent.dim
    parent_features = open_features(parent) if "features" in partial.plan else None
    build = partial.new_build(n, dim, None if parent_features is None else parent_features[0].shape[1])
    for begin in range(0, n_originals, _COPY_BLOCK):
        span = slice(begin, min(n_originals, begin + _COPY_BLOCK))
        build.vectors[span], build.norms[span] = parent.vectors[span], parent.norms[span]
        build.landmarks[span] = parent.landmarks[span]
        if build.features is not None and parent_features is not None:
            build.features[span] = parent_features[0][span]
    derived = partial.fill(build, n_chunks, offset=n_originals)
    status, reason = derived["status"], derived["reason"]
    build.flush()

    source_rows = parents[np.arange(n_derived) // copies]
    first_id = int(parent.samples.sample_id.max()) + 1 if keep_originals and len(parent) else 0
    head = slice(0, n_originals)
    columns = {
        "sample_id": np.concatenate([parent.samples.sample_id[head].astype(np.int64),
                                     first_id + np.arange(n_derived, dtype=np.int64)]),
        "location": np.concatenate([parent.samples.location[head], parent.samples.location[source_rows]]),
        "identity": np.concatenate([parent.samples.identity[head], parent.samples.identity[source_rows]]),
        "status": np.concatenate([parent.status[head], status]),
        "reason": np.concatenate([parent.reason[head], reason]),
        "n_faces": np.concatenate([parent.n_faces[head], parent.n_faces[source_rows]]).astype(np.int32),
        "detection_score": np.concatenate([table["detection_score"][head],
                                           table["detection_score"][source_rows]]).astype(np.float32),
        "parent_id": np.concatenate([np.full(n_originals, -1, np.int64), np.repeat(parent_ids, copies)]),
        "recipe": np.asarray([""] * n_originals + [recipe.to_json() for recipe in recipes], dtype=object),
    }
    write_table(build.root / "samples.parquet", columns,
                {"store_format": STORE_FORMAT, "description": "samples of an augmented embedding store; parent_id "
                 "and recipe describe derived rows; see meta.json"})
    counts = status_counts(columns["status"])
    derived_counts = status_counts(status)
    meta = {
        "store_format": STORE_FORMAT, "dim": dim, "aligned": parent.meta.aligned,
        "backend": embedder.describe(), "preprocessing": parent.meta.preprocessing,
        "alignment": parent.meta.alignment, "source": parent.meta.source,
        "counts": counts, "n_samples": n, "plan": partial.plan,
        **({"features": partial.plan["features"]} if "features" in partial.plan else {}),
        "augmentation": {
            "parent": {"path": str(parent.root), "sha256": partial.plan["parent_sha256"],
                       "n_samples": len(parent), "counts": parent.meta.counts, "plan": parent.meta.plan,
                       "created_utc": parent.meta.created_utc, "versions": parent.meta.versions},
            **info["recipe"], "keep_originals": bool(keep_originals), "n_originals": n_originals,
            "n_derived": n_derived, "n_parents": int(len(parents)), "n_selected_rows": info["n_selected"],
            "skipped_parents": info["skipped"], "derived_counts": derived_counts,
            "degradations": {kind: {**DEGRADATIONS, **EVALUATION_DEGRADATIONS}[kind][1]
                             for kind in info["recipe"]["kinds"]},
            "jitter_pivot": list(PIVOT),
        },
        **provenance(stage="augment", **info["recipe"], keep_originals=bool(keep_originals),
                     batch_size=info["batch_size"], chunk_size=info["chunk_size"], n_workers=info["n_workers"],
                     **info["limits"]),
    }
    StoreMeta.from_json(meta, build.root / "meta.json").write(build.root / "meta.json")
    store = partial.install(build.root)
    logger.info("wrote %s: %d originals, %d derived (%s)", store.root, n_originals, n_derived,
                ", ".join(f"{k} {v}" for k, v in derived_counts.items()))
    return store


HELD_OUT_EFFECTS: dict[str, Any] = {
    "copies": 1, "keep_originals": False, "kinds": tuple(EVALUATION_DEGRADATIONS), "geometry": False,
    "clean_fraction": 0.25, "combined_fraction": 0.0, "severity": (0.2, 0.9)}
"""An evaluation set of captures gone wrong in ways no training recipe draws: each face replaced by one copy with
one effect of :data:`fiqa.augment.degrade.EVALUATION_DEGRADATIONS` at a severity in [0.2, 0.9], a quarter left clean."""


def degraded_store(store: EmbeddingStore | str | os.PathLike, out: str | os.PathLike, *,
                   rows: np.ndarray | Sequence[int] | None = None, kinds: Iterable[str] | None = None,
                   random_state: int = 202, resume: bool = True, progress: bool = True) -> EmbeddingStore:
    """A held-out degraded evaluation set of ``store``'s ``rows`` (:data:`HELD_OUT_EFFECTS`), resumable.

    Parameters
    ----------
    store : EmbeddingStore or path
    out : path
    rows : array-like of int, optional
        The faces to degrade (e.g. the test half of an identity split); default every ok row.
    kinds : iterable of str, optional
        Restrict the effects (e.g. one kind, for a per-effect table: then no face is left clean).
    random_state : int
    resume : bool, default True
        As in :func:`augment_store`: reuse a finished or interrupted set made with the same settings (refusing one
        made with others); False replaces it.
    progress : bool

    Returns
    -------
    EmbeddingStore
        Only the degraded copies (``keep_originals=False``), each with its parent and recipe.
    """
    settings = dict(HELD_OUT_EFFECTS)
    if kinds is not None:
        settings.update(kinds=tuple(kinds), clean_fraction=0.0)
    return augment_store(store, out, rows=rows, random_state=random_state, resume=resume, progress=progress,
                         **settings)
