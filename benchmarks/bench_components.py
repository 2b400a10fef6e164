"""What ``--components`` adds to scoring photos: ``Scorer.score(photos)`` against ``Scorer.score(photos,
components=True)`` on the same LFW-dev photos (decode, detect, align, score; the components measured from the
same crops, landmarks and face regions), one scorer, runs paired and alternated so machine load affects both alike.
Reports the median time per face of each, the median of the per-pair ratios, and the components' own time on the
crops alone, with and without the landmark refinement (its largest part) and with its two passes (the option
``refinement_passes=2``, which the scorer does not run: its ratio is derived, each pair's score + components plus
the median paired extra time of the two passes). Prints a Markdown table and writes
``benchmarks/results/components.md``.

Run: ``.venv/bin/python benchmarks/bench_components.py [--photos 200] [--pairs 7]``
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _common import emit, machine_header, results_path
from fiqa.components import compute_components
from fiqa.components import geometry as component_geometry
from fiqa.detect.pipeline import FacePipeline
from fiqa.score import create_scorer

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    photos = [str(p) for p in sorted(args.lfw.glob("*/*.jpg"))[:args.photos]]
    scorer = create_scorer(batch_size=64)
    scorer.score(photos[:8], components=True, progress=False)  # warm up: YuNet, the occlusion model
    plain, with_components, ratios = [], [], []
    for pair in range(args.pairs):
        order = (False, True) if pair % 2 == 0 else (True, False)
        times = {}
        for components in order:
            start = time.perf_counter()
            scorer.score(photos, components=components, progress=False)
            times[components] = (time.perf_counter() - start) / len(photos)
        plain.append(times[False])
        with_components.append(times[True])
        ratios.append(times[True] / times[False])
    pipeline = FacePipeline()
    faces = [f for f in (pipeline.process(p, views=True) for p in photos) if f.ok]
    crops = np.stack([f.crop for f in faces])
    alone, unrefined, twice = [], [], []
    refine = component_geometry.refine_landmarks_batch
    for pair in range(args.pairs):
        for passes in (1, 2) if pair % 2 == 0 else (2, 1):  # one and two refinement passes, alternated
            start = time.perf_counter()
            compute_components(crops, faces, refinement_passes=passes)
            (alone if passes == 1 else twice).append((time.perf_counter() - start) / len(faces))
        # the detector's own landmarks, not refined
        component_geometry.refine_landmarks_batch = lambda views, refinement_passes=1: [None] * len(views)
        try:
            start = time.perf_counter()
            compute_components(crops, faces)
            unrefined.append((time.perf_counter() - start) / len(faces))
        finally:
            component_geometry.refine_landmarks_batch = refine
    extra = float(np.median(np.array(twice) - np.array(alone)))  # the median of the paired differences
    lines = ["# Components: cost beside scoring", "", *machine_header(), "",
             f"{len(photos)} LFW-dev photos (250x250 JPEG), default model, batch 64, {args.pairs} alternated pairs.",
             "", "| what | median ms per face |", "|---|---:|",
             f"| score | {1000 * np.median(plain):.2f} |",
             f"| score + components | {1000 * np.median(with_components):.2f} |",
             f"| components alone (crops, landmarks, regions given) | {1000 * np.median(alone):.2f} |",
             f"| components alone, landmarks not refined (the detector's own) | {1000 * np.median(unrefined):.2f} |",
             f"| components alone, two refinement passes (`refinement_passes=2`) | {1000 * np.median(twice):.2f} |",
             "",
             f"Median of per-pair ratios (score + components) / score: **{np.median(ratios):.3f}** "
             f"(min {min(ratios):.3f}, max {max(ratios):.3f}); the bar is 1.25. With two refinement passes (not "
             "timed through the scorer, which runs one: each pair's score + components plus the median paired extra "
             f"time of the two passes, {1000 * extra:.2f} ms a face): "
             f"{np.median([(w + extra) / p for w, p in zip(with_components, plain)]):.3f}.",
             ""]
    emit("\n".join(lines), results_path("components.md"))


if __name__ == "__main__":
    main()
