"""The output rule inside the library (issue 25, item 5): the functions that write refuse an output equal to or
inside one of their inputs, as the commands do, before any work; an API caller gets the same one-line StoreError."""
from __future__ import annotations

import numpy as np
import pytest

from fiqa.core.errors import StoreError
from fiqa.core.types import QualityTable
from fiqa.io.table import save_quality
from test_extract import PixelEmbedder, write_crops


def _labels(tmp_path):
    n = 3
    table = QualityTable(np.arange(n, dtype=np.int64), np.linspace(0, 1, n), np.full(n, "ok", object),
                         np.full(n, "", object), {}, {"method": "m"})
    return save_quality(table, tmp_path / "labels.parquet")


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small real store (pixel embedder over pre-aligned crops)."""
    from fiqa.detect import DetectionSettings
    from fiqa.embed.extract import embed_source

    folder = tmp_path_factory.mktemp("lib_outputs")
    write_crops(folder / "data", 6)
    return embed_source(folder / "data", folder / "store", backend=PixelEmbedder(),
                        detection=DetectionSettings(aligned=True), progress=False)


def test_embed_source_refuses_an_output_inside_its_source(tmp_path):
    from fiqa.embed.extract import embed_source
    from fiqa.io import open_source

    write_crops(tmp_path / "data", 3)
    before = _listing(tmp_path)
    for source in (tmp_path / "data", open_source(tmp_path / "data")):  # a path or an opened source
        with pytest.raises(StoreError, match=r"store: the output would be written inside the input .*data"):
            embed_source(source, tmp_path / "data" / "store", backend=PixelEmbedder(), progress=False)
    assert _listing(tmp_path) == before


def test_train_regressor_refuses_the_store_and_the_labels(store, tmp_path):
    pytest.importorskip("torch")
    from fiqa.train import train_regressor

    labels = _labels(tmp_path)
    before = _listing(store.root)
    with pytest.raises(StoreError, match="the output would overwrite the input"):
        train_regressor(store, labels, store.root)  # an opened store
    with pytest.raises(StoreError, match="the output would be written inside the input"):
        train_regressor(str(store.root), labels, store.root / "model")  # a path
    with pytest.raises(StoreError, match="labels.parquet: the output would overwrite the input"):
        train_regressor(store, labels, labels)
    assert _listing(store.root) == before and not (store.root.parent / "model.lock").exists()


def test_train_recipe_refuses_the_store(store):
    pytest.importorskip("torch")
    from fiqa.train.recipe import train_recipe

    before = _listing(store.root)
    with pytest.raises(StoreError, match="the output would be written inside the input"):
        train_recipe(store, store.root / "recipe")
    assert _listing(store.root) == before


def test_write_report_refuses_the_store(store):
    from fiqa.evaluate.report import write_report

    before = _listing(store.root)
    with pytest.raises(StoreError, match="the output would overwrite the input"):
        write_report(None, store.root, store=store)  # refused before the evaluation is looked at
    with pytest.raises(StoreError, match="the output would be written inside the input"):
        write_report(None, store.root / "report", store=store)
    assert _listing(store.root) == before


def test_augment_store_refuses_an_output_inside_its_parent(store):
    from fiqa.augment.copies import augment_store

    before = _listing(store.root)
    with pytest.raises(StoreError, match="the output would be written inside the input"):
        augment_store(store, store.root / "augmented")
    assert _listing(store.root) == before


def test_run_demo_refuses_an_output_among_the_photos(tmp_path):
    pytest.importorskip("torch")
    from fiqa.demo import run_demo

    (tmp_path / "lfw" / "Someone").mkdir(parents=True)
    (tmp_path / "lfw" / "Someone" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    with pytest.raises(StoreError, match="the output would be written inside the input"):
        run_demo(tmp_path / "lfw", tmp_path / "lfw" / "demo")
    assert not (tmp_path / "lfw" / "demo").exists()
