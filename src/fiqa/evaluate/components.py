"""The quality components of a store's faces as quality tables: one EDC per component on the evaluated data.

Each component (:data:`fiqa.components.COMPONENTS`) is one capture or subject factor, never a unified quality; its EDC
says whether that factor alone finds the comparisons that fail on this data ("which factor predicts recognition
failure here"). ``fiqa evaluate --components`` adds these tables beside the ``--scores`` tables::

    tables += component_tables(store, rows)      # QualityTable per component, named "component:<name>"

Faces are measured from the store's own aligned crops (:func:`fiqa.augment.crops.load_crops`: a degraded copy is
re-created from its recipe) and, for stores of detected faces, the stored five landmarks with the photo's decoded size
and the upright view of the face cut from the photo, on which the landmarks are refined as scoring refines them (pose
and geometry read as ``fiqa score --components`` reads them). A store keeps neither the detector's boxes nor the face
region at the photo's pixel grid, so: ``single_face_present`` is 0 where the detector found one face and not measured
where it found several (the other face's size is unknown); ``compression_artifacts`` is measured on the crop's grid; a
derived copy has its parent photo's geometry. Pre-aligned stores have no pose or geometry (NaN, with the reason).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fiqa.core.errors import InvalidParameterError, check_int
from fiqa.core.meta import TableMeta
from fiqa.core.progress import tqdm
from fiqa.core.types import EmbeddingStore, QualityTable, Status

__all__ = ["COMPONENT_PREFIX", "NOT_MEASURED", "component_tables", "store_faces"]

COMPONENT_PREFIX = "component:"
"""Method names of component tables: ``component:<name>``."""
NOT_MEASURED = "not_measured"
"""Status of a face a component could not measure (its reason says why); EDC ranks it lowest, or leaves its pairs
out under ``missing="exclude"``."""
_SEVERAL_FACES = ("the detector found several faces and the store keeps no box of the others: the other face's size "
                  "is unknown")


def store_faces(store: EmbeddingStore, rows: Sequence[int] | np.ndarray,
                sizes: dict[str, tuple[int, int]] | None = None,
                contexts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> list | None:
    """What :func:`fiqa.components.compute_components` reads of each detected face of ``rows``: the stored landmarks,
    the photo's ``(height, width)`` as decoded and the upright view of the face the landmarks are refined on (no
    boxes, no face region: the store keeps none).

    Parameters
    ----------
    store : EmbeddingStore
    rows : array-like of shape (k,), int
        Rows with landmarks.
    sizes : dict, optional
        Photo sizes by location, as :func:`fiqa.augment.crops.load_crops` fills them while it reads the crops of
        these rows; a photo not in it is read here.
    contexts : dict, optional
        Upright views by row, as :func:`fiqa.augment.crops.load_crops` fills them; a row not in it keeps the
        detector's landmarks unrefined.

    Returns
    -------
    list of k :class:`fiqa.detect.pipeline.FaceCrop`, or None
        None for a pre-aligned store (no source photo: pose and geometry are not measurable).
    """
    from fiqa.augment.copies import read_limits, read_store_image
    from fiqa.detect.pipeline import FaceCrop
    from fiqa.io.image import ImageReadError

    if store.meta.aligned:
        return None
    sizes = {} if sizes is None else sizes
    contexts = {} if contexts is None else contexts
    limits = read_limits(store)
    faces = []
    for row in np.asarray(rows, dtype=np.int64):
        location = str(store.samples.location[row])
        if location not in sizes:
            try:
                shape = read_store_image(location, limits).shape
                sizes[location] = (int(shape[0]), int(shape[1]))
            except ImageReadError:
                pass
        context, to_source = contexts.get(int(row), (None, None))
        faces.append(FaceCrop(None, Status.OK, n_faces=int(store.n_faces[row]),
                              landmarks=np.asarray(store.landmarks[row], np.float32), image_size=sizes.get(location),
                              context=context, context_to_source=to_source))
    return faces


def component_tables(store: EmbeddingStore, rows: Sequence[int] | np.ndarray | None = None, *,
                     batch_size: int = 64, progress: bool = True) -> list[QualityTable]:
    """One quality table per component of the ok faces of ``rows``.

    Parameters
    ----------
    store : EmbeddingStore
    rows : array-like of shape (k,), int, optional
        Store rows to measure (e.g. those the comparisons use); default every row. Rows that are not ok get NaN
        with the store's status and reason.
    batch_size : int >= 1
        Crops loaded and measured at a time.
    progress : bool

    Returns
    -------
    list of QualityTable
        In :data:`fiqa.components.COMPONENTS` order, each named ``component:<name>``: the 0-100 scalar (higher is
        better) of the rows, with ``status`` :data:`NOT_MEASURED` and the component's reason where it has no value;
        columns ``<name>_raw`` (the raw value, unit in ``meta.record["unit"]``) and ``identity``.
    """
    from fiqa.augment.crops import load_crops
    from fiqa.components import COMPONENTS, DEFAULT_REFINEMENT_PASSES, ComponentTable, compute_components

    batch_size = check_int("component_tables", "batch_size", batch_size, 1)
    selected = np.arange(len(store)) if rows is None else np.asarray(rows, dtype=np.int64)
    if selected.ndim != 1 or (len(selected) and (selected.min() < 0 or selected.max() >= len(store))):
        raise InvalidParameterError("component_tables", "rows", f"row indices in [0, {len(store)})",
                                    selected[:5].tolist())
    ok = selected[store.ok[selected]]
    names = tuple(COMPONENTS)
    measured = []
    for start in tqdm(range(0, len(ok), batch_size), desc="components", unit="batch", disable=not progress):
        batch = ok[start:start + batch_size]
        sizes: dict[str, tuple[int, int]] = {}
        contexts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        crops = load_crops(store, batch, sizes=sizes, contexts=contexts)  # each photo read once
        measured.append(compute_components(crops, store_faces(store, batch, sizes, contexts),
                                           refinement_passes=DEFAULT_REFINEMENT_PASSES))
    table = ComponentTable.concatenate(measured)
    # each measured face at its place among the selected rows; the others keep the store's reason
    placed = ComponentTable.placed(table, np.flatnonzero(store.ok[selected]), store.reason[selected])
    raw, scalar, reason = placed.raw, placed.scalar, placed.reason
    if not store.meta.aligned:
        several = store.ok[selected] & (store.n_faces[selected] > 1)
        single = names.index("single_face_present")
        raw[several, single] = scalar[several, single] = math.nan
        reason[several, single] = _SEVERAL_FACES
    base_status = store.status[selected].astype(object)
    sample_id = store.samples.sample_id[selected].astype(np.int64)
    identity = store.samples.identity[selected].copy()
    tables = []
    for k, name in enumerate(names):
        has = np.isfinite(scalar[:, k])
        status = np.where(has, Status.OK.value, np.where(base_status == Status.OK.value, NOT_MEASURED, base_status))
        tables.append(QualityTable(
            sample_id, np.where(has, scalar[:, k], math.nan), status.astype(object),
            np.where(has, "", reason[:, k]).astype(object), {f"{name}_raw": raw[:, k], "identity": identity},
            TableMeta(method=f"{COMPONENT_PREFIX}{name}", kind="component", store=str(store.root),
                      record={"component": name, "unit": COMPONENTS[name].unit,
                              "mapping": COMPONENTS[name].mapping.describe(), "source": "fiqa.components",
                              "refinement_passes": DEFAULT_REFINEMENT_PASSES})))
    return tables
