"""Train a quality regressor on pseudo-labels and export it as ONNX.

>>> from fiqa.train import train_regressor, TrainConfig
>>> trained = train_regressor("runs/lfw.store", "runs/sdd.parquet", "runs/sdd-model", config=TrainConfig(epochs=20))
>>> trained.model_path, trained.result.spearman

Names are imported lazily: ``fiqa.train.TrainConfig`` (and the CLI's defaults) load no PyTorch; the loop, the
models and export do.
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "QuantileCalibration": "fiqa.train.calibration",
    "fit_quantile_calibration": "fiqa.train.calibration",
    "TrainConfig": "fiqa.train.config",
    "export_onnx": "fiqa.train.export",
    "read_metadata": "fiqa.embed.quality_model",
    "huber_loss": "fiqa.train.losses",
    "TrainResult": "fiqa.train.loop",
    "TrainedModel": "fiqa.train.regressor",
    "train_regressor": "fiqa.train.regressor",
    "ModelRecipe": "fiqa.train.recipe",
    "DEFAULT_RECIPE": "fiqa.train.recipe",
    "train_recipe": "fiqa.train.recipe",
}

__all__ = [*_LAZY, "list_regressors"]


def list_regressors() -> list[str]:
    """Names of the regressor shapes ``train_regressor(shape=...)`` accepts."""
    from fiqa.train.models import REGRESSORS

    return REGRESSORS.names()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fiqa.train' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
