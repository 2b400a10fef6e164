"""The end-to-end demo on a small real LFW-dev subset (runs in CI)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.core.errors import DataSourceError
from fiqa.demo import locate_lfw, run_demo
from fiqa.io.table import load_quality


@pytest.fixture(scope="module")
def demo_run(lfw_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = run_demo(lfw_dir, out, min_images=10, max_identities=12, max_images_per_identity=12, epochs=2,
                      n_nonmated=20_000, random_state=1, progress=False)
    return out, result


def test_demo_reports_every_method_on_held_apart_identities(demo_run):
    out, result = demo_run
    expected = {"sdd", "sdd-refined", "cr", "reference-consensus", "mean-positive", "norm", "random",
                "model:plain head", "model:default", "ser-fiq", "flip-consistency"}
    for set_name in ("natural", "degraded"):
        assert {row["method"] for row in result.summary if row["set"] == set_name} == expected
    page = result.report.read_text(encoding="utf-8")
    assert "model:default" in page and "identities of the held-apart half" in page
    degraded_page = result.degraded_report.read_text(encoding="utf-8")
    assert "model:default" in degraded_page and "Per group: degradation" in degraded_page
    # the training-free methods are scored per image on the same pairs, their cost per image recorded
    demo = json.loads((out / "demo.json").read_text())["params"]
    assert demo["training_free"] == ["ser-fiq", "flip-consistency", "norm"] and demo["serfiq_samples"] == 100
    for row in result.summary:
        cost = row["seconds_per_image"]
        timed = row["method"].startswith("model:") or row["method"] in ("ser-fiq", "flip-consistency", "norm")
        assert (cost is not None and 0 < cost < 60) if timed else cost is None, row["method"]
    serfiq = load_quality(out / "scores" / "ser-fiq.test.parquet")
    assert serfiq.meta["params"]["n_samples"] == 100 and serfiq.meta["params"]["random_state"] == 1
    assert np.all((serfiq.score[serfiq.ok] > 0) & (serfiq.score[serfiq.ok] < 1))
    with open(out / "report-degraded" / "edc.csv", encoding="utf-8") as handle:
        groups = {row["group"] for row in csv.DictReader(handle)}
    assert "all" in groups and any(group.startswith("degradation=") for group in groups)
    split = json.loads((out / "split.json").read_text())
    test_identities = set(split["test"]) if "test" in split else None
    for name in ("plain-head", "default"):
        assert (out / "models" / name / "model" / "model.onnx").is_file()
        trained_on = load_quality(out / "models" / name / "labels.parquet")
        for suffix in ("test", "test-degraded"):
            scores = load_quality(out / "scores" / f"{name}.{suffix}.parquet")
            # no identity the model was trained on is among the scored (evaluated) ones
            assert not set(trained_on.columns["identity"]) & set(scores.columns["identity"])
            if test_identities is not None:
                assert set(scores.columns["identity"]) <= test_identities
            assert np.nanmin(scores.score) >= 0 and np.nanmax(scores.score) <= 100
    # the default recipe trained on augmented copies of training faces, each with its parent and recipe
    augmented = load_quality(out / "models" / "default" / "labels.parquet")
    assert len(augmented) > len(load_quality(out / "models" / "plain-head" / "labels.parquet"))
    assert (out / "summary.json").is_file()
    rows = {(row["set"], row["method"]): row for row in result.summary}
    assert all(0 <= row["fnmr_pauc"] <= 1 for row in rows.values())
    assert all(row["pauc_ci_low"] <= row["fnmr_pauc"] <= row["pauc_ci_high"] for row in rows.values())
    assert rows[("natural", "model:default")]["spearman_with_test_labels"] is not None
    assert rows[("natural", "sdd")]["spearman_with_test_labels"] is None


def test_demo_rerun_reuses_finished_stages(demo_run, lfw_dir):
    out, first = demo_run
    before = {p: p.stat().st_mtime_ns for p in (out / "labels").glob("*.parquet")}
    again = run_demo(lfw_dir, out, min_images=10, max_identities=12, max_images_per_identity=12, epochs=2,
                     n_nonmated=20_000, random_state=1, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out / "labels").glob("*.parquet")} == before
    assert [r["method"] for r in again.summary] == [r["method"] for r in first.summary]
    np.testing.assert_allclose([r["fnmr_pauc"] for r in again.summary], [r["fnmr_pauc"] for r in first.summary])


def test_missing_lfw_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FIQA_LFW", str(tmp_path / "nowhere"))
    with pytest.raises(DataSourceError, match="nowhere: LFW folder does not exist"):
        locate_lfw(tmp_path / "nowhere")
    result = CliRunner().invoke(main, ["demo", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "LFW folder does not exist" in result.output
    with pytest.raises(DataSourceError, match=r"nowhere \(from FIQA_LFW\): LFW folder does not exist"):
        locate_lfw()
    monkeypatch.delenv("FIQA_LFW")  # the package assumes no location: no folder given is an error, not a guess
    with pytest.raises(DataSourceError, match="no LFW folder given: pass one .* or set FIQA_LFW"):
        locate_lfw()


def test_demo_reports_have_their_own_titles_and_paired_differences(demo_run):
    out, result = demo_run
    titles = {name: page.read_text(encoding="utf-8").split("<title>")[1].split("</title>")[0]
              for name, page in (("natural", result.report), ("degraded", result.degraded_report))}
    assert titles["natural"] != titles["degraded"] and "natural" in titles["natural"]
    paired = json.loads((out / "summary.json").read_text())["paired"]
    for set_name in ("natural", "degraded"):
        rows = [row for row in paired if row["set"] == set_name and row["fmr_target"] == 1e-3]
        assert [(r["method"], r["versus"]) for r in rows[:3]] == [("model:plain head", "norm"),
                                                                  ("model:plain head", "flip-consistency"),
                                                                  ("model:plain head", "ser-fiq")]
        assert {r["method"] for r in rows} == {"model:plain head", "model:default"}
        assert all(r["ci_low"] <= r["pauc_difference"] <= r["ci_high"] for r in rows)
    with open(out / "report" / "edc.csv", encoding="utf-8") as handle:
        kinds = {row["method"]: row["kind"] for row in csv.DictReader(handle)}
    assert kinds["mean-positive"] == "label" and kinds["ser-fiq"] == "baseline"
