"""Hostile cases R01-R12: re-running with the same ``--out``, and outputs that would overwrite inputs
(hostile-cases.md, section 6)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hostile.harness import EMBED_GOOD, TRAIN, assert_clean_error, assert_ok, cli, error_line, summary

pytestmark = pytest.mark.lfw


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and "features" not in p.parts}


def test_R01_embed_again_is_a_no_op(good_dir, good_store, record_property):
    before = {name: (good_store / name).stat().st_mtime_ns for name in ("vectors.npy", "meta.json")}
    run = cli("embed", good_dir, "--out", good_store, *EMBED_GOOD)
    assert_ok(run)
    after = {name: (good_store / name).stat().st_mtime_ns for name in ("vectors.npy", "meta.json")}
    record_property("observed", f"exit 0, store untouched: {before == after}; {summary(run).split(' / ')[0]}")
    assert before == after


def test_R02_embed_again_with_other_settings(good_dir, good_store, names_dir, record_property):
    before = _snapshot(good_store)
    other_settings = cli("embed", good_dir, "--out", good_store, "--batch-size", "8", "--chunk-size", "4")
    other_source = cli("embed", names_dir, "--out", good_store, *EMBED_GOOD)
    assert_clean_error(other_settings, str(good_store), "differs in: batch_size", "--no-resume")
    assert_clean_error(other_source, str(good_store), "n_samples", "samples_sha256")
    record_property("observed", f"{error_line(other_settings)} | {error_line(other_source)}")
    assert _snapshot(good_store) == before


def test_R03_out_is_not_a_store(good_dir, work, record_property):
    folder = work / "out" / "r03_folder"
    folder.mkdir(parents=True)
    (folder / "keep.txt").write_text("keep me\n", encoding="utf-8")
    a_file = work / "out" / "r03_file"
    a_file.write_text("a file\n", encoding="utf-8")
    into_folder = cli("embed", good_dir, "--out", folder)
    onto_file = cli("embed", good_dir, "--out", a_file)
    assert_clean_error(into_folder, str(folder), "not an embedding store")
    assert_clean_error(onto_file, "r03_file")
    record_property("observed", f"{error_line(into_folder)} | {error_line(onto_file)}")
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]
    assert (folder / "keep.txt").read_text(encoding="utf-8") == "keep me\n"
    assert a_file.read_text(encoding="utf-8") == "a file\n"


def test_R04_label_over_an_existing_table(good_store, good_labels, work, record_property):
    from fiqa.io.table import load_quality, sidecar_path

    path = work / "labels" / "rr.parquet"
    shutil.copy(good_labels["sdd"], path)
    shutil.copy(sidecar_path(good_labels["sdd"]), sidecar_path(path))
    run = cli("label", good_store, "-m", "norm", "--out", path)
    assert_ok(run)
    table = load_quality(path)
    record_property("observed", f"exit 0; the sdd table is replaced, sidecar included (method now "
                                f"{table.meta['method']})")
    assert table.meta["method"] == "norm"
    np.testing.assert_allclose(table.score, load_quality(good_labels["norm"]).score)


def test_R05_score_over_an_existing_table(good_dir, model, work, record_property):
    from fiqa.io.table import load_quality

    people = sorted(p for p in good_dir.iterdir() if p.is_dir())
    path = work / "scores" / "rr.parquet"
    runs = [cli("score", people[0], "--model", model, "--out", path),
            cli("score", people[1], "--model", model, "--out", path)]
    for run in runs:
        assert_ok(run)
    locations = {Path(str(loc)).parent.name for loc in load_quality(path).columns["location"]}
    record_property("observed", f"exit 0 twice; the table now holds only {sorted(locations)}")
    assert locations == {people[1].name}


def test_R06_train_resumes_a_checkpoint_of_other_labels(good_store, good_labels, model_dir, work, record_property):
    out = work / "models" / "t_reuse"
    shutil.copytree(model_dir, out)
    run = cli("train", good_store, good_labels["random"], "--out", out, *TRAIN)
    if run.code != 0:
        record_property("observed", error_line(run))
        assert_clean_error(run, "checkpoint")
        assert (out / "model.onnx").read_bytes() == (model_dir / "model.onnx").read_bytes()  # nothing replaced
        return
    from fiqa.embed.quality_model import read_metadata

    assert_ok(run)  # started over: the new model is the random labels' own
    meta = read_metadata(out / "model.onnx")
    record_property("observed", f"exit 0, started over: label_method {meta['label_method']}")
    assert meta["label_method"] == "random"
    assert (out / "head.onnx").read_bytes() != (model_dir / "head.onnx").read_bytes()


def test_R07_no_stale_files_in_a_reused_report_folder(good_store, good_labels, work, record_property):
    out = work / "reports" / "rerun"
    first = cli("evaluate", good_store, "--scores", good_labels["sdd"], "--scores", good_labels["norm"], "--out", out,
                "--n-bootstrap", "0")
    assert_ok(first)
    legacy = sorted(p.name for p in out.glob("legacy_erc*"))
    second = cli("evaluate", good_store, "--scores", good_labels["norm"], "--no-legacy-erc", "--out", out,
                 "--n-bootstrap", "0")
    assert_ok(second)
    left = sorted(p.name for p in out.glob("legacy_erc*"))
    record_property("observed", f"first run wrote {legacy}; after the second (--no-legacy-erc): {left or 'none'}")
    assert legacy and left == []
    assert "sdd" not in (out / "edc.csv").read_text(encoding="utf-8")


def test_R08_label_into_the_store(good_store, work, record_property):
    store = work / "out" / "g_clobber"
    shutil.copytree(good_store, store, ignore=shutil.ignore_patterns("features"))
    before = _snapshot(store)
    run = cli("label", store, "-m", "norm", "--out", store / "samples.parquet")
    record_property("observed", error_line(run))
    assert_clean_error(run, "samples.parquet")
    assert _snapshot(store) == before
    assert_ok(cli("verify", store))


def test_R09_score_over_the_input_image(good_dir, model, work, record_property):
    folder = work / "data" / "clob"
    folder.mkdir(parents=True)
    face = folder / "face.jpg"
    shutil.copy(next(good_dir.rglob("*.jpg")), face)
    before = face.read_bytes()
    run = cli("score", face, "--model", model, "--out", face)
    record_property("observed", error_line(run))
    assert_clean_error(run, "face.jpg")
    assert face.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == ["face.jpg"]


def test_R10_curate_over_its_input(good_labels, work, record_property):
    from fiqa.io.table import sidecar_path

    path = work / "labels" / "cur_in.parquet"
    shutil.copy(good_labels["sdd"], path)
    shutil.copy(sidecar_path(good_labels["sdd"]), sidecar_path(path))
    before = (path.read_bytes(), sidecar_path(path).read_bytes())
    run = cli("curate", path, "--out", path)
    record_property("observed", error_line(run))
    assert_clean_error(run, "cur_in.parquet")
    assert (path.read_bytes(), sidecar_path(path).read_bytes()) == before


def test_R11_train_with_labels_of_another_store(small_stores, good_labels, work, record_property):
    out = work / "models" / "mismatch"
    run = cli("train", small_stores["lab_single"], good_labels["sdd"], "--out", out, "--epochs", "2")
    record_property("observed", error_line(run))
    assert_clean_error(run, "another store", str(small_stores["lab_single"]))  # the one LABELS file is named 'sdd'
    assert not (out / "model.onnx").exists()


def test_R12_evaluate_with_tables_of_another_store(good_store, good_labels, small_stores, bad_dir, model, work,
                                                  record_property):
    loose = work / "scores" / "r12_loose.parquet"
    assert_ok(cli("score", bad_dir / "Variants", bad_dir / "Celine_Dion", bad_dir / "Yao_Ming", "--model", model,
                  "--out", loose))
    runs = [cli("evaluate", small_stores["lab_single"], "--scores", good_labels["sdd"], "--out",
                work / "reports" / "mismatch", "--n-bootstrap", "0"),
            cli("evaluate", good_store, "--scores", loose, "--out", work / "reports" / "x", "--n-bootstrap", "0")]
    record_property("observed", " | ".join(error_line(run) for run in runs))
    assert_clean_error(runs[0], str(good_labels["sdd"]))
    assert_clean_error(runs[1], str(loose))
    assert not (work / "reports" / "mismatch" / "report.html").exists()
    assert not (work / "reports" / "x" / "report.html").exists()
