"""Comparison scores from another recogniser: the same comparisons, re-scored with another store of the same images.

Quality is a property of an image *for a recogniser*; ISO/IEC 29794-1 practice and recent papers (CR-FIQA, eDifFIQA)
evaluate one quality measure against several recognisers. fiqa does it by keeping everything that identifies the
comparisons (the sample ids of the store the quality tables were computed on, which pairs, which are mated) and
replacing only each pair's comparison score with the cosine similarity of the *other* store's embeddings of the
same two images::

    sface = open_store("runs/demo/store")                 # quality tables are tables of this store
    dlib = open_store("runs/dlib-store")                  # the same images (or a superset), embedded with dlib
    comparisons = sample_comparisons(sface, sample_mask=ok_in_both(sface, dlib))
    evaluation = evaluate_quality(comparisons, tables, store=sface, comparison_store=dlib)

How the images are matched. By location: a sample's image path (``SampleTable.location``) and, for rows derived by
``fiqa.augment`` (degraded or augmented copies, which share their parent's path), its recipe. The decisions:

- every compared image must be in the comparison store, once; otherwise the evaluation is refused with a
  :class:`~fiqa.core.errors.StoreError` that names both stores, the count and a first missing image. Images that
  were not compared may be absent (a comparison store of the test half only is enough) or extra;
- an image that is ok in the quality store but failed in the comparison store (no face found by its detector, an
  invalid vector) cannot be compared there: every pair that uses it is left out, counted in the comparisons'
  ``meta`` (``n_pairs_left_out``, ``n_images_failed_in_comparison_store``, a few example locations) and logged.
  To compare two recognisers on the very same pairs, sample the comparisons from the images ok in both
  (:func:`ok_in_both`), so that nothing is left out.

The similarity is the cosine similarity of the comparison store's embeddings, as in every fiqa comparison (for dlib,
whose own rule is a Euclidean distance of unnormalised vectors, the cosine ranks pairs the same way on the unit
sphere up to dlib's small norm differences). The decision threshold is then fixed on these scores as usual.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.errors import StoreError
from fiqa.core.types import EmbeddingStore, locate_ids
from fiqa.evaluate.pairs import Comparisons, cosine_similarities

logger = logging.getLogger(__name__)

_EXAMPLES = 3
"""Example locations recorded for images left out."""


def describe_recogniser(store: EmbeddingStore) -> dict[str, Any]:
    """What a report says about the recogniser of a store: backend name, model, store folder and fingerprint."""
    from fiqa.store import store_fingerprint

    embedder = dict(store.meta.backend)  # StoreMeta reads the older spellings ("embedder", a bare name)
    model = embedder.get("model_path") or embedder.get("model")
    return {"backend": str(embedder.get("backend", "unknown")),
            "model": None if model is None else Path(str(model)).name, "model_sha256": embedder.get("model_sha256"),
            "store": str(store.root), "store_sha256": store_fingerprint(store), "n_samples": len(store)}


def image_keys(store: EmbeddingStore, rows: np.ndarray | None = None) -> np.ndarray:
    """The key that identifies each image across stores: its location, plus ``"#recipe:<recipe>"`` for a row
    derived by ``fiqa.augment`` (degraded or augmented copies share their parent's location); shape (R,), object."""
    rows = np.arange(len(store)) if rows is None else np.asarray(rows, dtype=np.int64)
    locations = store.samples.location[rows].astype(str)
    if store.recipe is None:
        return locations.astype(object)
    recipes = np.asarray(store.recipe, dtype=object)[rows].astype(str)
    return np.array([loc if not recipe else f"{loc}#recipe:{recipe}" for loc, recipe in zip(locations, recipes)],
                    dtype=object)


def _rows_in(other: EmbeddingStore, keys: np.ndarray, store: EmbeddingStore) -> np.ndarray:
    """Row of ``other`` holding each key; refused (naming both stores) when a key is missing or held twice."""
    other_keys = image_keys(other)
    order = np.argsort(other_keys, kind="stable")
    sorted_keys = other_keys[order]
    position = np.clip(np.searchsorted(sorted_keys, keys), 0, max(len(sorted_keys) - 1, 0))
    found = (sorted_keys[position] == keys) if len(sorted_keys) else np.zeros(len(keys), bool)
    if not found.all():
        missing = keys[~found]
        raise StoreError(f"the comparison store {other.root} does not hold {len(missing):,} of the {len(keys):,} "
                         f"compared images of {store.root} (first: {missing[0]!r}); both stores must be embeddings "
                         f"of the same images (embed the same source or list with the other recogniser)")
    twice = (position + 1 < len(sorted_keys)) & (sorted_keys[np.minimum(position + 1, len(sorted_keys) - 1)] == keys)
    if twice.any():
        raise StoreError(f"the comparison store {other.root} holds the image {keys[twice][0]!r} of {store.root} "
                         f"more than once; the images cannot be matched")
    return order[position].astype(np.int64)


def ok_in_both(store: EmbeddingStore, other: EmbeddingStore) -> np.ndarray:
    """Which rows of ``store`` are ok there and ok in ``other`` (matched by image, see the module docstring);
    shape (N,), bool. Rows whose image ``other`` lacks are False. Use it as ``sample_mask`` of
    :func:`~fiqa.evaluate.pairs.sample_comparisons` to compare two recognisers on the very same pairs."""
    keys = image_keys(store)
    other_keys = image_keys(other)
    other_ok = dict(zip(other_keys[other.ok], np.ones(int(other.ok.sum()), bool)))
    return store.ok & np.array([bool(other_ok.get(key, False)) for key in keys], dtype=bool)


def rescore_comparisons(comparisons: Comparisons, store: EmbeddingStore, other: EmbeddingStore) -> Comparisons:
    """The comparisons with their similarities taken from another recogniser's store of the same images.

    Parameters
    ----------
    comparisons : Comparisons
        Comparisons of ``store`` (their sample ids are ``store``'s).
    store : EmbeddingStore
        The store whose sample ids the comparisons (and the quality tables) use.
    other : EmbeddingStore
        Another recogniser's store holding every compared image (see the module docstring).

    Returns
    -------
    Comparisons
        Same sample ids and mated flags, in the same order, without the pairs that use an image that failed in
        ``other``; similarities from ``other``'s embeddings. ``meta["recogniser"]`` describes ``other``,
        ``meta["quality_recogniser"]`` ``store``; ``meta["rescored"]`` counts what was left out.

    Raises
    ------
    StoreError
        When a compared sample id is not in ``store``, or a compared image is missing from ``other`` or held
        there twice; the message names both stores.
    """
    sample_id = np.unique(np.concatenate([comparisons.sample_a, comparisons.sample_b]))
    rows, found = locate_ids(store.samples.sample_id, sample_id)
    if not found.all():
        raise StoreError(f"{int((~found).sum()):,} compared sample ids (first: {int(sample_id[~found][0])}) are not "
                         f"in {store.root}: the comparisons are not comparisons of this store")
    keys = image_keys(store, rows)
    other_rows = _rows_in(other, keys, store)
    failed = ~other.ok[other_rows]
    pos_a = np.searchsorted(sample_id, comparisons.sample_a)
    pos_b = np.searchsorted(sample_id, comparisons.sample_b)
    keep = ~(failed[pos_a] | failed[pos_b])
    n_left_out = int((~keep).sum())
    if n_left_out:
        logger.warning("%d of %d compared images failed in the comparison store %s (%s); the %d pairs that use them "
                       "are left out", int(failed.sum()), len(sample_id), other.root,
                       ", ".join(repr(k) for k in keys[failed][:_EXAMPLES]), n_left_out)
    rescored_meta = {"n_pairs_in": len(comparisons), "n_pairs_left_out": n_left_out,
                     "n_mated_left_out": int((~keep & comparisons.mated).sum()),
                     "n_images_failed_in_comparison_store": int(failed.sum()),
                     "failed_examples": [str(k) for k in keys[failed][:_EXAMPLES]],
                     "failed_reasons": sorted({str(r) for r in other.reason[other_rows[failed]]})[:_EXAMPLES]}
    kept = comparisons.subset(keep) if n_left_out else comparisons
    similarity = cosine_similarities(other.vectors, other_rows[pos_a[keep]], other_rows[pos_b[keep]])
    meta = {**kept.meta, "recogniser": describe_recogniser(other), "quality_recogniser": describe_recogniser(store),
            "rescored": rescored_meta}
    return Comparisons(kept.sample_a, kept.sample_b, kept.mated, similarity, meta)
