"""Comparison scores from another recogniser's store (matched by image, refused on mismatched images), further
operating points, method kinds, and the bootstrap bands of the EDC plots."""
from __future__ import annotations

import functools
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fiqa.core.errors import InvalidParameterError, StoreError
from fiqa.core.types import EmbeddingStore, QualityTable, SampleTable
from fiqa.evaluate.bands import edc_bands
from fiqa.evaluate.bootstrap import _cluster_counts, weighted_edc_curve
from fiqa.evaluate.pairs import Comparisons, sample_comparisons
from fiqa.evaluate.recognisers import image_keys, ok_in_both, rescore_comparisons
from fiqa.evaluate.report import write_report
from fiqa.evaluate.run import evaluate_quality, method_kind
from report_tools import fmt, recognisers_note
from tolerances import UNIT_NORM, cosine_bound


def make_store(root, locations, identities, vectors, *, backend="toy-a", status=None, recipes=None):
    n = len(locations)
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    status = np.full(n, "ok", object) if status is None else np.asarray(status, dtype=object)
    vectors[status != "ok"] = np.nan
    samples = SampleTable(np.arange(n, dtype=np.int64), np.asarray(locations, dtype=object),
                          np.asarray(identities, dtype=object), "list")
    return EmbeddingStore(root, samples, status, np.where(status == "ok", "", "no face").astype(object), vectors,
                          np.ones(n, np.float32), np.zeros((n, 5, 2), np.float32), np.ones(n, np.int32),
                          {"backend": {"backend": backend, "model_path": f"/models/{backend}.onnx"}},
                          None if recipes is None else np.full(n, -1, np.int64),
                          None if recipes is None else np.asarray(recipes, dtype=object))


def quality_table(sample_id, score, method, **meta):
    score = np.asarray(score, dtype=np.float64)
    return QualityTable(np.asarray(sample_id, dtype=np.int64), score, np.full(len(score), "ok", object),
                        np.full(len(score), "", object), {}, {"method": method, **meta})


@pytest.fixture()
def two_stores(tmp_path):
    """The same 60 images (12 people x 5) embedded by two recognisers; the second store holds them in reverse
    order, with other vectors, plus two images the first lacks."""
    rng = np.random.default_rng(3)
    people = np.repeat(np.arange(12), 5)
    locations = [f"/data/p{p}/p{p}_{i:04d}.jpg" for i, p in enumerate(people)]
    centres_a, centres_b = rng.normal(size=(12, 8)), rng.normal(size=(12, 8))
    vectors_a = centres_a[people] + rng.normal(0, 0.6, (60, 8))
    vectors_b = centres_b[people] + rng.normal(0, 0.9, (60, 8))
    first = make_store(tmp_path / "a", locations, people.astype(str), vectors_a)
    extra = ["/data/other/x.jpg", "/data/other/y.jpg"]
    second = make_store(tmp_path / "b", [*locations[::-1], *extra], [*people[::-1].astype(str), "x", "y"],
                        np.vstack([vectors_b[::-1], rng.normal(size=(2, 8))]), backend="toy-b")
    return first, second, vectors_b


def test_rescored_comparisons_take_the_other_recogniser_s_similarities(two_stores):
    first, second, vectors_b = two_stores
    comparisons = sample_comparisons(first, n_nonmated=500, random_state=0)
    rescored = rescore_comparisons(comparisons, first, second)
    np.testing.assert_array_equal(rescored.sample_a, comparisons.sample_a)
    np.testing.assert_array_equal(rescored.mated, comparisons.mated)
    # sample i of the first store is row 59 - i of the second: the cosine of the second recogniser's vectors
    unit = vectors_b / np.linalg.norm(vectors_b, axis=1, keepdims=True)
    expected = np.einsum("ij,ij->i", unit[comparisons.sample_a], unit[comparisons.sample_b])
    # the stored unit vectors (normalised in float32) against this test's own normalisation, then
    # float32 dot products: each vector within UNIT_VECTOR_PATHS / 2, so the cosines within UNIT_NORM + 2 gamma_d
    np.testing.assert_allclose(rescored.similarity, expected, rtol=0,
                               atol=UNIT_NORM + cosine_bound(vectors_b.shape[1]))
    assert not np.allclose(rescored.similarity, comparisons.similarity)
    assert rescored.meta["recogniser"]["backend"] == "toy-b"
    assert rescored.meta["quality_recogniser"]["backend"] == "toy-a"
    assert rescored.meta["rescored"]["n_pairs_left_out"] == 0

    table = quality_table(first.samples.sample_id, np.random.default_rng(1).uniform(size=60), "q")
    evaluation = evaluate_quality(comparisons, [table], store=first, comparison_store=second, n_bootstrap=0)
    direct = evaluate_quality(rescored, [table], n_bootstrap=0)
    assert evaluation.edc.threshold == direct.edc.threshold
    assert evaluation.edc.table() == direct.edc.table()
    recognisers = evaluation.meta["recognisers"]
    assert (recognisers["comparison"]["backend"], recognisers["quality"]["backend"]) == ("toy-b", "toy-a")
    with pytest.raises(InvalidParameterError, match="'store'"):
        evaluate_quality(comparisons, [table], comparison_store=second)


def test_the_report_names_both_recognisers(two_stores, tmp_path):
    first, second, _ = two_stores
    first = replace(first, root=tmp_path / "store-of-the-tables")  # folder names the note can be searched for
    second = replace(second, root=tmp_path / "store-of-the-scores")
    comparisons = sample_comparisons(first, n_nonmated=500, random_state=0)
    table = quality_table(first.samples.sample_id, np.arange(60.0), "q")
    evaluation = evaluate_quality(comparisons, [table], store=first, comparison_store=second, n_bootstrap=0,
                                  legacy_erc=False)
    page = write_report(evaluation, tmp_path / "r").read_text(encoding="utf-8")
    described = json.loads((tmp_path / "r" / "edc.json").read_text())["recognisers"]
    for role, store in (("comparison", second), ("quality", first)):
        backend = store.meta.backend
        assert (described[role]["backend"], described[role]["model"], described[role]["store"]) == (
            backend["backend"], Path(backend["model_path"]).name, str(store.root))
    # the note names the comparison scores' recogniser, then the tables': each backend in bold, its model file and
    # its store's folder (not this machine's path)
    bold, text = recognisers_note(page)
    assert bold == [second.meta.backend["backend"], first.meta.backend["backend"]]
    named = [described["comparison"]["model"], second.root.name, first.root.name, described["quality"]["model"]]
    positions = [text.find(name) for name in named]
    assert -1 not in positions and positions == sorted(positions), (named, text)
    assert str(tmp_path) not in text


def test_mismatched_images_are_refused_naming_both_stores(two_stores, tmp_path):
    first, second, _ = two_stores
    comparisons = sample_comparisons(first, n_nonmated=500, random_state=0)
    locations = first.samples.location.copy()
    locations[7] = "/elsewhere/p1/p1_0007.jpg"
    moved = make_store(tmp_path / "moved", locations, first.samples.identity, np.nan_to_num(second.vectors[:60]))
    with pytest.raises(StoreError, match=r"comparison store .*moved does not hold 1 of the 60 compared images of "
                                         r".*/a \(first: '/data/p1/p1_0007.jpg'\)"):
        rescore_comparisons(comparisons, first, moved)
    twice = make_store(tmp_path / "twice", [*first.samples.location, first.samples.location[3]],
                       [*first.samples.identity, "0"], np.ones((61, 8)))
    with pytest.raises(StoreError, match="more than once"):
        rescore_comparisons(comparisons, first, twice)
    table = quality_table(first.samples.sample_id, np.arange(60.0), "q")
    with pytest.raises(StoreError, match="does not hold"):
        evaluate_quality(comparisons, [table], store=first, comparison_store=moved)
    foreign = Comparisons(np.array([0, 100]), np.array([1, 2]), np.array([True, False]), np.array([0.5, 0.1]), {})
    with pytest.raises(StoreError, match="not in .*/a"):
        rescore_comparisons(foreign, first, second)


def test_an_image_that_failed_in_the_other_store_leaves_its_pairs_out(two_stores, tmp_path):
    first, second, _ = two_stores
    status = np.full(62, "ok", object)
    status[59 - 4] = "no_face"  # sample 4 of the first store
    failing = make_store(tmp_path / "c", second.samples.location, second.samples.identity,
                         np.nan_to_num(second.vectors, nan=1.0), status=status)
    comparisons = sample_comparisons(first, n_nonmated=500, random_state=0)
    uses_4 = (comparisons.sample_a == 4) | (comparisons.sample_b == 4)
    rescored = rescore_comparisons(comparisons, first, failing)
    assert len(rescored) == len(comparisons) - int(uses_4.sum()) and not np.any(rescored.sample_a == 4)
    counts = rescored.meta["rescored"]
    assert counts["n_pairs_left_out"] == int(uses_4.sum()) and counts["n_images_failed_in_comparison_store"] == 1
    assert counts["n_mated_left_out"] == int((uses_4 & comparisons.mated).sum())
    assert counts["failed_examples"] == ["/data/p0/p0_0004.jpg"]
    assert np.all(np.isfinite(rescored.similarity))
    # sampling from the images ok in both stores leaves nothing out: the same pairs for both recognisers
    mask = ok_in_both(first, failing)
    assert mask.sum() == 59 and not mask[4]
    both = sample_comparisons(first, n_nonmated=500, random_state=0, sample_mask=mask)
    assert rescore_comparisons(both, first, failing).meta["rescored"]["n_pairs_left_out"] == 0
    table = quality_table(first.samples.sample_id, np.arange(60.0), "q")
    evaluation = evaluate_quality(comparisons, [table], store=first, comparison_store=failing, n_bootstrap=0,
                                  legacy_erc=False)
    page = write_report(evaluation, tmp_path / "r").read_text(encoding="utf-8")
    rescored = json.loads((tmp_path / "r" / "edc.json").read_text())["recognisers"]["rescored"]
    compared = np.isin(failing.samples.location, first.samples.location[np.unique(np.concatenate(
        [comparisons.sample_a, comparisons.sample_b]))])
    failed = list(failing.samples.location[compared & (failing.status != "ok")])
    assert (rescored["n_pairs_left_out"], rescored["n_images_failed_in_comparison_store"],
            rescored["failed_examples"]) == (int(uses_4.sum()), len(failed), failed)
    # the note gives the pairs left out, then the images that failed, as counts, and names the failed images
    _, text = recognisers_note(page)
    assert all(location in text for location in failed)
    counts = re.findall(r"\d[\d,]*", functools.reduce(lambda rest, name: rest.replace(name, ""), failed, text))
    assert counts == [fmt(int(uses_4.sum())), fmt(len(failed))]


def test_derived_rows_are_matched_by_location_and_recipe(tmp_path):
    locations = ["/d/a.jpg", "/d/a.jpg", "/d/b.jpg"]
    recipes = ["", '{"flip":true}', ""]
    store = make_store(tmp_path / "s", locations, ["a", "a", "b"], np.eye(3, 8) + 0.1, recipes=recipes)
    keys = image_keys(store)
    assert keys.tolist() == ["/d/a.jpg", '/d/a.jpg#recipe:{"flip":true}', "/d/b.jpg"]
    other = make_store(tmp_path / "o", locations[::-1], ["b", "a", "a"], np.eye(3, 8)[::-1] + 0.2,
                       recipes=recipes[::-1])
    comparisons = Comparisons(np.array([0, 0]), np.array([1, 2]), np.array([True, False]), np.array([0.0, 0.0]), {})
    rescored = rescore_comparisons(comparisons, store, other)
    unit = (np.eye(3, 8) + 0.2) / np.linalg.norm(np.eye(3, 8) + 0.2, axis=1, keepdims=True)
    np.testing.assert_allclose(rescored.similarity, [unit[0] @ unit[1], unit[0] @ unit[2]], rtol=0,
                               atol=UNIT_NORM + cosine_bound(unit.shape[1]))  # as above


def test_further_operating_points_and_method_kinds():
    rng = np.random.default_rng(5)
    n = 400
    identity = np.arange(n) // 4
    quality = rng.uniform(size=n)
    a, b = np.triu_indices(n, k=1)
    mated = identity[a] == identity[b]
    similarity = np.where(mated, 0.3 + 0.6 * np.minimum(quality[a], quality[b]) + rng.normal(0, 0.1, len(a)),
                          rng.normal(0.0, 0.1, len(a)))
    comparisons = Comparisons(a, b, mated, similarity, {})
    tables = [quality_table(np.arange(n), quality, "model:m", model_sha256="x"),
              quality_table(np.arange(n), quality, "sdd"), quality_table(np.arange(n), quality, "ser-fiq"),
              quality_table(np.arange(n), quality, "mine", kind="baseline")]
    evaluation = evaluate_quality(comparisons, tables, n_bootstrap=20, legacy_erc=False, more_fmrs=(1e-4, 1e-3, 1e-7))
    assert list(evaluation.more_edc) == [1e-4]  # 1e-3 is the main one; 1e-7 needs 10 million non-mated pairs
    strict = evaluation.edc_at(1e-4)
    assert strict.threshold > evaluation.edc.threshold and strict.params["fmr"] == 1e-4
    assert evaluation.edc_at(1e-3) is evaluation.edc
    with pytest.raises(InvalidParameterError, match="'fmr'"):
        evaluation.edc_at(1e-2)
    assert evaluation.kinds == {"model:m": "model", "sdd": "label", "ser-fiq": "baseline", "mine": "baseline",
                                "random": "baseline"}
    assert method_kind("model:x") == "model" and method_kind("cr") == "label"
    assert method_kind("norm", {"kind": "label"}) == "label"


@pytest.mark.parametrize("random_state", [0, 4])
def test_bands_are_percentiles_of_the_resampled_curves(random_state):
    rng = np.random.default_rng(random_state)
    n = 60
    similarities = rng.normal(0.5, 0.3, n)
    qualities = {"tied": np.round(rng.uniform(size=n), 1), "distinct": rng.uniform(size=n)}
    qualities["tied"][rng.uniform(size=n) < 0.1] = np.nan
    clusters = rng.integers(0, 11, n)
    grid = np.linspace(0, 0.6, 25)
    bands = edc_bands(similarities, qualities, 0.4, clusters, grid, n_bootstrap=40, random_state=random_state)
    codes = np.unique(clusters, return_inverse=True)[1]
    counts = _cluster_counts(int(codes.max()) + 1, 40, random_state)  # the resamples of bootstrap_pauc
    for method, quality in qualities.items():
        curves = np.array([weighted_edc_curve(similarities, quality, 0.4, counts[b][codes]).error_at(grid)
                           for b in range(40)])
        low, high = np.percentile(curves, [2.5, 97.5], axis=0)
        np.testing.assert_allclose(bands.low[method], low, rtol=1e-12)
        np.testing.assert_allclose(bands.high[method], high, rtol=1e-12)
    with pytest.raises(InvalidParameterError, match="'grid'"):
        edc_bands(similarities, qualities, 0.4, clusters, np.array([0.5, 1.0]))
