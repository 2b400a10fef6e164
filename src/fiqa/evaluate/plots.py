"""The report's plots (matplotlib, Agg, PNG bytes): one colour per method across every plot, methods in panels by
kind (labels, models, baselines), the random floor and the theoretical best in every EDC panel, bootstrap bands,
score distributions, the Spearman matrix, per-group EDCs and differential rejection.

Every function takes plain data (curves, arrays, mappings) and returns PNG bytes; :mod:`fiqa.evaluate.report` decides
what goes where.
"""
from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fiqa.evaluate.bands import EDCBands
from fiqa.evaluate.curves import EDCCurve, theoretical_best
from fiqa.evaluate.erc import LegacyERCResult
from fiqa.evaluate.groups import GroupBreakdown
from fiqa.evaluate.run import METHOD_KINDS, RANDOM_METHOD

KIND_TITLES = {"label": "labels (see the person's other photos)", "model": "models (one image each)",
               "baseline": "baselines (training-free, statistics, random floor)",
               "component": "quality components (one factor each, not a unified quality)"}

_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
            "#393b79", "#e7298a", "#66a61e", "#a6761d", "#7570b3", "#d95f02", "#1b9e77", "#843c39", "#5254a3")
"""Distinct colours, assigned to methods in order (tab10 without its grey, then Dark2 and tab20b picks)."""

RANDOM_STYLE = {"color": "0.35", "linestyle": ":", "linewidth": 2.0}
BEST_STYLE = {"color": "0.55", "linestyle": "--", "linewidth": 1.2}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def method_styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """One line style per method, the same in every plot of a report: a distinct colour per method in the given
    order (the evaluation's), the random floor grey and dotted."""
    styles, index = {}, 0
    for method in methods:
        if method == RANDOM_METHOD:
            styles[method] = dict(RANDOM_STYLE)
        else:
            styles[method] = {"color": _PALETTE[index % len(_PALETTE)], "linestyle": "-", "linewidth": 1.7}
            index += 1
    return styles


def kind_panels(kinds: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """The panels (kind, its methods) in :data:`METHOD_KINDS` order, without empty ones; the random floor is drawn
    in every panel, so it is listed in none unless it is the only method."""
    panels = [(kind, [m for m, k in kinds.items() if k == kind and m != RANDOM_METHOD]) for kind in METHOD_KINDS]
    panels = [(kind, methods) for kind, methods in panels if methods]
    return panels or [("baseline", [RANDOM_METHOD])]


def _step(axes, curve: EDCCurve, label: str | None, style: Mapping[str, Any]) -> None:
    x = np.append(curve.discard_fractions, 1.0)
    y = np.append(curve.error_rates, curve.error_rates[-1])
    axes.step(x, y, where="post", label=label, **style)


def _edc_axes(axes, curves: Mapping[str, EDCCurve], methods: Sequence[str], styles: Mapping[str, Mapping[str, Any]],
              x_max: float, limit: float, labels: Mapping[str, str], bands: EDCBands | None = None) -> None:
    """One EDC panel: the methods' curves (with bands), the random floor and the theoretical best."""
    first = curves[methods[0]]
    shown = [m for m in methods if m != RANDOM_METHOD] + ([RANDOM_METHOD] if RANDOM_METHOD in curves else [])
    for method in shown:
        style = styles[method]
        if bands is not None and method != RANDOM_METHOD and method in bands.low:
            axes.fill_between(bands.grid, bands.low[method], bands.high[method], step="post",
                              color=style["color"], alpha=0.13, linewidth=0)
        _step(axes, curves[method], labels.get(method, method), style)
    grid = np.arange(int(np.ceil(x_max * first.n_comparisons)) + 1) / first.n_comparisons
    axes.plot(grid, theoretical_best(first.start_error, grid), label="theoretical best", **BEST_STYLE)
    axes.axvline(limit, color="0.75", linewidth=1.0)
    axes.axvspan(0, limit, color="0.95", zorder=0)
    axes.set_xlim(0, x_max)
    visible = [curves[m].error_rates[curves[m].discard_fractions <= x_max].max() for m in shown]
    if bands is not None:
        visible += [float(np.nanmax(bands.high[m])) for m in shown if m in bands.high]
    axes.set_ylim(0, 1.08 * max(max(visible), first.start_error, 1e-6))
    axes.grid(alpha=0.3)


def plot_edc_panels(results: Sequence[tuple[str, Mapping[str, EDCCurve], Mapping[str, float], EDCBands | None]],
                    kinds: Mapping[str, str], styles: Mapping[str, Mapping[str, Any]], kind: str,
                    limit: float) -> bytes:
    """FNMR- (``kind="fnmr"``) or FMR-EDCs: one row of panels per method kind, one column per operating point.

    ``results`` holds per operating point ``(title, curves by method, pAUC by method, bands or None)``; the legend
    of a row lists its methods with their pAUC at each operating point (3 significant digits).
    """
    plt = _pyplot()
    panels = kind_panels(kinds)
    x_max = min(1.0, max(0.5, 2.5 * limit))
    figure, axes = plt.subplots(len(panels), len(results), figsize=(5.0 * len(results) + 2.6, 3.3 * len(panels)),
                                squeeze=False)
    for row, (method_kind, methods) in enumerate(panels):
        for column, (title, curves, _, bands) in enumerate(results):
            shown = [*methods, RANDOM_METHOD] if RANDOM_METHOD in curves and RANDOM_METHOD not in methods else methods
            labels = {m: f"{m}  ({' | '.join(f'{r[2][m]:.3g}' for r in results)})" for m in shown}
            ax = axes[row, column]
            _edc_axes(ax, curves, shown, styles, x_max, limit, labels, bands)
            ax.set_title(f"{KIND_TITLES[method_kind]}\n{title}", fontsize=9)
            ax.set_ylabel("FNMR of remaining mated" if kind == "fnmr" else "FMR of remaining non-mated", fontsize=8)
            if row == len(panels) - 1:
                ax.set_xlabel("fraction discarded (lowest pair quality first)", fontsize=8)
        pauc_names = " | ".join(r[0].split(":")[0] for r in results)
        axes[row, -1].legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                             title=f"pAUC at {pauc_names}" if len(results) > 1 else "pAUC", title_fontsize=7.5)
    figure.tight_layout()
    return _png(figure)


def plot_distributions(qualities: Mapping[str, np.ndarray], failing: np.ndarray,
                       styles: Mapping[str, Mapping[str, Any]]) -> bytes:
    """One histogram per method of its compared samples' qualities (in its colour), with the samples of false
    non-matches at the threshold overlaid in black: a useful measure puts them at the low end."""
    plt = _pyplot()
    methods = list(qualities)
    columns = min(4, len(methods))
    rows = int(np.ceil(len(methods) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.1 * columns, 2.3 * rows), squeeze=False)
    for ax, method in zip(axes.ravel(), methods):
        values = qualities[method]
        known = np.isfinite(values)
        if not known.any():
            ax.set_title(f"{method}: no quality", fontsize=8)
            continue
        bins = np.histogram_bin_edges(values[known], bins=40)
        ax.hist(values[known], bins=bins, color=styles[method]["color"], alpha=0.75, density=True,
                label="all compared")
        if np.any(failing & known):
            ax.hist(values[failing & known], bins=bins, histtype="step", color="black", density=True,
                    linewidth=1.2, label="in a false non-match")
        missing = int((~known).sum())
        ax.set_title(f"{method}" + (f" ({missing:,} without)" if missing else ""), fontsize=8.5,
                     color=styles[method]["color"] if method != RANDOM_METHOD else "0.3")
        ax.tick_params(labelsize=7)
        ax.set_yticks([])
    for ax in axes.ravel()[len(methods):]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize=7, frameon=False)
    figure.tight_layout()
    return _png(figure)


def plot_spearman(names: Sequence[str], matrix: np.ndarray, styles: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The Spearman rank correlation matrix between methods, with the values written in the cells."""
    plt = _pyplot()
    size = 0.55 * len(names) + 2.2
    figure, axes = plt.subplots(figsize=(size + 1.2, size))
    image = axes.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
    axes.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(names)), names, fontsize=8)
    for tick, name in zip([*axes.get_xticklabels(), *axes.get_yticklabels()], [*names, *names]):
        tick.set_color(styles[name]["color"] if name != RANDOM_METHOD else "0.3")
    for i in range(len(names)):
        for j in range(len(names)):
            if np.isfinite(matrix[i, j]):
                axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if abs(matrix[i, j]) > 0.6 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="Spearman rank correlation")
    axes.set_title("Rank agreement between methods (compared samples)", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def plot_group_edcs(breakdown: GroupBreakdown, styles: Mapping[str, Mapping[str, Any]], limit: float,
                    group_by: str, max_panels: int = 12) -> bytes:
    """One FNMR-EDC panel per group (the first ``max_panels`` groups with mated comparisons), every method in its
    colour, at the evaluation's fixed threshold."""
    plt = _pyplot()
    shown = [g for g in breakdown.groups if breakdown.fnmr_curves.get(g)][:max_panels]
    columns = min(3, max(1, len(shown)))
    rows = max(1, int(np.ceil(len(shown) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(4.4 * columns + 2.4, 3.2 * rows), squeeze=False)
    x_max = min(1.0, max(0.5, 2.5 * limit))
    for ax, group in zip(axes.ravel(), shown):
        g = breakdown.groups.index(group)
        curves = breakdown.fnmr_curves[group]
        _edc_axes(ax, curves, list(curves), styles, x_max, limit, {})
        ax.set_title(f"{group_by} = {group}: {breakdown.n_mated[g]:,} mated, start FNMR "
                     f"{breakdown.start_fnmr[g]:.3g}", fontsize=8.5)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(shown):]:
        ax.set_visible(False)
    if shown:
        axes.ravel()[min(columns, len(shown)) - 1].legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                                                          frameon=False)
    figure.tight_layout()
    return _png(figure)


def plot_rejection(breakdown: GroupBreakdown, styles: Mapping[str, Mapping[str, Any]], group_by: str) -> bytes:
    """Differential rejection at the first reject quantile: per method (x, labels in the method's colour) and
    group (bars), the reject rate, and the FNMR after rejection beside each group's starting FNMR (dashed)."""
    plt = _pyplot()
    methods, groups = list(breakdown.methods), list(breakdown.groups)[:8]
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(methods))
    figure, axes = plt.subplots(1, 2, figsize=(max(8.0, 1.1 * len(methods) + 4), 3.8))
    shades = [str(v) for v in np.linspace(0.15, 0.75, len(groups))] if len(groups) > 1 else ["0.35"]
    hatches = ["", "//", "..", "xx", "\\\\", "++", "oo", "--"]
    quantile = breakdown.reject_quantile
    for g, group in enumerate(groups):
        offset = (g - (len(groups) - 1) / 2) * width
        axes[0].bar(x + offset, breakdown.reject_rates[g, :, 0], width, color=shades[g], hatch=hatches[g % 8],
                    edgecolor="white", label=f"{group_by} = {group}")
        axes[1].bar(x + offset, breakdown.fnmr_after_reject[g, :, 0], width, color=shades[g], hatch=hatches[g % 8],
                    edgecolor="white", label=f"{group_by} = {group}")
        axes[1].axhline(breakdown.start_fnmr[g], color=shades[g], linestyle="--", linewidth=1.0)
    axes[0].axhline(quantile, color="0.5", linestyle=":", linewidth=1.0)
    axes[0].set_ylabel(f"rejected at the {quantile:g} quality quantile", fontsize=8)
    axes[1].set_ylabel("FNMR of the mated pairs kept (dashed: before)", fontsize=8)
    for ax in axes:
        ax.set_xticks(x, methods, rotation=55, ha="right", fontsize=7.5)
        for tick, method in zip(ax.get_xticklabels(), methods):
            tick.set_color(styles[method]["color"] if method != RANDOM_METHOD else "0.3")
        ax.grid(axis="y", alpha=0.3)
    axes[1].legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.suptitle(f"Differential rejection by {group_by} (threshold at the {quantile:g} quantile of all "
                    "compared samples)", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def plot_legacy(erc: LegacyERCResult, styles: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The legacy ERC, one panel per FMR, the legend outside the panels (3 significant digits)."""
    plt = _pyplot()
    fmrs = erc.params["fmrs"]
    figure, axes = plt.subplots(1, len(fmrs), figsize=(3.8 * len(fmrs) + 2.6, 3.6), squeeze=False)
    for ax, fmr in zip(axes[0], fmrs):
        for method, by_fmr in erc.fnmr.items():
            ax.plot(erc.discard_fractions, by_fmr[fmr], marker=".", markersize=3, label=method, **styles[method])
        ax.set_title(f"legacy ERC, FMR {fmr:g} (threshold recomputed)", fontsize=9)
        ax.set_xlabel("fraction of all comparisons discarded", fontsize=8)
        ax.set_ylabel("FNMR", fontsize=8)
        ax.grid(alpha=0.3)
    labels = {m: f"{m}  ({' | '.join(f'{erc.auc[m][f]:.3g}' for f in fmrs)})" for m in erc.fnmr}
    handles, names = axes[0, -1].get_legend_handles_labels()
    axes[0, -1].legend(handles, [labels[n] for n in names], fontsize=7.5, frameon=False, loc="upper left",
                       bbox_to_anchor=(1.02, 1.0), title="AUC at FMR " + " | ".join(f"{f:g}" for f in fmrs),
                       title_fontsize=7.5)
    figure.tight_layout()
    return _png(figure)
