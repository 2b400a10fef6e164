"""Scoring: per-image statuses for bad inputs while the rest is scored; crops and photos agree; the CLI."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import FIQAError, InvalidParameterError, ModelFileError
from fiqa.detect import FaceAligner
from fiqa.embed.quality_model import write_digest
from fiqa.io.table import load_quality
from fiqa.score import create_scorer
from fiqa.train import export_onnx, fit_quantile_calibration
from fiqa.train.models import CalibratedRegressor, QualityHead
from tolerances import SAME_GRAPH_SCORE


@pytest.fixture(scope="module")
def photos(lfw_dir):
    return sorted(str(p) for p in lfw_dir.glob("A*/*.jpg"))[:4]


def test_bad_inputs_get_per_image_status_and_the_rest_is_scored(exported_head, photos, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((160, 160, 3), 127, np.uint8))
    images = [photos[0], str(corrupt), photos[1], str(blank), str(tmp_path / "missing.jpg"), photos[2]]
    table = create_scorer(exported_head, batch_size=2).score(images, progress=False)
    assert table.status.tolist() == ["ok", "not_an_image", "ok", "no_face", "unreadable", "ok"]
    assert np.all(np.isfinite(table.score[[0, 2, 5]])) and np.all(np.isnan(table.score[[1, 3, 4]]))
    assert np.all((table.score[table.ok] >= 0) & (table.score[table.ok] <= 100))
    assert all(table.reason[[1, 3, 4]]) and table.columns["n_faces"][3] == 0
    with pytest.raises(FIQAError, match="corrupt.jpg"):
        create_scorer(exported_head).score(images[:2], on_error="raise", progress=False)
    with pytest.raises(InvalidParameterError, match="'on_error'"):
        create_scorer(exported_head).score(images, on_error="skip")


@pytest.mark.numerics
def test_photo_scores_equal_scores_of_their_aligned_crops(exported_head, photos):
    aligner = FaceAligner()
    crops = np.stack([aligner.align(cv2.imread(p)).crop for p in photos])
    scorer = create_scorer(exported_head, batch_size=3)
    from_photos = scorer.score(photos, progress=False)
    from_arrays = scorer.score(list(crops), aligned=True, progress=False)
    quality, raw = scorer.score_crops(crops)
    # one graph on the same crops in other batches (3 vs all at once)
    np.testing.assert_allclose(from_photos.score, quality, rtol=0, atol=SAME_GRAPH_SCORE)
    np.testing.assert_allclose(from_arrays.score, quality, rtol=0, atol=SAME_GRAPH_SCORE)
    np.testing.assert_allclose(from_photos.columns["raw_score"], raw, rtol=0, atol=SAME_GRAPH_SCORE)
    assert from_arrays.columns["n_faces"].tolist() == [-1] * len(photos)


def test_score_command_writes_a_table(exported_head, photos, tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(main, ["score", photos[0], photos[1], str(tmp_path / "junk.jpg"),
                                       "--model", str(exported_head), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = load_quality(out)
    assert table.status.tolist() == ["ok", "ok", "not_an_image"]
    assert table.meta["label_method"] == "t"


def test_a_model_that_returns_nan_never_reports_ok(photos, tmp_path):
    # hostile case M10: corrupted weights; the head's output bias is NaN
    torch.manual_seed(0)
    head = QualityHead()
    head.init_output_bias(float("nan"))
    rng = np.random.default_rng(0)
    calibration = fit_quantile_calibration(rng.normal(50, 5, 200), rng.uniform(0, 100, 200))
    path = export_onnx(CalibratedRegressor(head, calibration).eval(), tmp_path / "nan.onnx", shape="head",
                       metadata={"label_method": "t"})
    table = create_scorer(path).score(photos[:2], progress=False)
    assert table.status.tolist() == ["invalid_score", "invalid_score"]
    assert np.isnan(table.score).all() and "non-finite" in table.reason[0]
    with pytest.raises(FIQAError, match="non-finite"):
        create_scorer(path).score(photos[:1], on_error="raise", progress=False)


def test_a_model_that_onnx_runtime_cannot_run_is_a_named_error(exported_head, tmp_path):
    # hostile case M07/M08: valid fiqa metadata on a graph ONNX Runtime refuses
    import onnx

    model = onnx.load(exported_head)
    model.graph.node[0].op_type = "NoSuchOperator"
    forged = tmp_path / "forged.onnx"
    onnx.save(model, forged)
    write_digest(forged, forged.read_bytes())  # a digest that matches: what is refused is the graph
    with pytest.raises(ModelFileError, match="forged.onnx"):
        create_scorer(forged)


def test_score_command_exits_non_zero_when_nothing_could_be_scored(exported_head, tmp_path):
    # hostile case S09
    (tmp_path / "junk.jpg").write_bytes(b"junk")
    result = CliRunner().invoke(main, ["score", str(tmp_path / "junk.jpg"), "--model", str(exported_head)])
    assert result.exit_code == 1 and "nothing could be scored" in result.output


def test_device_is_checked_before_any_image_is_read(tmp_path):
    import onnxruntime as ort

    from fiqa.embed.onnx_runtime import check_device, inference_session

    with pytest.raises(InvalidParameterError, match="device"):
        create_scorer(device="gpu")
    assert create_scorer(device="cpu").device == "cpu"
    if "CUDAExecutionProvider" in ort.get_available_providers():  # a GPU build: CUDA first, the CPU behind it
        assert check_device("test", "cuda") == "cuda"
        assert create_scorer(device="cuda")._session.get_providers()[0] == "CUDAExecutionProvider"
        return
    with pytest.raises(InvalidParameterError, match=r"CUDAExecutionProvider.*fiqa\[cuda\]"):
        check_device("test", "cuda")
    with pytest.raises(InvalidParameterError, match="CUDAExecutionProvider"):
        inference_session(b"", device="cuda")
    # the command stops on the device, not on the missing photo it would read next
    result = CliRunner().invoke(main, ["score", str(tmp_path / "missing.jpg"), "--device", "cuda"])
    assert result.exit_code != 0 and "CUDAExecutionProvider" in result.output and "missing.jpg" not in result.output
    result = CliRunner().invoke(main, ["score", str(tmp_path / "x.jpg"), "--device", "cuda", "--engine", "ray"])
    assert result.exit_code == 2 and "--device cuda needs --engine local" in result.output
