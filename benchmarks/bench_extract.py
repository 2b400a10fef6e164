"""Whole-extraction throughput on LFW-dev: decode + detect overlapped with batched SFace embedding.

Measured side by side in one run, on the same deterministic subset (the first ``--n-images`` files of LFW-dev in
folder order), median of ``--repeats``:

- decode + detect + align only (thread pool of ``--workers`` threads), images/s;
- SFace embedding only, on the crops from that step (batches of ``--batch-size``), crops/s;
- the whole extraction (``embed_source``) with decoding in the calling thread (``n_workers=0``: no overlap);
- the whole extraction with ``--workers`` decode/detect threads overlapped with embedding.

The machine's load average is printed beside the table: on a shared machine the absolute numbers move with it,
the ratios measured side by side much less. Prints a Markdown table and writes it to
``benchmarks/results/extract.md``.

Run: ``.venv/bin/python benchmarks/bench_extract.py [--n-images 256] [--repeats 3] [--lfw PATH]``
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from _common import emit, load_average, machine_header, median_seconds, results_path
from fiqa.detect import FaceAligner
from fiqa.embed import create_embedder
from fiqa.embed.extract import embed_source
from fiqa.io import DataSource, open_source, read_image

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=os.environ.get("FIQA_LFW") or str(ROOT.parent / "shared" / "data" / "lfw-dev"),
                        help="LFW-dev folder")
    parser.add_argument("--n-images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    source = open_source(args.lfw, kind="folder")
    subset = source.samples.subset(np.arange(min(args.n_images, len(source.samples))))
    source = DataSource(source.kind, source.spec, subset)
    locations = list(source.samples.location)
    n = len(locations)
    aligner = FaceAligner()
    embedder = create_embedder("sface")
    embedder.embed(np.zeros((2, 112, 112, 3), np.uint8))  # warm-up: session creation and first-run allocation
    header = machine_header()

    crops: list[np.ndarray] = []

    def detect_only() -> None:
        with ThreadPoolExecutor(args.workers) as pool:
            results = list(pool.map(lambda loc: aligner.align(read_image(loc)).crop, locations))
        crops[:] = [crop for crop in results if crop is not None]

    def embed_only() -> None:
        stack = np.stack(crops)
        for start in range(0, len(stack), args.batch_size):
            embedder.embed(stack[start:start + args.batch_size])

    work = Path(tempfile.mkdtemp(prefix="fiqa-bench-"))

    def extraction(n_workers: int) -> None:
        out = work / f"store-{n_workers}"
        embed_source(source, out, backend=embedder, batch_size=args.batch_size, resume=False, n_workers=n_workers,
                     progress=False)
        shutil.rmtree(out)

    try:
        t_detect = median_seconds(detect_only, args.repeats)
        embed_only()  # warm-up at the batch shapes the timed runs use (onnxruntime plans per input shape)
        t_embed = median_seconds(embed_only, args.repeats)
        t_serial = median_seconds(lambda: extraction(0), args.repeats)
        t_overlap = median_seconds(lambda: extraction(args.workers), args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = load_average()

    rows = [
        (f"decode + detect + align only ({args.workers} threads)", n, t_detect, "images"),
        (f"SFace embedding only (batch {args.batch_size})", len(crops), t_embed, "crops"),
        ("whole extraction, no overlap (n_workers=0)", n, t_serial, "images"),
        (f"whole extraction, overlapped (n_workers={args.workers})", n, t_overlap, "images"),
    ]
    lines = [
        f"# Extraction throughput on LFW-dev ({n} images, median of {args.repeats})",
        "",
        *header,
        f"Load average (1 / 5 / 15 min) after: {load_after} (other work on the machine lowers every row).",
        "",
        "| step | items | median s | per second |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {items} | {seconds:.2f} | {items / seconds:.1f} {unit}/s |"
          for name, items, seconds, unit in rows],
        "",
        f"Overlap speed-up (no overlap / overlapped): {t_serial / t_overlap:.2f}x. "
        f"Ideal pipeline bound (the slower stage alone): "
        f"{min(n / t_detect, len(crops) / t_embed):.1f} images/s; serial bound "
        f"(1 / (1/detect + 1/embed)): {1 / (t_detect / n + t_embed / max(len(crops), 1)):.1f} images/s.",
    ]
    emit("\n".join(lines), results_path("extract.md"))


if __name__ == "__main__":
    main()
