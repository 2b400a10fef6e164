"""Reports of an :class:`~fiqa.evaluate.run.Evaluation`: tables (CSV, JSON), plots (PNG) and one self-contained
HTML page (plots and face thumbnails embedded as base64) that a person can read without the other files.

Files written to the report folder::

    report.html         the page: summary, EDC table, EDC plots, galleries, legacy ERC (separate), parameters
    edc.csv, edc.json   the EDC table, FNMR pAUCs with bootstrap 95 % intervals over identities (JSON adds counts,
                        threshold, paired differences against the random floor and provenance)
    edc_fnmr.png        FNMR-EDC of every method, with the theoretical best
    edc_fmr.png         FMR-EDC
    legacy_erc.csv, legacy_erc.json, legacy_erc.png   only when the legacy ERC was computed
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.atomic import write_json, write_text
from fiqa.core.errors import FIQAError, InvalidParameterError
from fiqa.core.types import EmbeddingStore, locate_ids
from fiqa.evaluate.bootstrap import PAUCBootstrap, paired_pauc_difference
from fiqa.evaluate.curves import EDCCurve, theoretical_best
from fiqa.evaluate.erc import LegacyERCResult
from fiqa.evaluate.run import RANDOM_METHOD, Evaluation

logger = logging.getLogger(__name__)

EDC_COLUMNS = ("method", "fnmr_pauc", "pauc_ci_low", "pauc_ci_high", "fnmr_pauc_minus_best", "pauc_minus_best_ci_low",
               "pauc_minus_best_ci_high", "fnmr_at_limit", "fmr_pauc", "fmr_pauc_minus_best",
               "n_mated_missing_quality", "n_nonmated_missing_quality")


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    write_text(path, buffer.getvalue())


def _figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    import matplotlib

    colours = matplotlib.color_sequences["tab10"]  # the colours of the "tab10" colormap
    styles, index = {}, 0
    for method in methods:
        if method == RANDOM_METHOD:
            styles[method] = {"color": "0.35", "linestyle": ":", "linewidth": 2.0}
        else:
            styles[method] = {"color": colours[index % len(colours)], "linestyle": "-", "linewidth": 1.8}
            index += 1
    return styles


def _plot_edc(curves: dict[str, EDCCurve], rows: Sequence[dict[str, Any]], kind: str, limit: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    x_max = min(1.0, max(0.5, 2.5 * limit))
    styles = _styles([row["method"] for row in rows])
    figure, axes = plt.subplots(figsize=(7.2, 4.6))
    for row in rows:  # best first, so the legend reads like the table
        curve = curves[row["method"]]
        x = np.append(curve.discard_fractions, 1.0)
        y = np.append(curve.error_rates, curve.error_rates[-1])
        axes.step(x, y, where="post", label=f"{row['method']}  (pAUC {row[f'{kind}_pauc']:.3g})",
                  **styles[row["method"]])
    first = next(iter(curves.values()))
    grid = np.arange(int(np.ceil(x_max * first.n_comparisons)) + 1) / first.n_comparisons
    axes.plot(grid, theoretical_best(first.start_error, grid), color="0.6", linestyle="--", linewidth=1.2,
              label="theoretical best")
    axes.axvline(limit, color="0.75", linewidth=1.0)
    axes.axvspan(0, limit, color="0.94", zorder=0)
    axes.text(limit, 0.02, f" pAUC limit {limit:g}", va="bottom", ha="left", fontsize=8, color="0.4",
              transform=axes.get_xaxis_transform())  # x in data units, y in axes units
    axes.set_xlim(0, x_max)
    visible = [curve.error_rates[curve.discard_fractions <= x_max].max() for curve in curves.values()]
    axes.set_ylim(0, 1.15 * max(max(visible), first.start_error, 1e-6))
    axes.set_xlabel("fraction of comparisons discarded (lowest pair quality first)")
    axes.set_ylabel("FNMR of the remaining mated comparisons" if kind == "fnmr"
                    else "FMR of the remaining non-mated comparisons")
    axes.set_title(f"{kind.upper()}-EDC at a fixed threshold of {first.threshold:.4f} (lower is better)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    png = _figure_png(figure)
    plt.close(figure)
    return png


def _plot_legacy(erc: LegacyERCResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fmrs = erc.params["fmrs"]
    styles = _styles(list(erc.fnmr))
    figure, axes = plt.subplots(1, len(fmrs), figsize=(4.2 * len(fmrs), 3.8), squeeze=False)
    for ax, fmr in zip(axes[0], fmrs):
        for method, by_fmr in erc.fnmr.items():
            ax.plot(erc.discard_fractions, by_fmr[fmr], marker=".", label=f"{method} ({erc.auc[method][fmr]:.4f})",
                    **styles[method])
        ax.set_title(f"legacy ERC, FMR {fmr:g} (threshold recomputed)", fontsize=9)
        ax.set_xlabel("fraction of all comparisons discarded")
        ax.set_ylabel("FNMR")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    png = _figure_png(figure)
    plt.close(figure)
    return png


def _img(png: bytes, alt: str, mime: str = "image/png", width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return (f'<img alt="{html.escape(alt)}"{size} src="data:{mime};base64,'
            f'{base64.b64encode(png).decode("ascii")}">')


def _galleries(evaluation: Evaluation, store: EmbeddingStore | None, gallery_size: int) -> str:
    if store is None:
        return "<p class=note>No embedding store was given, so no face galleries are shown.</p>"
    import cv2

    parts = []
    for method, values in evaluation.qualities.items():
        if method == RANDOM_METHOD:
            continue
        known = np.flatnonzero(~np.isnan(values))
        ranked = known[np.argsort(values[known], kind="stable")]
        k = min(gallery_size, len(ranked) // 2)
        sections = []
        for title, picks in (("lowest quality", ranked[:k]), ("highest quality", ranked[::-1][:k])):
            ids = evaluation.sample_id[picks]
            rows = locate_ids(store.samples.sample_id, ids)[0]
            try:
                from fiqa.augment.crops import load_crops

                crops = load_crops(store, rows)
            except FIQAError as exc:
                sections.append(f"<p class=note>{title}: thumbnails unavailable ({html.escape(str(exc))})</p>")
                continue
            cells = []
            for crop, row, pick in zip(crops, rows, picks):
                _ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 88])
                identity = str(store.samples.identity[row])
                caption = f"{values[pick]:.3g}<br><span>{html.escape(identity)}</span>"
                cells.append(f"<figure>{_img(jpeg.tobytes(), identity, 'image/jpeg')}<figcaption>{caption}"
                             f"</figcaption></figure>")
            sections.append(f"<div class=strip><h4>{title}</h4>{''.join(cells)}</div>")
        parts.append(f"<div class=gallery><h3>{html.escape(method)}</h3>{''.join(sections)}</div>")
    return "".join(parts)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:24px auto;padding:0 20px;
color:#1d2327;line-height:1.45}img{max-width:100%;height:auto}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.lead{font-size:1.04em;color:#333;background:#f4f7fb;border-left:4px solid #3b6fb6;padding:.6em 1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.93em}th,td{padding:.35em .8em;border-bottom:1px solid #e2e2e2;
text-align:right}th{background:#f3f3f3}.name{text-align:left}
tr.floor td{color:#666;font-style:italic}tr.best td{font-weight:600}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em;font-size:.93em}dl.facts dt{color:#555}
dl.facts dd{margin:0}.note{color:#666;font-size:.9em}.legacy{background:#fff8ec;border:1px solid #f0d8a8;
padding:.2em 1em 1em;margin-top:1.6em}.gallery h3{margin:.8em 0 .2em}.strip{display:flex;flex-wrap:wrap;gap:6px;
align-items:flex-start}.strip h4{width:100%;margin:.4em 0 .1em;font-weight:500;color:#444}figure{margin:0;width:96px;
text-align:center;font-size:.75em}figure img{width:96px;height:96px;border-radius:3px}figcaption span{color:#777;
word-break:break-all}.ci{color:#555;white-space:nowrap}pre{background:#f6f6f6;padding:.8em;overflow:auto;font-size:.8em}
"""


def _fmt(value: Any) -> str:
    """Floats with 3 significant digits (pAUCs span several orders of magnitude), counts with separators."""
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.3g}"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return html.escape(str(value))


def _with_interval(value: float, low: float, high: float) -> str:
    """``value [low, high]``, or the value alone when no interval was computed."""
    if np.isnan(low) or np.isnan(high):
        return _fmt(value)
    return f"{_fmt(value)} <span class=ci>[{_fmt(low)}, {_fmt(high)}]</span>"


def write_report(evaluation: Evaluation, out_dir: str | Path, *, store: EmbeddingStore | None = None,
                 gallery_size: int = 8, title: str = "Face image quality: Error-versus-Discard evaluation") -> Path:
    """Write the tables, plots and the HTML page of an evaluation.

    Parameters
    ----------
    evaluation : Evaluation
    out_dir : str or Path
        Created if needed; files of a previous report there are replaced.
    store : EmbeddingStore, optional
        The store the comparisons came from; needed for the face galleries (crops are re-created from the source
        images with ``fiqa.embed.store.load_crops``).
    gallery_size : int >= 1
        Faces per gallery strip (lowest and highest quality, per method).
    title : str

    Returns
    -------
    Path
        The HTML page.
    """
    if isinstance(gallery_size, bool) or not isinstance(gallery_size, int) or gallery_size < 1:
        raise InvalidParameterError("write_report", "gallery_size", "an int >= 1", gallery_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = evaluation.edc.table()
    summary, versus_random = _edc_summary(evaluation, rows)
    fnmr_png, fmr_png = _write_edc_files(out, evaluation, rows, summary, versus_random)
    limit = float(evaluation.edc.params["discard_limit"])
    table_html = _result_table(rows, versus_random, limit)
    facts_html = _facts(evaluation)
    legacy_html = _write_legacy_erc(out, evaluation.legacy_erc)
    page = _page(title, limit, table_html=table_html, facts_html=facts_html, fnmr_png=fnmr_png, fmr_png=fmr_png,
                 galleries_html=_galleries(evaluation, store, gallery_size), legacy_html=legacy_html,
                 provenance={"summary": summary, "meta": evaluation.meta})
    path = out / "report.html"
    write_text(path, page)
    logger.info("report written to %s", path)
    return path


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


def _write_edc_files(out: Path, evaluation: Evaluation, rows: Sequence[dict[str, Any]], summary: dict[str, Any],
                     versus_random: dict[str, dict[str, Any]]) -> tuple[bytes, bytes]:
    """Write edc.csv, edc.json, edc_fnmr.png and edc_fmr.png; return the two plots (FNMR, FMR) as PNG bytes."""
    edc = evaluation.edc
    limit = float(edc.params["discard_limit"])
    _write_csv(out / "edc.csv", rows, EDC_COLUMNS)
    write_json(out / "edc.json", {"rows": rows, "summary": summary, "pauc_minus_random": versus_random,
                                  "meta": evaluation.meta})
    fnmr_png = _plot_edc(edc.fnmr_curves, rows, "fnmr", limit)
    fmr_png = _plot_edc(edc.fmr_curves, rows, "fmr", limit)
    (out / "edc_fnmr.png").write_bytes(fnmr_png)
    (out / "edc_fmr.png").write_bytes(fmr_png)
    return fnmr_png, fmr_png


def _result_table(rows: Sequence[dict[str, Any]], versus_random: dict[str, dict[str, Any]], limit: float) -> str:
    """The page's EDC table: one row per method in the order of ``rows`` (best first), the random floor marked."""
    random_pauc = next(row["fnmr_pauc"] for row in rows if row["method"] == RANDOM_METHOD)
    body_rows = []
    for rank, row in enumerate(rows, start=1):
        css = "floor" if row["method"] == RANDOM_METHOD else ("best" if rank == 1 else "")
        ratio = row["fnmr_pauc"] / random_pauc if random_pauc > 0 else float("nan")
        versus = versus_random.get(row["method"])
        versus_cell = ("" if versus is None else
                       f"{'<b>yes</b>' if versus['beats_random'] else 'no'}: "
                       f"{_with_interval(versus['difference'], versus['ci_low'], versus['ci_high'])}")
        cells = [_with_interval(row["fnmr_pauc"], row["pauc_ci_low"], row["pauc_ci_high"]),
                 _with_interval(row["fnmr_pauc_minus_best"], row["pauc_minus_best_ci_low"],
                                row["pauc_minus_best_ci_high"]),
                 _fmt(ratio), versus_cell, _fmt(row["fnmr_at_limit"]), _fmt(row["fmr_pauc"]),
                 f"{_fmt(row['n_mated_missing_quality'])} / {_fmt(row['n_nonmated_missing_quality'])}"]
        body_rows.append(f"<tr class='{css}'><td class=name>{rank}</td><td class=name>{_fmt(row['method'])}</td>"
                         + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    pct = f"{limit:.0%}"
    return (
        "<table><thead><tr><th class=name>#</th><th class=name>method</th>"
        f"<th>FNMR pAUC [95% CI]<br>(0 &ndash; {pct})</th><th>pAUC &minus; best [95% CI]</th>"
        "<th>vs random<br>(pAUC ratio)</th><th>beats random?<br>pAUC &minus; random [95% CI]</th>"
        f"<th>FNMR after<br>{pct} discarded</th><th>FMR pAUC</th><th>pairs without quality<br>mated / non-mated</th>"
        "</tr></thead><tbody>" + "".join(body_rows) + "</tbody></table>")


def _comparisons_origin(comparisons_meta: Mapping[str, Any]) -> str:
    """Where the comparisons came from: sampled from a store (seed and counts) or read from a pairs file."""
    if comparisons_meta.get("origin") == "sampled":
        return (f"sampled from the store with seed {comparisons_meta.get('seed')}: "
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
            f"{bootstrap.seed}), each identity's mated comparisons kept together; the threshold "
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
    facts = [
        ("comparisons used", f"{edc.n_mated:,} mated, {edc.n_nonmated:,} non-mated "
                             f"({len(evaluation.sample_id):,} samples)"),
        ("comparisons from", _comparisons_origin(evaluation.comparisons.meta)),
        ("comparison score", "cosine similarity of the embeddings; match when similarity &ge; threshold"),
        ("threshold", f"{edc.threshold:.4f}, fixed once at {threshold_rule}: "
                      f"FMR {edc.start_fmr:.2e}, starting FNMR {edc.start_fnmr:.4f}"),
        ("pair quality", "minimum of the two samples' qualities; tied qualities are discarded together"),
        ("pAUC limit", f"{limit:g} ({limit:.0%} of the comparisons discarded)"),
        ("95% intervals", _interval_text(edc.bootstrap)),
        ("missing qualities", missing_text),
        ("identities", split_text),
    ]
    return "".join(f"<dt>{html.escape(k)}</dt><dd>{v}</dd>" for k, v in facts)


def _write_legacy_erc(out: Path, erc: LegacyERCResult | None) -> str:
    """Write legacy_erc.csv, .json and .png and return the page's legacy section; without a legacy ERC, remove
    those files (a report folder re-used without it keeps no stale files) and return ``""``."""
    if erc is None:
        for name in ("legacy_erc.csv", "legacy_erc.json", "legacy_erc.png"):
            (out / name).unlink(missing_ok=True)
        return ""
    erc_rows = erc.table()
    keys = [f"auc_fmr_{fmr:g}" for fmr in erc.params["fmrs"]]
    _write_csv(out / "legacy_erc.csv", erc_rows, ["method", *keys])
    write_json(out / "legacy_erc.json", {"rows": erc_rows, "params": erc.params,
                                          "discard_fractions": erc.discard_fractions,
                                          "fnmr": {m: {f"{f:g}": v for f, v in c.items()}
                                                   for m, c in erc.fnmr.items()}})
    legacy_png = _plot_legacy(erc)
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


def _page(title: str, limit: float, *, table_html: str, facts_html: str, fnmr_png: bytes, fmr_png: bytes,
          galleries_html: str, legacy_html: str, provenance: dict[str, Any]) -> str:
    """The self-contained HTML page around the sections."""
    pct = f"{limit:.0%}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class=lead><b>What this measures.</b> The Error-versus-Discard Characteristic (EDC, ISO/IEC 29794-1) shows how
fast face-recognition errors fall when the comparisons with the lowest quality are discarded first. Each method's
<b>pAUC</b> is the area under its FNMR curve from 0 to {pct} discarded: <b>lower is better</b>. "pAUC &minus; best"
subtracts the area of the ideal curve (discarding exactly the failed comparisons first), so 0 would be perfect.
<b>random</b> is the floor: a quality measure is only useful where it beats it.</p>
<h2>Result</h2>
{table_html}
<p class=note>Methods sorted by FNMR pAUC, best first. "vs random" below 1 means errors fall faster than with a
random quality; "beats random" says yes only when the whole 95% interval of the paired difference
pAUC(method) &minus; pAUC(random) lies below 0. Brackets: 95% bootstrap intervals over identities.
FMR pAUC: the same area for false matches among non-mated comparisons (the FMR-EDC).
A missing quality: the method gave no value for one of the two samples.</p>
<dl class=facts>{facts_html}</dl>
<h2>FNMR-EDC</h2>
{_img(fnmr_png, 'FNMR-EDC')}
<h2>FMR-EDC</h2>
{_img(fmr_png, 'FMR-EDC')}
<h2>Faces with the lowest and highest quality</h2>
<p class=note>Per method, among the compared samples: aligned 112&times;112 crops, with the quality value and the
identity. Good methods put blurred, occluded, dark or profile faces on the left strip.</p>
{galleries_html}
{legacy_html}
<h2>Parameters and provenance</h2>
<details><summary>show</summary><pre>{html.escape(json.dumps(provenance, indent=2, sort_keys=True,
                                                         default=str))}</pre></details>
</body></html>
"""
