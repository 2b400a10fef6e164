"""``fiqa label`` on a real SFace store of LFW-dev images."""
from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.io.table import load_quality
from fiqa.label import create_labeler, label_store, list_labelers


def test_list_names_every_method():
    result = CliRunner().invoke(main, ["label", "--list"])
    assert result.exit_code == 0
    for name in list_labelers():
        assert name in result.output
    assert "parameters: block_rows, min_class_size, n_negatives, n_positives" in result.output


def test_label_a_store_writes_the_same_table_as_the_api(lfw_store, tmp_path):
    out = tmp_path / "labels.parquet"
    result = CliRunner().invoke(main, ["label", str(lfw_store.root), "--method", "sdd", "-p", "n_repeats=3",
                                       "-p", "signed=true", "--random-state", "7", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = load_quality(out)
    expected = label_store(lfw_store, create_labeler("sdd", n_repeats=3, signed=True, random_state=7))
    np.testing.assert_array_equal(saved.sample_id, lfw_store.samples.sample_id)
    np.testing.assert_array_equal(saved.score, expected.score)
    np.testing.assert_array_equal(saved.status, expected.status)
    assert saved.meta["method"] == "sdd" and saved.meta["random_state"] == 7
    assert saved.meta["params"]["n_repeats"] == 3 and saved.meta["params"]["signed"] is True
    # the LFW subset has 60 singletons: they get no SDD label, with a reason
    singleton = saved.status == "singleton"
    assert singleton.sum() >= 50 and np.isnan(saved.score[singleton]).all()
    assert f"{int(saved.ok.sum()):,} of {len(saved):,} samples labelled" in result.output


def test_bad_method_and_parameter_fail_with_a_message(lfw_store, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["label", str(lfw_store.root), "-m", "sdd-refind", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "Did you mean 'sdd-refined'" in result.output
    result = runner.invoke(main, ["label", str(lfw_store.root), "-m", "sdd", "-p", "n_repeats=0",
                                  "--out", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1 and "'n_repeats' parameter of SDDLabeler must be an int >= 1. Got 0" in result.output
    result = runner.invoke(main, ["label", str(lfw_store.root), "-m", "sdd", "-p", "n_repeats", "--out", "x"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    result = runner.invoke(main, ["label", "-m", "sdd"])
    assert result.exit_code == 2 and "missing STORE, --out" in result.output
