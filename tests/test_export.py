"""ONNX export: one graph, dynamic batch, checker-valid, ONNX Runtime equals PyTorch within 1e-4 (relative),
metadata."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from fiqa.core.errors import ModelFileError
from fiqa.embed.features import SFACE_TAPS, FeatureExtractor
from fiqa.train import export_onnx, fit_quantile_calibration, read_metadata
from fiqa.train.export import parity_error
from fiqa.train.models import (
    CalibratedRegressor,
    MobileFaceNetRegressor,
    QualityHead,
    TapsHead,
)


def _calibration():
    rng = np.random.default_rng(0)
    return fit_quantile_calibration(rng.normal(50, 10, 400), rng.uniform(0, 100, 400), n_knots=33)


def _crops(n=5, random_state=0):
    return np.random.default_rng(random_state).integers(0, 256, size=(n, 112, 112, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", ["taps", "head", "mobilefacenet"])
def test_exported_model_matches_pytorch_and_has_dynamic_batch(tmp_path, shape):
    torch.manual_seed(0)
    regressor = {"taps": TapsHead, "head": QualityHead, "mobilefacenet": MobileFaceNetRegressor}[shape]()
    regressor.init_output_bias(50.0)
    model = CalibratedRegressor(regressor, _calibration()).eval()
    crops = _crops()
    path = export_onnx(model, tmp_path / "m.onnx", shape=shape, metadata={"label_method": "sdd"},
                       check_crops=crops)
    onnx.checker.check_model(onnx.load(path), full_check=True)
    assert parity_error(model, path, crops, shape=shape) <= 1e-4

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data"]
    assert [o.name for o in session.get_outputs()] == ["quality", "raw_score"]
    tensor = SFACE_TAPS.spec.apply(crops)
    quality, raw = session.run(None, {"data": tensor})
    single = np.concatenate([session.run(None, {"data": tensor[i:i + 1]})[0] for i in range(len(crops))])
    np.testing.assert_allclose(single, quality, atol=1e-4)
    np.testing.assert_allclose(quality, _calibration()(raw), atol=1e-3)  # in-graph calibration = numpy map
    meta = read_metadata(path)
    assert meta["shape"] == shape and meta["label_method"] == "sdd"
    assert meta["preprocess"] == SFACE_TAPS.spec.to_dict()
    if shape != "mobilefacenet":
        assert meta["features"]["sha256"] == SFACE_TAPS.sha256
        # the small head file: input ``features``, the same outputs on the recogniser's features
        head = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in head.get_inputs()] == ["features"]
        from_head = head.run(None, {"features": FeatureExtractor()(crops)})
        np.testing.assert_allclose(from_head[0], quality, rtol=1e-4, atol=1e-3)
        assert read_metadata(tmp_path / "head.onnx")["features"] == meta["features"]


def test_read_metadata_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_metadata(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        read_metadata(tmp_path / "bad.onnx")
