"""Hostile cases Z01-Z04: other error paths of train, evaluate, curate and demo (hostile-cases.md, section 10)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from hostile.harness import assert_clean_error, assert_ok, cli, error_line, summary

pytestmark = pytest.mark.lfw


def test_Z01_train_errors(good_store, good_labels, good_dir, work, record_property):
    jpeg = next(good_dir.rglob("*.jpg"))
    cases = [([good_store, work / "labels" / "does_not_exist.parquet"], ("does_not_exist.parquet",)),
             ([good_store, jpeg], (jpeg.name,)),
             ([good_store, good_labels["sdd"], "--epochs", "0"], ("epochs",)),
             ([good_store, good_labels["sdd"], "--lr", "nan"], ("learning_rate",)),
             ([good_store, good_labels["sdd"], "--validation-fraction", "1.5"], ("fraction", "1.5"))]
    observed = []
    for number, (args, needles) in enumerate(cases):
        out = work / "models" / f"z01_{number}"
        run = cli("train", *args, "--out", out)
        assert_clean_error(run, *needles)
        assert not (out / "model.onnx").exists()
        observed.append(error_line(run))
    record_property("observed", " | ".join(observed))


def test_Z02_evaluate_errors(good_store, good_labels, work, record_property):
    a_file = work / "reports" / "z02_file"
    a_file.parent.mkdir(parents=True, exist_ok=True)
    a_file.write_text("not a folder\n", encoding="utf-8")
    cases = [(["--fmr", "2"], "fmr"), (["--discard-limit", "-1"], "discard"), (["--gallery-size", "0"], "gallery"),
             (["--out", a_file], "z02_file")]
    observed = []
    for number, (extra, needle) in enumerate(cases):
        out = ["--out", work / "reports" / f"z02_{number}"] if "--out" not in extra else []
        run = cli("evaluate", good_store, "--scores", good_labels["sdd"], "--n-bootstrap", "0", *out, *extra)
        assert_clean_error(run, needle)
        observed.append(error_line(run))
    assert a_file.read_text(encoding="utf-8") == "not a folder\n"
    record_property("observed", " | ".join(observed))


def test_Z03_curate_odd_inputs(good_store, small_stores, work, record_property):
    from fiqa.io.table import load_quality, read_table, save_quality

    observed = []
    store_table = cli("curate", good_store / "samples.parquet", "--out", work / "labels" / "z03_store.parquet")
    assert_clean_error(store_table, "samples.parquet")
    observed.append(error_line(store_table))

    singles = work / "labels" / "z03_singles.parquet"
    assert_ok(cli("label", small_stores["lab_allsingle"], "-m", "norm", "--out", singles))
    curated = work / "labels" / "z03_singles_curated.parquet"
    run = cli("curate", singles, "--out", curated)
    assert_ok(run)
    columns, _ = read_table(curated)  # a curated list, not a quality table
    assert len(columns["sample_id"]) == 6 and np.asarray(columns["kept"]).all()  # one per identity: all kept
    observed.append(summary(run))

    nan_labels = work / "labels" / "z03_nan.parquet"
    table = load_quality(singles)
    table.score[:3] = np.nan
    save_quality(table, nan_labels)
    run = cli("curate", nan_labels, "--out", work / "labels" / "z03_nan_curated.parquet")
    assert_clean_error(run, "has status ok but score nan")  # issue 25: a non-finite label marked ok is refused
    observed.append(error_line(run))

    rounds = cli("curate", singles, "--out", work / "labels" / "z03_rounds.parquet", "--rounds", "1")
    assert_clean_error(rounds, "--rounds needs --store")
    observed.append(error_line(rounds))
    record_property("observed", " | ".join(observed))


def test_Z04_demo_on_an_empty_or_missing_folder(empty_dir, work, record_property):
    lfw_like = work / "data" / "z04_empty_lfw"
    shutil.copytree(empty_dir, lfw_like)
    runs = [cli("demo", lfw_like, "--out", work / "runs" / "z04a"),
            cli("demo", work / "data" / "nonexistent", "--out", work / "runs" / "z04b")]
    record_property("observed", " | ".join(error_line(run) for run in runs))
    assert_clean_error(runs[0], "z04_empty_lfw")
    assert_clean_error(runs[1], "nonexistent", "does not exist")
