"""Outputs never destroy inputs (hostile cases R08-R10): the one rule of fiqa.io.table.check_output, everywhere."""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import StoreError
from fiqa.core.types import QualityTable
from fiqa.io.table import check_output, save_quality, write_table


def _table(n=3):
    return QualityTable(np.arange(n, dtype=np.int64), np.linspace(0, 1, n), np.full(n, "ok", object),
                        np.full(n, "", object), {}, {"method": "m"})


def test_check_output_rules(tmp_path):
    photo = tmp_path / "face.jpg"
    photo.write_bytes(b"\xff\xd8 jpeg bytes")
    with pytest.raises(StoreError, match="would overwrite the input"):
        check_output(photo, [photo])
    with pytest.raises(StoreError, match="inside the input"):
        check_output(tmp_path / "photos" / "x.parquet", [tmp_path / "photos"])
    with pytest.raises(StoreError, match="is not a fiqa table"):
        check_output(photo)  # an existing non-table file is never replaced, even when not named as an input
    store = tmp_path / "store"
    store.mkdir()
    (store / "meta.json").write_text("{}")
    np.save(store / "vectors.npy", np.zeros((1, 2), np.float32))
    with pytest.raises(StoreError, match="inside the embedding store"):
        check_output(store / "samples.parquet")
    # a fiqa table may be replaced by a new version of itself
    path = save_quality(_table(), tmp_path / "labels.parquet")
    assert save_quality(_table(4), path) == path
    with pytest.raises(StoreError, match="is not a fiqa table"):
        write_table(photo, {"a": np.arange(2)}, {})
    assert photo.read_bytes() == b"\xff\xd8 jpeg bytes"


def test_cli_refuses_outputs_over_inputs(lfw_store, lfw_dir, tmp_path):
    photo = tmp_path / "face.jpg"
    photo.write_bytes(next(iter(sorted(lfw_dir.glob("A*/*.jpg")))).read_bytes())
    before = photo.read_bytes()
    result = CliRunner().invoke(main, ["score", str(photo), "--out", str(photo)])  # R09
    assert result.exit_code == 1 and "would overwrite the input" in result.output
    assert photo.read_bytes() == before
    samples = lfw_store.root / "samples.parquet"
    stamp = samples.stat().st_mtime_ns
    result = CliRunner().invoke(main, ["label", str(lfw_store.root), "-m", "norm", "--out", str(samples)])  # R08
    assert result.exit_code == 1 and "inside the input" in result.output
    assert samples.stat().st_mtime_ns == stamp
    labels = save_quality(_table(), tmp_path / "labels.parquet")
    stamp = labels.stat().st_mtime_ns
    result = CliRunner().invoke(main, ["curate", str(labels), "--out", str(labels)])  # R10
    assert result.exit_code == 1 and "would overwrite the input" in result.output
    assert labels.stat().st_mtime_ns == stamp


def test_a_table_and_a_sidecar_of_another_write_are_refused(tmp_path):
    # hostile case I07: a kill between the two renames leaves an old table beside a new sidecar
    from fiqa.io.table import load_quality, sidecar_path

    first = save_quality(_table(3), tmp_path / "a.parquet")
    kept = first.read_bytes()
    save_quality(_table(4), first)
    first.write_bytes(kept)  # the old table back beside the new sidecar
    with pytest.raises(StoreError, match="do not belong together"):
        load_quality(first)
    save_quality(_table(4), first)
    assert len(load_quality(first)) == 4 and "table_sha256" not in load_quality(first).meta
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    assert sidecar_path(first).exists()


def _fake_store(folder):
    """A folder that passes for a store before any reading (what the output rule sees)."""
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text("{}")
    (folder / "samples.parquet").write_bytes(b"PAR1")
    return folder


@pytest.mark.parametrize("case", ["evaluate", "train", "embed"])
def test_folder_outputs_inside_an_input_are_refused(tmp_path, case):
    # issue 25 item 5: one rule for every command that writes, checked before any work
    store = _fake_store(tmp_path / "store")
    labels = save_quality(_table(), tmp_path / "labels.parquet")
    source = tmp_path / "photos"
    (source / "Someone").mkdir(parents=True)
    (source / "Someone" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    args, out, given = {
        "evaluate": (["evaluate", str(store), "--scores", str(labels), "-o", str(store)], store, store),
        "train": (["train", str(store), str(labels), "-o", str(store)], store, store),
        "embed": (["embed", str(source), "-o", str(source / "store")], source / "store", source),
    }[case]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    line = [text for text in result.output.splitlines() if text.startswith("Error:")]
    assert len(line) == 1 and str(out) in line[0] and f"input {given}" in line[0], result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
