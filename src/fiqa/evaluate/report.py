"""Reports of an :class:`~fiqa.evaluate.run.Evaluation`: tables (CSV, JSON), plots (PNG) and one self-contained
HTML page (plots and face thumbnails embedded as base64) that a person can read without the other files.

Files written to the report folder::

    report.html         the page: recognisers, summary, EDC table (main FMR and further FMRs), EDC panels by kind
                        (labels, models, baselines) with bootstrap bands, score distributions, Spearman matrix,
                        per-group breakdown, galleries with file names, legacy ERC (separate), parameters
    edc.csv, edc.json   the EDC table, FNMR pAUCs with bootstrap 95 % intervals over identities, a ``group`` column
                        ("all", then "<column>=<label>" rows with groups) and columns per further FMR (JSON adds
                        counts, threshold, paired differences against the random floor, groups and provenance)
    edc_curves.csv      the curves' step points; edc_bands.csv the bootstrap bands (see fiqa.evaluate.exports)
    spearman.csv        rank correlations between methods
    paired.csv          paired bootstrap differences: each model minus the norm and minus each other baseline, the
                        same identities resampled for both (also in edc.json and the page's paired table)
    groups.csv          per-group pAUCs, reject rates at the reject quantiles, FNMR after rejection (with groups)
    edc_fnmr.png        FNMR-EDCs: one row of panels per method kind, one column per target FMR, bands shaded
    edc_fmr.png         FMR-EDCs, same layout
    distributions.png   quality histograms per method; spearman.png the rank-correlation matrix
    edc_groups.png, rejection.png                     per-group EDCs and differential rejection (with groups)
    legacy_erc.csv, legacy_erc.json, legacy_erc.png   only when the legacy ERC was computed

Every plot gives a method the same colour (:func:`fiqa.evaluate.plots.method_styles`).
"""
from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import write_json, write_text
from fiqa.core.errors import FIQAError, check_int
from fiqa.core.outputs import check_not_in_inputs
from fiqa.core.types import EmbeddingStore, locate_ids
from fiqa.evaluate.bands import EDCBands, evaluation_bands
from fiqa.evaluate.bootstrap import PAUCBootstrap, paired_pauc_difference
from fiqa.evaluate.components import COMPONENT_PREFIX
from fiqa.evaluate.erc import LegacyERCResult
from fiqa.evaluate.exports import (
    BAND_COLUMNS,
    CURVE_COLUMNS,
    EDC_COLUMNS,
    PAIRED_COLUMNS,
    all_curve_rows,
    band_rows,
    edc_rows,
    paired_rows,
    spearman_matrix,
    spearman_rows,
    write_csv,
)
from fiqa.evaluate.groups import GroupBreakdown, group_breakdown
from fiqa.evaluate.plots import (
    KIND_TITLES,
    kind_panels,
    method_styles,
    plot_distributions,
    plot_edc_panels,
    plot_group_edcs,
    plot_legacy,
    plot_rejection,
    plot_spearman,
)
from fiqa.evaluate.run import RANDOM_METHOD, Evaluation

logger = logging.getLogger(__name__)

__all__ = ["EDC_COLUMNS", "write_report"]

_OPTIONAL_FILES = {"legacy": ("legacy_erc.csv", "legacy_erc.json", "legacy_erc.png"),
                   "groups": ("groups.csv", "edc_groups.png", "rejection.png"), "bands": ("edc_bands.csv",),
                   "paired": ("paired.csv",)}
"""Files a report writes only sometimes; a report folder re-used without them keeps no stale copies."""


def _img(png: bytes, alt: str, mime: str = "image/png", width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return (f'<img alt="{html.escape(alt)}"{size} src="data:{mime};base64,'
            f'{base64.b64encode(png).decode("ascii")}">')


def _operating_point(target: float | None, result: Any) -> str:
    """How a threshold was fixed, for titles: ``FMR 0.001: threshold 0.3`` or ``start FNMR 0.05: ...``."""
    fixed = f"FMR {target:g}" if target is not None else f"start FNMR {result.params['start_fnmr_target']:g}"
    return f"{fixed}: threshold {result.threshold:.4f}"


def _remove(out: Path, names: Sequence[str]) -> None:
    for name in names:
        (out / name).unlink(missing_ok=True)


def write_report(evaluation: Evaluation, out_dir: str | Path, *, store: EmbeddingStore | None = None,
                 gallery_size: int = 8, title: str = "Face image quality: Error-versus-Discard evaluation",
                 groups: Mapping[int, Hashable] | None = None, group_by: str = "group",
                 reject_quantiles: Sequence[float] = (0.05, 0.1, 0.2)) -> Path:
    """Write the tables, plots and the HTML page of an evaluation.

    Parameters
    ----------
    evaluation : Evaluation
    out_dir : str or Path
        Created if needed; files of a previous report there are replaced (optional ones removed when not written).
    store : EmbeddingStore, optional
        The store the comparisons came from; needed for the face galleries (crops are re-created from the source
        images with ``fiqa.augment.crops.load_crops``).
    gallery_size : int >= 1
        Faces per gallery strip (lowest and highest quality, per method).
    title : str
    groups : mapping of sample id to group label, optional
        A grouping of the samples (:func:`~fiqa.evaluate.groups.group_labels`): adds per-group rows to edc.csv,
        groups.csv, a per-group EDC plot and differential rejection (:func:`~fiqa.evaluate.groups.group_breakdown`).
    group_by : str
        The grouping's name (the column it came from), shown in the report and in edc.csv's ``group`` column.
    reject_quantiles : sequence of float in (0, 1)
        Quality quantiles at which per-group reject rates and the FNMR after rejection are reported.

    Returns
    -------
    Path
        The HTML page.
    """
    gallery_size = check_int("write_report", "gallery_size", gallery_size, 1)
    out = check_not_in_inputs(out_dir, [store])  # never into the store, as the command
    out.mkdir(parents=True, exist_ok=True)
    limit = float(evaluation.edc.params["discard_limit"])
    x_max = min(1.0, max(0.5, 2.5 * limit))
    styles = method_styles(list(evaluation.qualities))
    summary, versus_random = _edc_summary(evaluation, evaluation.edc.table())
    paired = paired_rows(evaluation)
    main_target = next(iter(evaluation.edcs))
    breakdowns = {} if groups is None else {
        target: group_breakdown(evaluation, groups, reject_quantile=reject_quantiles,
                                fmr=None if target == main_target else target) for target in evaluation.edcs}
    breakdown = breakdowns.get(main_target)
    grid = np.linspace(0.0, x_max, 201)[:-1]
    bands = {target: evaluation_bands(evaluation, result, grid) for target, result in evaluation.edcs.items()}
    _write_tables(out, evaluation, summary, versus_random, breakdowns, bands, group_by, x_max, paired)
    figures = _figures(out, evaluation, styles, bands, breakdown, group_by)
    sections = {
        "recognisers": _recognisers_html(evaluation.meta.get("recognisers") or {}),
        "kinds": ", ".join(KIND_TITLES[kind].split(" (")[0] for kind, _ in kind_panels(evaluation.kinds)),
        "table": _result_table(evaluation, versus_random, styles),
        "paired": _paired_table(paired, styles),
        "facts": _facts(evaluation),
        "figures": figures,
        "spearman": _spearman_note(evaluation),
        "groups": "" if breakdown is None else _groups_html(breakdown, group_by, styles, figures),
        "galleries": _galleries(evaluation, store, gallery_size, styles),
        "components": _components_by_kind(evaluation, store),
        "legacy": _write_legacy_erc(out, evaluation.legacy_erc, styles),
    }
    page = _page(title, limit, sections, provenance={"summary": summary, "meta": evaluation.meta})
    path = out / "report.html"
    write_text(path, page)
    logger.info("report written to %s", path)
    return path


def _write_tables(out: Path, evaluation: Evaluation, summary: dict[str, Any],
                  versus_random: dict[str, dict[str, Any]], breakdowns: Mapping[float | None, GroupBreakdown],
                  bands: Mapping[float | None, EDCBands | None], group_by: str, x_max: float,
                  paired: Sequence[Mapping[str, Any]]) -> None:
    """edc.csv, edc.json, edc_curves.csv, edc_bands.csv, spearman.csv, paired.csv and groups.csv (see the module
    docstring)."""
    rows, columns = edc_rows(evaluation, breakdowns, group_by)
    write_csv(out / "edc.csv", rows, columns)
    main = breakdowns.get(next(iter(evaluation.edcs)))
    more = {f"{target:g}": result.table() for target, result in evaluation.more_edc.items()}
    write_json(out / "edc.json", {
        "rows": evaluation.edc.table(), "summary": summary, "pauc_minus_random": versus_random, "paired": paired,
        "more_fmrs": more, "kinds": evaluation.kinds, "recognisers": evaluation.meta.get("recognisers"),
        "groups": None if main is None else {"group_by": group_by, "reject_quantiles": list(main.reject_quantiles),
                                             "params": main.params, "rows": main.table()},
        "meta": evaluation.meta})
    write_csv(out / "edc_curves.csv", all_curve_rows(evaluation, main, x_max, group_by), CURVE_COLUMNS)
    names, matrix, counts = spearman_matrix(evaluation.qualities)
    write_csv(out / "spearman.csv", spearman_rows(names, matrix, counts), ("method_a", "method_b", "spearman",
                                                                           "n_samples"))
    if paired:
        write_csv(out / "paired.csv", paired, PAIRED_COLUMNS)
    else:
        _remove(out, _OPTIONAL_FILES["paired"])
    if any(band is not None for band in bands.values()):
        write_csv(out / "edc_bands.csv", band_rows(bands), BAND_COLUMNS)
    else:
        _remove(out, _OPTIONAL_FILES["bands"])
    if main is None:
        _remove(out, _OPTIONAL_FILES["groups"])
    else:
        table = main.table()
        write_csv(out / "groups.csv", table, list(table[0]) if table else ["group", "method"])


def _figures(out: Path, evaluation: Evaluation, styles: Mapping[str, Mapping[str, Any]],
             bands: Mapping[float | None, EDCBands | None], breakdown: GroupBreakdown | None,
             group_by: str) -> dict[str, bytes]:
    """Every plot as PNG bytes by file name, each also written to ``out``."""
    limit = float(evaluation.edc.params["discard_limit"])
    kinds = evaluation.kinds
    fnmr_results, fmr_results = [], []
    for target, result in evaluation.edcs.items():
        paucs = {row["method"]: row["fnmr_pauc"] for row in result.table()}
        fmr_paucs = {row["method"]: row["fmr_pauc"] for row in result.table()}
        point = _operating_point(target, result)
        fnmr_results.append((point, result.fnmr_curves, paucs, bands.get(target)))
        fmr_results.append((point, result.fmr_curves, fmr_paucs, None))
    figures = {"edc_fnmr.png": plot_edc_panels(fnmr_results, kinds, styles, "fnmr", limit),
               "edc_fmr.png": plot_edc_panels(fmr_results, kinds, styles, "fmr", limit),
               "distributions.png": plot_distributions(evaluation.qualities, _failing_samples(evaluation), styles)}
    names, matrix, _ = spearman_matrix(evaluation.qualities)
    figures["spearman.png"] = plot_spearman(names, matrix, styles)
    if breakdown is not None:
        figures["edc_groups.png"] = plot_group_edcs(breakdown, styles, limit, group_by)
        figures["rejection.png"] = plot_rejection(breakdown, styles, group_by)
    for name, png in figures.items():
        (out / name).write_bytes(png)
    return figures


def _failing_samples(evaluation: Evaluation) -> np.ndarray:
    """Which compared samples take part in a false non-match at the main threshold; shape (S,), bool."""
    comparisons = evaluation.comparisons
    failed = comparisons.mated & (comparisons.similarity < evaluation.edc.threshold)
    ids = np.concatenate([comparisons.sample_a[failed], comparisons.sample_b[failed]])
    return np.isin(evaluation.sample_id, ids)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1240px;margin:24px auto;padding:0 20px;
color:#1d2327;line-height:1.45}img{max-width:100%;height:auto}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.lead{font-size:1.04em;color:#333;background:#f4f7fb;border-left:4px solid #3b6fb6;padding:.6em 1em}
.recognisers{background:#f6f8f2;border-left:4px solid #6a9a3a;padding:.5em 1em;font-size:.95em}
.wide{overflow-x:auto}table{border-collapse:collapse;margin:.6em 0;font-size:.8em}th,td{padding:.3em .4em;
border-bottom:1px solid #e2e2e2;text-align:right}th{background:#f3f3f3;font-weight:600}.name{text-align:left}
td.name{white-space:nowrap}
tr.floor td{color:#666;font-style:italic}tr.best td{font-weight:600}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:2px;margin-right:.4em;vertical-align:-.1em}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em;font-size:.93em}dl.facts dt{color:#555}
dl.facts dd{margin:0}.note{color:#666;font-size:.9em}.legacy{background:#fff8ec;border:1px solid #f0d8a8;
padding:.2em 1em 1em;margin-top:1.6em}
.why{display:block;color:#a33}.gallery h3{margin:.8em 0 .2em}.strip{display:flex;flex-wrap:wrap;gap:6px;
align-items:flex-start}.strip h4{width:100%;margin:.4em 0 .1em;font-weight:500;color:#444}figure{margin:0;width:104px;
text-align:center;font-size:.72em}figure img{width:96px;height:96px;border-radius:3px}figcaption span{color:#777;
overflow-wrap:break-word}figcaption .file{color:#445;display:block}.ci{color:#555;white-space:nowrap;display:block;
font-size:.9em}th{white-space:normal}
pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}
"""


def _fmt(value: Any) -> str:
    """Floats with 3 significant digits (pAUCs span several orders of magnitude), counts with separators."""
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else f"{value:.3g}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return html.escape(str(value))


def _with_interval(value: float, low: float, high: float) -> str:
    """``value [low, high]``, or the value alone when no interval was computed."""
    if np.isnan(low) or np.isnan(high):
        return _fmt(value)
    return f"{_fmt(value)} <span class=ci>[{_fmt(low)}, {_fmt(high)}]</span>"


def _swatch(method: str, styles: Mapping[str, Mapping[str, Any]], text: str | None = None) -> str:
    """A square of the method's plot colour before ``text`` (the method's name by default)."""
    colour = styles[method]["color"]
    colour = colour if isinstance(colour, str) and colour.startswith("#") else "#595959"
    return f"<span class=swatch style='background:{colour}'></span>{_fmt(method if text is None else text)}"


def _edc_summary(evaluation: Evaluation,
                 rows: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The ``summary`` of edc.json, and per method (random floor aside) the paired pAUC difference to the floor
    with its interval (empty without a bootstrap)."""
    edc = evaluation.edc
    summary = {
        "protocol": "ISO/IEC 29794-1:2024 EDC: pair quality = min of the two samples, threshold fixed once, "
                    "tied qualities discarded together, stepwise pAUC",
        "threshold": edc.threshold, "start_fnmr": edc.start_fnmr, "start_fmr": edc.start_fmr,
        "n_mated": edc.n_mated, "n_nonmated": edc.n_nonmated, "n_excluded_mated": edc.n_excluded_mated,
        "n_excluded_nonmated": edc.n_excluded_nonmated, "n_samples": int(len(evaluation.sample_id)),
        "more_fmrs": {f"{t:g}": {"threshold": r.threshold, "start_fnmr": r.start_fnmr, "start_fmr": r.start_fmr}
                      for t, r in evaluation.more_edc.items()},
        **edc.params,
    }
    versus_random: dict[str, dict[str, Any]] = {}
    if edc.bootstrap is not None:
        summary["n_identity_clusters"] = edc.bootstrap.n_clusters
        for row in rows:
            if row["method"] != RANDOM_METHOD:
                difference, low, high = paired_pauc_difference(edc.bootstrap, row["method"], RANDOM_METHOD)
                versus_random[row["method"]] = {"difference": difference, "ci_low": low, "ci_high": high,
                                                "beats_random": high < 0}
    return summary, versus_random


def _result_table(evaluation: Evaluation, versus_random: dict[str, dict[str, Any]],
                  styles: Mapping[str, Mapping[str, Any]]) -> str:
    """The page's EDC table: one row per method, best first (main operating point), the random floor marked; a
    pAUC column per further target FMR."""
    rows = evaluation.edc.table()
    limit = float(evaluation.edc.params["discard_limit"])
    kinds = evaluation.kinds
    more = {t: {row["method"]: row for row in r.table()} for t, r in evaluation.more_edc.items()}
    random_pauc = next(row["fnmr_pauc"] for row in rows if row["method"] == RANDOM_METHOD)
    body_rows = []
    for rank, row in enumerate(rows, start=1):
        method = row["method"]
        css = "floor" if method == RANDOM_METHOD else ("best" if rank == 1 else "")
        ratio = row["fnmr_pauc"] / random_pauc if random_pauc > 0 else float("nan")
        versus = versus_random.get(method)
        versus_cell = ("" if versus is None else
                       f"{'<b>yes</b>' if versus['beats_random'] else 'no'}: "
                       f"{_with_interval(versus['difference'], versus['ci_low'], versus['ci_high'])}")
        cells = [_with_interval(row["fnmr_pauc"], row["pauc_ci_low"], row["pauc_ci_high"]),
                 _with_interval(row["fnmr_pauc_minus_best"], row["pauc_minus_best_ci_low"],
                                row["pauc_minus_best_ci_high"]),
                 _fmt(ratio), versus_cell,
                 *(_with_interval(by[method]["fnmr_pauc"], by[method]["pauc_ci_low"], by[method]["pauc_ci_high"])
                   for by in more.values()),
                 _fmt(row["fnmr_at_limit"]), _fmt(row["fmr_pauc"]),
                 f"{_fmt(row['n_mated_missing_quality'])} / {_fmt(row['n_nonmated_missing_quality'])}"]
        body_rows.append(f"<tr class='{css}'><td class=name>{rank}</td><td class=name>{_fmt(method)}</td>"
                         f"<td class=name>{_swatch(method, styles, kinds[method])}</td>"
                         + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    pct = f"{limit:.0%}"
    main = _operating_point(evaluation.edc.params.get("fmr"), evaluation.edc).split(":")[0]
    more_heads = "".join(f"<th>FNMR pAUC [95% CI]<br>at FMR {t:g}</th>" for t in more)
    return (
        "<table><thead><tr><th class=name>#</th><th class=name>method</th><th class=name>kind</th>"
        f"<th>FNMR pAUC [95% CI]<br>at {main} (0 &ndash; {pct})</th><th>pAUC &minus; best [95% CI]</th>"
        "<th>vs random<br>(pAUC ratio)</th><th>beats random?<br>pAUC &minus; random [95% CI]</th>"
        f"{more_heads}<th>FNMR after<br>{pct} discarded</th><th>FMR pAUC</th>"
        "<th>pairs without quality<br>mated / non-mated</th></tr></thead><tbody>" + "".join(body_rows)
        + "</tbody></table>")


_VERDICTS = {"better": "<b>lower</b> (better)", "worse": "<b>higher</b> (worse)", "level": "level"}


def _paired_table(paired: Sequence[Mapping[str, Any]], styles: Mapping[str, Mapping[str, Any]]) -> str:
    """The page's paired table: per operating point, model and baseline, pAUC(model) - pAUC(baseline) with its
    paired 95 % interval and what it supports (``""`` without paired rows)."""
    if not paired:
        return ""
    def point(target: float | None) -> str:
        return f"FMR {target:g}" if target is not None else "start FNMR"

    body = "".join(
        f"<tr><td class=name>{point(row['fmr_target'])}</td><td class=name>{_swatch(row['method'], styles)}</td>"
        f"<td class=name>{_swatch(row['versus'], styles)}"
        f"</td><td>{_with_interval(row['pauc_difference'], row['ci_low'], row['ci_high'])}</td>"
        f"<td class=name>{_VERDICTS[row['verdict']]}</td></tr>" for row in paired)
    return ("<h2>Paired differences</h2><p class=note>Each model's FNMR pAUC minus a baseline's, both on the same "
            "identity resamples (the identities' shared difficulty cancels, so this interval is what says whether "
            "the model beats the baseline; two overlapping marginal intervals do not). Lower pAUC is better: "
            "<i>lower</i> when the whole 95% interval of the difference lies below 0, <i>higher</i> when above, "
            "else <i>level</i>. Values in paired.csv.</p>"
            "<table><thead><tr><th class=name>threshold</th><th class=name>model</th><th class=name>baseline</th>"
            "<th>pAUC(model) &minus; pAUC(baseline) [95% CI]</th><th class=name>model's pAUC is</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _recognisers_html(recognisers: Mapping[str, Any]) -> str:
    """Whose embeddings gave the comparison scores, and whose store the quality tables are of."""
    comparison, quality = recognisers.get("comparison"), recognisers.get("quality")
    if not comparison:
        return ("<p class=recognisers>Comparison scores: cosine similarity of the embeddings of the compared samples "
                "(the recogniser's store was not given to the evaluation).</p>")

    def name(described: Mapping[str, Any]) -> str:
        model = f" ({html.escape(str(described['model']))})" if described.get("model") else ""
        return f"<b>{html.escape(str(described.get('backend')))}</b>{model}"

    text = (f"Comparison scores: cosine similarity of the {name(comparison)} embeddings in the store "
            f"{html.escape(Path(str(comparison['store'])).name)}.")  # a folder name, not this machine's path
    if quality and quality.get("store_sha256") != comparison.get("store_sha256"):
        text += (f" Quality tables: of the samples of the store {html.escape(Path(str(quality['store'])).name)}, "
                 "embedded with "
                 f"{name(quality)}; images matched by location.")
        rescored = recognisers.get("rescored") or {}
        if rescored.get("n_pairs_left_out"):
            text += (f" {rescored['n_pairs_left_out']:,} pairs left out: "
                     f"{rescored['n_images_failed_in_comparison_store']:,} compared images failed in the comparison "
                     f"store (e.g. {html.escape(', '.join(rescored.get('failed_examples', [])))}).")
    return f"<p class=recognisers>{text}</p>"


def _spearman_note(evaluation: Evaluation) -> str:
    names, matrix, counts = spearman_matrix(evaluation.qualities)
    if len(names) < 2:
        return ""
    off = matrix[~np.eye(len(names), dtype=bool)]
    return (f"<p class=note>Spearman rank correlation between the methods' qualities of the compared samples "
            f"(each pair over the samples both rate, at most {int(counts.max()):,}); off the diagonal from "
            f"{_fmt(float(np.nanmin(off)))} to {_fmt(float(np.nanmax(off)))}. Values in spearman.csv.</p>"
            if np.any(np.isfinite(off)) else "")


def _comparisons_origin(comparisons_meta: Mapping[str, Any]) -> str:
    """Where the comparisons came from: sampled from a store (seed and counts) or read from a pairs file."""
    if comparisons_meta.get("origin") == "sampled":
        return (f"sampled from the store with seed {comparisons_meta.get('random_state')}: "
                f"{comparisons_meta.get('n_mated'):,} of {comparisons_meta.get('n_mated_available'):,} mated "
                f"pairs, {comparisons_meta.get('n_nonmated'):,} of {comparisons_meta.get('n_nonmated_available'):,}"
                f" non-mated pairs")
    return (f"from {html.escape(str(comparisons_meta.get('origin')))} "
            f"({comparisons_meta.get('n_skipped', 0)} pairs skipped: "
            "a sample had no embedding)")


def _interval_text(bootstrap: PAUCBootstrap | None) -> str:
    """How the 95 % intervals were computed, or that they were not."""
    if bootstrap is None:
        return "not computed (n_bootstrap = 0)"
    return (f"percentile bootstrap over identities: {bootstrap.n_bootstrap:,} resamples of the "
            f"{bootstrap.n_clusters:,} identities of the mated comparisons (seed "
            f"{bootstrap.random_state}), each identity's mated comparisons kept together; the threshold "
            "stays fixed and the non-mated comparisons are not resampled, so FMR pAUCs have no "
            "interval. Differences to random are paired: both methods on the same resamples")



def _facts(evaluation: Evaluation) -> str:
    """The page's list of facts under the table (comparisons, threshold, pair quality, intervals, split) as HTML."""
    edc = evaluation.edc
    limit = float(edc.params["discard_limit"])
    threshold_rule = (f"FMR {edc.params['fmr']:g} on the non-mated comparisons" if edc.params["fmr"] is not None
                      else f"a starting FNMR of {edc.params['start_fnmr_target']:g}")
    restriction = evaluation.meta.get("identity_filter")
    split_text = (html.escape(restriction.get("description", json.dumps(restriction, default=str))) if restriction
                  else "none: all identities were used; make sure the labeller or model never saw them")
    missing_text = {"lowest": "a missing quality ranks lowest: those comparisons are discarded first",
                    "exclude": f"comparisons where any method lacks a quality are left out for all methods "
                               f"({edc.n_excluded_mated:,} mated, {edc.n_excluded_nonmated:,} non-mated)"}[
        edc.params["missing"]]
    comparison = (evaluation.meta.get("recognisers") or {}).get("comparison") or {}
    backend = f" of the {html.escape(str(comparison['backend']))} embeddings" if comparison.get("backend") else ""
    more = "; ".join(f"FMR {t:g}: threshold {r.threshold:.4f}, FMR {r.start_fmr:.2e}, starting FNMR "
                     f"{r.start_fnmr:.4f}" for t, r in evaluation.more_edc.items())
    facts = [
        ("comparisons used", f"{edc.n_mated:,} mated, {edc.n_nonmated:,} non-mated "
                             f"({len(evaluation.sample_id):,} samples)"),
        ("comparisons from", _comparisons_origin(evaluation.comparisons.meta)),
        ("comparison score", f"cosine similarity{backend}; match when similarity &ge; threshold"),
        ("threshold", f"{edc.threshold:.4f}, fixed once at {threshold_rule}: "
                      f"FMR {edc.start_fmr:.2e}, starting FNMR {edc.start_fnmr:.4f}"),
        *([("further thresholds", more)] if more else []),
        ("pair quality", "minimum of the two samples' qualities; tied qualities are discarded together"),
        ("pAUC limit", f"{limit:g} ({limit:.0%} of the comparisons discarded)"),
        ("95% intervals", _interval_text(edc.bootstrap)),
        ("missing qualities", missing_text),
        ("identities", split_text),
    ]
    return "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in facts)


def _groups_html(breakdown: GroupBreakdown, group_by: str, styles: Mapping[str, Mapping[str, Any]],
                 figures: Mapping[str, bytes], max_groups: int = 6) -> str:
    """The per-group section: counts and error rates per group, then per method and group the pAUC with its
    interval, the reject rate at each quantile and the FNMR of the mated pairs kept; the two plots."""
    groups = list(breakdown.groups)[:max_groups]
    head = "".join(f"<tr><td class=name>{_fmt(g)}</td><td>{_fmt(int(breakdown.n_samples[i]))}</td>"
                   f"<td>{_fmt(int(breakdown.n_mated[i]))}</td><td>{_fmt(int(breakdown.n_nonmated[i]))}</td>"
                   f"<td>{_fmt(int(breakdown.n_identities[i]))}</td><td>{_fmt(float(breakdown.start_fnmr[i]))}</td>"
                   f"<td>{_fmt(float(breakdown.start_fmr[i]))}</td></tr>" for i, g in enumerate(groups))
    quantiles = breakdown.reject_quantiles
    columns = "".join(f"<th colspan={1 + 2 * len(quantiles)}>{html.escape(group_by)} = {_fmt(g)}</th>"
                      for g in groups)
    sub = "".join("<th>pAUC [95% CI]</th>" + "".join(f"<th>rejected at {q:g}</th><th>FNMR kept</th>"
                                                     for q in quantiles) for _ in groups)
    body = []
    for m, method in enumerate(breakdown.methods):
        cells = []
        for g in range(len(groups)):
            cells.append(_with_interval(float(breakdown.fnmr_pauc[g, m]), float(breakdown.pauc_ci_low[g, m]),
                                        float(breakdown.pauc_ci_high[g, m])))
            for q in range(len(quantiles)):
                cells += [_fmt(float(breakdown.reject_rates[g, m, q])),
                          _fmt(float(breakdown.fnmr_after_reject[g, m, q]))]
        body.append(f"<tr><td class=name>{_swatch(method, styles)}</td>" + "".join(f"<td>{c}</td>" for c in cells)
                    + "</tr>")
    hidden = len(breakdown.groups) - len(groups)
    return (
        f"<h2>Per group: {html.escape(group_by)}</h2>"
        "<p class=note>Each group's comparisons are those with both samples in the group, at the threshold fixed "
        "once on all comparisons. <i>Rejected at q</i>: the share of the group's samples below the q quantile of "
        "all compared samples' qualities (samples without a quality count as rejected); <i>FNMR kept</i>: the FNMR "
        "of the group's mated pairs whose two samples pass. A measure that treats groups alike rejects them in "
        "proportion to how often recognition fails on them.</p>"
        "<table><thead><tr><th class=name>group</th><th>samples</th><th>mated</th><th>non-mated</th>"
        f"<th>identities</th><th>start FNMR</th><th>start FMR</th></tr></thead><tbody>{head}</tbody></table>"
        f"<div class=wide><table><thead><tr><th class=name rowspan=2>method</th>{columns}</tr><tr>{sub}</tr>"
        f"</thead><tbody>{''.join(body)}</tbody></table></div>"
        + (f"<p class=note>{hidden} more groups in groups.csv and edc.csv.</p>" if hidden > 0 else "")
        + _img(figures["edc_groups.png"], "FNMR-EDC per group") + _img(figures["rejection.png"],
                                                                        "differential rejection"))


def _caption(store: EmbeddingStore, row: int, value: float) -> str:
    """A gallery face's caption: its quality, identity and image file name (with the degradation of a copy)."""
    identity = str(store.samples.identity[row])
    location = str(store.samples.location[row]).split("#", 1)[0]
    kinds = _kind_of(store, row)
    file_name = Path(location).name + (f" ({kinds})" if kinds != "natural" else "")
    return (f"{_fmt(float(value))}<br><span>{_breakable(identity)}</span>"
            f"<span class=file title='{html.escape(_shown_location(store, location))}'>{_breakable(file_name)}</span>")


def _shown_location(store: EmbeddingStore, location: str) -> str:
    """Where an image is, as a shared report may say it: relative to the data source's folder, never an absolute
    path of the machine that made the report (a location outside that folder shows its file name only)."""
    path = Path(location)
    spec = store.meta.source.get("spec")
    if spec:
        root = Path(str(spec))
        root = root if root.is_dir() else root.parent  # a folder source, or the folder of a list file
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path.name


def _breakable(name: str) -> str:
    """``name`` escaped, with a line-break opportunity after each ``_``, ``-`` and ``.``: a narrow caption wraps
    ``Aaron_Eckhart_0001.jpg`` between its parts, never inside a word."""
    return re.sub(r"([_.-])", r"\1<wbr>", html.escape(name))


_WHY_BELOW, _WHY_COUNT = 50.0, 2  # a gallery face's reasons: its (at most 2) components scoring below 50


def _component_values(evaluation: Evaluation) -> dict[str, np.ndarray]:
    """The evaluated components' 0-100 scalars by component name (``component:<name>`` methods)."""
    return {method[len(COMPONENT_PREFIX):]: values for method, values in evaluation.qualities.items()
            if method.startswith(COMPONENT_PREFIX)}


def _why(components: Mapping[str, np.ndarray], index: int) -> str:
    """Why a face is poor, from its components: the lowest ones below 50, worst first (``""`` when none)."""
    scored = sorted((float(v[index]), name) for name, v in components.items() if np.isfinite(v[index]))
    worst = [f"{name} {value:.0f}" for value, name in scored[:_WHY_COUNT] if value < _WHY_BELOW]
    return f"<span class=why>{html.escape(', '.join(worst))}</span>" if worst else ""


def _kind_of(store: EmbeddingStore, row: int) -> str:
    """A store row's capture condition: its copy's degradation kinds, or ``natural``."""
    recipe = "" if store.recipe is None else str(store.recipe[row])
    if not recipe:
        return "natural"
    try:
        return " + ".join(str(d.get("kind")) for d in json.loads(recipe).get("degradations", [])) or "copy"
    except (ValueError, AttributeError):
        return "copy"


def _components_by_kind(evaluation: Evaluation, store: EmbeddingStore | None) -> str:
    """The median 0-100 scalar of every component per capture condition of the evaluated faces (natural, or a
    degraded copy's kinds): which factor each degradation moves."""
    components = _component_values(evaluation)
    if not components or store is None:
        return ""
    rows, found = locate_ids(store.samples.sample_id, evaluation.sample_id)
    kinds = np.array([_kind_of(store, int(row)) if ok else "" for row, ok in zip(rows, found)], dtype=object)
    names = sorted(set(kinds) - {""})
    head = "".join(f"<th>{html.escape(k)} (n={int((kinds == k).sum())})</th>" for k in names)
    body = []
    for component, values in components.items():
        cells = []
        for kind in names:
            chosen = values[(kinds == kind) & np.isfinite(values)]
            cells.append(f"<td>{np.median(chosen):.0f}</td>" if len(chosen) else "<td>&ndash;</td>")
        body.append(f"<tr><td>{html.escape(component)}</td>{''.join(cells)}</tr>")
    return ("<h2>Quality components by capture condition</h2><p class=note>Median 0-100 value of each component "
            "(higher is better) over the evaluated faces of each condition: which factor each degradation moves. "
            "A component is one factor, never a unified quality.</p>"
            f"<div class=wide><table><tr><th>component</th>{head}</tr>{''.join(body)}</table></div>")


def _galleries(evaluation: Evaluation, store: EmbeddingStore | None, gallery_size: int,
               styles: Mapping[str, Mapping[str, Any]]) -> str:
    if store is None:
        return "<p class=note>No embedding store was given, so no face galleries are shown.</p>"
    import cv2

    from fiqa.augment.crops import load_crops

    parts = []
    components = _component_values(evaluation)
    for method, values in evaluation.qualities.items():
        if method == RANDOM_METHOD:
            continue
        known = np.flatnonzero(~np.isnan(values))
        ranked = known[np.argsort(values[known], kind="stable")]
        k = min(gallery_size, len(ranked) // 2)
        sections = []
        for title, picks in (("lowest quality", ranked[:k]), ("highest quality", ranked[::-1][:k])):
            rows = locate_ids(store.samples.sample_id, evaluation.sample_id[picks])[0]
            try:
                crops = load_crops(store, rows)
            except FIQAError as exc:
                sections.append(f"<p class=note>{title}: thumbnails unavailable ({html.escape(str(exc))})</p>")
                continue
            cells = []
            for crop, row, pick in zip(crops, rows, picks):
                _ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 88])
                alt = str(store.samples.identity[row])
                why = _why(components, int(pick)) if title == "lowest quality" else ""
                cells.append(f"<figure>{_img(jpeg.tobytes(), alt, 'image/jpeg')}<figcaption>"
                             f"{_caption(store, int(row), values[pick])}{why}</figcaption></figure>")
            sections.append(f"<div class=strip><h4>{title}</h4>{''.join(cells)}</div>")
        parts.append(f"<div class=gallery><h3>{_swatch(method, styles)}</h3>{''.join(sections)}</div>")
    return "".join(parts)


def _write_legacy_erc(out: Path, erc: LegacyERCResult | None, styles: Mapping[str, Mapping[str, Any]]) -> str:
    """Write legacy_erc.csv, .json and .png and return the page's legacy section; without a legacy ERC, remove
    those files (a report folder re-used without it keeps no stale files) and return ``""``."""
    if erc is None:
        _remove(out, _OPTIONAL_FILES["legacy"])
        return ""
    erc_rows = erc.table()
    keys = [f"auc_fmr_{fmr:g}" for fmr in erc.params["fmrs"]]
    write_csv(out / "legacy_erc.csv", erc_rows, ["method", *keys])
    write_json(out / "legacy_erc.json", {"rows": erc_rows, "params": erc.params,
                                          "discard_fractions": erc.discard_fractions,
                                          "fnmr": {m: {f"{f:g}": v for f, v in c.items()}
                                                   for m, c in erc.fnmr.items()}})
    legacy_png = plot_legacy(erc, styles)
    (out / "legacy_erc.png").write_bytes(legacy_png)
    head = "".join(f"<th>AUC at FMR {fmr:g}</th>" for fmr in erc.params["fmrs"])
    body = "".join("<tr><td class=name>" + _fmt(row["method"]) + "</td>"
                   + "".join(f"<td>{_fmt(row[k])}</td>" for k in keys) + "</tr>" for row in erc_rows)
    return (
        "<section class=legacy><h2>Legacy ERC (research-code protocol; not comparable with the EDC)</h2>"
        "<p>For comparison with published numbers only (CR-FIQA, MagFace evaluation scripts): mated and "
        "non-mated comparisons are pooled and discarded together on a fixed grid 0&ndash;95%, the threshold "
        "is <b>recomputed at every discard level</b> for each FMR, and the area is the trapezoid over "
        "[0, 0.95]. Lower is better. n/a: a level left no non-mated comparison to set a threshold.</p>"
        f"<table><thead><tr><th class=name>method</th>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"{_img(legacy_png, 'legacy ERC curves')}</section>")


def _page(title: str, limit: float, sections: Mapping[str, Any], *, provenance: dict[str, Any]) -> str:
    """The self-contained HTML page around the sections."""
    pct = f"{limit:.0%}"
    figures = sections["figures"]
    kinds = sections["kinds"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class=lead><b>What this measures.</b> The Error-versus-Discard Characteristic (EDC, ISO/IEC 29794-1) shows how
fast face-recognition errors fall when the comparisons with the lowest quality are discarded first. Each method's
<b>pAUC</b> is the area under its FNMR curve from 0 to {pct} discarded: <b>lower is better</b>. "pAUC &minus; best"
subtracts the area of the ideal curve (discarding exactly the failed comparisons first), so 0 would be perfect.
<b>random</b> is the floor: a quality measure is only useful where it beats it.</p>
{sections["recognisers"]}
<h2>Result</h2>
<div class=wide>{sections["table"]}</div>
<p class=note>Methods sorted by FNMR pAUC at the main threshold, best first. "vs random" below 1 means errors fall
faster than with a random quality; "beats random" says yes only when the whole 95% interval of the paired difference
pAUC(method) &minus; pAUC(random) lies below 0. Brackets: 95% bootstrap intervals over identities.
FMR pAUC: the same area for false matches among non-mated comparisons (the FMR-EDC).
A missing quality: the method gave no value for one of the two samples. The colour square is the method's colour in
every plot.</p>
<dl class=facts>{sections["facts"]}</dl>
{sections["paired"]}
<h2>FNMR-EDC</h2>
<p class=note>One row of panels per kind of method ({html.escape(kinds)}), one column per threshold; the random floor
(grey, dotted) and the theoretical best (grey, dashed) in every panel. Shaded: pointwise 95% bootstrap bands over
identities. Legend: pAUC at each threshold. Curve points in edc_curves.csv, bands in edc_bands.csv.</p>
{_img(figures["edc_fnmr.png"], "FNMR-EDC panels")}
<h2>FMR-EDC</h2>
{_img(figures["edc_fmr.png"], "FMR-EDC panels")}
<h2>Quality distributions</h2>
<p class=note>Per method, the qualities of the compared samples; black outline: the samples of mated comparisons that
fail at the main threshold (false non-matches). A useful measure puts them at the low end.</p>
{_img(figures["distributions.png"], "quality distributions")}
<h2>Rank agreement between methods</h2>
{sections["spearman"]}
{_img(figures["spearman.png"], "Spearman matrix")}
{sections["groups"]}
{sections["components"]}
<h2>Faces with the lowest and highest quality</h2>
<p class=note>Per method, among the compared samples: aligned 112&times;112 crops, with the quality value, the
identity and the image file (hover for its path in the data source); with components evaluated, each lowest-quality
face also shows its worst components below 50 (why it is poor). Good methods put blurred, occluded, dark or profile
faces on the left strip.</p>
{sections["galleries"]}
{sections["legacy"]}
<h2>Parameters and provenance</h2>
<details><summary>show</summary><pre>{html.escape(json.dumps(provenance, indent=2, sort_keys=True,
                                                         default=str))}</pre></details>
</body></html>
"""
