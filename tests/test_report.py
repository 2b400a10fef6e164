"""Evaluation driver, report files and the ``fiqa evaluate`` command (structure, not pixels)."""
from __future__ import annotations

import base64
import csv
import json
import re
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from comparisons_tools import toy_comparisons
from fiqa.cli import main
from fiqa.core.errors import InvalidParameterError
from fiqa.core.identities import save_split, split_identities
from fiqa.core.types import QualityTable
from fiqa.evaluate.curves import edc_curve, pauc
from fiqa.evaluate.pairs import Comparisons
from fiqa.evaluate.plots import method_styles
from fiqa.evaluate.report import write_report
from fiqa.evaluate.run import RANDOM_METHOD, evaluate_quality
from fiqa.io.table import save_quality
from report_tools import body_rows, embeds_file, fmt, read_page, with_interval


def _base64(path):
    """The base64 text of a written file, as the page embeds it."""
    return base64.b64encode(path.read_bytes()).decode("ascii")


def quality_table(sample_id, score, method):
    score = np.asarray(score, dtype=np.float64)
    status = np.where(np.isnan(score), "not_labelled", "ok").astype(object)
    return QualityTable(np.asarray(sample_id, dtype=np.int64), score, status, np.full(len(score), "", object), {},
                        {"method": method, "params": {"toy": True}})


@pytest.fixture(scope="module")
def toy():
    """600 samples, 60 identities; mated similarity grows with the sample qualities."""
    rng = np.random.default_rng(0)
    n = 600
    quality = rng.uniform(size=n)
    identity = np.arange(n) // 10
    comparisons = toy_comparisons(rng, quality, identity, 0.05, offset=1000, n_nonmated_available=n * (n - 1) // 2)
    return comparisons, np.arange(n) + 1000, quality


def test_evaluate_joins_on_sample_id_and_adds_a_seeded_random_floor(toy):
    comparisons, ids, quality = toy
    shuffled = np.random.default_rng(1).permutation(len(ids))
    partial = quality.copy()
    partial[:50] = np.nan
    tables = [quality_table(ids[shuffled], quality[shuffled], "good"), quality_table(ids, partial, "partial")]
    evaluation = evaluate_quality(comparisons, tables, random_state=3)
    assert evaluation.edc.methods == ["good", "partial", RANDOM_METHOD]
    np.testing.assert_array_equal(evaluation.qualities["good"], quality)  # the shuffled table was re-ordered
    assert evaluation.meta["missing_quality_samples"] == {"good": 0, "partial": 50, "random": 0}
    rows = {row["method"]: row for row in evaluation.edc.table()}
    assert rows["good"]["fnmr_pauc"] < rows[RANDOM_METHOD]["fnmr_pauc"]
    again = evaluate_quality(comparisons, tables, random_state=3)
    np.testing.assert_array_equal(again.qualities[RANDOM_METHOD], evaluation.qualities[RANDOM_METHOD])
    # the pair quality is the minimum: recompute the FNMR pAUC of "good" by hand
    q = quality[comparisons.sample_a - 1000], quality[comparisons.sample_b - 1000]
    manual = evaluate_quality(comparisons, [], random_state=3)  # only the floor: same threshold, same comparisons
    assert manual.edc.threshold == evaluation.edc.threshold
    curve = edc_curve(comparisons.similarity[comparisons.mated], np.minimum(*q)[comparisons.mated],
                      evaluation.edc.threshold)
    assert rows["good"]["fnmr_pauc"] == pytest.approx(pauc(curve, 0.2))


def test_evaluate_rejects_clashing_method_names_and_takes_a_given_random_floor(toy):
    comparisons, ids, quality = toy
    with pytest.raises(InvalidParameterError, match="distinct method names.*'a'.*more than once"):
        evaluate_quality(comparisons, [quality_table(ids, quality, "a"), quality_table(ids, quality, "a")])
    given = evaluate_quality(comparisons, [quality_table(ids, quality, RANDOM_METHOD)])  # used as the floor
    assert given.edc.methods == [RANDOM_METHOD]
    np.testing.assert_array_equal(given.qualities[RANDOM_METHOD], quality)


def test_report_files_and_html_structure(toy, tmp_path):
    comparisons, ids, quality = toy
    # seed 1: the toy qualities are default_rng(0) draws, which a floor seeded 0 would repeat exactly
    evaluation = evaluate_quality(comparisons, [quality_table(ids, quality, "good"),
                                                quality_table(ids, 1 - quality, "inverted")], random_state=1)
    page = write_report(evaluation, tmp_path / "report")
    out = tmp_path / "report"
    for name in ("report.html", "edc.csv", "edc.json", "edc_fnmr.png", "edc_fmr.png", "legacy_erc.csv",
                 "legacy_erc.json", "legacy_erc.png", "distributions.png", "spearman.png", "spearman.csv",
                 "edc_curves.csv", "edc_bands.csv"):
        assert (out / name).is_file(), name
    for name in ("edc_fnmr.png", "edc_fmr.png", "legacy_erc.png", "distributions.png", "spearman.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "edc.csv", encoding="utf-8") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [r["method"] for r in csv_rows] == ["good", RANDOM_METHOD, "inverted"]  # sorted, best first
    assert {r["group"] for r in csv_rows} == {"all"} and csv_rows[0]["kind"] == "label"
    table = evaluation.edc.table()
    assert [float(r["fnmr_pauc"]) for r in csv_rows] == [row["fnmr_pauc"] for row in table]
    data = json.loads((out / "edc.json").read_text())
    assert data["summary"]["n_mated"] == comparisons.n_mated and data["summary"]["discard_limit"] == 0.2
    assert data["meta"]["versions"]["numpy"] == np.__version__
    text = page.read_text(encoding="utf-8")
    parsed = read_page(text)
    # the page's EDC table is edc.csv: same rows in the same order, its numbers as the page writes them
    shown = body_rows(parsed.tables[0])
    random_pauc = next(float(r["fnmr_pauc"]) for r in csv_rows if r["method"] == RANDOM_METHOD)
    assert [r[:3] for r in shown] == [[str(rank), r["method"], r["kind"]] for rank, r in enumerate(csv_rows, 1)]
    assert [r[3:6] for r in shown] == [
        [with_interval(r["fnmr_pauc"], r["pauc_ci_low"], r["pauc_ci_high"]),
         with_interval(r["fnmr_pauc_minus_best"], r["pauc_minus_best_ci_low"], r["pauc_minus_best_ci_high"]),
         fmt(float(r["fnmr_pauc"]) / random_pauc)] for r in csv_rows]
    assert [r[-3:] for r in shown] == [
        [fmt(r["fnmr_at_limit"]), fmt(r["fmr_pauc"]),
         f"{fmt(int(r['n_mated_missing_quality']))} / {fmt(int(r['n_nonmated_missing_quality']))}"] for r in csv_rows]
    # its facts are edc.json's counts and threshold
    summary = data["summary"]
    assert [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", parsed.facts["comparisons used"])] == [
        summary["n_mated"], summary["n_nonmated"], summary["n_samples"]]
    assert parsed.facts["threshold"].split(",")[0] == f"{summary['threshold']:.4f}"
    # every plot written (FNMR and FMR panels, distributions, Spearman matrix, legacy) is the one on the page,
    # the legacy ERC after the EDC panels; no store, so no face gallery
    plots = ("edc_fnmr.png", "edc_fmr.png", "distributions.png", "spearman.png", "legacy_erc.png")
    assert all(embeds_file(text, out / name) for name in plots)
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(plots) and "data:image/jpeg" not in text
    assert text.index(_base64(out / "legacy_erc.png")) > text.index(_base64(out / "edc_fnmr.png"))
    # the legacy table is legacy_erc.json's, never mixed into the EDC table
    legacy = json.loads((out / "legacy_erc.json").read_text())
    keys = [f"auc_fmr_{fmr:g}" for fmr in legacy["params"]["fmrs"]]
    assert [body_rows(t) for t in parsed.tables[1:]] == [[[row["method"], *(fmt(row[k]) for k in keys)]
                                                          for row in legacy["rows"]]]
    assert {row["method"] for row in legacy["rows"]} == {"good", "inverted", RANDOM_METHOD}
    assert "fnmr_pauc" not in legacy["rows"][0]


def test_report_without_legacy_erc(toy, tmp_path):
    comparisons, ids, quality = toy
    evaluation = evaluate_quality(comparisons, [quality_table(ids, quality, "good")], legacy_erc=False)
    page = write_report(evaluation, tmp_path).read_text(encoding="utf-8")
    assert not (tmp_path / "legacy_erc.csv").exists()
    # no legacy table and no legacy plot: the EDC table and the four EDC plots only
    assert len(read_page(page).tables) == 1 and len(re.findall(r'src="data:image/png;base64,', page)) == 4
    with pytest.raises(InvalidParameterError, match="'gallery_size'"):
        write_report(evaluation, tmp_path, gallery_size=0)


# --- the command on a real SFace store of LFW-dev ---------------------------------------------------------------

@pytest.mark.lfw
def test_fiqa_evaluate_on_lfw_store(lfw_store, tmp_path):
    ok = lfw_store.ok
    norms = np.where(ok, lfw_store.norms, np.nan)
    table_path = save_quality(quality_table(lfw_store.samples.sample_id, norms, "norm"), tmp_path / "norm.parquet")
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["evaluate", str(lfw_store.root), "--scores", str(table_path), "--out",
                                       str(out), "--n-nonmated", "5000", "--gallery-size", "3"])
    assert result.exit_code == 0, result.output
    # the command prints each method's pAUC and interval as edc.csv holds them, in its order
    with open(out / "edc.csv", encoding="utf-8") as handle:
        written = [r for r in csv.DictReader(handle) if r["group"] == "all"]
    printed = [line.split() for line in result.output.splitlines() if line.startswith("  ")]
    assert [line[:3] for line in printed] == [[r["method"], "pAUC", fmt(r["fnmr_pauc"])] for r in written]
    assert [" ".join(line[3:5]) for line in printed] == [f"[{fmt(r['pauc_ci_low'])}, {fmt(r['pauc_ci_high'])}]"
                                                         for r in written]
    identity = lfw_store.samples.identity[ok].astype(str)
    sizes = np.unique(identity, return_counts=True)[1]
    summary = json.loads((out / "edc.json").read_text())["summary"]
    assert summary["n_mated"] == int(np.sum(sizes * (sizes - 1) // 2))  # all mated pairs
    assert summary["n_nonmated"] == 5000
    text = (out / "report.html").read_text(encoding="utf-8")
    assert len(re.findall(r'src="data:image/jpeg;base64,', text)) == 2 * 3  # one method: lowest + highest strip
    # each face is captioned with its image file name (the full location on hover)
    relative = r"<span class=file title='[^/'][^']*\.jpg'>[^/]+_<wbr>\d{4}\.<wbr>jpg</span>"  # no absolute path
    assert len(re.findall(relative, text)) == 2 * 3

    split = split_identities(lfw_store.samples.identity, test_fraction=0.5, random_state=0)
    split_path = save_split(split, tmp_path / "split.json")
    held_out = tmp_path / "held_out"
    result = CliRunner().invoke(main, ["evaluate", str(lfw_store.root), "--scores", str(table_path), "--out",
                                       str(held_out), "--identities-from", str(split_path), "--n-nonmated", "3000",
                                       "--no-legacy-erc", "--gallery-size", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads((held_out / "edc.json").read_text())
    assert data["meta"]["comparisons"]["n_usable_samples"] == int(np.sum(split.mask(lfw_store.samples.identity,
                                                                                     "test") & ok))
    assert data["meta"]["identity_filter"]["identities_from"]["n_identities"] == len(split.test)
    assert not (held_out / "legacy_erc.csv").exists()


@pytest.mark.lfw
def test_fiqa_evaluate_reports_bad_input_by_name(lfw_store, tmp_path):
    result = CliRunner().invoke(main, ["evaluate", str(lfw_store.root), "--scores", str(tmp_path / "none.parquet"),
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "none.parquet" in result.output and "does not exist" in result.output
    table_path = save_quality(quality_table(lfw_store.samples.sample_id, np.ones(len(lfw_store)), "q"),
                              tmp_path / "q.parquet")
    result = CliRunner().invoke(main, ["evaluate", str(lfw_store.root), "--scores", str(table_path), "--out",
                                       str(tmp_path / "r"), "--fmr", "0"])
    assert result.exit_code != 0 and "'fmr'" in result.output


def test_a_pairs_file_name_is_escaped_in_the_report(toy, tmp_path):
    comparisons, ids, quality = toy
    hostile = '<script>alert("x")</script>.txt'
    from_file = Comparisons(comparisons.sample_a, comparisons.sample_b, comparisons.mated, comparisons.similarity,
                            {"origin": hostile, "n_skipped": 0})
    evaluation = evaluate_quality(from_file, [quality_table(ids, quality, "good")], random_state=0, legacy_erc=False,
                                  n_bootstrap=0)
    page = write_report(evaluation, tmp_path / "report").read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page


def test_a_report_folder_reused_without_the_legacy_erc_keeps_no_stale_legacy_files(toy, tmp_path):
    # hostile case R07
    comparisons, ids, quality = toy
    tables = [quality_table(ids, quality, "good")]
    write_report(evaluate_quality(comparisons, tables, random_state=0, n_bootstrap=0), tmp_path / "r")
    assert (tmp_path / "r" / "legacy_erc.csv").exists()
    write_report(evaluate_quality(comparisons, tables, random_state=0, n_bootstrap=0, legacy_erc=False), tmp_path / "r")
    assert not any((tmp_path / "r").glob("legacy_erc.*"))
    assert (tmp_path / "r" / "edc.csv").exists()


def test_curve_points_spearman_and_further_fmr_are_exported(tmp_path):
    """On 12,000 non-mated comparisons FMR 1e-4 is resolvable: its pAUCs sit beside the main ones; the exported
    curve points are the curves' own steps, the Spearman matrix scipy's."""
    from matplotlib.colors import to_hex
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    n = 400
    quality = rng.uniform(size=n)
    identity = np.arange(n) // 8
    comparisons = toy_comparisons(rng, quality, identity, 0.16, n_nonmated_available=n * (n - 1) // 2)
    noisy = np.round(quality + rng.normal(0, 0.2, n), 2)  # ties
    tables = [quality_table(np.arange(n), quality, "good"), quality_table(np.arange(n), noisy, "noisy")]
    evaluation = evaluate_quality(comparisons, tables, n_bootstrap=50, legacy_erc=False)
    assert list(evaluation.more_edc) == [1e-4]
    write_report(evaluation, tmp_path)
    with open(tmp_path / "edc.csv", encoding="utf-8") as handle:
        rows = {r["method"]: r for r in csv.DictReader(handle)}
    strict = {row["method"]: row for row in evaluation.more_edc[1e-4].table()}
    for method in ("good", "noisy", RANDOM_METHOD):
        assert float(rows[method]["fnmr_pauc_at_fmr_0.0001"]) == strict[method]["fnmr_pauc"]
        assert float(rows[method]["pauc_ci_low_at_fmr_0.0001"]) == strict[method]["pauc_ci_low"]
    with open(tmp_path / "edc_curves.csv", encoding="utf-8") as handle:
        points = list(csv.DictReader(handle))
    mine = [p for p in points if p["method"] == "noisy" and p["error_type"] == "fnmr" and p["fmr_target"] == "0.001"]
    curve = evaluation.edc.fnmr_curves["noisy"]
    shown = curve.discard_fractions <= 0.5
    assert len(mine) in (int(shown.sum()), int(shown.sum()) + 1)  # every step up to the plotted range
    np.testing.assert_array_equal([float(p["discard_fraction"]) for p in mine], curve.discard_fractions[: len(mine)])
    np.testing.assert_array_equal([int(p["error_count"]) for p in mine], curve.error_counts[: len(mine)])
    assert {p["fmr_target"] for p in points} == {"0.001", "0.0001"}
    with open(tmp_path / "spearman.csv", encoding="utf-8") as handle:
        pairs = {(r["method_a"], r["method_b"]): float(r["spearman"]) for r in csv.DictReader(handle)}
    assert pairs["good", "noisy"] == pytest.approx(spearmanr(quality, noisy).statistic, abs=1e-12)
    assert pairs["good", "good"] == pytest.approx(1.0)
    with open(tmp_path / "edc_bands.csv", encoding="utf-8") as handle:
        bands = [r for r in csv.DictReader(handle) if r["method"] == "good" and r["fmr_target"] == "0.001"]
    assert len(bands) == 200 and all(float(r["fnmr_low"]) <= float(r["fnmr_high"]) for r in bands)
    # the page's column for FMR 1e-4 (after the main point's four) holds edc.csv's values; each method's kind
    # carries the colour its curves have in the plots
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    shown = body_rows(read_page(text).tables[0])
    ordered = [rows[r[1]] for r in shown]
    assert [r[7] for r in shown] == [with_interval(r["fnmr_pauc_at_fmr_0.0001"], r["pauc_ci_low_at_fmr_0.0001"],
                                                   r["pauc_ci_high_at_fmr_0.0001"]) for r in ordered]
    styles = method_styles(list(evaluation.qualities))
    for method in rows:
        assert (f"<td class=name>{method}</td><td class=name><span class=swatch style='background:"
                f"{to_hex(styles[method]['color'])}'></span>") in text


def test_paired_differences_resample_the_same_identities_for_both(toy, tmp_path):
    """paired.csv, edc.json and the page's paired table: each model minus the norm first, then each other
    baseline, from the same resamples as the pAUC intervals; a model and its copy are level by construction."""
    from fiqa.evaluate.bootstrap import paired_pauc_difference

    comparisons, ids, quality = toy
    noisy = quality + np.random.default_rng(5).normal(0, 0.4, len(quality))
    tables = [quality_table(ids, quality, "model:good"), quality_table(ids, noisy, "norm"),
              quality_table(ids, 1 - quality, "ser-fiq"), quality_table(ids, quality, "model:copy")]
    for i in (0, 3):
        tables[i] = replace(tables[i], meta=tables[i].meta.updated(model_sha256="x"))
    evaluation = evaluate_quality(comparisons, tables, random_state=0, n_bootstrap=200, legacy_erc=False)
    page = write_report(evaluation, tmp_path / "report").read_text(encoding="utf-8")
    with open(tmp_path / "report" / "paired.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["versus"]) for r in rows] == [("model:good", "norm"), ("model:good", "ser-fiq"),
                                                          ("model:copy", "norm"), ("model:copy", "ser-fiq")]
    first = rows[0]
    difference, low, high = paired_pauc_difference(evaluation.edc, "model:good", "norm")
    assert (float(first["pauc_difference"]), float(first["ci_low"]), float(first["ci_high"])) == (difference, low,
                                                                                                   high)
    # the paired interval is narrower than the two marginal intervals' overlap suggests
    marginal = {row["method"]: row for row in evaluation.edc.table()}
    assert high - low < (marginal["model:good"]["pauc_ci_high"] - marginal["model:good"]["pauc_ci_low"]
                         + marginal["norm"]["pauc_ci_high"] - marginal["norm"]["pauc_ci_low"])
    assert rows[1]["verdict"] == "better" and float(rows[1]["ci_high"]) < 0  # quality beats its inverse
    assert json.loads((tmp_path / "report" / "edc.json").read_text())["paired"][0]["versus"] == "norm"
    # the page's paired table (the one after the EDC table) is paired.csv, placed before the EDC plots
    parsed = read_page(page)
    assert [r[:4] for r in body_rows(parsed.tables[1])] == [
        [f"FMR {float(r['fmr_target']):g}", r["method"], r["versus"],
         with_interval(r["pauc_difference"], r["ci_low"], r["ci_high"])] for r in rows]
    assert page.index(f"<td class=name>FMR {float(rows[0]['fmr_target']):g}</td>") < page.index(
        _base64(tmp_path / "report" / "edc_fnmr.png"))

    # without a bootstrap there is nothing paired: no file, no table (the EDC table is the page's only one)
    again = evaluate_quality(comparisons, tables, random_state=0, n_bootstrap=0, legacy_erc=False)
    assert len(read_page(write_report(again, tmp_path / "report").read_text(encoding="utf-8")).tables) == 1
    assert not (tmp_path / "report" / "paired.csv").exists()


def test_the_table_fits_and_gallery_names_wrap_between_their_parts():
    """Intervals sit under their value (the 11-column table stays within a 1,400 px page); a file name wraps after
    ``_``, ``-`` or ``.``, never inside a word."""
    from fiqa.evaluate.report import _CSS, _breakable

    assert ".ci{color:#555;white-space:nowrap;display:block" in _CSS and "break-all" not in _CSS
    assert _breakable("Aaron_Eckhart_0001.jpg") == "Aaron_<wbr>Eckhart_<wbr>0001.<wbr>jpg"
    assert _breakable("<b>_x") == "&lt;b&gt;_<wbr>x"


def test_evaluate_store_refuses_before_any_work(tmp_path):
    # the library call behind fiqa evaluate checks its output and its grouping before opening anything
    from fiqa.core.errors import StoreError
    from fiqa.evaluate import evaluate_store

    store, table = tmp_path / "store", tmp_path / "q.parquet"
    with pytest.raises(StoreError, match="inside the input"):
        evaluate_store(store, [table], store / "report")
    with pytest.raises(InvalidParameterError, match="'group_by'"):
        evaluate_store(store, [table], tmp_path / "report", groups_file=tmp_path / "groups.csv")
    assert not (tmp_path / "report").exists()
