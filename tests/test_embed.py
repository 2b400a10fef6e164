"""fiqa.embed: SFace conversion against OpenCV, the generic ONNX backend's spec, and every registered backend."""
from __future__ import annotations

import json
import sys
import threading

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fiqa.core.errors import (
    FIQAError,
    InvalidParameterError,
    ModelFileError,
    UnknownNameError,
)
from fiqa.detect import FaceAligner
from fiqa.embed import (
    EMBEDDERS,
    SFACE_SPEC,
    DlibEmbedder,
    PreprocessSpec,
    create_embedder,
    list_embedders,
)
from fiqa.embed.graph import count_flops, dequantize_blocked, fold_constants
from fiqa.io.model_files import model_path
from tolerances import U32, float32_ulps, gamma

# --- tiny hand-checkable models -----------------------------------------------------------------------------

def flatten_model(path, input_shape, *, batch: int | str = "batch"):
    """An ONNX model whose output is its input flattened: (B, prod(input_shape)). Shows the exact tensor fed."""
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["image"], ["embedding"], axis=1)], "flatten",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, *input_shape])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [batch, int(np.prod(input_shape))])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return flatten_model(tmp_path_factory.mktemp("onnx") / "flatten_3x8x6.onnx", [3, 8, 6])


TINY_SPEC = PreprocessSpec(input_size=(8, 6), mean=(1.0, 2.0, 3.0), std=(2.0, 4.0, 5.0), channel_order="RGB",
                           layout="NCHW")


def test_spec_is_applied_exactly_on_a_hand_computed_case(tiny_onnx):
    embedder = create_embedder("onnx", model=tiny_onnx, spec=TINY_SPEC)
    assert embedder.dim == 3 * 8 * 6
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    crops[0] = (10, 20, 30)   # BGR -> RGB (30, 20, 10) -> ((30-1)/2, (20-2)/4, (10-3)/5)
    crops[1] = (255, 0, 100)  # BGR -> RGB (100, 0, 255) -> ((100-1)/2, (0-2)/4, (255-3)/5)
    vectors = embedder.embed(crops)
    planes = vectors.reshape(2, 3, 8 * 6)  # NCHW: one plane per channel; resizing a flat colour keeps it flat
    # (x - mean) / std in float32 on exact integers (a flat colour resizes exactly): <= 3 roundings, gamma_3 relative
    np.testing.assert_allclose(planes[0], np.repeat([[14.5], [4.5], [1.4]], 48, axis=1), rtol=gamma(3))
    np.testing.assert_allclose(planes[1], np.repeat([[49.5], [-0.5], [50.4]], 48, axis=1), rtol=gamma(3))


def test_spec_resize_layout_and_channel_order_match_a_reference(tmp_path):
    spec = PreprocessSpec(input_size=(10, 7), mean=(5.0, 6.0, 7.0), std=(3.0, 2.0, 1.5), channel_order="BGR",
                          layout="NHWC")
    path = flatten_model(tmp_path / "nhwc.onnx", [10, 7, 3])
    crops = np.random.default_rng(3).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    expected = np.stack([(cv2.resize(c, (7, 10), interpolation=cv2.INTER_LINEAR).astype(np.float64)
                          - [5.0, 6.0, 7.0]) / [3.0, 2.0, 1.5] for c in crops]).reshape(3, -1)
    # the same uint8 resize both ways, then (x - mean) / std: float32 (<= 3 roundings) against float64
    np.testing.assert_allclose(create_embedder("onnx", model=path, spec=spec).embed(crops), expected, rtol=gamma(3),
                               atol=0)


def test_fixed_batch_model_runs_chunked(tmp_path):
    path = flatten_model(tmp_path / "fixed.onnx", [3, 8, 6], batch=1)
    embedder = create_embedder("onnx", model=path, spec=TINY_SPEC)
    crops = np.random.default_rng(4).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_array_equal(embedder.embed(crops), np.concatenate([embedder.embed(c[None]) for c in crops]))


def test_spec_that_does_not_match_the_model_names_the_file(tiny_onnx):
    with pytest.raises(ModelFileError, match=r"flatten_3x8x6\.onnx.*does not match the preprocessing spec"):
        create_embedder("onnx", model=tiny_onnx, spec=PreprocessSpec(input_size=112))
    with pytest.raises(ModelFileError, match=r"flatten_3x8x6\.onnx.*NHWC"):
        create_embedder("onnx", model=tiny_onnx, spec=PreprocessSpec(input_size=(8, 6), layout="NHWC"))


def test_wrong_or_missing_model_file_names_the_file(tmp_path):
    bogus = tmp_path / "r50.onnx"
    bogus.write_bytes(b"\x00not an onnx model")
    with pytest.raises(ModelFileError, match=r"cannot load .*r50\.onnx"):
        create_embedder("onnx", model=bogus, spec=SFACE_SPEC)
    with pytest.raises(ModelFileError, match=r"missing\.onnx.*does not exist"):
        create_embedder("onnx", model=tmp_path / "missing.onnx", spec=SFACE_SPEC)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_spec_files_round_trip(tmp_path, tiny_onnx, suffix):
    path = tmp_path / f"spec{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(TINY_SPEC.to_dict()))
    else:
        path.write_text('input_size = [8, 6]\nmean = [1, 2, 3]\nstd = [2, 4, 5]\nchannel_order = "RGB"\n'
                        'layout = "NCHW"\n')
    assert PreprocessSpec.from_file(path) == TINY_SPEC
    assert create_embedder("onnx", model=tiny_onnx, spec=path).spec == TINY_SPEC


def test_bad_spec_values_and_files(tmp_path):
    with pytest.raises(InvalidParameterError, match="'channel_order' parameter of PreprocessSpec must be one of"):
        PreprocessSpec(channel_order="rgb")
    with pytest.raises(InvalidParameterError, match="'std'.*> 0"):
        PreprocessSpec(std=(1.0, 0.0, 1.0))
    bad = tmp_path / "bad.toml"
    bad.write_text('input_size = 112\nmean = 127.5\nswap = true\n')
    with pytest.raises(ModelFileError, match=r"bad\.toml.*swap"):
        PreprocessSpec.from_file(bad)


def test_count_flops_on_a_hand_computed_graph():
    weight = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    fc = numpy_helper.from_array(np.zeros((10, 256), np.float32), "fc")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Flatten", ["c"], ["f"]),
         helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], [weight, fc])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # Conv: 4 x 8 x 8 outputs x 27 MACs; Gemm: 10 outputs x 256 MACs; 2 FLOPs per MAC.
    assert count_flops(model) == 2 * (4 * 64 * 27 + 10 * 256)


# --- SFace conversion ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sface_graph():
    return onnx.load(str(model_path("sface")))


def test_numpy_dequantisation_matches_onnxruntime_for_every_node(sface_graph):
    initialisers = {init.name: init for init in sface_graph.graph.initializer}
    nodes = [n for n in sface_graph.graph.node if n.op_type == "DequantizeLinear"]
    assert len(nodes) == 29
    for node in nodes:
        graph = helper.make_graph([node], "dq", [], [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT,
                                                                                   None)],
                                  [initialisers[name] for name in node.input])
        single = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
        expected = ort.InferenceSession(single.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {})[0]
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        got = dequantize_blocked(*(numpy_helper.to_array(initialisers[name]) for name in node.input),
                                 axis=attributes["axis"], block_size=attributes["block_size"])
        np.testing.assert_array_equal(got, expected, err_msg=node.name)


def test_dequantize_blocked_hand_computed_partial_last_block():
    quantized = np.array([[1, 2, 3, 4, 5]], np.int8)
    got = dequantize_blocked(quantized, np.array([[0.5, 2.0]], np.float32), np.array([[1, -1]], np.int8), axis=1,
                             block_size=3)
    np.testing.assert_array_equal(got, [[0.0, 0.5, 1.0, 10.0, 12.0]])


def test_folded_graph_is_plain_float_with_one_dynamic_input(sface_graph):
    folded = fold_constants(sface_graph)
    assert [i.name for i in folded.graph.input] == ["data"]
    assert not any(n.op_type in ("DequantizeLinear", "Reshape") for n in folded.graph.node)
    assert all(init.data_type != TensorProto.INT8 for init in folded.graph.initializer)
    assert folded.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert 1.10e9 < count_flops(folded) < 1.20e9  # ~1.15 GFLOP per face, as OpenCV Zoo reports


def test_constant_slope_prelu_is_rewritten_to_the_same_function():
    slope = np.array([0.25, -0.5, 2.0], np.float32).reshape(3, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"], name="act")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 2, 2])],
        [numpy_helper.from_array(slope, "slope")])
    folded = fold_constants(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9))
    assert "PRelu" not in {n.op_type for n in folded.graph.node}
    x = np.random.default_rng(0).normal(size=(5, 3, 2, 2)).astype(np.float32)  # the batch axis is dynamic now
    session = ort.InferenceSession(folded.SerializeToString(), providers=["CPUExecutionProvider"])
    # one float32 product on the negative side in each (numpy's is correctly rounded): within 2 u relative
    np.testing.assert_allclose(session.run(None, {"x": x})[0], np.where(x > 0, x, slope * x), rtol=2 * U32, atol=0)


@pytest.fixture(scope="module")
def lfw_crops(lfw_dir):
    """Aligned crops of two photos each of six people (sorted by name, those with >= 2 photos), and the names."""
    aligner = FaceAligner()
    people = [p for p in sorted(lfw_dir.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 2][:6]
    crops, names = [], []
    for person in people:
        for file in sorted(person.glob("*.jpg"))[:2]:
            crops.append(aligner.align(cv2.imread(str(file))).crop)
            names.append(person.name)
    return np.stack(crops), np.array(names)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.lfw
def test_sface_equals_opencv_face_recognizer_on_real_crops(lfw_crops):
    crops, _ = lfw_crops
    recognizer = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    reference = np.concatenate([recognizer.feature(c) for c in crops])
    vectors = create_embedder("sface").embed(crops)
    assert cosine_rows(vectors, reference).min() > 0.999
    # not a rounding comparison: OpenCV runs the int8 file, fiqa its float32 folding; 1e-3 relative is an agreement
    # claim about the two implementations of the network (docs/numerics.md), as is the cosine floor above
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), np.linalg.norm(reference, axis=1), rtol=1e-3)


@pytest.mark.lfw
@pytest.mark.numerics
def test_sface_batched_equals_one_by_one(lfw_crops):
    crops, _ = lfw_crops
    embedder = create_embedder("sface", batch_size=5)
    batched = embedder.embed(crops)  # 12 crops: chunks of 5, 5, 2
    one_by_one = np.concatenate([embedder.embed(c[None]) for c in crops])
    # one graph on other batches: bit-identical as measured, 4 ulps of the largest value allowed (tolerances.py)
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=float32_ulps(np.abs(one_by_one).max(), 4))


@pytest.mark.lfw
def test_sface_is_thread_safe(lfw_crops):
    crops = lfw_crops[0][:4]
    embedder = create_embedder("sface")
    expected = embedder.embed(crops)
    results: list[np.ndarray] = [None] * 3  # type: ignore[list-item]

    def work(slot: int) -> None:
        results[slot] = embedder.embed(crops)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        np.testing.assert_array_equal(result, expected)


# --- every registered backend -------------------------------------------------------------------------------

def _create(name: str, tiny_onnx):
    if name == "dlib":
        pytest.importorskip("dlib")
        pytest.importorskip("face_recognition_models")
    if name == "onnx":
        return create_embedder(name, model=tiny_onnx, spec=TINY_SPEC)
    return create_embedder(name)


@pytest.mark.numerics
@pytest.mark.parametrize("name", list_embedders())
def test_every_backend_embeds_any_batch_and_describes_itself(name, tiny_onnx):
    embedder = _create(name, tiny_onnx)
    crops = np.random.default_rng(5).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    vectors = embedder.embed(crops)
    assert vectors.shape == (3, embedder.dim) and vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))
    # a batch of 1 vs 3: bit-identical for every backend as measured (docs/numerics.md), 4 ulps allowed
    np.testing.assert_allclose(embedder.embed(crops[1:2]), vectors[1:2], rtol=0,
                               atol=float32_ulps(np.abs(vectors).max(), 4))
    description = json.loads(json.dumps(embedder.describe()))
    assert description["backend"] == name and description["dim"] == embedder.dim
    assert PreprocessSpec.from_dict(description["spec"]) == embedder.spec
    assert len(description["model_sha256"]) == 64
    with pytest.raises(InvalidParameterError, match=f"crops.*{name}|{name}.*crops"):
        embedder.embed(crops[:, :100])
    with pytest.raises(InvalidParameterError, match="crops"):
        embedder.embed(crops[:0])


@pytest.mark.lfw
@pytest.mark.parametrize("name", ["sface-opencv", "dlib"])
def test_recognisers_match_same_person_better(name, lfw_crops, tiny_onnx):
    embedder = _create(name, tiny_onnx)
    crops, names = lfw_crops
    vectors = embedder.embed(crops)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    similarities = vectors @ vectors.T
    same = np.equal.outer(names, names) & ~np.eye(len(names), dtype=bool)
    assert similarities[same].mean() > similarities[~np.equal.outer(names, names)].mean() + 0.03


def test_dlib_missing_tells_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes "import dlib" raise ImportError
    with pytest.raises(FIQAError, match=r"pip install 'fiqa\[dlib\]'"):
        DlibEmbedder()


def test_unknown_backend_suggests_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'sface'"):
        create_embedder("sfase")
    assert set(EMBEDDERS.names()) == {"sface", "sface-opencv", "onnx", "dlib"}


@pytest.mark.parametrize("params, message", [({"batch_size": 0}, "'batch_size' parameter of SFaceEmbedder must be "
                                                                  "an int >= 1. Got 0 instead."),
                                             ({"threads": 1.5}, "'threads'.*int >= 1 or None")])
def test_sface_validates_parameters(params, message):
    with pytest.raises(InvalidParameterError, match=message):
        create_embedder("sface", **params)
