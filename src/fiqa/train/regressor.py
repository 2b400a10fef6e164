"""``train_regressor``: labels + store -> a calibrated quality model in one ONNX file."""
from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fiqa.core.atomic import write_json
from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.identities import save_split
from fiqa.core.outputs import OutputLock, check_not_in_inputs
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, QualityTable
from fiqa.embed.features import SFACE_TAPS, FeatureSpec
from fiqa.io.table import load_quality
from fiqa.train.calibration import QuantileCalibration, fit_quantile_calibration
from fiqa.train.data import Targets, make_targets
from fiqa.train.export import export_onnx
from fiqa.train.features import StoreFeatureInputs, cached_features, store_features
from fiqa.train.loop import (
    CHECKPOINT_NAME,
    TensorPairs,
    TrainConfig,
    TrainResult,
    distributed_context,
    fit,
    predict,
    training_device,
)
from fiqa.train.models import FEATURE_HEADS, REGRESSORS, CalibratedRegressor

logger = logging.getLogger(__name__)

MODEL_NAME = "model.onnx"


@dataclass(frozen=True)
class TrainedModel:
    """What :func:`train_regressor` produced.

    Attributes
    ----------
    model_path : Path
        The exported ONNX file (``<out_dir>/model.onnx``); None on DDP ranks other than 0.
    out_dir : Path
        Also holds ``checkpoint.pt``, ``history.json``, ``training.png``, ``metrics.json``, ``split.json``.
    result : TrainResult
        History, best epoch, validation Spearman and Pearson.
    calibration : QuantileCalibration
    """

    model_path: Path | None
    out_dir: Path
    result: TrainResult
    calibration: QuantileCalibration


class _CropInputs:
    """Lazy network inputs for a full-network regressor: a row -> its preprocessed crop (3, 112, 112) float32; an
    array of rows (a batch, :class:`fiqa.train.loop.TensorPairs`) -> their crops (k, 3, 112, 112)."""

    def __init__(self, store: EmbeddingStore) -> None:
        self.store = store

    def __getitem__(self, rows: int | np.ndarray) -> np.ndarray:
        from fiqa.augment.crops import load_crops

        crops = SFACE_TAPS.spec.apply(load_crops(self.store, np.atleast_1d(np.asarray(rows, np.int64))))
        return crops[0] if np.ndim(rows) == 0 else crops


def _fingerprint(store: EmbeddingStore, targets: Targets) -> str:
    """SHA-256 of what training reads: the rows' sample ids and locations, their targets and the split."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(store.samples.sample_id[targets.rows], np.int64).tobytes())
    digest.update("\n".join(store.samples.location[targets.rows].astype(str)).encode("utf-8", "surrogateescape"))
    if store.recipe is not None:
        digest.update("\n".join(np.asarray(store.recipe)[targets.rows].astype(str)).encode())
    digest.update(np.ascontiguousarray(targets.targets, np.float32).tobytes())
    digest.update(np.ascontiguousarray(targets.train, np.int64).tobytes())
    return digest.hexdigest()


def _describe(params: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able model parameters (a feature specification by its dictionary)."""
    return {k: v.to_dict() if isinstance(v, FeatureSpec) else v if isinstance(v, (int, float, str, bool)) or v is None
            else str(v) for k, v in params.items()}


def train_regressor(store: EmbeddingStore | str | Path, labels: QualityTable | str | Path, out_dir: str | Path, *,
                    shape: str = "head", model_params: Mapping[str, Any] | None = None,
                    config: TrainConfig | None = None, validation_fraction: float = 0.2,
                    feature_cache_dir: str | Path | None = None, resume: bool = True, force: bool = False,
                    device: str = "auto") -> TrainedModel:
    """Train a Huber-loss quality regressor on ``labels`` and export it as ``<out_dir>/model.onnx``.

    Parameters
    ----------
    store : EmbeddingStore or path
        The store the labels were computed on (its crops, or the recogniser features of its crops, are the input).
    labels : QualityTable or path
        Any labels table (higher is better); only its ok rows are used. To keep identities apart for
        evaluation, pass only the training identities' labels.
    out_dir : path
    shape : {"taps", "head", "mobilefacenet"}
        ``"head"`` (default): small head on SFace's last stage, pooled, from the cached quality features (CPU,
        minutes); ``"taps"``: the same on every stage and the embedding's norm; ``"mobilefacenet"``: full network.
    model_params : mapping, optional
        Keyword arguments of the regressor class (e.g. ``hidden``, ``dropout``, ``backbone_checkpoint``).
    config : TrainConfig, optional
    validation_fraction : float in (0, 1)
        Fraction of the identities held out for validation / early stopping.
    feature_cache_dir : path, optional
        Where the feature heads cache quality features (default ``<store>/features``). Not used when the store
        holds the columns the head reads (``fiqa embed --features``): those are read from the store.
    resume : bool
        Continue from ``<out_dir>/checkpoint.pt`` when it exists.
    force : bool, default=False
        Train on labels that record another store's fingerprint, with a logged warning
        (:func:`fiqa.store.check_table_matches`); refused otherwise.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where torch trains (:func:`fiqa.train.loop.training_device`); the exported ONNX file is the same.

    Returns
    -------
    TrainedModel
    """
    config = config if config is not None else TrainConfig()
    if not isinstance(config, TrainConfig):
        raise InvalidParameterError("train_regressor", "config", "a TrainConfig", config)
    REGRESSORS.entry(shape)  # an unknown shape fails here, with suggestions, before any data is read
    training_device(device)  # a device this torch cannot use fails here, before anything is written
    check_not_in_inputs(out_dir, [store, labels])  # never into the store or over the labels, as the command
    rank, _ = distributed_context()
    # the lock fiqa embed takes on its store: a second run into the same folder fails at once (rank 0 writes it)
    with OutputLock(out_dir) if rank == 0 else contextlib.nullcontext():
        return _train_regressor(store, labels, Path(out_dir), shape=shape, model_params=model_params, config=config,
                                validation_fraction=validation_fraction, feature_cache_dir=feature_cache_dir,
                                resume=resume, force=force, device=device)


def _train_regressor(store: EmbeddingStore | str | Path, labels: QualityTable | str | Path, out_dir: Path, *,
                     shape: str, model_params: Mapping[str, Any] | None, config: TrainConfig,
                     validation_fraction: float, feature_cache_dir: str | Path | None, resume: bool, force: bool,
                     device: str) -> TrainedModel:
    """:func:`train_regressor` once its arguments are checked and the output folder is locked."""
    from fiqa.store import open_store

    store = store if isinstance(store, EmbeddingStore) else open_store(store)
    labels = labels if isinstance(labels, QualityTable) else load_quality(labels)
    out_dir = Path(out_dir)
    targets = make_targets(store, labels, validation_fraction=validation_fraction, random_state=config.random_state,
                           force=force)
    logger.info("training %s on %d samples (%d train, %d validation) of %s labels", shape, len(targets.rows),
                len(targets.train), len(targets.validation), labels.method)

    params = dict(model_params or {})
    rank, _ = distributed_context()
    if shape in FEATURE_HEADS:
        params.setdefault("spec", SFACE_TAPS)
    torch.manual_seed(config.random_state)
    regressor = REGRESSORS.create(shape, **params)
    columns = _read_columns(regressor, params["spec"]) if shape in FEATURE_HEADS else None
    inputs = _network_inputs(store, targets.rows, shape, params, columns, feature_cache_dir)
    train_set = TensorPairs(inputs, targets.rows[targets.train], targets.targets[targets.train])
    validation_set = TensorPairs(inputs, targets.rows[targets.validation], targets.targets[targets.validation])
    result = fit(regressor, train_set, validation_set, config, out_dir, resume=resume, device=device,
                 extra_state={"shape": shape, "model_params": _describe(params),
                              "data_sha256": _fingerprint(store, targets)})

    calibration = fit_quantile_calibration(predict(regressor, train_set), targets.labels[targets.train])
    if rank != 0:
        return TrainedModel(None, out_dir, result, calibration)
    training = {"best_epoch": result.best_epoch, "validation_spearman": result.spearman,
                "validation_pearson": result.pearson, "best_validation_loss": result.best_validation_loss,
                "n_train": int(len(targets.train)), "n_validation": int(len(targets.validation)),
                "split": targets.split.describe(), "config": asdict(config), "store": str(store.root),
                "model_params": _describe(params), "inputs": _inputs_source(inputs)}
    try:
        model_path = _write_model(regressor, calibration, store, targets, labels.method, out_dir, inputs,
                                  shape=shape, spec=params.get("spec", SFACE_TAPS), training=training,
                                  validation_fraction=validation_fraction)
    except Exception as exc:  # the trained weights are in the checkpoint: say so, and how to export them
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFileError(f"{out_dir / MODEL_NAME}: training finished but the export failed ({first}); the "
                             f"trained weights are kept in {out_dir / CHECKPOINT_NAME}: run the same command again "
                             f"to export them without training") from exc
    logger.info("validation Spearman %.3f, Pearson %.3f (best epoch %d); model written to %s",
                result.spearman, result.pearson, result.best_epoch, model_path)
    return TrainedModel(model_path, out_dir, result, calibration)


def input_columns(shape: str, model_params: Mapping[str, Any] | None = None) -> np.ndarray | None:
    """Positions of the quality feature vector that the regressor ``shape`` made with ``model_params`` reads.

    Returns
    -------
    ndarray of shape (k,), int64, or None
        None for a full network (it reads crops). The global random state is left as it was.
    """
    if shape not in FEATURE_HEADS:
        return None
    params = dict(model_params or {})
    with torch.random.fork_rng(devices=[]):
        return _read_columns(REGRESSORS.create(shape, **params), params.get("spec", SFACE_TAPS))


def _read_columns(regressor: torch.nn.Module, spec: FeatureSpec) -> np.ndarray | None:
    """The feature positions a feature head on ``spec`` reads (its ``columns``, and the log norm with a norm
    path)."""
    columns = getattr(regressor, "columns", None)
    if not isinstance(columns, torch.Tensor):
        return None
    index = columns.numpy().astype(np.int64)
    if getattr(regressor, "norm_path", False):
        index = np.union1d(index, [spec.dim - 1])
    return index


def _network_inputs(store: EmbeddingStore, rows: np.ndarray, shape: str, params: dict[str, Any],
                    columns: np.ndarray | None, feature_cache_dir: str | Path | None) -> Any:
    """What the regressor reads per store row: for a feature head (``params["spec"]``), the store's own features
    when they hold ``columns`` (no second recogniser pass), else cached quality features; preprocessed crops for a
    full network."""
    if shape not in FEATURE_HEADS:
        return _CropInputs(store)
    spec = params["spec"]
    stored = store_features(store, spec, columns)
    if stored is not None:
        logger.info("reading the features stored in %s: no second %s pass", store.root, spec.recogniser)
        return stored
    rank, world_size = distributed_context()
    if rank == 0:  # one process fills the cache; the others wait, then only read it
        cached_features(store, rows, spec=spec, cache_dir=feature_cache_dir)
    if world_size > 1:
        torch.distributed.barrier()
    return cached_features(store, rows, spec=spec, cache_dir=feature_cache_dir, progress=False)


def _inputs_source(inputs: Any) -> str:
    """Where the regressor's inputs came from, as ``metrics.json`` records it."""
    if isinstance(inputs, StoreFeatureInputs):
        return "store features"
    return "crops" if isinstance(inputs, _CropInputs) else "feature cache"


def _write_model(regressor: torch.nn.Module, calibration: QuantileCalibration, store: EmbeddingStore,
                 targets: Targets, label_method: str, out_dir: Path, inputs: Any, *, shape: str, spec: FeatureSpec,
                 training: dict[str, Any], validation_fraction: float) -> Path:
    """Export the calibrated model to ONNX, checked on 16 training faces (the gate also reports Spearman) as
    training read them: a feature head on their features (the store's or the cache's; no image is read), a full
    network on their crops; write the split and the metrics."""
    from fiqa.augment.crops import load_crops

    model = CalibratedRegressor(regressor, calibration)
    check_rows = targets.rows[targets.train][:16]
    checks = ({"check_features": np.asarray(inputs[check_rows], np.float32)} if shape in FEATURE_HEADS
              else {"check_crops": load_crops(store, check_rows)})
    model_path = export_onnx(model, out_dir / MODEL_NAME, shape=shape, spec=spec, **checks, metadata={
        "label_method": label_method, "label_range": list(targets.label_range),
        "calibration": calibration.to_dict(), "training": training})
    save_split(targets.split, out_dir / "split.json")
    write_json(out_dir / "metrics.json", {**training, "label_method": label_method,
                                          **provenance(shape=shape, validation_fraction=validation_fraction)})
    return model_path
