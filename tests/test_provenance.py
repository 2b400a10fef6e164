"""Issue 25, items 3, 4 and 6: tables only with their provenance, escaped human-readable names, plain .npy files,
a folder named like the atomic writer's temporary file. Fixtures made here."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from fiqa.commands._common import printable
from fiqa.core.atomic import load_npy, write_bytes
from fiqa.core.errors import StoreError
from fiqa.core.types import QualityTable
from fiqa.io.table import load_quality, save_quality, sidecar_path


def _table(ids=(0, 1, 2), scores=(1.0, 2.0, 3.0), status=("ok", "ok", "ok")) -> QualityTable:
    n = len(ids)
    return QualityTable(np.asarray(ids, np.int64), np.asarray(scores, np.float64), np.asarray(status, object),
                        np.asarray([""] * n, object), {}, {"method": "test"})


def test_a_table_without_its_sidecar_is_refused(tmp_path):
    path = save_quality(_table(), tmp_path / "labels.parquet")
    assert len(load_quality(path)) == 3
    copy = tmp_path / "copied.parquet"
    shutil.copy(path, copy)  # the table copied, its sidecar left behind
    with pytest.raises(StoreError, match="has no sidecar copied.parquet.json"):
        load_quality(copy)


@pytest.mark.parametrize(("table", "message"), [
    (_table(ids=(0, 1, 1)), "sample_id 1 appears 2 times"),
    (_table(scores=(1.0, np.inf, 3.0)), "sample_id 1 has status ok but score inf"),
    (_table(scores=(1.0, -np.inf, np.nan)), "2 such row"),
])
def test_duplicated_ids_and_non_finite_ok_scores_are_refused(tmp_path, table, message):
    path = save_quality(table, tmp_path / "labels.parquet")
    assert sidecar_path(path).is_file()
    with pytest.raises(StoreError, match=message):
        load_quality(path)


def test_a_non_finite_score_with_another_status_is_fine(tmp_path):
    path = save_quality(_table(scores=(1.0, np.nan, 3.0), status=("ok", "no_face", "ok")), tmp_path / "l.parquet")
    assert len(load_quality(path)) == 3


def test_human_readable_names_cannot_fake_fields_or_lines():
    name = "innocent.jpg\t99.9\tok\nx.jpg"
    shown = printable(name)
    assert "\t" not in shown and "\n" not in shown
    assert shown == "innocent.jpg\\t99.9\\tok\\nx.jpg"
    assert printable("a\\b\x1b[31m\u2028") == "a\\\\b\\x1b[31m\\u2028"
    assert printable("José Müller/ph oto é.jpg") == "José Müller/ph oto é.jpg"


def test_score_stdout_escapes_a_name_with_tab_and_newline(tmp_path):
    import cv2
    from click.testing import CliRunner

    from fiqa.cli import main

    name = "innocent.jpg\t99.9\tok\nx.jpg"
    (tmp_path / name).write_bytes(cv2.imencode(".jpg", np.full((40, 40, 3), 90, np.uint8))[1].tobytes())
    result = CliRunner().invoke(main, ["score", str(tmp_path / name)])
    lines = [line for line in result.stdout.splitlines() if line]
    assert len(lines) == 1 and lines[0].count("\t") == 2, result.stdout
    assert lines[0].split("\t")[1:] == ["nan", "no_face"]


def test_a_zip_saved_as_npy_is_one_line_error(tmp_path):
    path = tmp_path / "vectors.npy"
    with open(path, "wb") as handle:
        np.savez(handle, a=np.zeros(3))
    with pytest.raises(StoreError, match="is a ZIP"):
        load_npy(path, mmap_mode="r")
    np.save(tmp_path / "ok.npy", np.arange(3))
    assert load_npy(tmp_path / "ok.npy").tolist() == [0, 1, 2]


def test_a_store_whose_vectors_are_a_zip_is_refused_by_open_store(tmp_path):
    from fiqa.store import open_store
    from fiqa.store.writer import normalise_rows  # noqa: F401 - the store package is importable without a model

    store = tmp_path / "store"
    store.mkdir()
    (store / "vectors.npy").write_bytes(b"PK\x03\x04" + bytes(60))
    with pytest.raises(StoreError):
        open_store(store)


def test_a_folder_named_like_the_temporary_file_does_not_block_writes(tmp_path):
    target = tmp_path / "model.onnx"
    (tmp_path / f".model.onnx.tmp{os.getpid()}").mkdir()  # the v0.1 temporary name, for this very process
    (tmp_path / ".model.onnx.tmp1").mkdir()  # and one for a process that no longer runs
    write_bytes(target, b"abc")
    write_bytes(target, b"def")
    assert target.read_bytes() == b"def"
    assert (tmp_path / ".model.onnx.tmp1").is_dir()  # not ours to remove
