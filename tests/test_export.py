"""ONNX export: one graph, dynamic batch, checker-valid, ONNX Runtime equals PyTorch within float32 rounding (the
parity gate of fiqa.train.parity, which also refuses a wrong graph), metadata."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.embed.features import SFACE_TAPS, FeatureExtractor
from fiqa.train import export_onnx, fit_quantile_calibration, read_metadata
from fiqa.train.models import (
    CalibratedRegressor,
    MobileFaceNetRegressor,
    QualityHead,
    TapsHead,
)
from fiqa.train.parity import check_parity, parity_report
from tolerances import U32, gamma


def _calibration():
    rng = np.random.default_rng(0)
    return fit_quantile_calibration(rng.normal(50, 10, 400), rng.uniform(0, 100, 400), n_knots=33)


def _crops(n=5, random_state=0):
    return np.random.default_rng(random_state).integers(0, 256, size=(n, 112, 112, 3), dtype=np.uint8)


@pytest.mark.numerics
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
    report = parity_report(model, path, crops, shape=shape)
    assert report.failures() == []
    # the bound is a rounding bound, not a blanket: a graph that moves any score by one point (of 100) is refused
    assert 0 < report.quality_bound.max() < 1.0 and 0 < report.raw_bound.max() < 1.0

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data"]
    assert [o.name for o in session.get_outputs()] == ["quality", "raw_score"]
    tensor = SFACE_TAPS.spec.apply(crops)
    quality, raw = session.run(None, {"data": tensor})
    single = np.concatenate([session.run(None, {"data": tensor[i:i + 1]})[0] for i in range(len(crops))])
    # batch of 1 vs 5: other kernel blockings of the same graph, so the same rounding bound as ONNX vs PyTorch
    assert np.all(np.abs(single - quality) <= report.quality_bound)
    # in-graph calibration = numpy's float64 map of the float32 raw score: the graph's sum of K ramps rounds by
    # gamma_{K+1} of its terms (<= 100) plus u |r - s_k| |slope_k| per ramp start (2 u 100 max slope for r < 100)
    calibration = _calibration()
    slopes = calibration.segments()[2]
    allowed = gamma(len(slopes) + 1) * 100 + U32 * len(slopes) * 2 * 100 * slopes.max()
    np.testing.assert_allclose(quality, calibration(raw), rtol=0, atol=allowed)
    meta = read_metadata(path)
    assert meta["shape"] == shape and meta["label_method"] == "sdd"
    assert meta["preprocess"] == SFACE_TAPS.spec.to_dict()
    if shape != "mobilefacenet":
        assert meta["features"]["sha256"] == SFACE_TAPS.sha256
        # the small head file: input ``features``, the same outputs on the recogniser's features
        head = ort.InferenceSession(str(tmp_path / "head.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in head.get_inputs()] == ["features"]
        from_head = head.run(None, {"features": FeatureExtractor()(crops)})
        # the head alone on the separate feature graph's features: what the gate compares with PyTorch, so the
        # same per-face bound holds
        assert np.all(np.abs(from_head[0] - quality) <= report.quality_bound)
        assert read_metadata(tmp_path / "head.onnx")["features"] == meta["features"]


def test_read_metadata_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_metadata(tmp_path / "none.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="bad.onnx"):
        read_metadata(tmp_path / "bad.onnx")


def _honest_head(tmp_path):
    """A feature head exported with its parity check passed, the crops it was checked on, and the file."""
    torch.manual_seed(0)
    regressor = QualityHead()
    regressor.init_output_bias(50.0)
    model = CalibratedRegressor(regressor, _calibration()).eval()
    crops = _crops(8)
    path = export_onnx(model, tmp_path / "m.onnx", shape="head", metadata={}, check_crops=crops)
    return model, crops, path


def _mutate_weight(graph: onnx.GraphProto, prefix: str = "head/") -> None:
    """Negate the largest weight of the head's last layer (hidden -> 1); ``prefix``: the head's names in the
    graph (none in head.onnx)."""
    tensor = next(t for t in graph.initializer if t.name.startswith(prefix) and list(t.dims) in ([1, 128], [128, 1]))
    values = numpy_helper.to_array(tensor).copy()
    values.flat[np.argmax(np.abs(values))] *= -1
    tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))


def _drop_prelu(graph: onnx.GraphProto) -> None:
    """Remove the head's PReLU: its consumers read its input instead."""
    node = next(n for n in graph.node if n.op_type == "PRelu" and n.name.startswith("head/"))
    for other in graph.node:
        other.input[:] = [node.input[0] if name == node.output[0] else name for name in other.input]
    graph.node.remove(node)


def _swap_channels(graph: onnx.GraphProto) -> None:
    """Read the input's channels in reverse order (BGR for RGB), as a graph exported for the wrong order would."""
    graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), "swap/order"))
    for node in graph.node:
        node.input[:] = ["swap/data" if name == "data" else name for name in node.input]
    graph.node.insert(0, helper.make_node("Gather", ["data", "swap/order"], ["swap/data"], axis=1))


@pytest.mark.numerics
@pytest.mark.parametrize("mutate", [_mutate_weight, _drop_prelu, _swap_channels],
                         ids=["mutated-weight", "dropped-layer", "swapped-input-channels"])
def test_parity_gate_refuses_a_wrong_graph(tmp_path, mutate):
    model, crops, path = _honest_head(tmp_path)
    assert check_parity(model, path, crops, shape="head").failures() == []
    wrong = onnx.load(path)
    mutate(wrong.graph)
    onnx.checker.check_model(wrong, full_check=True)
    wrong_path = tmp_path / "wrong.onnx"
    onnx.save(wrong, wrong_path)
    with pytest.raises(ModelFileError, match=r"wrong\.onnx: ONNX Runtime's scores differ from PyTorch's by more than "
                                             r"float32 rounding allows") as caught:
        check_parity(model, wrong_path, crops, shape="head")
    assert "quality of face" in str(caught.value) or "raw_score of face" in str(caught.value)


def test_export_refuses_a_model_whose_graph_differs(tmp_path, monkeypatch):
    """export_onnx runs the gate on the file it wrote: a graph that computes something else is refused there."""
    import fiqa.train.export as export

    original = export.compose

    def compose_swapped(head, spec):
        merged = original(head, spec)
        _swap_channels(merged.graph)
        return merged

    monkeypatch.setattr(export, "compose", compose_swapped)
    torch.manual_seed(0)
    regressor = QualityHead()
    regressor.init_output_bias(50.0)
    model = CalibratedRegressor(regressor, _calibration()).eval()
    with pytest.raises(ModelFileError, match=r"m\.onnx: ONNX Runtime's scores differ"):
        export_onnx(model, tmp_path / "m.onnx", shape="head", metadata={}, check_crops=_crops(8))


@pytest.mark.numerics
def test_export_checks_a_feature_head_on_features_without_any_image(tmp_path, monkeypatch):
    """check_features: head.onnx against PyTorch on the given vectors (as a store holds them, float16), and the
    merged graph on noise crops; a head file or a join that computes something else is refused."""
    import fiqa.train.export as export
    from fiqa.train.parity import check_head_parity, head_parity_report

    torch.manual_seed(0)
    regressor = QualityHead()
    regressor.init_output_bias(50.0)
    model = CalibratedRegressor(regressor, _calibration()).eval()
    features = FeatureExtractor()(_crops(8)).astype(np.float16)
    path = export_onnx(model, tmp_path / "m.onnx", shape="head", metadata={}, check_features=features)
    report = head_parity_report(model, tmp_path / "head.onnx", features)
    assert report.failures() == [] and 0 < report.quality_bound.max() < 1.0

    wrong = onnx.load(tmp_path / "head.onnx")
    _mutate_weight(wrong.graph, prefix="")
    onnx.save(wrong, tmp_path / "wrong-head.onnx")
    with pytest.raises(ModelFileError, match=r"wrong-head\.onnx: ONNX Runtime's scores differ .* on 8 faces' "
                                             r"features"):
        check_head_parity(model, tmp_path / "wrong-head.onnx", features)

    original = export.compose
    monkeypatch.setattr(export, "compose", lambda head, spec: _swapped(original(head, spec)))
    with pytest.raises(ModelFileError, match=r"m\.onnx: ONNX Runtime's scores differ .* on 4 faces"):
        export_onnx(model, path, shape="head", metadata={}, check_features=features)
    with pytest.raises(InvalidParameterError, match="check_features"):
        export_onnx(CalibratedRegressor(MobileFaceNetRegressor(), _calibration()), tmp_path / "f.onnx",
                    shape="mobilefacenet", metadata={}, check_features=features)


def _swapped(model: onnx.ModelProto) -> onnx.ModelProto:
    _swap_channels(model.graph)
    return model
