"""Export a trained, calibrated regressor to ONE ONNX file: aligned 112x112 face in, quality out.

Graph input ``data``: float32 (batch, 3, 112, 112), the recogniser's input (RGB, 0..255, see the ``preprocess``
metadata entry). Outputs: ``quality`` (batch,), calibrated 0..100, and ``raw_score`` (batch,), the regressor's
uncalibrated output on the 0-100 training-target scale. For the ``"head"`` shape, the recogniser sub-graph up to
its feature map and the head are merged into one graph. ``metadata_props`` hold JSON strings: ``fiqa_version``,
``preprocess``, ``shape``, ``label_method``, ``label_range``, ``calibration``, ``recogniser``, ``training``.
"""
from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import compose

from .. import __version__
from ..errors import ModelFileError
from ..score.model_file import INPUT_NAME, OUTPUT_NAMES, read_metadata  # noqa: F401 (read_metadata: re-exported)
from .features import SFACE_FEATURES, FeatureExtractor, Recogniser, recogniser_trunk
from .models import CalibratedRegressor

logger = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-4
"""Largest allowed ``|onnx - torch| / max(1, |torch|)``: outputs live on a 0-100 scale, where float32 sums in a
different order already differ by ~1e-5 absolute."""


def _torch_to_onnx(model: CalibratedRegressor, example: torch.Tensor, input_name: str, opset: int) -> onnx.ModelProto:
    buffer = io.BytesIO()
    model.eval()
    with warnings.catch_warnings():  # the TorchScript exporter warns that it is deprecated; it needs no extra deps
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opset, input_names=[input_name],
                          output_names=list(OUTPUT_NAMES),
                          dynamic_axes={name: {0: "batch"} for name in (input_name, *OUTPUT_NAMES)})
    return onnx.load_from_string(buffer.getvalue())


def export_onnx(model: CalibratedRegressor, path: str | Path, *, shape: str, metadata: Mapping[str, Any],
                recogniser: Recogniser = SFACE_FEATURES, check_crops: np.ndarray | None = None) -> Path:
    """Write ``model`` as one ONNX file and check it.

    Parameters
    ----------
    model : CalibratedRegressor
        For ``shape="head"`` its regressor reads ``recogniser``'s feature map; otherwise aligned crops.
    path : path
        The ``.onnx`` file to write.
    shape : {"head", "mobilefacenet"}
    metadata : mapping
        Entries for ``metadata_props`` (values JSON-encoded unless they are strings).
    recogniser : Recogniser
    check_crops : ndarray of shape (B, 112, 112, 3), uint8 BGR, optional
        When given, ONNX Runtime's outputs on these crops must equal PyTorch's within 1e-4, else
        ``ModelFileError``.

    Returns
    -------
    Path
    """
    path = Path(path)
    trunk = recogniser_trunk(recogniser)
    opset = next(o.version for o in trunk.opset_import if o.domain in ("", "ai.onnx"))
    if shape == "head":
        head = _torch_to_onnx(model, torch.zeros(2, *recogniser.feature_shape), "features", opset)
        trunk.ir_version = head.ir_version = max(trunk.ir_version, head.ir_version)
        merged = compose.merge_models(trunk, head, prefix2="head/",
                                      io_map=[(recogniser.feature_name, "features")])
        for output, name in zip(merged.graph.output, OUTPUT_NAMES):  # drop the "head/" prefix on the outputs
            for node in merged.graph.node:
                node.input[:] = [name if i == output.name else i for i in node.input]
                node.output[:] = [name if o == output.name else o for o in node.output]
            output.name = name
    else:
        merged = _torch_to_onnx(model, torch.zeros(2, 3, 112, 112), INPUT_NAME, opset)
    merged.graph.name = f"fiqa-{shape}"
    entries = {"fiqa_version": __version__, "preprocess": recogniser.spec.to_dict(), "shape": shape,
               "recogniser": {"name": recogniser.name, "sha256": recogniser.sha256,
                              "feature_name": recogniser.feature_name} if shape == "head" else None,
               **metadata}
    onnx.helper.set_model_props(merged, {k: v if isinstance(v, str) else json.dumps(v) for k, v in entries.items()})
    onnx.checker.check_model(merged, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(merged, path)
    if check_crops is not None:
        difference = parity_error(model, path, check_crops, shape=shape, recogniser=recogniser)
        if not difference <= PARITY_TOLERANCE:
            raise ModelFileError(f"{path}: ONNX Runtime output differs from PyTorch's by {difference:.3g} relative "
                                 f"(tolerance {PARITY_TOLERANCE})")
        logger.info("ONNX parity on %d crops: max |difference| %.2e", len(check_crops), difference)
    return path


@torch.no_grad()
def parity_error(model: CalibratedRegressor, path: str | Path, crops: np.ndarray, *, shape: str,
                 recogniser: Recogniser = SFACE_FEATURES) -> float:
    """Largest difference between ONNX Runtime's and PyTorch's (quality, raw_score) on ``crops``, relative to
    the output's magnitude: ``max |onnx - torch| / max(1, |torch|)``.

    PyTorch's input is the recogniser trunk's feature map (``shape="head"``) or the preprocessed crops.
    """
    model.eval()
    tensor = recogniser.spec.apply(crops)
    torch_input = FeatureExtractor(recogniser)(crops) if shape == "head" else tensor
    expected = [t.numpy() for t in model(torch.from_numpy(torch_input))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: tensor})
    return float(max(np.max(np.abs(e - g) / np.maximum(1.0, np.abs(e))) for e, g in zip(expected, got)))
