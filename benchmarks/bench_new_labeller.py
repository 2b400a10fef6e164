"""Speed of reference-consensus against sdd and cr on synthetic embeddings, side by side in one run.

    python benchmarks/bench_new_labeller.py --n 1000000

Prints a table (median wall time of ``--repeats`` runs per labeller) and writes it to
``benchmarks/results/bench_new_labeller.md``. Complexity of reference-consensus: O(sum_y n_y^2 d) batched
clustering and again for the match evidence + O(P d) for the impostor threshold (P = 200,000 pairs); sdd:
O(N (m + n) K d).
"""
from __future__ import annotations

import argparse

import numpy as np

from _common import emit, machine_header, median_seconds, results_path
from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler, list_labelers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--mean-class-size", type=int, default=68)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--methods", default="sdd,cr,reference-consensus")
    args = parser.parse_args()
    header = machine_header()
    data = make_embeddings(args.n, args.dim, max(2, args.n // args.mean_class_size), min_class_size=2, random_state=0)
    rows = ["| labeller | N | identities | median seconds | ratio to sdd |", "|---|---|---|---|---|"]
    times = {}
    for name in [m for m in args.methods.split(",") if m in list_labelers()]:
        times[name] = median_seconds(lambda: create_labeler(name).fit(data.vectors, data.identities,
                                                                      norms=data.norms), args.repeats)
    for name, seconds in times.items():
        ratio = seconds / times["sdd"] if "sdd" in times else float("nan")
        rows.append(f"| {name} | {args.n} | {len(np.unique(data.identities))} | {seconds:.1f} | {ratio:.2f} |")
    title = (f"# bench_new_labeller (N = {args.n}, d = {args.dim}, mean class size {args.mean_class_size}, "
             f"median of {args.repeats} run(s))")
    emit("\n".join([title, "", *header, "", *rows]), results_path("bench_new_labeller.md"))


if __name__ == "__main__":
    main()
