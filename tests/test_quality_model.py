"""The quality-model file contract (fiqa.embed.quality_model): metadata is checked against the graph's inputs and
outputs before use, so a file that only claims to be a quality model fails with a ModelFileError naming it, never
inside ONNX Runtime."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from fiqa.core.errors import ModelFileError
from fiqa.embed.features import SFACE_TAPS
from fiqa.embed.quality_model import check_signature, load_quality_model, preprocess_spec, quality_model_from_bytes
from fiqa.embed.spec import PreprocessSpec

DIM = SFACE_TAPS.dim
FULL_INPUT = ["batch", 3, 112, 112]


def _metadata(**overrides) -> dict[str, str]:
    entries = {"fiqa_version": "test", "preprocess": SFACE_TAPS.spec.to_dict(), "label_method": "test",
               "features": SFACE_TAPS.to_dict(), **overrides}
    return {key: value if isinstance(value, str) else json.dumps(value) for key, value in entries.items()}


def _model(input_name: str, input_shape: list, *, input_type: int = TensorProto.FLOAT,
           output_shape: list | None = None, output_type: int = TensorProto.FLOAT, declared_output: list | None = None,
           **metadata) -> onnx.ModelProto:
    """A small graph of the quality-model form: the mean over every non-batch axis times 2 is ``quality``, the mean
    itself ``raw_score``. ``declared_output`` overrides the outputs' declared shape (a lie about the graph)."""
    axes = list(range(1, len(input_shape)))
    nodes = [helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["as_float", "axes"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "two"], ["quality_float"]),
             helper.make_node("Cast", ["quality_float"], ["quality"], to=output_type),
             helper.make_node("Cast", ["mean"], ["raw_score"], to=output_type)]
    if output_shape is not None and len(output_shape) == 2:  # (batch, 1): one more axis
        nodes[3:] = [helper.make_node("Unsqueeze", ["quality_float", "one"], ["quality_2d"]),
                     helper.make_node("Cast", ["quality_2d"], ["quality"], to=output_type),
                     helper.make_node("Unsqueeze", ["mean", "one"], ["raw_2d"]),
                     helper.make_node("Cast", ["raw_2d"], ["raw_score"], to=output_type)]
    shape = declared_output if declared_output is not None else (output_shape or ["batch"])
    graph = helper.make_graph(
        nodes, "fake-quality",
        [helper.make_tensor_value_info(input_name, input_type, input_shape)],
        [helper.make_tensor_value_info(name, output_type, shape) for name in ("quality", "raw_score")],
        [helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes),
         helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
         helper.make_tensor("one", TensorProto.INT64, [1], [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    helper.set_model_props(model, _metadata(**metadata))
    return model


def _write(model: onnx.ModelProto, tmp_path, name: str):
    path = tmp_path / name
    path.write_bytes(model.SerializeToString())
    return path


def test_a_well_formed_full_graph_loads_and_runs(tmp_path):
    path = _write(_model("data", FULL_INPUT), tmp_path, "full.onnx")
    graph, meta = load_quality_model(path)
    assert meta["label_method"] == "test"
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    crops = np.full((2, 3, 112, 112), 10.0, np.float32)
    quality, raw = session.run(["quality", "raw_score"], {"data": crops})
    np.testing.assert_allclose(raw, [10.0, 10.0])
    np.testing.assert_allclose(quality, [20.0, 20.0])


@pytest.mark.parametrize("layout, shape", [("NCHW", ["n", 3, 96, 80]), ("NHWC", ["n", 96, 80, 3])])
def test_the_full_graph_input_follows_the_preprocess_metadata(tmp_path, layout, shape):
    spec = PreprocessSpec(input_size=(96, 80), layout=layout)
    path = _write(_model("data", shape, preprocess=spec.to_dict()), tmp_path, "sized.onnx")
    assert load_quality_model(path)[1]["preprocess"]["layout"] == layout
    wrong = _write(_model("data", FULL_INPUT, preprocess=spec.to_dict()), tmp_path, "wrong.onnx")
    with pytest.raises(ModelFileError, match=rf"{wrong}: its input \(full graph\) 'data' is float32 "
                                             r"\(batch, 3, 112, 112\); a quality model needs float32 \(batch, "):
        load_quality_model(wrong)


@pytest.mark.parametrize("name, model, message", [
    ("head_dim", lambda: _model("features", ["batch", 100]),
     rf"input \(head graph\) 'features' is float32 \(batch, 100\); a quality model needs float32 \(batch, {DIM}\)"),
    ("head_double", lambda: _model("features", ["batch", DIM], input_type=TensorProto.DOUBLE),
     r"'features' is float64 \(batch, 3969\)"),
    ("head_fixed_batch", lambda: _model("features", [1, DIM]), r"'features' is float32 \(1, 3969\).*free batch axis"),
    ("head_no_shape", lambda: _without_input_shape(_model("features", ["batch", DIM])),
     r"'features' is float32 of undeclared shape"),
    ("full_size", lambda: _model("data", ["batch", 3, 64, 64]), r"'data' is float32 \(batch, 3, 64, 64\)"),
    ("full_uint8", lambda: _model("data", FULL_INPUT, input_type=TensorProto.UINT8),
     r"'data' is uint8 \(batch, 3, 112, 112\)"),
    ("output_2d", lambda: _model("data", FULL_INPUT, output_shape=["batch", 1]),
     r"output 'quality' is float32 \(batch, 1\); a quality model needs float32 \(batch,\)"),
    ("output_int", lambda: _model("data", FULL_INPUT, output_type=TensorProto.INT64),
     r"output 'quality' is int64 \(batch,\)"),
    ("head_output_double", lambda: _model("features", ["batch", DIM], output_type=TensorProto.DOUBLE),
     r"output 'quality' is float64 \(batch,\)"),
])
def test_a_graph_that_differs_from_its_metadata_is_refused_naming_the_file(tmp_path, name, model, message):
    path = _write(model(), tmp_path, f"{name}.onnx")
    with pytest.raises(ModelFileError, match=rf"^{path}: .*{message}"):
        load_quality_model(path)


def _without_input_shape(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.input[0].type.tensor_type.ClearField("shape")
    return model


def test_declared_outputs_that_the_graph_does_not_compute_are_refused(tmp_path):
    # declares (batch,) but computes (batch, 1): only the graph's own shape inference can tell
    path = _write(_model("data", FULL_INPUT, output_shape=["batch", 1], declared_output=["batch"]), tmp_path,
                  "lying.onnx")
    with pytest.raises(ModelFileError, match=rf"^{path}: not a valid ONNX graph"):
        load_quality_model(path)


@pytest.mark.parametrize("preprocess", [{"size": "abc"}, "abc", [1, 2], {"input_size": -3}, {"std": [0, 1, 1]}])
def test_malformed_preprocess_metadata_names_the_file(tmp_path, preprocess):
    path = _write(_model("data", FULL_INPUT, preprocess=preprocess), tmp_path, "preprocess.onnx")
    with pytest.raises(ModelFileError, match=rf"^{path}: its 'preprocess' metadata"):
        load_quality_model(path)


@pytest.mark.parametrize("features", ["abc", [1, 2], {"recogniser": "sface"}])
def test_malformed_features_metadata_of_a_head_names_the_file(tmp_path, features):
    path = _write(_model("features", ["batch", DIM], features=features), tmp_path, "features.onnx")
    with pytest.raises(ModelFileError, match=rf"^{path}: "):
        load_quality_model(path)


def test_check_signature_and_preprocess_spec_directly():
    full = _model("data", FULL_INPUT)
    check_signature(full, (3, 112, 112), "x.onnx")
    with pytest.raises(ModelFileError, match=r"^x.onnx: its input \(full graph\) 'data'"):
        check_signature(full, (3, 96, 96), "x.onnx")
    assert preprocess_spec({"preprocess": SFACE_TAPS.spec.to_dict()}) == SFACE_TAPS.spec
    with pytest.raises(ModelFileError, match="^m: its 'preprocess' metadata must be a JSON object"):
        preprocess_spec({}, "m")


def test_the_scorer_refuses_such_a_file_before_onnx_runtime_sees_it(tmp_path):
    from fiqa.score import create_scorer

    path = _write(_model("features", ["batch", 100]), tmp_path, "small_head.onnx")
    with pytest.raises(ModelFileError, match=rf"^{path}: its input \(head graph\)"):
        create_scorer(path)
    with pytest.raises(ModelFileError, match=rf"^{path}: its input"):
        quality_model_from_bytes(path.read_bytes(), str(path))
