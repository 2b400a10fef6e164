"""Speed of the EDC core: 1,000,000 mated comparisons x 5 quality columns (target <= 5 s), plus the loop reference
on a small set for scale. Prints a Markdown table and writes it to ``benchmarks/results/edc.md``.

Run: ``.venv/bin/python benchmarks/bench_edc.py [--repeats 5]``
"""
from __future__ import annotations

import argparse

import numpy as np

from _common import emit, machine_header, median_seconds, results_path
from fiqa.evaluate.curves import edc_curve, pauc, theoretical_best_pauc
from fiqa.evaluate.edc import compute_edc


def _loop_edc(similarities, qualities, threshold):
    """The straightforward reference (one pass per distinct quality level), for scale only."""
    levels = np.unique(qualities)
    return [float(np.mean(similarities[qualities >= level] < threshold)) for level in levels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--random-state", "--seed", type=int, default=0)
    args = parser.parse_args()
    header = machine_header()
    rng = np.random.default_rng(args.random_state)
    n_mated, n_nonmated, n_columns = 1_000_000, 1_000_000, 5
    mated = rng.normal(0.6, 0.15, n_mated)
    nonmated = rng.normal(0.05, 0.1, n_nonmated)
    mated_q = {f"q{i}": rng.uniform(size=n_mated) for i in range(n_columns)}
    nonmated_q = {f"q{i}": rng.uniform(size=n_nonmated) for i in range(n_columns)}
    tied_q = {f"q{i}": np.round(q, 2) for i, q in enumerate(mated_q.values())}  # 101 levels

    def full_run(qualities):
        result = compute_edc(mated, qualities, nonmated, nonmated_q)
        return result.table()

    threshold = float(np.quantile(mated, 0.05))

    def five_curves():
        return [pauc(edc_curve(mated, q, threshold), 0.2) for q in mated_q.values()]

    rows = []
    t_target = median_seconds(five_curves, args.repeats)
    rows.append(("FNMR-EDC + pAUC: 1M comparisons x 5 columns (the target case)", t_target))
    t_full = median_seconds(lambda: full_run(mated_q), args.repeats)
    rows.append(("compute_edc + table: 1M mated + 1M non-mated (FNMR- and FMR-EDC), 5 columns", t_full))
    t_tied = median_seconds(lambda: full_run(tied_q), args.repeats)
    rows.append(("compute_edc + table: same, qualities rounded to 101 levels (ties)", t_tied))
    t_one = median_seconds(lambda: pauc(edc_curve(mated, mated_q["q0"], threshold), 0.2), args.repeats)
    rows.append(("edc_curve + pauc: 1M mated, 1 column", t_one))
    curve = edc_curve(mated, mated_q["q0"], threshold)
    t_best = median_seconds(lambda: theoretical_best_pauc(curve, 0.2), args.repeats)
    rows.append(("theoretical_best_pauc: 1M comparisons", t_best))

    small = 20_000
    small_q = np.round(mated_q["q0"][:small], 3)
    t_loop = median_seconds(lambda: _loop_edc(mated[:small], small_q, threshold), max(1, args.repeats // 2))
    t_vec = median_seconds(lambda: edc_curve(mated[:small], small_q, threshold), args.repeats)
    rows.append((f"loop reference (one pass per level): {small:,} comparisons, 1,001 levels", t_loop))
    rows.append((f"edc_curve: same {small:,} comparisons", t_vec))

    lines = [
        "# EDC benchmark",
        "",
        *header,
        "",
        f"Median of {args.repeats} runs; seed {args.random_state}.",
        "",
        "| case | median seconds |",
        "|---|---:|",
        *[f"| {name} | {seconds:.3f} |" for name, seconds in rows],
        "",
        f"Target: EDC of 1,000,000 comparisons x 5 columns <= 5 s -> measured {t_target:.2f} s "
        f"({'met' if t_target <= 5 else 'NOT met'}); with the FMR-EDC of 1,000,000 non-mated comparisons as well: "
        f"{t_full:.2f} s. Vectorised vs loop on {small:,} comparisons: {t_loop / t_vec:.0f}x faster.",
    ]
    emit("\n".join(lines), results_path("edc.md"))


if __name__ == "__main__":
    main()
