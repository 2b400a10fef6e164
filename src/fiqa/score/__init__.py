"""Score face images with a quality model: ``create_scorer().score(images)`` (the shipped default model),
``create_scorer("model.onnx")`` (a trained one). ``list_models()`` and ``model_card(name)`` describe the shipped
models; :mod:`fiqa.embed.quality_model` is the model-file contract training writes to. Every quality method (a
learned model, a training-free method) is scored by one path: ``score_store(method, store)`` and
``score_images(method, images, pipeline)`` (:mod:`fiqa.score.method`).
"""
from __future__ import annotations

from fiqa.embed.quality_model import (
    INPUT_NAME,
    OUTPUT_NAMES,
    load_quality_model,
    read_metadata,
)
from fiqa.score.method import QualityMethod, score_images, score_store
from fiqa.score.packaged import (
    DEFAULT_MODEL,
    format_card,
    list_models,
    load_model_folder,
    model_card,
)
from fiqa.score.scorer import Scorer, create_scorer

__all__ = ["DEFAULT_MODEL", "INPUT_NAME", "OUTPUT_NAMES", "QualityMethod", "Scorer", "create_scorer", "format_card",
           "list_models", "load_model_folder", "load_quality_model", "model_card", "read_metadata", "score_images",
           "score_store"]
