"""StoreMeta and TableMeta: the one reading and writing of a store's meta.json and a quality table's sidecar."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fiqa.core.errors import StoreError
from fiqa.core.types import QualityTable
from fiqa.io.table import load_quality, save_quality, sidecar_path
from fiqa.store import StoreMeta, TableMeta, open_store
from test_store import build_store


def rewrite(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del data[key]
    path.write_text(json.dumps(data))


def test_a_store_meta_round_trips_through_its_file(tmp_path):
    store = build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"], aligned=False)
    on_disk = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert on_disk["dim"] == 2 and on_disk["aligned"] is False and on_disk["counts"] == {"ok": 2}
    assert store.meta == StoreMeta(dim=2, aligned=False, source={"kind": "list"}, counts={"ok": 2})
    assert StoreMeta.from_json(store.meta.to_json(), "x") == store.meta
    assert store.samples.source == "list"


def test_a_store_written_by_the_first_versions_still_opens(tmp_path):
    # the first stores named the recogniser 'embedder' and had no plan, preprocessing or provenance
    build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"])
    meta_file = tmp_path / "s" / "meta.json"
    meta_file.write_text(json.dumps({"store_format": 1, "dim": 2, "aligned": True, "source": {"kind": "folder"},
                                     "counts": {"ok": 2}, "embedder": {"backend": "sface"}, "future_key": [1, 2]}))
    store = open_store(tmp_path / "s")
    assert store.meta.backend == {"backend": "sface"}
    assert store.meta.plan == {} and store.meta.features is None and store.samples.source == "folder"
    assert store.meta.extra == {"future_key": [1, 2]}  # kept, and written back by to_json
    assert store.meta.to_json()["future_key"] == [1, 2] and "embedder" not in store.meta.to_json()


@pytest.mark.parametrize(("changes", "message"), [
    ({"dim": "2"}, "'dim' must be an integer, found '2'"),
    ({"aligned": "yes"}, "'aligned' must be true or false, found 'yes'"),
    ({"counts": {"ok": 1.5}}, "'counts.ok' must be an integer, found 1.5"),
    ({"source": ["list"]}, "'source' must be a JSON object, found ['list']"),
    ({"features": {"dim": None}}, "'features.dim' must be an integer, found None"),
    ({"store_format": 2}, "unsupported store format 2 (expected 1)"),
    ({"store_format": None}, "unsupported store format None (expected 1)"),
    ({"dim": None}, "records no embedding width 'dim'"),
])
def test_a_malformed_store_meta_is_refused_in_one_line_naming_the_file(tmp_path, changes, message):
    build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"])
    rewrite(tmp_path / "s" / "meta.json", **changes)
    with pytest.raises(StoreError) as caught:
        open_store(tmp_path / "s")
    text = str(caught.value)
    assert text.startswith(str(tmp_path / "s" / "meta.json") + ": ") and message in text and "\n" not in text


def test_a_store_meta_that_is_not_an_object_is_refused(tmp_path):
    build_store(tmp_path / "s", [[1, 0], [0, 1]], ["a", "b"])
    (tmp_path / "s" / "meta.json").write_text("[1, 2]")
    with pytest.raises(StoreError, match=r"meta.json: store metadata must be a JSON object, found list"):
        open_store(tmp_path / "s")


def table(meta):
    return QualityTable(np.arange(3, dtype=np.int64), np.array([1.0, 2.0, np.nan]),
                        np.array(["ok", "ok", "no_face"], object), np.array(["", "", "why"], object), {}, meta)


def test_a_table_meta_round_trips_through_its_sidecar(tmp_path):
    meta = {"method": "sdd", "params": {"n_pairs": 5}, "random_state": 7, "store": "/s", "store_sha256": "ab" * 32,
            "n_rows": 3, "status_counts": {"ok": 2, "no_face": 1}, "versions": {"numpy": "2.0"},
            "argv": ["fiqa", "label"], "n_identities": 2, "derived": {"clusters": [1, 2]}}
    path = save_quality(table(meta), tmp_path / "labels.parquet")
    written = json.loads(sidecar_path(path).read_text())
    assert {k: v for k, v in written.items() if k != "table_sha256"} == meta
    loaded = load_quality(path)
    assert loaded.meta == table(meta).meta
    assert (loaded.meta.method, loaded.meta.random_state, loaded.meta.n_rows) == ("sdd", 7, 3)
    assert loaded.meta.argv == ("fiqa", "label")
    assert dict(loaded.meta.record) == {"n_identities": 2, "derived": {"clusters": [1, 2]}}


def test_a_table_written_before_the_rename_reads_its_seed_as_random_state(tmp_path):
    path = save_quality(table({"method": "sdd"}), tmp_path / "labels.parquet")
    rewrite(sidecar_path(path), seed=11)
    loaded = load_quality(path)
    assert loaded.meta.random_state == 11 and "seed" not in loaded.meta.record
    rewrite(sidecar_path(path), method=None)
    assert load_quality(path).meta.method == "labels"  # a sidecar without a method: the file's stem


@pytest.mark.parametrize(("changes", "message"), [
    ({"method": 7}, "'method' must be a string, found 7"),
    ({"random_state": 1.0}, "'random_state' must be an integer, found 1.0"),
    ({"random_state": True}, "'random_state' must be an integer, found True"),
    ({"status_counts": {"ok": "2"}}, "'status_counts.ok' must be an integer, found '2'"),
    ({"params": [1]}, "'params' must be a JSON object, found [1]"),
    ({"argv": "fiqa label"}, "'argv' must be a list of strings, found 'fiqa label'"),
])
def test_a_malformed_table_sidecar_is_refused_in_one_line_naming_it(tmp_path, changes, message):
    path = save_quality(table({"method": "sdd"}), tmp_path / "labels.parquet")
    rewrite(sidecar_path(path), **changes)
    with pytest.raises(StoreError) as caught:
        load_quality(path)
    text = str(caught.value)
    assert text.startswith(str(sidecar_path(path)) + ": ") and message in text and "\n" not in text


def test_updated_applies_fields_and_record_keys_alike():
    meta = TableMeta.from_json({"method": "norm", "seconds_per_image": 0.5}, "x")
    changed = meta.updated(method="model:a", joined_by="location", n_images_timed=4)
    assert (changed.method, changed.joined_by) == ("model:a", "location")
    assert dict(changed.record) == {"seconds_per_image": 0.5, "n_images_timed": 4}
    assert meta.method == "norm"  # frozen: the original is unchanged
    with pytest.raises(ValueError, match="record holds field name"):
        TableMeta(record={"method": "x"})
