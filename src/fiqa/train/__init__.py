"""Train a quality regressor on pseudo-labels and export it as one ONNX file.

>>> from fiqa.train import train_regressor, TrainConfig
>>> trained = train_regressor("runs/lfw.store", "runs/sdd.parquet", "runs/sdd-model", config=TrainConfig(epochs=20))
>>> trained.model_path, trained.result.spearman
"""
from __future__ import annotations

from .calibration import QuantileCalibration, fit_quantile_calibration
from .export import export_onnx, read_metadata
from .losses import huber_loss
from .loop import TrainConfig, TrainResult
from .models import REGRESSORS
from .regressor import TrainedModel, train_regressor


def list_regressors() -> list[str]:
    """Names of the regressor shapes ``train_regressor(shape=...)`` accepts."""
    return REGRESSORS.names()


__all__ = ["QuantileCalibration", "TrainConfig", "TrainResult", "TrainedModel", "export_onnx",
           "fit_quantile_calibration", "huber_loss", "list_regressors", "read_metadata", "train_regressor"]
