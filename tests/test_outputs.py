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


@pytest.fixture(scope="module")
def four_photos(lfw_dir, tmp_path_factory):
    """Two people with two photos each (a store of them embeds in seconds)."""
    from conftest import lfw_subset

    source = tmp_path_factory.mktemp("four_photos") / "photos"
    for path, identity in lfw_subset(lfw_dir, n_identities=2, min_images=2, max_images=2, n_singletons=0):
        (source / identity).mkdir(parents=True, exist_ok=True)
        (source / identity / path.name).write_bytes(path.read_bytes())
    return source


def _embed(source, out, *more):
    return CliRunner().invoke(main, ["embed", str(source), "-o", str(out), "--batch-size", "4", *more])


def test_no_resume_replaces_only_what_fiqa_marked(four_photos, tmp_path):
    # issue 25 item 5: --no-resume deleted any folder holding meta.json and samples.parquet, with everything in it
    from fiqa.core.outputs import MARKER

    lookalike = _fake_store(tmp_path / "lookalike")
    (lookalike / "thesis.tex").write_text("years of work")
    result = _embed(four_photos, lookalike, "--no-resume")
    assert result.exit_code == 1 and f"no {MARKER}" in result.output and "choose another output" in result.output
    assert "delete it" not in result.output  # never advised for a folder holding files fiqa did not write
    assert (lookalike / "thesis.tex").read_text() == "years of work"
    assert not (tmp_path / "lookalike.partial").exists()  # refused before any work

    store = tmp_path / "store"
    assert _embed(four_photos, store).exit_code == 0
    assert (store / MARKER).is_file()
    stamp = (store / "meta.json").stat().st_mtime_ns
    result = _embed(four_photos, store, "--no-resume", "--chunk-size", "2")  # a fiqa-made store is replaced
    assert result.exit_code == 0, result.output
    assert (store / "meta.json").stat().st_mtime_ns != stamp and (store / MARKER).is_file()

    (store / "notes.txt").write_text("mine")  # a file of the user's in a fiqa store: never deleted
    result = _embed(four_photos, store, "--no-resume")
    assert result.exit_code == 1 and "holds files fiqa did not write (notes.txt)" in result.output
    assert (store / "notes.txt").read_text() == "mine"
    (store / "notes.txt").unlink()

    (store / MARKER).unlink()  # a store made before the marker existed: the user deletes it by hand
    result = _embed(four_photos, store, "--no-resume")
    assert result.exit_code == 1 and "made before fiqa marked its outputs" in result.output
    assert (store / "meta.json").stat().st_mtime_ns != stamp and (store / "vectors.npy").is_file()
    assert _embed(four_photos, store, "--chunk-size", "2").exit_code == 0  # same settings: nothing to do, works


def test_no_resume_keeps_a_partial_folder_fiqa_did_not_make(four_photos, tmp_path):
    store = tmp_path / "store"
    partial = tmp_path / "store.partial"
    partial.mkdir()
    (partial / "data.csv").write_text("a,b\n")
    result = _embed(four_photos, store, "--no-resume")
    assert result.exit_code == 1 and "not a folder fiqa made" in result.output
    assert (partial / "data.csv").is_file()


def test_output_folders_fiqa_creates_are_marked(tmp_path):
    from fiqa.core.outputs import MARKER, make_output_dir

    assert (make_output_dir(tmp_path / "a" / "model", "model") / MARKER).is_file()  # what train, evaluate, demo use
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "x.txt").write_text("x")
    assert not (make_output_dir(theirs, "report") / MARKER).exists()  # not made by fiqa: never claimed


def test_train_takes_the_folder_lock_embed_takes(tmp_path):
    # issue 25 item 5: two runs into one folder; the second fails at once, before reading anything
    from fiqa.core.outputs import OutputLock
    from fiqa.store import PartialStore

    store = _fake_store(tmp_path / "store")  # never read: the lock comes first
    labels = save_quality(_table(), tmp_path / "labels.parquet")
    model = tmp_path / "model"
    for holder in (OutputLock(model), PartialStore(model, {"test": True})._output_lock):  # train's, embed's
        with holder:
            result = CliRunner().invoke(main, ["train", str(store), str(labels), "-o", str(model)])
        assert result.exit_code == 1, result.output
        line = [text for text in result.output.splitlines() if text.startswith("Error:")]
        assert len(line) == 1 and "in use by another fiqa process" in line[0] and str(model) in line[0]
        assert not model.exists()
    # released: the same command goes on to read its inputs (and fails on the fake store, not on the lock)
    result = CliRunner().invoke(main, ["train", str(store), str(labels), "-o", str(model)])
    assert result.exit_code == 1 and "in use" not in result.output
