"""Peak memory of ``fiqa score`` on a folder of photos: the default batch (sized from the 600 MB memory budget,
``fiqa.score.method.batch_for_budget``) with the composed model in the user cache (warm) and without it (cold, the
first run), beside a fixed batch of 8 and the former default batch of 64, and the default batch with the quality
components (``--components``: one batch's components measured on a thread of their own, two batches of crops and
their views held); scores compared with batch 8's.

Each configuration is one ``/usr/bin/time -v fiqa score DIR -o scores.parquet`` process (its "Maximum resident set
size" is the peak RSS). The photos are the first N of LFW-dev (sorted by path), copied into a temporary folder.
Prints a Markdown table and writes ``benchmarks/results/score_memory.md``.

Run: ``.venv/bin/python benchmarks/bench_score_memory.py [--lfw ../shared/data/lfw-dev] [--sizes 400 4000]``
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import emit, machine_header, results_path
from fiqa.io.table import load_quality

FIQA = Path(sys.executable).with_name("fiqa")


def run(folder: Path, out: Path, cache: Path, *extra: str) -> tuple[float, float, int]:
    """``(peak RSS in MB, wall-clock seconds, batch size)`` of one ``fiqa score`` process."""
    command = ["/usr/bin/time", "-v", str(FIQA), "score", str(folder), "-o", str(out), "--no-progress", *extra]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FIQA_CACHE": str(cache)},
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
    clock = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", done.stderr).group(1)
    wall = sum(float(part) * 60 ** i for i, part in enumerate(reversed(clock.split(":"))))
    return peak, wall, int(load_quality(out).meta["params"]["batch_size"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=Path(os.environ.get("FIQA_LFW", "../shared/data/lfw-dev")))
    parser.add_argument("--sizes", type=int, nargs="+", default=[400, 4000])
    args = parser.parse_args()
    header = machine_header()
    photos = sorted(args.lfw.rglob("*.jpg"))
    rows = ["| photos | configuration | batch | peak RSS (MB) | wall clock (s) | scores vs batch 8 |",
            "|---:|---|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        for size in args.sizes:
            folder = work / f"photos{size}"
            folder.mkdir()
            for photo in photos[:size]:
                shutil.copyfile(photo, folder / photo.name)
            cache = work / f"cache{size}"
            configurations = [("default budget, cold cache (first run)", ()), ("default budget, warm cache", ()),
                              ("--batch-size 8", ("--batch-size", "8")),
                              ("--batch-size 64 (the former default)", ("--batch-size", "64")),
                              ("default budget, warm cache, --components", ("--components",))]
            tables = {}
            for name, extra in configurations:
                out = work / f"{size}-{len(tables)}.parquet"
                peak, wall, batch = run(folder, out, cache, *extra)
                tables[name] = (load_quality(out), peak, wall, batch)
                print(f"{size} photos, {name}: batch {batch}, peak {peak:.0f} MB, {wall:.1f} s", flush=True)
            reference = tables["--batch-size 8"][0]
            for name, (table, peak, wall, batch) in tables.items():
                same = (np.array_equal(table.score, reference.score, equal_nan=True)
                        and table.status.tolist() == reference.status.tolist())
                rows.append(f"| {size:,} | {name} | {batch} | {peak:.0f} | {wall:.1f} | "
                            f"{'identical' if same else 'DIFFERENT'} |")
            shutil.rmtree(folder)
    text = "\n".join(["# `fiqa score` peak memory", "", *header, "",
                      "One `/usr/bin/time -v fiqa score DIR -o scores.parquet` process per row (peak = its maximum "
                      "resident set size); DIR holds the first N LFW-dev photos. The default batch is sized from "
                      "the 600 MB budget once the model is loaded (`fiqa.score.method.batch_for_budget`): smaller "
                      "on a cold cache, while the composed model's construction still holds memory. 'identical': "
                      "every score and status equal to batch 8's, bit for bit.", "", *rows, ""])
    emit(text, results_path("score_memory.md"))


if __name__ == "__main__":
    main()
