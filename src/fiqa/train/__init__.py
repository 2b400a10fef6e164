"""Train a quality regressor on pseudo-labels and export it as ONNX.

>>> from fiqa.train import train_regressor, TrainConfig
>>> trained = train_regressor("runs/lfw.store", "runs/sdd.parquet", "runs/sdd-model",
...                           config=TrainConfig(epochs=20))          # doctest: +SKIP
>>> trained.model_path, trained.result.spearman                     # doctest: +SKIP

Names are imported lazily: ``fiqa.train.TrainConfig`` (and the CLI's defaults) load no PyTorch; the loop, the
models and export do.
"""
from __future__ import annotations

from fiqa.core.lazy import lazy_exports

_EXPORTS = {
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

__all__ = [*_EXPORTS, "list_regressors"]


def list_regressors() -> list[str]:
    """Names of the regressor shapes ``train_regressor(shape=...)`` accepts."""
    from fiqa.train.models import REGRESSORS

    return REGRESSORS.names()


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
