"""The embedding store on disk (open_store, load_crops) and the verification figures computed from it."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.augment.crops import load_crops
from fiqa.cli import main
from fiqa.core.comparisons import sample_nonmated_pairs
from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError, StoreError
from fiqa.core.types import SampleTable
from fiqa.detect import ARCFACE_TEMPLATE
from fiqa.evaluate.verify import verification_summary
from fiqa.store import Chunk, PartialStore, StoreMeta, open_features, open_store, partial_path
from tolerances import dot_bound, two_paths


def build_store(path, vectors, identities, *, status=None, locations=None, landmarks=None, aligned=True):
    """Write a store from hand-made arrays through the same code path the extraction uses."""
    vectors = np.asarray(vectors, np.float32)
    n, dim = vectors.shape
    status = np.asarray(status if status is not None else ["ok"] * n, dtype=object)
    raw = np.where((status == "ok")[:, None], vectors, np.nan).astype(np.float32)
    samples = SampleTable(np.arange(n), np.asarray(locations or [f"/nowhere/{i}.png" for i in range(n)], object),
                          np.asarray(identities, object), "list")
    marks = np.full((n, 5, 2), np.nan, np.float32) if landmarks is None else np.asarray(landmarks, np.float32)
    partial = PartialStore(path, {"test": True})
    partial.start(resume=False)
    partial.write_chunk(0, Chunk(0, n, raw, status, np.where(status == "ok", "", "why").astype(object), marks,
                                 np.full(n, -1 if aligned else 1, np.int32), np.full(n, np.nan, np.float32)))
    return partial.finish(samples, 1, dim, StoreMeta(dim=dim, aligned=aligned, source={"kind": "list"}))


def test_store_normalises_and_keeps_norms(tmp_path):
    store = build_store(tmp_path / "s", [[3, 4], [0, 2], [1, 1]], ["a", "a", "b"], status=["ok", "ok", "no_face"])
    # (3, 4) / 5 and (0, 2) / 2 normalised in float32: 2 squares, a root and a division: gamma_4 relative
    np.testing.assert_allclose(store.vectors[:2], [[0.6, 0.8], [0, 1]], rtol=dot_bound(4))
    np.testing.assert_allclose(store.norms[:2], [5, 2])
    assert np.isnan(store.vectors[2]).all() and np.isnan(store.norms[2])
    assert store.ok.tolist() == [True, True, False] and store.dim == 2
    assert not partial_path(tmp_path / "s").exists()


def test_open_store_errors(tmp_path):
    with pytest.raises(StoreError, match="embedding store does not exist"):
        open_store(tmp_path / "none")
    partial_path(tmp_path / "half").mkdir()
    with pytest.raises(StoreError, match="interrupted .* run the same 'fiqa embed' command again"):
        open_store(tmp_path / "half")
    build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"])
    (tmp_path / "s" / "norms.npy").unlink()
    with pytest.raises(StoreError, match=r"not a complete embedding store \(missing norms.npy\)"):
        open_store(tmp_path / "s")
    build_store(tmp_path / "t", [[1, 0], [0, 1]], ["a", "b"])
    np.save(tmp_path / "t" / "vectors.npy", np.zeros((3, 2), np.float32))
    with pytest.raises(StoreError, match=r"vectors.npy: expected float32 of shape \(2, 2\), found float32 \(3, 2\)"):
        open_store(tmp_path / "t")
    meta = json.loads((tmp_path / "t" / "meta.json").read_text())
    (tmp_path / "t" / "meta.json").write_text(json.dumps({**meta, "store_format": 99}))
    with pytest.raises(StoreError, match="unsupported store format 99"):
        open_store(tmp_path / "t")


HEAVY_MODULES = ("onnxruntime", "onnx", "cv2", "torch")

# Runs in a fresh interpreter: the clock starts before ``import fiqa.store`` and stops once the store is opened and
# every part of it read (vectors, norms, samples, features); it reports which of the modules named after the store
# path it loaded.
_OPEN_AND_READ = """
import time
start = time.perf_counter()
import json, sys
import fiqa.store
import numpy as np
store = fiqa.store.open_store(sys.argv[1])
features, info = fiqa.store.open_features(store)
read = [float(np.nansum(array, dtype=np.float64)) for array in (store.vectors, store.norms, features)]
read += [len(set(store.samples.location)), len(set(store.samples.identity)), int(store.ok.sum())]
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "read": read, "columns": info["columns"],
                  "memory_mapped": [isinstance(a, np.memmap) for a in (store.vectors, store.norms, features)],
                  "heavy": [name for name in sys.argv[2:] if name in sys.modules]}))
"""


def test_opening_and_reading_a_store_is_light(tmp_path):
    rng = np.random.default_rng(0)
    store = build_store(tmp_path / "s", rng.normal(size=(6, 8)), ["a", "a", "b", "b", "c", "c"],
                        status=["ok"] * 5 + ["no_face"])
    features = np.where(store.ok[:, None], rng.normal(size=(6, 3)), np.nan).astype(np.float16)
    np.save(tmp_path / "s" / "features.npy", features)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    meta["features"] = {"columns": ["f0", "f1", "f2"], "dim": 3, "dtype": "float16", "file": "features.npy"}
    (tmp_path / "s" / "meta.json").write_text(json.dumps(meta))
    # Best of three fresh interpreters: one run can be stalled by other work on a shared machine, which says nothing
    # about what the import loads. 0.3 s is a generous bound: importing numpy and pyarrow (the two libraries a store
    # needs) takes about 0.15 s of it on an idle core, fiqa's own modules and the reading a few hundredths; what it
    # catches is a heavy import: onnxruntime and onnx took a further second before the store had its own package,
    # pandas (pulled in by pyarrow's dataset reader and to_numpy) 0.3 to 0.5 s.
    runs = [json.loads(subprocess.run([sys.executable, "-c", _OPEN_AND_READ, str(tmp_path / "s"), *HEAVY_MODULES],
                                      capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    for run in runs:
        assert run["heavy"] == []
        assert run["memory_mapped"] == [True, True, True] and run["columns"] == ["f0", "f1", "f2"]
        # the same bytes summed the same way in both processes
        assert run["read"] == [float(np.nansum(array, dtype=np.float64)) for array in (store.vectors, store.norms,
                                                                                      features)] + [6, 3, 5]
    assert min(run["seconds"] for run in runs) <= 0.3, [run["seconds"] for run in runs]


def test_load_crops_warps_with_stored_landmarks(tmp_path):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    (tmp_path / "img.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())
    shift = np.array([37.0, 21.0], np.float32)  # landmarks = template translated: the crop is a plain window
    store = build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"], status=["ok", "no_face"],
                        locations=[str(tmp_path / "img.png"), str(tmp_path / "img.png")],
                        landmarks=[ARCFACE_TEMPLATE + shift, np.full((5, 2), np.nan)], aligned=False)
    crops = load_crops(store, np.array([0]))
    assert crops.shape == (1, 112, 112, 3) and crops.dtype == np.uint8
    np.testing.assert_allclose(crops[0].astype(int), image[21:133, 37:149].astype(int), atol=1)
    with pytest.raises(InvalidParameterError, match=r"rows that have landmarks .*rows \[1\] with status \['no_face'\]"):
        load_crops(store, [1])
    with pytest.raises(InvalidParameterError, match=r"row indices in \[0, 2\)"):
        load_crops(store, [2])


def test_load_crops_of_pre_aligned_store_resizes(tmp_path):
    small = np.full((112, 112, 3), 50, np.uint8)
    large = np.full((224, 224, 3), 150, np.uint8)
    for name, image in [("a.png", small), ("b.png", large)]:
        (tmp_path / name).write_bytes(cv2.imencode(".png", image)[1].tobytes())
    store = build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"],
                        locations=[str(tmp_path / "a.png"), str(tmp_path / "b.png")])
    crops = load_crops(store, np.array([1, 0]))
    np.testing.assert_array_equal(crops[0], np.full((112, 112, 3), 150, np.uint8))
    np.testing.assert_array_equal(crops[1], small)


def _reference_summary(vectors, identities):
    """Brute force over all pairs, AUC as the Mann-Whitney probability (ties count one half)."""
    genuine, impostor = [], []
    for i, j in itertools.combinations(range(len(vectors)), 2):
        (genuine if identities[i] == identities[j] else impostor).append(float(np.dot(vectors[i], vectors[j])))
    wins = sum((g > m) + 0.5 * (g == m) for g in genuine for m in impostor)
    return np.mean(genuine), np.mean(impostor), wins / (len(genuine) * len(impostor)), len(genuine), len(impostor)


def test_verification_summary_matches_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    identities = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"] + ["e"]
    centres = {name: rng.standard_normal(8) for name in set(identities)}
    vectors = np.array([centres[name] + 0.8 * rng.standard_normal(8) for name in identities])
    status = ["ok"] * 10 + ["no_face"]
    store = build_store(tmp_path / "s", vectors, identities, status=status)
    summary = verification_summary(store)
    normalised = vectors[:10] / np.linalg.norm(vectors[:10], axis=1, keepdims=True)
    mean_genuine, mean_nonmated, auc, n_genuine, n_impostor = _reference_summary(normalised, identities[:10])
    assert (summary.n_mated_pairs, summary.n_nonmated_pairs) == (n_genuine, n_impostor) == (10, 35)
    assert summary.n_samples == 10 and summary.n_identities == 4
    # float32 normalisation (10 operations) and 8-term similarities, two paths; then a mean of <= 35 of them
    similarity_bound = two_paths(18) + dot_bound(35)
    assert summary.mean_mated == pytest.approx(mean_genuine, abs=similarity_bound)
    assert summary.mean_nonmated == pytest.approx(mean_nonmated, abs=similarity_bound)
    assert summary.roc_auc == pytest.approx(auc, abs=1e-9)  # a ratio of pair counts: exact unless a pair ties
    assert "ROC AUC" in summary.format() and "mated pairs (all)" in summary.format()
    # beyond max_mated: a seeded sample of that many mated pairs, drawn from all ten
    sampled = verification_summary(store, max_mated=4)
    assert (sampled.n_mated_pairs, sampled.n_mated_available, sampled.n_nonmated_pairs) == (4, 10, 35)
    assert "mated pairs (of 10)" in sampled.format() and sampled == verification_summary(store, max_mated=4)
    mated = sorted(float(np.dot(normalised[i], normalised[j])) for i, j in itertools.combinations(range(10), 2)
                   if identities[i] == identities[j])
    # the sampled mean is the mean of 4 of the 10 mated similarities: between the 4 lowest and the 4 highest
    assert np.mean(mated[:4]) - 1e-6 <= sampled.mean_mated <= np.mean(mated[-4:]) + 1e-6


def test_nonmated_sample_is_seeded_distinct_and_non_mated():
    codes = np.repeat(np.arange(50), 4)
    first, second = sample_nonmated_pairs(codes, 3000, np.random.default_rng(5))
    assert len(first) == 3000
    assert (first < second).all() and (codes[first] != codes[second]).all()
    assert len(set(zip(first.tolist(), second.tolist()))) == 3000
    again = sample_nonmated_pairs(codes, 3000, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again[0])
    assert not np.array_equal(first, sample_nonmated_pairs(codes, 3000, np.random.default_rng(6))[0])
    # fewer non-mated pairs than asked: every one of them, once
    small = np.array([0, 0, 1, 2])
    a, b = sample_nonmated_pairs(small, 100, np.random.default_rng(0))
    assert sorted(zip(a.tolist(), b.tolist())) == [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    # with replacement: exactly as many as asked, still non-mated
    a, b = sample_nonmated_pairs(small, 100, np.random.default_rng(0), distinct=False)
    assert len(a) == 100 and (small[a] != small[b]).all()
    # Every non-mated pair has the same chance: each identity appears about equally often.
    per_identity = np.bincount(codes[np.concatenate([first, second])], minlength=50)
    assert per_identity.min() > 0.6 * per_identity.mean()


def test_verification_needs_identities_and_pairs(tmp_path):
    with pytest.raises(NoUsableSamplesError, match="no sample with status ok and an identity"):
        verification_summary(build_store(tmp_path / "a", [[1, 0], [0, 1]], ["", ""]))
    with pytest.raises(NoUsableSamplesError, match="no mated pairs"):
        verification_summary(build_store(tmp_path / "b", [[1, 0], [0, 1]], ["x", "y"]))
    with pytest.raises(NoUsableSamplesError, match="only one identity"):
        verification_summary(build_store(tmp_path / "c", [[1, 0], [0, 1]], ["x", "x"]))
    with pytest.raises(InvalidParameterError, match="'n_nonmated' parameter of verification_summary"):
        verification_summary(build_store(tmp_path / "d", [[1, 0], [0, 1]], ["x", "y"]), n_nonmated=0)


def test_verify_command(tmp_path):
    store = build_store(tmp_path / "s", [[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], ["a", "a", "b", "b"])
    result = CliRunner().invoke(main, ["verify", str(store.root), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["roc_auc"] == 1.0 and figures["n_mated_pairs"] == 2 and figures["n_nonmated_pairs"] == 4
    missing = CliRunner().invoke(main, ["verify", str(tmp_path / "none")])
    assert missing.exit_code == 1 and "embedding store does not exist" in missing.output


def test_verification_leaves_out_ok_rows_with_non_finite_vectors(tmp_path):
    # hostile case L14: a damaged store (NaN written into an ok row) gives figures, not a traceback
    rng = np.random.default_rng(0)
    identities = ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + ["d"] + ["e"]
    vectors = rng.standard_normal((11, 8))
    store = build_store(tmp_path / "s", vectors, identities)
    damaged = np.load(store.root / "vectors.npy", mmap_mode="r+")
    damaged[0] = np.nan
    damaged.flush()
    del damaged
    summary = verification_summary(open_store(store.root))
    clean = verification_summary(build_store(tmp_path / "t", vectors[1:], identities[1:]))
    assert summary.n_samples == 10 and summary.roc_auc == pytest.approx(clean.roc_auc)


def test_tables_of_another_store_are_refused_before_joining(tmp_path):
    # hostile cases R11/R12: labels or scores joined by sample_id alone landed on another store's images
    from fiqa.core.errors import StoreError
    from fiqa.core.types import QualityTable
    from fiqa.label import create_labeler, label_store
    from fiqa.store import check_table_matches
    from fiqa.train.data import make_targets

    rng = np.random.default_rng(0)
    identities = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    first = build_store(tmp_path / "first", rng.standard_normal((12, 8)), identities,
                        locations=[f"/data/one/{i}.jpg" for i in range(12)])
    second = build_store(tmp_path / "second", rng.standard_normal((12, 8)), identities,
                         locations=[f"/data/two/{i}.jpg" for i in range(12)])
    labels = label_store(first, create_labeler("norm"))
    check_table_matches(first, labels, "labels")  # its own store: fine
    assert len(make_targets(first, labels).rows) == 12
    with pytest.raises(StoreError, match="computed on another store"):
        make_targets(second, labels)
    # a table without a store record but with locations: the locations must be the store's
    loose = QualityTable(np.arange(3, dtype=np.int64), np.ones(3), np.full(3, "ok", object), np.full(3, "", object),
                         {"location": np.array(["/photos/x.jpg", "/photos/y.jpg", "/photos/z.jpg"], object)}, {})
    with pytest.raises(StoreError, match="not the images of"):
        check_table_matches(first, loose, "scores.parquet")
    same = QualityTable(np.arange(3, dtype=np.int64), np.ones(3), np.full(3, "ok", object), np.full(3, "", object),
                        {"location": first.samples.location[:3].copy()}, {})
    check_table_matches(first, same, "scores.parquet")


def test_a_store_with_reordered_duplicated_or_swapped_rows_is_refused(lfw_store, tmp_path):
    # hostile cases L11/L12: the sample table was rewritten consistently (a valid table and sidecar) but no longer
    # matches the vectors the store holds
    import shutil

    from fiqa.core.errors import StoreError
    from fiqa.io.table import read_table, write_table

    def tampered(name, change):
        root = tmp_path / name
        shutil.copytree(lfw_store.root, root, ignore=shutil.ignore_patterns("features"))
        columns, meta = read_table(root / "samples.parquet")
        # written beside the store (fiqa refuses to write into one), then moved in by hand
        outside = write_table(tmp_path / f"{name}.parquet", change(columns), meta)
        shutil.move(outside, root / "samples.parquet")
        shutil.move(outside.with_name(outside.name + ".json"), root / "samples.parquet.json")
        return root

    n = len(lfw_store)
    order = np.random.default_rng(0).permutation(n)
    shuffled = tampered("shuffled", lambda c: {k: v[order] for k, v in c.items()})
    duplicated = tampered("duplicated", lambda c: {k: v[np.r_[0:5, 10:n, 10:15]] for k, v in c.items()})

    def swap(columns):
        location = columns["location"].copy()
        location[[0, 1]] = location[[1, 0]]
        return {**columns, "location": location}

    swapped = tampered("swapped", swap)
    for root in (shuffled, duplicated):
        with pytest.raises(StoreError, match="duplicated, dropped or reordered"):
            open_store(root)
    with pytest.raises(StoreError, match="not the ones the store was made from"):
        open_store(swapped)
    assert len(open_store(lfw_store.root)) == n  # the untouched store still opens


def test_a_second_run_into_the_same_output_is_refused_while_the_first_holds_it(tmp_path):
    # hostile case I08: two 'fiqa embed' into one --out raced and crashed; now the second fails at once, clearly
    from fiqa.core.errors import StoreError

    first = PartialStore(tmp_path / "s", {"test": True})
    first.start(resume=False)
    second = PartialStore(tmp_path / "s", {"test": True})
    with pytest.raises(StoreError, match="another fiqa run is writing this output"):
        second.start(resume=True)
    assert first.root.exists()  # the first run's work is untouched
    first._unlock()  # what install() does once the store is in place (or the process ending does)
    second.start(resume=True)
    second._unlock()


def test_partial_store_refuses_chunks_without_the_promised_features(tmp_path):
    samples = SampleTable(np.arange(3), np.array(["/a", "/b", "/c"], object), np.array(["x", "x", "y"], object),
                          "list")
    partial = PartialStore(tmp_path / "store", {"test": True})
    partial.start(resume=False)
    raw = np.eye(3, 4, dtype=np.float32)
    ok = np.array(["ok"] * 3, object)
    partial.write_chunk(0, Chunk(0, 3, raw, ok, np.array([""] * 3, object), np.zeros((3, 5, 2), np.float32),
                                 np.ones(3, np.int32), np.ones(3, np.float32)))
    meta = StoreMeta(dim=4, source={"kind": "list"}, features={"dim": 6})
    with pytest.raises(StoreError, match="chunk-0000000.npz: chunk holds no features of 6 columns"):
        partial.finish(samples, 1, 4, meta)
    values = np.arange(18, dtype=np.float16).reshape(3, 6)
    partial.write_chunk(0, Chunk(0, 3, raw, ok, np.array([""] * 3, object), np.zeros((3, 5, 2), np.float32),
                                 np.ones(3, np.int32), np.ones(3, np.float32), values))
    assert partial.read_chunk(0).features.dtype == np.float16
    store = partial.finish(samples, 1, 4, meta)
    np.testing.assert_array_equal(open_features(store)[0], values)
