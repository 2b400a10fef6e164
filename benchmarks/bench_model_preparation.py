"""Model preparation time of ``fiqa score``: ``create_scorer()`` (the shipped head composed with SFace, then the
onnxruntime session) in a fresh process with an empty user cache (first call) and with the composed graph in it
(second call), as pairs; the median of each over the pairs.

``--no-cache`` runs the same pairs with a cache that cannot be read (every call composes: the behaviour before the
cache). Prints a Markdown table and writes ``benchmarks/results/model_preparation.md``.

Run: ``.venv/bin/python benchmarks/bench_model_preparation.py [--pairs 5]``
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import emit, machine_header, results_path

PROBE = ("import json, time; import fiqa.score as s; t = time.perf_counter(); s.create_scorer(); "
         "print(json.dumps(time.perf_counter() - t))")


def prepare(cache: Path) -> float:
    """Seconds of ``create_scorer()`` in a fresh process whose user cache is ``cache``."""
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                          env={**os.environ, "FIQA_CACHE": str(cache)})
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    header = machine_header()
    first, second, uncached = [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        for pair in range(args.pairs):
            cache = Path(scratch) / f"cache{pair}"
            first.append(prepare(cache))
            second.append(prepare(cache))
            blocked = Path(scratch) / f"blocked{pair}"
            blocked.write_text("a file, not a folder: the cache can be neither read nor written")
            uncached.append(prepare(blocked))
            print(f"pair {pair + 1}: first {first[-1]:.2f} s, second {second[-1]:.2f} s, "
                  f"without a cache {uncached[-1]:.2f} s", flush=True)
    rows = ["| call | median (s) | min (s) | max (s) |", "|---|---:|---:|---:|"]
    for name, values in [("without a usable cache (every call composes; as before the cache)", uncached),
                         ("first call, empty cache (composes, writes the entry)", first),
                         ("second call (reads the entry)", second)]:
        rows.append(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    text = "\n".join(["# `fiqa score` model preparation", "", *header, "",
                      f"`create_scorer()` in a fresh process, {args.pairs} pairs (first call on an empty "
                      "`$FIQA_CACHE`, then a second call on it) plus one call per pair with a cache that cannot be "
                      "used; import time excluded.", "", *rows, ""])
    emit(text, results_path("model_preparation.md"))


if __name__ == "__main__":
    main()
