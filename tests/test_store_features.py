"""Feature columns stored by the embedding pass: one SFace run, the same embeddings, resumable chunks, the store's
checks, augmented copies, and training that reads them instead of running SFace a second time.

The expectations come from the independent path: the full feature graph (:func:`fiqa.embed.features.feature_graph`,
run by :class:`FeatureExtractor` on crops re-made from the store), which is what the feature cache holds.
"""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import lfw_subset
from fiqa.augment.copies import augment_store
from fiqa.augment.crops import load_crops
from fiqa.cli import main
from fiqa.core.errors import InvalidParameterError, StoreError
from fiqa.embed import create_embedder
from fiqa.embed.extract import SampleFailedError, embed_source
from fiqa.embed.features import (
    SFACE_TAPS,
    STORE_COLUMNS,
    FeatureEmbedder,
    FeatureExtractor,
    column_indices,
)
from fiqa.io.table import save_quality
from fiqa.label import create_labeler, label_store
from fiqa.store import open_features, open_store, partial_path
from fiqa.train.config import TrainConfig
from fiqa.train.features import StoreFeatureInputs, feature_inputs, store_features
from fiqa.train.models import QualityHead
from fiqa.train.recipe import ModelRecipe, train_recipe
from fiqa.train.regressor import input_columns, train_regressor
from tolerances import U32, assert_within, two_paths

pytestmark = [pytest.mark.lfw, pytest.mark.slow]

LAST_MEAN = column_indices(SFACE_TAPS, STORE_COLUMNS)
CHUNK = 16


def expected_features(store, rows) -> np.ndarray:
    """The full feature graph on the rows' re-created crops, float16: what the feature cache would hold."""
    return FeatureExtractor(threads=1)(load_crops(store, rows)).astype(np.float16)


def assert_same_float16(actual, expected) -> None:
    """Equal as float16 values, allowing one unit in the last place (another thread count may round differently)."""
    np.testing.assert_array_max_ulp(np.asarray(actual, np.float16), np.asarray(expected, np.float16), maxulp=1)


def without_features(store, path: Path):
    """A copy of ``store`` as an extraction without features writes it (no features.npy, no meta entry)."""
    shutil.copytree(store.root, path, ignore=shutil.ignore_patterns("features.npy", "features"))
    meta = json.loads((path / "meta.json").read_text())
    del meta["features"]
    meta["plan"].pop("features")
    (path / "meta.json").write_text(json.dumps(meta))
    return open_store(path)


@pytest.fixture(scope="module")
def photos(lfw_dir, tmp_path_factory) -> Path:
    """A list file: 46 LFW-dev photos of 8 people and 6 singletons, then a file that is not an image (row 46)."""
    folder = tmp_path_factory.mktemp("feature_photos")
    good = lfw_subset(lfw_dir, n_identities=8, min_images=5, max_images=5, n_singletons=6)
    (folder / "notes.jpg").write_text("not a picture\n", encoding="utf-8")
    for path, _ in good:  # beside the list: a list file's entries outside its folder are refused
        shutil.copyfile(path, folder / Path(path).name)
    rows = [f"{folder / Path(path).name},{identity}\n" for path, identity in good] + [
        f"{folder / 'notes.jpg'},broken\n"]
    (folder / "list.csv").write_text("path,identity\n" + "".join(rows), encoding="utf-8")
    return folder / "list.csv"


@pytest.fixture(scope="module")
def stores(photos, tmp_path_factory):
    """The same photos embedded without and with features (1 onnxruntime thread, chunks of 16)."""
    folder = tmp_path_factory.mktemp("feature_stores")
    common = {"backend_params": {"threads": 1}, "chunk_size": CHUNK, "batch_size": 8, "progress": False}
    plain = embed_source(photos, folder / "plain", **common)
    with_features = embed_source(photos, folder / "features", features=True, **common)
    return plain, with_features


def test_one_run_gives_the_same_embeddings_and_the_head_inputs(stores):
    plain, store = stores
    for name in ("vectors.npy", "norms.npy", "landmarks.npy"):  # byte for byte the store without features
        assert (store.root / name).read_bytes() == (plain.root / name).read_bytes(), name
    np.testing.assert_array_equal(store.status, plain.status)
    assert {k: v for k, v in store.meta["plan"].items() if k != "features"} == plain.meta["plan"]
    assert "features" not in plain.meta and open_features(plain) is None

    features, info = open_features(store)
    assert features.shape == (len(store), 1024) and features.dtype == np.float16 and not features.flags.writeable
    assert info["columns"] == ["conv_14_relu/mean"] and info["dim"] == 1024
    assert info["spec"] == json.loads(json.dumps(SFACE_TAPS.to_dict()))
    assert store.meta["params"]["features"] is True
    assert np.isnan(features[~store.ok]).all() and store.status[-1] == "not_an_image"
    rows = np.flatnonzero(store.ok)
    assert_same_float16(features[rows], expected_features(store, rows)[:, LAST_MEAN])
    # what the default head reads is what the store holds
    assert set(QualityHead().columns.tolist()) == set(LAST_MEAN.tolist())

    growth = (store.root / "features.npy").stat().st_size / len(store)
    assert growth <= 4096 + 128 / len(store)  # 2 KiB per image, plus the .npy header
    plain_size = sum(p.stat().st_size for p in plain.root.iterdir())
    assert sum(p.stat().st_size for p in store.root.iterdir()) - plain_size <= 4096 * len(store)


@pytest.mark.numerics
def test_feature_embedder_computes_any_columns_like_the_feature_graph(stores):
    _, store = stores
    rows = np.flatnonzero(store.ok)[:5]
    crops = load_crops(store, rows)
    embedder = create_embedder("sface", threads=1)
    columns = ["fc1/log_norm", "conv_4_relu/std", "fc1", "conv_4_relu/mean", "conv_12_relu/std"]
    tapped = FeatureEmbedder(embedder, columns=columns)
    assert tapped.columns == ("conv_4_relu/mean", "conv_4_relu/std", "conv_12_relu/std", "fc1", "fc1/log_norm")
    vectors, values = tapped(crops)
    np.testing.assert_array_equal(vectors, embedder.embed(crops))
    full = FeatureExtractor(threads=1)(crops)
    assert values.shape == (5, tapped.width) == (5, 128 + 128 + 512 + 128 + 1)
    # the same nodes on the same input in both graphs (SFace's with pooling added, and the feature graph), 1 thread:
    # bit-identical by construction
    np.testing.assert_array_equal(values, full[:, tapped.index])
    # log |v| in the graph (ReduceSum of 128 squares, Log, * 0.5) against numpy's float32 norm: each norm^2 within
    # gamma_130 relative, so log |v| within gamma_130 / 2 absolute per path, plus the log's own rounding
    log_norm = np.log(np.linalg.norm(vectors, axis=1))
    assert_within(values[:, -1], log_norm, two_paths(130) / 2 + 2 * U32 * np.abs(log_norm))

    with pytest.raises(InvalidParameterError, match="columns"):
        FeatureEmbedder(embedder, columns=["conv_99/mean"])
    with pytest.raises(InvalidParameterError, match="columns"):
        FeatureEmbedder(embedder, columns=[])
    with pytest.raises(InvalidParameterError, match="SFaceEmbedder"):
        FeatureEmbedder(create_embedder("sface-opencv"))


def test_features_resume_chunk_by_chunk_like_the_vectors(photos, stores, tmp_path):
    """Chunks 0-1 of an interrupted run are there (the broken file stops it in chunk 2); chunk 1 is deleted and
    chunk 0's features altered: the rerun redoes chunk 1 and 2 and keeps chunk 0 as it found it."""
    _, complete = stores
    out = tmp_path / "store"
    common = {"backend_params": {"threads": 1}, "chunk_size": CHUNK, "batch_size": 8, "progress": False}
    with pytest.raises(SampleFailedError, match="notes.jpg"):
        embed_source(photos, out, features=True, on_error="raise", **common)
    partial = partial_path(out)
    assert sorted(p.name for p in partial.glob("chunk-*.npz")) == ["chunk-0000000.npz", "chunk-0000001.npz"]
    with pytest.raises(StoreError, match="features"):  # the chunks hold features: a run without them must not mix
        embed_source(photos, out, **common)
    (partial / "chunk-0000001.npz").unlink()
    with np.load(partial / "chunk-0000000.npz") as data:
        altered = {name: data[name] for name in data.files}
    altered["features"] = altered["features"] * np.float16(2)
    with open(partial / "chunk-0000000.npz", "wb") as handle:
        np.savez(handle, **altered)

    resumed = embed_source(photos, out, features=True, **common)
    features, expected = open_features(resumed)[0], open_features(complete)[0]
    np.testing.assert_array_equal(features[:CHUNK], expected[:CHUNK] * np.float16(2))  # kept, not redone
    np.testing.assert_array_equal(features[CHUNK:], expected[CHUNK:])
    assert (resumed.root / "vectors.npy").read_bytes() == (complete.root / "vectors.npy").read_bytes()
    assert embed_source(photos, out, features=True, **common).meta == resumed.meta  # complete: nothing to do


def test_open_store_checks_the_features_file(stores, tmp_path):
    _, store = stores
    copy = tmp_path / "copy"
    shutil.copytree(store.root, copy)
    open_store(copy)
    np.save(copy / "features.npy", np.zeros((len(store), 1024), np.float32))
    with pytest.raises(StoreError, match="expected float16 of shape"):
        open_store(copy)
    (copy / "features.npy").unlink()
    with pytest.raises(StoreError, match="features.npy cannot be read"):
        open_store(copy)


def test_features_need_sface_and_a_bool(photos, tmp_path):
    with pytest.raises(InvalidParameterError, match="'features' parameter of embed_source"):
        embed_source(photos, tmp_path / "a", backend="sface-opencv", features=True, progress=False)
    with pytest.raises(InvalidParameterError, match="a bool"):
        embed_source(photos, tmp_path / "b", features="yes", progress=False)
    assert not (tmp_path / "a").exists() and not partial_path(tmp_path / "a").exists()


def test_store_feature_inputs_give_the_full_vector_with_the_stored_columns(stores):
    _, store = stores
    inputs = StoreFeatureInputs(store)
    rows = np.flatnonzero(store.ok)
    assert len(inputs) == len(store) and inputs.shape == (len(store), SFACE_TAPS.dim)
    vector = inputs[int(rows[3])]
    assert vector.dtype == np.float32 and vector.shape == (SFACE_TAPS.dim,)
    np.testing.assert_array_equal(vector[LAST_MEAN], open_features(store)[0][rows[3]].astype(np.float32))
    assert not np.delete(vector, LAST_MEAN).any()
    picked = rows[[7, 2, 5]]  # any order, as the loader asks
    np.testing.assert_array_equal(inputs[picked], np.stack([inputs[int(row)] for row in picked]))
    copied = pickle.loads(pickle.dumps(inputs))  # a DataLoader worker reopens the file
    assert len(pickle.dumps(inputs)) < (store.root / "features.npy").stat().st_size / 4  # not the values
    np.testing.assert_array_equal(copied[int(rows[3])], vector)

    head, taps = input_columns("head"), input_columns("taps")
    np.testing.assert_array_equal(head, LAST_MEAN)
    np.testing.assert_array_equal(taps, np.arange(SFACE_TAPS.dim))
    assert input_columns("mobilefacenet") is None
    state = torch.get_rng_state()
    input_columns("taps", {"hidden": 16})
    assert torch.equal(torch.get_rng_state(), state)  # building the probe head leaves the seed alone
    assert store_features(store, columns=head) is not None
    assert store_features(store, columns=taps) is None  # the taps head needs the cache


def test_a_head_the_store_features_do_not_serve_falls_back_to_the_cache(stores, tmp_path):
    _, store = stores
    rows = np.flatnonzero(store.ok)[:3]
    cached = feature_inputs(store, rows, columns=input_columns("taps"), cache_dir=tmp_path, progress=False)
    assert isinstance(cached, np.ndarray) and cached.shape == (len(store), SFACE_TAPS.dim)
    assert_same_float16(cached[rows], expected_features(store, rows))
    assert_same_float16(cached[rows][:, LAST_MEAN], open_features(store)[0][rows])


@pytest.fixture(scope="module")
def labels(stores, tmp_path_factory):
    _, store = stores
    table = label_store(store, create_labeler("sdd", n_positives=4, n_negatives=8, n_repeats=3, random_state=0))
    return save_quality(table, tmp_path_factory.mktemp("feature_labels") / "sdd.parquet")


@pytest.mark.numerics
def test_training_from_store_features_equals_training_from_the_cache(stores, labels, tmp_path, monkeypatch):
    _, store = stores
    plain = without_features(store, tmp_path / "plain")
    config = TrainConfig(epochs=3, batch_size=8, random_state=1)
    from_cache = train_regressor(plain, labels, tmp_path / "cache_model", config=config, validation_fraction=0.3)
    assert any((plain.root / "features").glob("*.npy"))  # the second SFace pass ran and filled the cache

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the feature graph ran again")

    monkeypatch.setattr("fiqa.train.features.FeatureExtractor", no_second_pass)
    from_store = train_regressor(store, labels, tmp_path / "store_model", config=config, validation_fraction=0.3)
    assert not (store.root / "features").exists()
    metrics = {name: json.loads((tmp_path / name / "metrics.json").read_text())
               for name in ("cache_model", "store_model")}
    assert metrics["cache_model"]["inputs"] == "feature cache"
    assert metrics["store_model"]["inputs"] == "store features"

    assert from_store.result.best_epoch == from_cache.result.best_epoch
    # the same float16 features (bit-identical, above) in the same order with the same seed: the same training
    np.testing.assert_array_equal([h["validation_loss"] for h in from_store.result.history],
                                  [h["validation_loss"] for h in from_cache.result.history])
    ours = torch.load(tmp_path / "store_model" / "checkpoint.pt", weights_only=True)["best_model"]
    theirs = torch.load(tmp_path / "cache_model" / "checkpoint.pt", weights_only=True)["best_model"]
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=0, msg=name)


def test_augmented_copies_get_their_features_in_the_same_run(stores, tmp_path):
    plain, store = stores
    parents = np.flatnonzero(store.ok)[:4]
    augmented = augment_store(store, tmp_path / "aug", copies=2, random_state=3, rows=parents, progress=False)
    features, info = open_features(augmented)
    assert info == store.meta["features"] and augmented.meta["plan"]["features"] == info
    n = len(store)
    np.testing.assert_array_equal(features[:n], open_features(store)[0])  # originals copied byte for byte
    derived = np.arange(n, len(augmented))
    assert len(derived) == 8 and augmented.ok[derived].all()
    assert_same_float16(features[derived], expected_features(augmented, derived)[:, LAST_MEAN])
    # the copies embed as they would without features
    same = augment_store(plain, tmp_path / "aug_plain", copies=2, random_state=3, rows=parents, progress=False)
    assert open_features(same) is None
    np.testing.assert_array_equal(augmented.vectors[derived], same.vectors[derived])


def test_the_default_recipe_needs_no_second_sface_pass(stores, tmp_path, monkeypatch):
    _, store = stores

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the feature graph ran again")

    monkeypatch.setattr("fiqa.train.features.FeatureExtractor", no_second_pass)
    recipe = ModelRecipe(copies=1, config=TrainConfig(epochs=2, batch_size=16))
    trained = train_recipe(store, tmp_path / "recipe", recipe=recipe, progress=False)
    assert trained.model_path is not None and trained.model_path.is_file()
    assert open_features(open_store(tmp_path / "recipe" / "augmented")) is not None
    assert json.loads((tmp_path / "recipe" / "model" / "metrics.json").read_text())["inputs"] == "store features"
    assert not list((tmp_path / "recipe").rglob("sface-features*"))


def test_fiqa_embed_stores_features_for_sface_by_default(photos, stores, tmp_path):
    _, store = stores
    small = photos.with_name(f"small-{tmp_path.name}.csv")  # beside the photos it names
    small.write_text("\n".join(photos.read_text(encoding="utf-8").splitlines()[:4]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["embed", str(small), "--out", str(tmp_path / "on"), "--batch-size", "8"])
    assert result.exit_code == 0, result.output
    assert "1,024 feature values per image" in result.output
    on = open_store(tmp_path / "on")
    assert_same_float16(open_features(on)[0], open_features(store)[0][:3])
    result = CliRunner().invoke(main, ["embed", str(small), "--out", str(tmp_path / "off"), "--no-features"])
    assert result.exit_code == 0, result.output
    assert open_features(open_store(tmp_path / "off")) is None
    refused = CliRunner().invoke(main, ["embed", str(small), "--out", str(tmp_path / "x"), "--features", "--backend",
                                        "sface-opencv"])
    assert refused.exit_code == 2 and "--features needs --backend sface" in refused.output


def test_fiqa_embed_resumes_a_run_made_without_features_without_them(photos, tmp_path):
    out = tmp_path / "store"
    with pytest.raises(SampleFailedError):  # an interrupted run of an earlier version: no features
        embed_source(photos, out, chunk_size=CHUNK, on_error="raise", progress=False)
    result = CliRunner().invoke(main, ["embed", str(photos), "--out", str(out), "--chunk-size", str(CHUNK)])
    assert result.exit_code == 0, result.output
    assert open_features(open_store(out)) is None
    refused = CliRunner().invoke(main, ["embed", str(photos), "--out", str(out), "--chunk-size", str(CHUNK),
                                        "--features"])
    assert refused.exit_code == 1 and "differs in: features" in refused.output
