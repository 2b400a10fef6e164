"""Block shapes of cr's approximate nearest-centre search: the int8 screening graph's throughput (uint8 rows x int8
centres, ``MatMulInteger`` then the largest product per group of 64 centres, one onnxruntime session per block of
centres, as :func:`fiqa.label.cr.approximate_nearest_other` builds it) for rows per product x centres per block,
side by side in one run (round-robin over the shapes, medians of ``--repeats`` runs each after one untimed run).

The figure is GOP/s = 2 x rows x centres x 512 / seconds (multiply and add counted apart), both cores. The defaults of
``approximate_nearest_other`` (``block_rows=512``, ``centre_block=32768``, which gives about 28,600 centres per
block for MS1MV2's 85,742) are chosen from this table.

Prints a Markdown table and writes ``benchmarks/results/int8_screen.md``.

Run: ``.venv/bin/python benchmarks/bench_int8_screen.py [--repeats 7]``
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from _common import emit, machine_header, results_path

DIM = 512
ROWS = (256, 512, 1024, 2048)
CENTRES = (14_336, 28_608, 43_008)  # ~MS1MV2 split into 6, 3 and 2 blocks of whole groups of 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from fiqa.label.cr import _screen_session

    rng = np.random.default_rng(0)
    sessions = {k: _screen_session(rng.integers(-127, 128, (DIM, k), dtype=np.int8)) for k in CENTRES}
    inputs = {m: rng.integers(0, 256, (m, DIM), dtype=np.uint8) for m in ROWS}
    shapes = [(m, k) for m in ROWS for k in CENTRES]
    times: dict[tuple[int, int], list[float]] = {shape: [] for shape in shapes}
    for m, k in shapes:
        sessions[k].run(None, {"A": inputs[m]})
    for _ in range(args.repeats):
        for m, k in shapes:
            start = time.perf_counter()
            sessions[k].run(None, {"A": inputs[m]})
            times[(m, k)].append(time.perf_counter() - start)
    lines = ["# int8 screening graph of cr's approximate search: block shapes", "", *machine_header(), "",
             f"Median of {args.repeats} runs per shape, interleaved; d = {DIM}; GOP/s = 2 m k d / seconds.", "",
             "| rows per product (m) | centres per block (k) | median ms | GOP/s |", "|---:|---:|---:|---:|"]
    best = max(shapes, key=lambda shape: -np.median(times[shape]) / (shape[0] * shape[1]))
    for m, k in shapes:
        median = float(np.median(times[(m, k)]))
        mark = " (fastest)" if (m, k) == best else ""
        lines.append(f"| {m:,} | {k:,} | {median * 1e3:.1f} | {2 * m * k * DIM / median / 1e9:.0f}{mark} |")
    emit("\n".join(lines) + "\n", results_path("int8_screen.md"))


if __name__ == "__main__":
    main()
