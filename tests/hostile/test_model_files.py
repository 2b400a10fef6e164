"""Hostile cases M01-M12: model files given to ``fiqa score --model`` (hostile-cases.md, section 3)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hostile.harness import Run, assert_clean_error, assert_ok, cli, error_line, summary

pytestmark = pytest.mark.lfw


@pytest.fixture(scope="module")
def target(good_dir: Path) -> Path:
    """What every model scores: the photos of the good set's first person."""
    return sorted(p for p in good_dir.iterdir() if p.is_dir())[0]


@pytest.fixture(scope="module")
def bad_models(work: Path) -> Path:
    folder = work / "badmodels"
    folder.mkdir()
    return folder


def _score(model: Path, target: Path, work: Path) -> tuple[Run, Path]:
    out = work / "scores" / f"m_{model.stem}.parquet"
    return cli("score", target, "--model", model, "--out", out), out


def _refused(model: Path, target: Path, work: Path, record_property, *needles: str) -> Run:
    run, out = _score(model, target, work)
    record_property("observed", error_line(run))
    assert_clean_error(run, str(model), *needles)
    assert not out.exists()
    return run


def _sigmoid():
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "sigmoid",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=onnx.IR_VERSION)


def _with_fiqa_metadata(model, source: Path):
    import onnx

    del model.metadata_props[:]
    model.metadata_props.extend(onnx.load(source, load_external_data=False).metadata_props)
    return model


def _head_weights(path: Path) -> tuple[int, int]:
    """(offset in the file, length) of the raw bytes of the largest initializer of the trained head (the layers
    every quality passes through)."""
    import onnx

    model = onnx.load(path)
    largest = max((t for t in model.graph.initializer if t.name.startswith("head/")), key=lambda t: len(t.raw_data))
    data = path.read_bytes()
    offset = data.find(largest.raw_data)
    assert offset > 0 and len(largest.raw_data) > 8000
    return offset, len(largest.raw_data)


def test_M01_truncated(model, target, bad_models, work, record_property):
    path = bad_models / "truncated.onnx"
    path.write_bytes(model.read_bytes()[:100_000])
    _refused(path, target, work, record_property, "not an ONNX model")


def test_M02_random_bytes(model, target, bad_models, work, record_property):
    path = bad_models / "random.onnx"
    path.write_bytes(np.random.default_rng(2).bytes(2 << 20))
    _refused(path, target, work, record_property)


def test_M03_text(target, bad_models, work, record_property):
    path = bad_models / "text.onnx"
    path.write_text("This is not a model.\n" * 100, encoding="utf-8")
    _refused(path, target, work, record_property)


def test_M04_empty(target, bad_models, work, record_property):
    path = bad_models / "empty.onnx"
    path.write_bytes(b"")
    _refused(path, target, work, record_property, "not a fiqa quality model")


def test_M05_the_recogniser(target, bad_models, work, record_property):
    from fiqa.io.model_files import model_path

    path = bad_models / "sface.onnx"
    shutil.copy(model_path("sface"), path)
    _refused(path, target, work, record_property, "not a fiqa quality model")


def test_M06_sigmoid(target, bad_models, work, record_property):
    import onnx

    path = bad_models / "sigmoid.onnx"
    onnx.save(_sigmoid(), path)
    _refused(path, target, work, record_property, "not a fiqa quality model")


def test_M07_recogniser_with_fiqa_metadata(model, target, bad_models, work, record_property):
    import onnx

    from fiqa.io.model_files import model_path

    path = bad_models / "sface_with_fiqa_meta.onnx"
    onnx.save(_with_fiqa_metadata(onnx.load(model_path("sface")), model), path)
    run = _refused(path, target, work, record_property)
    assert "ONNX Runtime" not in run.output or "cannot run" in run.output


def test_M08_sigmoid_with_fiqa_metadata(model, target, bad_models, work, record_property):
    import onnx

    path = bad_models / "sigmoid_with_fiqa_meta.onnx"
    onnx.save(_with_fiqa_metadata(_sigmoid(), model), path)
    _refused(path, target, work, record_property)


def test_M09_malformed_preprocess_metadata(model, target, bad_models, work, record_property):
    import onnx

    loaded = onnx.load(model)
    for prop in loaded.metadata_props:
        if prop.key == "preprocess":
            prop.value = json.dumps({"size": "abc"})
    path = bad_models / "bad_preprocess.onnx"
    onnx.save(loaded, path)
    _refused(path, target, work, record_property, "preprocess")


def test_M10_flipped_weights(model, target, bad_models, work, record_property):
    offset, length = _head_weights(model)
    data = bytearray(model.read_bytes())
    middle = offset + length // 2
    data[middle:middle + 4000] = b"\xff" * 4000  # 1000 weights of the head become NaN
    path = bad_models / "real_flipped.onnx"
    path.write_bytes(bytes(data))
    run, out = _score(path, target, work)
    assert run.traceback is None, str(run)
    if run.code != 0 and not out.exists():  # refused when loaded: as good
        record_property("observed", error_line(run))
        assert_clean_error(run, str(path))
        return
    from fiqa.io.table import load_quality

    table = load_quality(out)
    record_property("observed", f"exit {run.code}: {summary(run)}; statuses {sorted(set(table.status.tolist()))}")
    assert np.isfinite(table.score[table.ok]).all()  # never a NaN score with status ok
    assert (run.code == 0) == bool(table.ok.any())  # and nothing scored is a failure


def test_M11_single_bit_flips(model, target, bad_models, work, record_property):
    from fiqa.embed.quality_model import digest_path

    offset, length = _head_weights(model)
    data = bytearray(model.read_bytes())
    positions = np.random.default_rng(11).choice(length // 4, size=16, replace=False)
    for index in positions:  # the lowest mantissa bit of 16 float32 weights (little-endian)
        data[offset + 4 * int(index)] ^= 0x01
    path = bad_models / "real_bitflips.onnx"
    path.write_bytes(bytes(data))
    shutil.copyfile(digest_path(model), digest_path(path))  # the SHA-256 fiqa train wrote with the intact file
    _refused(path, target, work, record_property, "corrupt or altered")
    assert_ok(_score(model, target, work)[0])  # the intact file with the same digest file scores


def test_M12_model_folder_without_card(model_dir, target, work, record_property):
    out = work / "scores" / "m_folder.parquet"
    run = cli("score", target, "--model", model_dir, "--out", out)
    record_property("observed", error_line(run))
    assert_clean_error(run, str(model_dir))
    assert not out.exists()
