"""Aligned crops of store samples, re-created from their source images: original rows by the stored landmarks,
derived rows (``fiqa.augment``) by their recipe applied to the parent's image. Training, scoring a store and the
report galleries read crops through :func:`load_crops`."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fiqa.augment.copies import Recipe, apply_recipe, read_limits, read_store_image
from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import EmbeddingStore
from fiqa.detect import CROP_SIZE, warp_to_template
from fiqa.detect.align import check_resampling
from fiqa.detect.pipeline import face_context, resize_aligned

__all__ = ["load_crops"]


def load_crops(store: EmbeddingStore, indices: Iterable[int] | np.ndarray, *,
               sizes: dict[str, tuple[int, int]] | None = None,
               contexts: dict[int, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Re-create aligned crops of store samples from their source images.

    Parameters
    ----------
    store : EmbeddingStore
    indices : array-like of shape (k,), int
        Row indices into the store (``0 <= i < len(store)``). For stores of detected faces each must have
        landmarks (``n_faces > 0``); pre-aligned stores only need a readable image.
    sizes : dict, optional
        Filled with each source image's ``(height, width)`` as decoded (EXIF orientation applied), by location.
    contexts : dict, optional
        For stores of detected faces: filled with each row's upright view of the face in its source photo and the
        map from it back to the photo (:func:`fiqa.detect.pipeline.face_context` of the stored landmarks: what
        scoring hands the quality components as :attr:`~fiqa.detect.pipeline.FaceCrop.context`), by row index. A
        derived row gets its parent photo's view (its recipe degrades the crop, not the photo).

    Returns
    -------
    ndarray of shape (k, 112, 112, 3), uint8
        BGR crops: the source image warped with the stored landmarks onto the ArcFace template, or for
        pre-aligned stores the image resized to 112x112. Rows derived by ``fiqa.augment.copies`` (a non-empty
        ``recipe``) are re-created from their parent's image by :func:`fiqa.augment.copies.apply_recipe`, so they give
        the degraded crop that was embedded.
    """
    indices = np.asarray(indices)
    if indices.ndim != 1 or (len(indices) and not np.issubdtype(indices.dtype, np.integer)):
        raise InvalidParameterError("load_crops", "indices", "a 1-D array of ints", indices)
    bad = indices[(indices < 0) | (indices >= len(store))]
    if len(bad):
        raise InvalidParameterError("load_crops", "indices", f"row indices in [0, {len(store)})", bad[:5].tolist())
    aligned = store.meta.aligned
    limits = read_limits(store)
    check_resampling(store.meta.alignment, str(store.root))
    if not aligned:
        no_landmarks = indices[np.isnan(store.landmarks[indices]).any(axis=(1, 2))]
        if len(no_landmarks):
            statuses = [str(store.status[i]) for i in no_landmarks[:5]]
            raise InvalidParameterError("load_crops", "indices", "rows that have landmarks (a detected face)",
                                        f"rows {no_landmarks[:5].tolist()} with status {statuses}")
    recipes = store.recipe
    crops = np.empty((len(indices), CROP_SIZE, CROP_SIZE, 3), np.uint8)
    for out, index in enumerate(indices):
        image = read_store_image(store.samples.location[index], limits)
        if sizes is not None:
            sizes[str(store.samples.location[index])] = (int(image.shape[0]), int(image.shape[1]))
        if contexts is not None and not aligned:
            context, to_source = face_context(image, store.landmarks[index])
            if context is not None and to_source is not None:
                contexts[int(index)] = (context, to_source)
        if recipes is not None and recipes[index]:
            landmarks = None if aligned else store.landmarks[index]
            crops[out] = apply_recipe(image, landmarks, Recipe.from_json(str(recipes[index])))
        else:
            crops[out] = resize_aligned(image) if aligned else warp_to_template(image, store.landmarks[index])
    return crops


