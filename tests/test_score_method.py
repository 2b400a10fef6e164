"""One scoring path (fiqa.score.method): the learned model and every training-free method scored through
``score_store``/``score_images`` give the tables the two former copies gave, and the path's own rules (row checks,
non-finite flagging, what a method reads) hold for any method."""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import Status
from fiqa.score import QualityMethod, create_scorer, score_images, score_store
from fiqa.score.training_free import QUALITY_METHODS, create_quality_method
from tolerances import SAME_GRAPH_RTOL, SAME_GRAPH_SCORE

BEFORE = Path(__file__).parent / "data" / "score_store_before.json"


def _floats(values: list[str]) -> np.ndarray:
    return np.array([float.fromhex(value) for value in values])


#: The scores' largest relative change when the store itself is built by other kernels, times 4 (a measured spread,
#: with its margin): the fixture embeds the photos afresh, and OpenCV's AVX kernels (``OPENCV_CPU_DISABLE=AVX512-SKX,
#: AVX2,FP16``; numpy at its baseline, X86_V2 on numpy 2.4) against the AVX-512 ones that wrote the file moved
#: YuNet's landmarks by up to 3e-5 px, a few crop pixels by one or two grey levels (where the warp's rounding sits at
#: a half), and these 20 rows' scores by at most 6.4e-5 relative (norm; model score 2.9e-5, raw score 3.1e-5,
#: flip-consistency 6.0e-5, SER-FIQ 8.7e-6). OpenCV's AVX2 kernels built the same vectors bit for bit. Measured for
#: that one change of kernels, on one machine, on these 20 rows.
OTHER_KERNELS_RTOL = 2.6e-4


def _same_vectors(store, rows: np.ndarray, digest: str) -> bool:
    """Whether the store's vectors of ``rows`` are the ones the file's scores were computed from (SHA-256)."""
    return hashlib.sha256(np.ascontiguousarray(store.vectors[rows]).tobytes()).hexdigest() == digest


@pytest.mark.lfw
@pytest.mark.numerics
@pytest.mark.parametrize("name", ["model:default", *QUALITY_METHODS.names()])
def test_store_scores_equal_the_former_paths(lfw_store, name):
    """Rows 0-19 of the LFW store scored by the one path against the former ``Scorer.score_store`` and
    ``score_store_with`` outputs (tests/data/score_store_before.json). Every method reads the rows' crops; the store's
    vectors (their SHA-256 is in the file) stand for those crops and for SFace's kernels. From the same vectors the
    computation is the one that wrote the file (same graphs, same batches, same numpy code): equal bit for bit on
    that machine (measured), allowed 4 float32 ulps of a 0-100 score (SAME_GRAPH_SCORE) for the model and
    SAME_GRAPH_RTOL for the raw score and the training-free values, in case a kernel splits a sum after all. Other
    vectors (another CPU's OpenCV or onnxruntime kernels built the store) are held to the spread measured for that
    (OTHER_KERNELS_RTOL), and the test says so in a warning: the tight check did not run."""
    before = json.loads(BEFORE.read_text())
    rows = np.asarray(before["rows"])
    assert [Path(str(loc)).name for loc in lfw_store.samples.location[rows]] == before["location"]
    same = _same_vectors(lfw_store, rows, before["vectors_sha256"])
    if not same:
        warnings.warn("the LFW store's vectors differ from those the stored scores were computed from (other "
                      "OpenCV or onnxruntime kernels): scores checked to the measured spread OTHER_KERNELS_RTOL, not "
                      "bit for bit", stacklevel=1)
    if name == "model:default":
        table = score_store(create_scorer(), lfw_store, rows=rows, progress=False)
        expected, raw = _floats(before[name]["score"]), _floats(before[name]["raw_score"])
        if same:
            np.testing.assert_allclose(table.score, expected, rtol=0, atol=SAME_GRAPH_SCORE)
            np.testing.assert_allclose(table.columns["raw_score"], raw, rtol=SAME_GRAPH_RTOL)
        else:
            np.testing.assert_allclose(table.score, expected, rtol=OTHER_KERNELS_RTOL)
            np.testing.assert_allclose(table.columns["raw_score"], raw, rtol=OTHER_KERNELS_RTOL)
        assert table.meta["method"] == "model:default"  # named after the model, not the label it learnt
    else:
        table = score_store(create_quality_method(name, **before[name]["params"]), lfw_store, rows=rows,
                            progress=False)
        np.testing.assert_allclose(table.score, _floats(before[name]["score"]),
                                   rtol=SAME_GRAPH_RTOL if same else OTHER_KERNELS_RTOL)
        assert table.meta["method"] == name
    assert table.status.tolist() == [Status.OK.value] * len(rows)
    np.testing.assert_array_equal(table.sample_id, lfw_store.samples.sample_id[rows])
    np.testing.assert_array_equal(table.columns["location"], lfw_store.samples.location[rows])
    np.testing.assert_array_equal(table.columns["identity"], lfw_store.samples.identity[rows])
    assert table.meta["store_sha256"] and table.meta["store"] == str(lfw_store.root)


class _StoreValue:
    """A toy method reading the store's norms or vectors, NaN for a chosen row: the path, not a method, is tested."""

    batch_size = 4
    extra_columns = ("twice",)
    non_finite_reason = "the toy gave a non-finite value"

    def __init__(self, input: str, nan_at: float | None = None) -> None:
        self.input, self.name, self.nan_at = input, f"toy-{input}", nan_at

    def check_store(self, store: Any) -> None:
        pass

    def score_batch(self, inputs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        values = inputs.astype(np.float64) if inputs.ndim == 1 else np.linalg.norm(inputs.astype(np.float64), axis=1)
        if self.nan_at is not None:
            values[np.isclose(values, self.nan_at)] = np.nan
        return values, {"twice": 2 * values}

    def table_meta(self, **settings: Any) -> dict[str, Any]:
        return {"method": self.name, "params": settings}


@pytest.mark.lfw
def test_the_path_reads_what_a_method_needs_and_never_reports_a_non_finite_score_as_ok(lfw_store):
    rows = np.arange(10)
    norms = score_store(_StoreValue("norms"), lfw_store, rows=rows, progress=False)
    assert isinstance(_StoreValue("norms"), QualityMethod)
    np.testing.assert_array_equal(norms.score, lfw_store.norms[rows].astype(np.float64))
    np.testing.assert_array_equal(norms.columns["twice"], 2 * norms.score)
    vectors = score_store(_StoreValue("vectors"), lfw_store, rows=rows, batch_size=3, progress=False)
    np.testing.assert_array_equal(vectors.score, np.linalg.norm(lfw_store.vectors[rows].astype(np.float64), axis=1))
    flagged = score_store(_StoreValue("norms", nan_at=float(lfw_store.norms[3])), lfw_store, rows=rows,
                          progress=False)
    assert flagged.status[3] == Status.INVALID_SCORE.value and np.isnan(flagged.score[3])
    assert flagged.reason[3] == "the toy gave a non-finite value"
    assert (np.delete(flagged.status, 3) == Status.OK.value).all()
    with pytest.raises(InvalidParameterError, match="rows"):
        score_store(_StoreValue("norms"), lfw_store, rows=np.array([0, len(lfw_store)]), progress=False)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        score_store(_StoreValue("norms"), lfw_store, rows=rows, batch_size=0, progress=False)
    with pytest.raises(InvalidParameterError, match="crops"):  # photos have no stored norms
        score_images(_StoreValue("norms"), ["a.jpg"], None, progress=False)  # type: ignore[arg-type]


@pytest.mark.lfw
def test_photos_and_store_give_one_score_per_face(lfw_store):
    """A training-free method on the store's photos (detected again) and on the store (stored landmarks) agree
    where the detector finds the same landmarks: the same crops give the same value."""
    from fiqa.detect.pipeline import FacePipeline

    rows = np.arange(4)
    method = create_quality_method("norm")
    photos = score_images(method, list(lfw_store.samples.location[rows]), FacePipeline(),
                          progress=False)
    stored = score_store(method, lfw_store, rows=rows, progress=False)
    assert list(photos.columns) == ["location", "n_faces", "detection_score"]
    np.testing.assert_allclose(photos.score, stored.score, rtol=1e-6)
    assert photos.meta["method"] == "norm"


def test_the_batch_is_sized_from_the_memory_budget(monkeypatch):
    import fiqa.score.method as method_module
    from fiqa.score.method import (
        ALLOWANCE_MB,
        COMPONENTS_ALLOWANCE_MB,
        MAX_BATCH,
        MEMORY_PER_FACE_MB,
        batch_for_budget,
    )

    monkeypatch.setattr(method_module, "resident_mb", lambda: 300.0)
    assert batch_for_budget(object(), 600) == (600 - 300 - ALLOWANCE_MB) // MEMORY_PER_FACE_MB
    assert (batch_for_budget(object(), 600, components=True)
            == (600 - 300 - ALLOWANCE_MB - COMPONENTS_ALLOWANCE_MB) // MEMORY_PER_FACE_MB)
    assert batch_for_budget(object(), 100) == 1 and batch_for_budget(object(), 1e6) == MAX_BATCH

    class Heavy:
        memory_per_face_mb = 100

    assert batch_for_budget(Heavy(), 600) == 2
    monkeypatch.setattr(method_module, "resident_mb", lambda: None)  # outside Linux: the documented base
    assert batch_for_budget(object(), 600) == (600 - method_module.BASE_MEMORY_MB - ALLOWANCE_MB) // 20
    with pytest.raises(InvalidParameterError, match="budget_mb"):
        batch_for_budget(object(), 0)


def test_the_composed_model_is_cached_by_the_hashes_of_its_parts_and_never_trusted_blindly(tmp_path, monkeypatch):
    """A second load reads the composed graph from the user cache; an altered or mismatching entry is rebuilt."""
    import fiqa.embed.quality_model as quality_model
    from fiqa.core.cache import CACHE_ENV
    from fiqa.score.packaged import model_folder

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    head = model_folder("default").joinpath("head.onnx").read_bytes()
    built = []
    from fiqa.embed import features

    compose = features.compose

    def counting(*args, **kwargs):
        built.append(1)
        return compose(*args, **kwargs)

    monkeypatch.setattr(features, "compose", counting)  # _composed imports it when it runs
    first = quality_model._composed.__wrapped__(head, "head.onnx")
    second = quality_model._composed.__wrapped__(head, "head.onnx")
    assert first == second and len(built) == 1
    (entry,) = (tmp_path / "composed-models").glob("*.bin")
    entry.write_bytes(first[:-10] + b"0" * 10)  # corrupt: rebuilt, not trusted
    assert quality_model._composed.__wrapped__(head, "head.onnx") == first and len(built) == 2
    record = entry.with_suffix(".json")
    record.write_text(record.read_text().replace('"head_sha256": "', '"head_sha256": "0'))  # another key
    assert quality_model._composed.__wrapped__(head, "head.onnx") == first and len(built) == 3
    record.write_text("{not json")
    assert quality_model._composed.__wrapped__(head, "head.onnx") == first and len(built) == 4
    assert quality_model._composed.__wrapped__(head, "head.onnx") == first and len(built) == 4
