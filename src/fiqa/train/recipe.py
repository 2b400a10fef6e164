"""A training recipe: augment -> label -> train, in one call, so that a model is rebuilt from a store reproducibly.

:data:`DEFAULT_RECIPE` is how fiqa's shipped model is made (``studies/study_quality_model.py`` chose it on
training identities; ``studies/results/quality_model.md``):

1. ``copies`` augmented copies of every training face (:func:`fiqa.augment.copies.augment_store`: jittered alignment,
   mirror, 0-2 of the training degradations at severities spread over ``severity``), embedded with the store's own
   recogniser;
2. ``reference-consensus`` labels on the originals and copies together, a photo and its copies being one capture
   (a copy is judged by its match evidence against the person's *other* photos, never by its own parent);
3. the pooled head on SFace's last stage (:class:`fiqa.train.models.QualityHead`) trained on them with Huber loss,
   from the features stored with the embeddings when the store has them (``fiqa embed --features``; the copies get
   theirs in step 1), else from a feature cache filled by a second SFace pass.
   The study compared it with the ``taps`` head (every stage and the embedding's norm), with and without
   augmentation, out of fold on training identities: augmentation with the pooled head had the best summed gain
   over the norm on natural and degraded faces.

Every random choice is seeded by ``seed``; the model folder records the recipe (``recipe.json``).
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fiqa.core.atomic import write_json
from fiqa.core.cache import artifact_key, cached, fingerprint, read_key, record_key
from fiqa.core.errors import InvalidParameterError, check_int
from fiqa.core.outputs import check_not_in_inputs, make_output_dir
from fiqa.core.provenance import file_sha256, provenance
from fiqa.core.types import EmbeddingStore
from fiqa.train.loop import TrainConfig
from fiqa.train.models import FEATURE_HEADS
from fiqa.train.regressor import TrainedModel, input_columns, train_regressor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRecipe:
    """How a quality model is made from an embedding store.

    Attributes
    ----------
    labeller : str
        A registered labeller (``fiqa.label.list_labelers()``).
    shape : str
        A regressor shape (``fiqa.train.list_regressors()``).
    copies : int >= 0
        Augmented copies per training face (0: no augmentation).
    severity : (float, float)
        Range of degradation severities of the copies.
    clean_fraction, combined_fraction : float
        Copies with geometry only, and copies with two degradations (see :func:`fiqa.augment.copies.sample_recipes`).
    geometry : bool
        Jitter the alignment (shift, scale, rotation) and mirror.
    config : TrainConfig
        Optimisation settings; its ``random_state`` also seeds augmentation and labelling.
    """

    labeller: str = "reference-consensus"
    shape: str = "head"
    copies: int = 2
    severity: tuple[float, float] = (0.2, 1.0)
    clean_fraction: float = 0.1
    combined_fraction: float = 0.25
    geometry: bool = True
    config: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        check_int("ModelRecipe", "copies", self.copies, 0)
        if not isinstance(self.config, TrainConfig):
            raise InvalidParameterError("ModelRecipe", "config", "a TrainConfig", self.config)

    def to_dict(self) -> dict:
        return {**asdict(self), "severity": list(self.severity)}


DEFAULT_RECIPE = ModelRecipe()
"""fiqa's default: two augmented copies per face, reference-consensus labels, the pooled head."""

PLAIN_RECIPE = ModelRecipe(shape="head", copies=0)
"""v0.1's model, for comparison: natural faces only, the head on the last stage."""


def train_recipe(store: EmbeddingStore | str | os.PathLike, out_dir: str | os.PathLike, *,
                 recipe: ModelRecipe = DEFAULT_RECIPE, rows: np.ndarray | Sequence[int] | None = None,
                 feature_cache_dir: str | os.PathLike | None = None, progress: bool = True) -> TrainedModel:
    """Augment, label and train by ``recipe``; everything lands in ``out_dir`` and is reused on a re-run.

    Each stage's output records the key of what made it (:mod:`fiqa.core.cache`: the store's and the rows'
    fingerprints, the recipe, the versions) and is reused only under the same key: a re-run with another
    ``random_state`` (or other rows, or another store) augments, labels and trains again.

    Parameters
    ----------
    store : EmbeddingStore or path
        An embedding store of faces with identities (``fiqa embed``).
    out_dir : path
        ``augmented/`` (the store with copies), ``labels.parquet``, a feature cache (unless
        ``feature_cache_dir``, and only when the store holds no features of its own), ``model/`` (``model.onnx``,
        ``head.onnx``, training files) and ``recipe.json`` (the recipe, counts, versions, and the seconds each stage
        took).
    recipe : ModelRecipe
    rows : array-like of int, optional
        The store rows to train on (e.g. one side of an identity split); default every ok row.
    feature_cache_dir : path, optional
    progress : bool

    Returns
    -------
    TrainedModel
    """
    from fiqa.augment.copies import augment_store
    from fiqa.label import label_rows
    from fiqa.store import is_store, open_store, store_fingerprint

    if not isinstance(recipe, ModelRecipe):
        raise InvalidParameterError("train_recipe", "recipe", "a ModelRecipe", recipe)
    store = store if isinstance(store, EmbeddingStore) else open_store(store)
    out = check_not_in_inputs(out_dir, [store])  # never into the store, as the command
    make_output_dir(out, "model recipe")  # marked as fiqa's when fiqa creates it
    rows = np.flatnonzero(store.ok) if rows is None else np.asarray(rows, dtype=np.int64)
    feature_cache = None if feature_cache_dir is None else Path(feature_cache_dir)
    random_state = recipe.config.random_state
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        timings[stage] = round(time.perf_counter() - clock, 3)
        clock = time.perf_counter()

    source = store
    train_ids = store.samples.sample_id[rows]
    if recipe.copies:
        augmented_path = out / "augmented"
        augment_key = artifact_key(step="augment", store_sha256=store_fingerprint(store), rows_sha256=fingerprint(rows),
                                   copies=recipe.copies, severity=recipe.severity, geometry=recipe.geometry,
                                   clean_fraction=recipe.clean_fraction, combined_fraction=recipe.combined_fraction,
                                   random_state=random_state)
        source = cached(augmented_path, augment_key, lambda: augment_store(
            store, augmented_path, copies=recipe.copies, random_state=random_state, severity=recipe.severity,
            geometry=recipe.geometry, clean_fraction=recipe.clean_fraction,
            combined_fraction=recipe.combined_fraction, rows=rows, resume=not is_store(augmented_path),
            progress=progress), open_store)
        parents = np.asarray(source.parent_id)
        train_ids = source.samples.sample_id[np.isin(source.samples.sample_id, train_ids) | np.isin(parents,
                                                                                                   train_ids)]
    lap("augment")
    label_path = out / "labels.parquet"
    labels = label_rows(source, np.flatnonzero(source.ok & np.isin(source.samples.sample_id, train_ids)),
                        recipe.labeller, random_state, label_path)
    lap("label")
    logger.info("recipe: %d labelled samples (%d copies per face) from %s", int(labels.ok.sum()), recipe.copies,
                store.root)
    from fiqa.train.features import feature_inputs

    keep = np.flatnonzero(source.ok & np.isin(source.samples.sample_id, labels.sample_id[labels.ok]))
    if recipe.shape in FEATURE_HEADS:  # the store's own features when it has them, else the cache filled once
        feature_inputs(source, keep, columns=input_columns(recipe.shape), cache_dir=feature_cache,
                       progress=progress)
    lap("features")
    # a checkpoint is resumed only when it was made from these labels and settings; else training starts over (the
    # key is recorded first: the folder then holds this run, finished or interrupted, and a re-run resumes it)
    model_dir = out / "model"
    model_key = artifact_key(step="train", store_sha256=store_fingerprint(source),
                             labels_sha256=file_sha256(label_path), shape=recipe.shape, config=asdict(recipe.config))
    resume = read_key(model_dir) == model_key
    if not resume:
        record_key(model_dir, model_key)
    trained = train_regressor(source, labels, model_dir, shape=recipe.shape, config=recipe.config,
                              feature_cache_dir=feature_cache, resume=resume)
    lap("train and export")
    write_json(out / "recipe.json", {"recipe": recipe.to_dict(), "store": str(store.root), "n_rows": int(len(rows)),
                                     "n_labelled": int(labels.ok.sum()), "seconds": timings,
                                     "model": str(trained.model_path), **provenance()})
    return trained
