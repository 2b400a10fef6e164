"""Extraction on Ray Data against the in-process engine, on the same LFW-dev photos.

Measured side by side in one run, the configurations interleaved (their order rotates from one repeat to the next),
median of ``--repeats``, every run a whole ``embed_source`` call (either engine) into a fresh store:

- in-process, 1 thread: ``embed_source(n_workers=0)``, onnxruntime and OpenCV on 1 thread;
- in-process, 1 decode thread beside the embedding thread (``n_workers=1``): the shape of one Ray worker, which is
  a face actor and an embedding actor;
- Ray, 1 worker x 1 thread and 2 workers x 1 thread (``embed_source(engine="ray", n_workers=...)``) on one
  local Ray instance with ``--cpus`` CPUs, started once before the timings (its start-up time is reported apart).

Each configuration runs on ``--n-images`` photos and on ``--n-small``: the difference gives the cost per image,
and what is left of the small run the fixed cost of a call (for Ray: starting the actors, each loading its models).
Prints a Markdown table and writes it to ``benchmarks/results/ray.md``.

Run: ``.venv/bin/python benchmarks/bench_ray.py [--n-images 400] [--n-small 20] [--repeats 3] [--cpus 2]``
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import ray

from _common import emit, load_average, machine_header, results_path, seconds
from fiqa.core.types import EmbeddingStore
from fiqa.embed.extract import embed_source
from fiqa.io import DataSource, open_source

ROOT = Path(__file__).resolve().parents[1]


def subset(folder: str, n: int) -> DataSource:
    """The first ``n`` photos of the folder source, in folder order."""
    source = open_source(folder, kind="folder")
    return DataSource(source.kind, source.spec, source.samples.subset(np.arange(min(n, len(source.samples)))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=os.environ.get("FIQA_LFW") or str(ROOT.parent / "shared" / "data" / "lfw-dev"),
                        help="LFW-dev folder")
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument("--n-small", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    args = parser.parse_args()

    cv2.setNumThreads(1)  # the in-process rows run OpenCV on one thread, as each Ray actor does
    sources = {size: subset(args.lfw, size) for size in (args.n_images, args.n_small)}
    n_big = len(sources[args.n_images].samples)
    header = machine_header()
    work = Path(tempfile.mkdtemp(prefix="fiqa-bench-ray-"))
    started = time.perf_counter()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.WARNING)
    t_init = time.perf_counter() - started
    last: dict[str, EmbeddingStore] = {}
    counter = itertools.count()

    def run(name: str, size: int, call: Callable[..., EmbeddingStore]) -> float:
        out = work / f"store-{next(counter)}"
        started = time.perf_counter()
        store = call(sources[size], out, batch_size=args.batch_size, chunk_size=256, resume=False, progress=False)
        elapsed = time.perf_counter() - started
        if size == args.n_images:
            last[name] = store
        else:
            shutil.rmtree(out)
        return elapsed

    configs: dict[str, Callable[..., EmbeddingStore]] = {
        "in-process, 1 thread": lambda *a, **k: embed_source(*a, backend_params={"threads": 1}, n_workers=0, **k),
        "in-process, 1 decode + 1 embed thread": lambda *a, **k: embed_source(*a, backend_params={"threads": 1},
                                                                               n_workers=1, **k),
        "Ray, 1 worker x 1 thread": lambda *a, **k: embed_source(*a, engine="ray", n_workers=1, **k),
        "Ray, 2 workers x 1 thread": lambda *a, **k: embed_source(*a, engine="ray", n_workers=2, **k),
    }
    names = list(configs)
    times: dict[tuple[str, int], list[float]] = {(name, size): [] for name in names for size in sources}
    try:
        seconds(lambda: embed_source(sources[args.n_small], work / "warm", progress=False))  # SFace folded once
        for repeat in range(args.repeats):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                for size in sources:
                    times[name, size].append(run(name, size, configs[name]))
                print(f"repeat {repeat + 1}, {name}: {times[name, args.n_images][-1]:.1f} s for {n_big}, "
                      f"{times[name, args.n_small][-1]:.1f} s for {args.n_small}", flush=True)
        parity = max(float(np.nanmax(np.abs(last[name].vectors - last[names[0]].vectors))) for name in names[1:])
        same_status = all(np.array_equal(last[name].status, last[names[0]].status) for name in names[1:])
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    emit(report(args, n_big, header, t_init, times, names, parity, same_status), results_path("ray.md"))


def report(args: argparse.Namespace, n_big: int, header: list[str], t_init: float,
           times: dict[tuple[str, int], list[float]], names: list[str], parity: float, same_status: bool) -> str:
    """The Markdown report: one row per configuration, then the ratios."""
    median = {key: float(np.median(values)) for key, values in times.items()}
    n_small = args.n_small
    per_image = {name: (median[name, args.n_images] - median[name, n_small]) / (n_big - n_small) for name in names}
    fixed = {name: median[name, n_small] - n_small * per_image[name] for name in names}
    rows = [f"| {name} | {median[name, args.n_images]:.2f} | {n_big / median[name, args.n_images]:.1f} | "
            f"{median[name, n_small]:.2f} | {1000 * per_image[name]:.1f} | {fixed[name]:.2f} |" for name in names]
    base, shape, ray1, ray2 = names
    return "\n".join([
        f"# Extraction on Ray Data vs in-process ({n_big} LFW-dev photos, median of {args.repeats})",
        "",
        *header,
        f"Load average (1 / 5 / 15 min) after: {load_average()} (other work on the machine lowers every row).",
        f"Local Ray instance: {args.cpus} CPUs, started once in {t_init:.1f} s (not in the rows); batch size "
        f"{args.batch_size}, chunk (shard) size 256.",
        "",
        f"| configuration | s for {n_big} | images/s | s for {n_small} | ms per image (marginal) | fixed s per call |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"- Ray 2 workers / 1 worker: x{median[ray1, args.n_images] / median[ray2, args.n_images]:.2f} throughput; "
        f"Ray 2 workers / in-process 1 thread: x{median[base, args.n_images] / median[ray2, args.n_images]:.2f}; "
        f"Ray 1 worker / in-process of the same shape (1 decode + 1 embed thread): "
        f"x{median[shape, args.n_images] / median[ray1, args.n_images]:.2f}.",
        f"- Ray's cost per image over in-process of the same shape: "
        f"{1000 * (per_image[ray1] - per_image[shape]):+.1f} ms (marginal ms of Ray 1 worker minus in-process "
        f"1 + 1 threads); its fixed cost per call: {fixed[ray1] - fixed[shape]:+.1f} s (actors start and load "
        f"YuNet and SFace each time).",
        f"- Marginal cost per image (fixed cost left out), 2 Ray workers against 1: "
        f"x{per_image[ray1] / per_image[ray2]:.2f} faster; against in-process 1 thread: "
        f"x{per_image[base] / per_image[ray2]:.2f}. {break_even(fixed, per_image, base, ray2)}",
        f"- Same stores: statuses identical in every configuration: {same_status}; largest |vector difference| "
        f"from in-process 1 thread: {parity:.1e}.",
        "",
        "Every timing (s), repeat by repeat:",
        "",
        *[f"- {name}, {n} images: {', '.join(f'{t:.2f}' for t in times[name, size])}"
          for name in names for size, n in ((args.n_images, n_big), (n_small, n_small))],
    ])


def break_even(fixed: dict[str, float], per_image: dict[str, float], base: str, other: str) -> str:
    """From how many images ``other`` takes less time than ``base`` (a line for the report)."""
    gain = per_image[base] - per_image[other]
    if gain <= 0:
        return f"{other} is not faster per image than {base} here, so it never catches up on this machine."
    at = max(0.0, (fixed[other] - fixed[base]) / gain)
    return f"With these numbers {other} overtakes {base} from about {at:.0f} images in one call."


if __name__ == "__main__":
    main()
