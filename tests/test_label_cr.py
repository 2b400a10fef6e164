"""CR-FIQA: hand-computed ratios, brute-force equality, classifier centres from .npy and PyTorch checkpoints."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler
from fiqa.label.cr import load_centres
from tolerances import U32, assert_within, cosine_bound, dot_bound

CLASSIFIER = 3.0 * np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)  # rows normalised by the labeller


def test_hand_computed_ratios_with_classifier_centres(tmp_path: Path):
    np.save(tmp_path / "fc.npy", CLASSIFIER)
    vectors = np.array([[0.6, 0.8], [0, 1], [-0.8, -0.6]], dtype=np.float32)
    identities = np.array([0, 1, 2])
    table = create_labeler("cr", centres=tmp_path / "fc.npy").fit(vectors, identities).labels_
    # CCS 0.6, 1, 0.8; NNCCS max over the other rows: 0.8, 0, -0.6. In float32: the inputs 0.6, 0.8 round (u each),
    # the centre rows are normalised (2 operations) and each similarity is a 2-term dot product: gamma_6 of 1
    bound = dot_bound(6)
    np.testing.assert_allclose(table.columns["ccs"], [0.6, 1.0, 0.8], rtol=0, atol=bound)
    np.testing.assert_allclose(table.columns["nnccs"], [0.8, 0.0, -0.6], rtol=0, atol=bound)
    expected_ccs, expected_nnccs = np.array([0.6, 1.0, 0.8]), np.array([0.8, 0.0, -0.6])
    assert_within(table.score, [0.6 / 1.8, 1.0, 0.8 / 0.4], _score_bound(expected_ccs, expected_nnccs, bound))
    official = create_labeler("cr", centres=CLASSIFIER, ratio="official").fit(vectors, identities).labels_
    # the official CCS / NNCCS explodes at NNCCS = 0 and flips sign below it: ccs / nnccs moves by
    # (|dccs| |nnccs| + |ccs| |dnnccs|) / nnccs^2 (first order), plus the quotient's own rounding
    ccs, nnccs = expected_ccs[[0, 2]], expected_nnccs[[0, 2]]
    assert_within(official.score[[0, 2]], [0.75, -4 / 3],
                  2 * bound * (np.abs(nnccs) + np.abs(ccs)) / nnccs**2 + 4 * U32 * 4 / 3)
    assert np.isposinf(official.score[1])


def _brute_force(vectors, identities, leave_one_out):
    x = vectors.astype(np.float64)
    classes = np.unique(identities)
    centres = np.stack([x[identities == c].mean(axis=0) for c in classes])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ccs, nnccs = np.empty(len(x)), np.empty(len(x))
    for i in range(len(x)):
        own = np.searchsorted(classes, identities[i])
        if leave_one_out:
            others = (identities == identities[i]) & (np.arange(len(x)) != i)
            centre = x[others].mean(axis=0)
            ccs[i] = x[i] @ centre / np.linalg.norm(centre)
        else:
            ccs[i] = x[i] @ centres[own]
        nnccs[i] = max(x[i] @ centres[j] for j in range(len(classes)) if j != own)
    return ccs, nnccs


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_class_mean_centres_equal_brute_force(leave_one_out):
    data = make_embeddings(250, 16, 25, min_class_size=2, random_state=8)
    # tiny blocks so that the own class falls in every position of the centre blocks
    table = create_labeler("cr", leave_one_out=leave_one_out, block_rows=7, centre_block=4).fit(
        data.vectors, data.identities).labels_
    ccs, nnccs = _brute_force(data.vectors, data.identities, leave_one_out)
    # float32 against float64: a centre sums up to m member vectors (gamma_m of the sum of their lengths, m, against
    # the centre's length |sum|), is normalised (d + 2 operations) and dotted with a unit vector (gamma_d)
    sizes = np.bincount(data.identities)
    sums = np.stack([data.vectors[data.identities == c].astype(np.float64).sum(axis=0) for c in np.unique(
        data.identities)])
    condition = float(np.max(sizes[sizes > 0] / np.linalg.norm(sums, axis=1)))
    if leave_one_out:  # the leave-one-out centre (sum - x) / (m - 1) can be shorter: bound its length from below
        condition = float(np.max(sizes) / min(np.linalg.norm(data.vectors[i] - sums[data.identities[i]]) for i in
                                              range(len(data.vectors)) if sizes[data.identities[i]] > 1))
    bound = dot_bound(int(sizes.max()) + 2 * 16 + 2, condition)
    np.testing.assert_allclose(table.columns["ccs"], ccs, rtol=0, atol=bound)
    np.testing.assert_allclose(table.columns["nnccs"], nnccs, rtol=0, atol=bound)
    assert_within(table.score, ccs / (nnccs + 1 + 1e-9), _score_bound(ccs, nnccs, 2 * bound))
    if leave_one_out:  # leaving the image out can only lower its own-class similarity
        plain = create_labeler("cr").fit(data.vectors, data.identities).labels_
        assert (table.columns["ccs"] < plain.columns["ccs"] + 1e-9).all()


def test_classifier_from_a_checkpoint_by_key(tmp_path: Path):
    data = make_embeddings(120, 8, 10, random_state=9)
    weight = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)  # more classes than identities
    torch.save({"epoch": 3, "state_dict": {"head.weight": torch.from_numpy(weight), "bias": torch.zeros(12)}},
               tmp_path / "model.pt")
    torch.save(torch.from_numpy(weight), tmp_path / "bare.pt")
    from_key = create_labeler("cr", centres=str(tmp_path / "model.pt"), centres_key="head.weight").fit(
        data.vectors, data.identities).labels_
    from_bare = create_labeler("cr", centres=tmp_path / "bare.pt").fit(data.vectors, data.identities).labels_
    np.testing.assert_array_equal(from_key.score, from_bare.score)
    unit = weight / np.linalg.norm(weight, axis=1, keepdims=True)
    similarity = data.vectors.astype(np.float64) @ unit.T
    # the labeller normalises the rows in float32 (d + 2 operations) and takes 8-term dot products: gamma_18 of 1
    bound = dot_bound(8 + 8 + 2)
    np.testing.assert_allclose(from_key.columns["ccs"], similarity[np.arange(120), data.identities], rtol=0,
                               atol=bound)
    similarity[np.arange(120), data.identities] = -np.inf
    np.testing.assert_allclose(from_key.columns["nnccs"], similarity.max(axis=1), rtol=0, atol=bound)
    # string identities that are integers map onto the classifier rows too; the labeller normalises ``unit``
    # again (float32, 10 operations), then the same 8-term products: two paths within 2 gamma_18
    from_str = create_labeler("cr", centres=unit).fit(data.vectors, data.identities.astype(str)).labels_
    assert_within(from_str.score, from_key.score,
                  _score_bound(from_key.columns["ccs"], from_key.columns["nnccs"], 2 * bound))
    with pytest.raises(ModelFileError, match="model.pt: a 'centres_key' is needed; 2-D tensors in the "
                                             "checkpoint: state_dict.head.weight|head.weight"):
        create_labeler("cr", centres=tmp_path / "model.pt").fit(data.vectors, data.identities)
    with pytest.raises(ModelFileError, match="no tensor under key 'fc.weight'"):
        create_labeler("cr", centres=tmp_path / "model.pt", centres_key="fc.weight").fit(
            data.vectors, data.identities)


def test_centre_errors_name_the_problem(tmp_path: Path):
    data = make_embeddings(120, 8, 10, random_state=9)
    with pytest.raises(InvalidParameterError, match="a row for every identity; it has 5 rows. Got 'identity 5"):
        create_labeler("cr", centres=np.eye(5, 8, dtype=np.float32)).fit(data.vectors, data.identities)
    with pytest.raises(InvalidParameterError, match="integer identities 0 .. C-1 .* Got \"identity 'x0'\""):
        create_labeler("cr", centres=np.ones((10, 8))).fit(
            data.vectors, np.char.add("x", data.identities.astype(str)))
    with pytest.raises(InvalidParameterError, match="d=8 columns"):
        create_labeler("cr", centres=np.ones((10, 4))).fit(data.vectors, data.identities)
    with pytest.raises(InvalidParameterError, match="'leave_one_out' parameter of CRLabeler must be False when"):
        create_labeler("cr", centres=np.ones((10, 8)), leave_one_out=True).fit(data.vectors, data.identities)
    with pytest.raises(ModelFileError, match="missing.npy: centres file does not exist"):
        load_centres(tmp_path / "missing.npy")
    (tmp_path / "w.txt").write_text("1 2")
    with pytest.raises(ModelFileError, match="w.txt: centres must be a .npy file or a PyTorch checkpoint"):
        load_centres(tmp_path / "w.txt")
    with pytest.raises(ModelFileError, match="centre row 1 is all zeros"):
        load_centres(np.array([[1.0, 0], [0, 0]]))


def _score_bound(ccs, nnccs, similarity_bound):
    """How far ``ccs / (nnccs + 1 + 1e-9)`` moves when ``nnccs`` moves by ``similarity_bound`` (its derivative
    ``ccs / (nnccs + 1)^2`` on the interval), plus two float32 roundings of the quotient in each path."""
    low = np.maximum(nnccs + 1 + 1e-9 - similarity_bound, 1e-9)
    return np.abs(ccs) * similarity_bound / (low * (nnccs + 1 + 1e-9)) + 4 * U32 * np.abs(ccs) / low


@pytest.mark.numerics
@pytest.mark.parametrize("leave_one_out", [False, True])
def test_approximate_nearest_centre_finds_the_exact_one(leave_one_out):
    # the recall floor stated in fiqa.label.cr: misses need a rounding error beyond 6 sigma, so none here
    data = make_embeddings(3000, 64, 400, min_class_size=2, random_state=11)
    exact = create_labeler("cr", leave_one_out=leave_one_out).fit(data.vectors, data.identities).labels_
    # small blocks: the own class falls in every position of the centre blocks, and rows span several blocks
    approximate = create_labeler("cr", leave_one_out=leave_one_out, nearest="approximate", block_rows=97,
                                 centre_block=37).fit(data.vectors, data.identities).labels_
    # the same nearest centre, its similarity computed by another GEMM (re-rank vs full scan): 2 gamma_64
    bound = cosine_bound(64)
    np.testing.assert_allclose(approximate.columns["nnccs"], exact.columns["nnccs"], rtol=0, atol=bound)
    np.testing.assert_array_equal(approximate.columns["ccs"], exact.columns["ccs"])  # the same code path
    assert_within(approximate.score, exact.score, _score_bound(exact.columns["ccs"], exact.columns["nnccs"], bound))
    assert approximate.meta["params"]["nearest"] == "approximate"


@pytest.mark.numerics
def test_approximate_search_resolves_near_ties_below_the_int8_step():
    # centres in pairs 1e-4 apart (far below the int8 step of ~0.01 here): the screening cannot order a pair,
    # so both must stay candidates and the exact re-rank must pick the nearer one
    from fiqa.label.cr import approximate_nearest_other

    rng = np.random.default_rng(5)
    base = rng.normal(size=(60, 32)).astype(np.float32)
    twins = base + 1e-4 * rng.normal(size=base.shape).astype(np.float32)
    centres = np.concatenate([base, twins])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    own = rng.integers(0, len(centres), size=500)
    found = approximate_nearest_other(vectors, centres, own, block_rows=64, centre_block=50)
    similarity = vectors.astype(np.float64) @ centres.T.astype(np.float64)
    similarity[np.arange(500), own] = -np.inf
    # float32 re-rank against float64: one float32 dot product of 32 unit-vector terms (gamma_32) and the float32
    # inputs' own rounding, bounded together by 2 gamma_32; the twins are 1e-4 apart, far more than that
    np.testing.assert_allclose(found, similarity.max(axis=1), rtol=0, atol=cosine_bound(32))
    # with classifier centres through the labeller: the same answer as the exact search
    identities = rng.integers(0, len(centres), size=500)
    exact = create_labeler("cr", centres=centres).fit(vectors, identities).labels_
    approximate = create_labeler("cr", centres=centres, nearest="approximate").fit(vectors, identities).labels_
    np.testing.assert_allclose(approximate.columns["nnccs"], exact.columns["nnccs"], rtol=0, atol=cosine_bound(32))


def test_nearest_must_be_exact_or_approximate():
    data = make_embeddings(120, 8, 10, random_state=9)
    with pytest.raises(InvalidParameterError, match="'nearest' parameter of CRLabeler must be one of 'exact', "
                                                    "'approximate'. Got 'hnsw'"):
        create_labeler("cr", nearest="hnsw").fit(data.vectors, data.identities)


@pytest.mark.numerics
@pytest.mark.parametrize("trial", range(12))
def test_approximate_search_equals_exact_across_block_and_group_edges(trial):
    # centre counts that are and are not multiples of the screening group, blocks of 1 row or 1 centre, vectors
    # whose own centre is the last one (the one the padding repeats), near-twin centres
    from fiqa.label.cr import SCREEN_GROUP, approximate_nearest_other

    rng = np.random.default_rng(100 + trial)
    n_centres = int(rng.choice([2, SCREEN_GROUP - 1, SCREEN_GROUP, SCREEN_GROUP + 1, 3 * SCREEN_GROUP + 5, 257]))
    dim, n = int(rng.integers(2, 48)), int(rng.integers(1, 400))
    centres = rng.normal(size=(n_centres, dim)).astype(np.float32)
    if trial % 2:
        half = n_centres // 2
        centres[half:2 * half] = centres[:half] + 1e-4 * rng.normal(size=(half, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    own = rng.integers(0, n_centres, size=n)
    own[::3] = n_centres - 1
    vectors = centres[own] + rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = approximate_nearest_other(vectors, centres, own, block_rows=int(rng.integers(1, 200)),
                                      centre_block=int(rng.integers(1, 300)))
    similarity = vectors @ centres.T
    similarity[np.arange(n), own] = -np.inf
    # two float32 GEMMs of other blockings over unit vectors of dim values: 2 gamma_dim (twins: 1e-4 apart)
    np.testing.assert_allclose(found, similarity.max(axis=1), rtol=0, atol=cosine_bound(dim))
