"""The quality-model file contract, shared by training (which writes the files) and scoring (which reads them).

A trained quality model is an ONNX file in one of two forms, both with the same outputs and metadata:

``full``
    One graph from an aligned face to quality. Input ``data``: float32 (batch, 3, 112, 112), the recogniser's
    input (see the ``preprocess`` metadata entry).
``head``
    Only the small trained part. Input ``features``: float32 (batch, ``FeatureSpec.dim``), the pooled recogniser
    features of :mod:`fiqa.embed.features`. The ``features`` metadata entry (``FeatureSpec.to_dict()``) names
    the recogniser; :func:`load_quality_model` joins the two (:func:`fiqa.embed.features.compose`) after checking
    the recogniser file's SHA-256, so a head of a few hundred KiB ships without the recogniser's weights.

Outputs: ``quality`` (batch,), calibrated 0..100 (higher is better), and ``raw_score`` (batch,), the regressor's
uncalibrated output. ``metadata_props`` hold JSON strings: ``fiqa_version``, ``preprocess``, ``label_method``,
``calibration``, ``training``, and for a head ``features``; training may add more (``shape``, ``recogniser``,
``label_range``). Nothing here imports PyTorch.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import onnx

from fiqa.core.errors import ModelFileError
from fiqa.embed.spec import PreprocessSpec

INPUT_NAME = "data"
"""Input of a full-graph model: aligned faces, float32 (batch, 3, 112, 112)."""
OUTPUT_NAMES = ("quality", "raw_score")
"""Outputs of every quality model, in this order: calibrated 0-100 quality and the uncalibrated score."""


def model_metadata(model: onnx.ModelProto, where: str = "<model>") -> dict[str, Any]:
    """The ``metadata_props`` of a quality model, JSON values decoded.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        ``fiqa_version`` or ``preprocess`` is missing (the message names ``where``).
    """
    meta: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            meta[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            meta[prop.key] = prop.value
    if "fiqa_version" not in meta or "preprocess" not in meta:
        raise ModelFileError(f"{where}: not a fiqa quality model (no fiqa_version/preprocess metadata)")
    return meta


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ModelFileError(f"{where}: not an ONNX model ({exc})") from None


def _read(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file does not exist")
    return path.read_bytes()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata_props`` of a quality model file (either form), JSON values decoded."""
    return model_metadata(_parse(_read(path), str(path)), str(path))


def model_form(model: onnx.ModelProto, where: str = "<model>") -> str:
    """``"full"`` (input ``data``) or ``"head"`` (input ``features``); refuses anything else."""
    from fiqa.embed.features import FEATURES_NAME

    inputs = [value.name for value in model.graph.input]
    outputs = {value.name for value in model.graph.output}
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ModelFileError(f"{where}: a quality model has outputs {list(OUTPUT_NAMES)}; {missing} missing")
    if inputs == [INPUT_NAME]:
        return "full"
    if inputs == [FEATURES_NAME]:
        return "head"
    raise ModelFileError(f"{where}: a quality model has one input, {INPUT_NAME!r} (a full graph) or "
                         f"{FEATURES_NAME!r} (a head); this one has {inputs}")


@lru_cache(maxsize=2)
def _composed(head_bytes: bytes, where: str) -> bytes:
    """The full graph of a head (seconds: the recogniser graph is rebuilt and merged); cached per head."""
    from fiqa.embed.features import FeatureSpec, compose

    head = _parse(head_bytes, where)
    meta = model_metadata(head, where)
    if "features" not in meta:
        raise ModelFileError(f"{where}: a quality head needs a 'features' metadata entry (FeatureSpec.to_dict())")
    try:
        spec = FeatureSpec.from_dict(meta["features"])
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    if PreprocessSpec.from_dict(meta["preprocess"]) != spec.spec:
        raise ModelFileError(f"{where}: its 'preprocess' metadata {meta['preprocess']} differs from its "
                             f"recogniser's preprocessing {spec.spec.to_dict()}")
    try:
        return compose(head, spec).SerializeToString()
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}") from None


def quality_model_from_bytes(data: bytes, where: str = "<model>") -> tuple[bytes, dict[str, Any]]:
    """:func:`load_quality_model` on the bytes of a model file; ``where`` names it in error messages."""
    model = _parse(data, where)
    meta = model_metadata(model, where)
    if model_form(model, where) == "full":
        return data, meta
    return _composed(data, where), meta


def load_quality_model(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """Load a quality model file of either form as one runnable graph.

    Parameters
    ----------
    path : path
        A full graph (input ``data``), used as it is, or a head (input ``features``), composed with the
        recogniser its ``features`` metadata names.

    Returns
    -------
    model : bytes
        A serialised ONNX graph from aligned faces to ``quality`` and ``raw_score`` (for ``onnxruntime``).
    metadata : dict
        The file's ``metadata_props``, JSON values decoded.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The file is missing, not ONNX, not a fiqa quality model, or its recogniser file is missing or differs
        from the one it was trained on (the message names the file).
    """
    return quality_model_from_bytes(_read(path), str(path))
