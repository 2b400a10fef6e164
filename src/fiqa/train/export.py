"""Export a trained, calibrated regressor as ONNX: aligned 112x112 face in, quality out.

``model.onnx``: one graph. Input ``data``: float32 (batch, 3, 112, 112), the recogniser's input (RGB, 0..255, see
the ``preprocess`` metadata entry). Outputs: ``quality`` (batch,), calibrated 0..100, and ``raw_score`` (batch,),
the regressor's uncalibrated output on the 0-100 training-target scale. For the feature heads (``"taps"``,
``"head"``) the recogniser's feature graph (:mod:`fiqa.embed.features`) and the head are joined into this graph,
and the head alone is also written as ``head.onnx`` (input ``features``; a few hundred KiB, what a package ships:
``fiqa.score`` joins it with the verified recogniser file at load time). ``metadata_props`` hold JSON strings:
``fiqa_version``, ``preprocess``, ``shape``, ``label_method``, ``label_range``, ``calibration``, ``features``,
``training``. Both files are written atomically (a temporary file renamed into place), each with its SHA-256 beside
it (``model.onnx.sha256``, ``head.onnx.sha256``): scoring refuses a model file that differs from it.
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from fiqa import __version__
from fiqa.core.atomic import atomic_path
from fiqa.core.errors import InvalidParameterError
from fiqa.embed.features import (
    FEATURES_NAME,
    SFACE_TAPS,
    FeatureSpec,
    compose,
    feature_graph,
)
from fiqa.embed.quality_model import INPUT_NAME, OUTPUT_NAMES, write_digest
from fiqa.train.models import FEATURE_HEADS, CalibratedRegressor
from fiqa.train.parity import ParityReport, check_head_parity, check_parity, synthetic_crops

logger = logging.getLogger(__name__)

def _torch_to_onnx(model: CalibratedRegressor, example: torch.Tensor, input_name: str, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    model.eval()
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is deprecated; it needs no extra deps
        warnings.simplefilter("ignore")
        # the stubs say path-only; the TorchScript exporter (dynamo=False) also writes to a binary file object
        torch.onnx.export(model, (example,), buffer,  # type: ignore[arg-type]
                          dynamo=False, opset_version=opset, input_names=[input_name],
                          output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: {0: "batch"} for name in (input_name, *OUTPUT_NAMES)})
    return onnx.load_from_string(buffer.getvalue())


HEAD_NAME = "head.onnx"


def _save(model: onnx.ModelProto, path: Path) -> None:
    """Write ``model`` to ``path`` and its SHA-256 to ``path.sha256`` (what scoring checks the file against)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        onnx.save(model, tmp)
        # before the model is renamed into place: a kill between the two leaves a pair that is refused, never trusted
        write_digest(path, tmp.read_bytes())


def export_onnx(model: CalibratedRegressor, path: str | Path, *, shape: str, metadata: Mapping[str, Any],
                spec: FeatureSpec = SFACE_TAPS, check_crops: np.ndarray | None = None,
                check_features: np.ndarray | None = None) -> Path:
    """Write ``model`` as one ONNX file (and, for a feature head, ``head.onnx`` beside it) and check it.

    Parameters
    ----------
    model : CalibratedRegressor
        For a feature head (``"taps"``, ``"head"``) its regressor reads ``spec``'s features; otherwise crops.
    path : path
        The ``.onnx`` file to write.
    shape : {"taps", "head", "mobilefacenet"}
    metadata : mapping
        Entries for ``metadata_props`` (values JSON-encoded unless they are strings).
    spec : FeatureSpec
    check_crops : ndarray of shape (B, 112, 112, 3), uint8 BGR, optional
        When given, ONNX Runtime's calibrated scores and raw scores on these crops must equal PyTorch's within
        what float32 rounding allows for each crop (:func:`fiqa.train.parity.check_parity`, docs/numerics.md),
        else ``ModelFileError`` naming the file.
    check_features : ndarray of shape (B, spec.dim), optional
        Feature heads only, for checking without images (e.g. the features a store holds): ``head.onnx`` must give
        PyTorch's scores on these vectors within rounding (:func:`fiqa.train.parity.check_head_parity`), and,
        unless ``check_crops`` is given, the merged file must give PyTorch's scores on the feature graph's
        features of four seeded noise crops (:func:`fiqa.train.parity.synthetic_crops`): that checks the join of
        the head with the recogniser, whose file is the verified one the features were made with.

    Returns
    -------
    Path
    """
    path = Path(path)
    if check_features is not None and shape not in FEATURE_HEADS:
        raise InvalidParameterError("export_onnx", "check_features", f"None for shape {shape!r} (it reads crops)",
                                    "an array")
    trunk = feature_graph(spec)
    opset = next(o.version for o in trunk.opset_import if o.domain in ("", "ai.onnx"))
    entries = {"fiqa_version": __version__, "preprocess": spec.spec.to_dict(), "shape": shape,
               "features": spec.to_dict() if shape in FEATURE_HEADS else None, **metadata}
    props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()}
    if shape in FEATURE_HEADS:
        head = _torch_to_onnx(model, torch.zeros(2, spec.dim), FEATURES_NAME, opset)
        head.graph.name = f"fiqa-{shape}-head"
        onnx.helper.set_model_props(head, props)
        onnx.checker.check_model(head, full_check=True)
        _save(head, path.with_name(HEAD_NAME))
        merged = compose(head, spec)
    else:
        merged = _torch_to_onnx(model, torch.zeros(2, 3, 112, 112), INPUT_NAME, opset)
    merged.graph.name = f"fiqa-{shape}"
    onnx.helper.set_model_props(merged, props)
    onnx.checker.check_model(merged, full_check=True)
    _save(merged, path)
    if check_features is not None:
        _log_parity(check_head_parity(model, path.with_name(HEAD_NAME), check_features),
                    f"{len(check_features)} faces' stored features (head.onnx)")
        if check_crops is None:
            crops = synthetic_crops()
            _log_parity(check_parity(model, path, crops, shape=shape, spec=spec),
                        f"{len(crops)} noise crops (the head joined with the recogniser)")
    if check_crops is not None:
        _log_parity(check_parity(model, path, check_crops, shape=shape, spec=spec), f"{len(check_crops)} crops")
    return path


def _log_parity(report: ParityReport, what: str) -> None:
    logger.info("ONNX parity on %s: largest quality difference %.2e points (rounding allows %.2e to %.2e per face), "
                "raw score %.2e (allows %.2e to %.2e), Spearman %.4f", what, report.max_quality_difference,
                float(np.min(report.quality_bound)), float(np.max(report.quality_bound)),
                float(np.max(np.abs(report.raw_onnx - report.raw_torch))), float(np.min(report.raw_bound)),
                float(np.max(report.raw_bound)), report.spearman)
