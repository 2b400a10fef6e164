"""What ``--components`` adds to scoring photos: ``Scorer.score(photos)`` against ``Scorer.score(photos,
components=True)`` on the same LFW-dev photos (decode, detect, align, score; the components measured from the
same crops, landmarks and face regions), one scorer, the variants run in turn in each round (the order reversed
every other round) so machine load affects them alike. The scorer measures one batch's components on a thread of
its own while it reads and scores the next; the variant ``measured first, on the calling thread`` runs them as the
scorer did before (each batch's components measured before it is scored, nothing beside them), for the change's
before and after in one run. The components run the landmark refinement's two passes (the default) and, in a
variant, one. Reports the median time per face of each, the median of each round's ratio to that round's plain
scoring, the process's CPU time per face, and the components' own time on the crops alone, with two passes, one,
and without the refinement (its largest part). Prints a Markdown table and writes
``benchmarks/results/components.md``.

Run: ``.venv/bin/python benchmarks/bench_components.py [--photos 300] [--rounds 11]``
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from _common import emit, machine_header, results_path
from fiqa.components import compute_components
from fiqa.components import geometry as component_geometry
from fiqa.detect.pipeline import FacePipeline
from fiqa.score import create_scorer
from fiqa.score import method as score_method

REPO = Path(__file__).resolve().parents[1]


class _OnTheCallingThread:
    """A stand-in for the scorer's one-thread pool that measures at once, on the calling thread: each batch's
    components before the batch is scored, as the scorer did before it measured them beside the next batch."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def submit(self, function, *args):
        future: Future = Future()
        future.set_result(function(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--batch", type=int, default=64, help="images per batch (fiqa score plans about 13)")
    args = parser.parse_args()
    photos = [str(p) for p in sorted(args.lfw.glob("*/*.jpg"))[:args.photos]]
    scorer = create_scorer(batch_size=args.batch)
    scorer.score(photos[:8], components=True, progress=False)  # warm up: YuNet, the occlusion model
    variants = {
        "score": {},
        "score + components (two refinement passes, the default)": {"components": True},
        "score + components, one refinement pass (`refinement_passes=1`)": {"components": True,
                                                                            "refinement_passes": 1},
        "score + components measured first, on the calling thread (the scorer before)": {"components": True},
    }
    serial = list(variants)[-1]
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    pool = score_method.ThreadPoolExecutor
    for round_ in range(args.rounds):
        for name in list(variants) if round_ % 2 == 0 else list(variants)[::-1]:
            score_method.ThreadPoolExecutor = _OnTheCallingThread if name == serial else pool
            try:
                start, used = time.perf_counter(), time.process_time()
                scorer.score(photos, progress=False, **variants[name])
                wall[name].append((time.perf_counter() - start) / len(photos))
                cpu[name].append((time.process_time() - used) / len(photos))
            finally:
                score_method.ThreadPoolExecutor = pool
    plain = np.array(wall["score"])
    pipeline = FacePipeline()
    faces = [f for f in (pipeline.process(p, views=True) for p in photos) if f.ok]
    crops = np.stack([f.crop for f in faces])
    twice, once, unrefined = [], [], []
    refine = component_geometry.refine_landmarks_batch
    for round_ in range(args.rounds):
        for passes in (2, 1) if round_ % 2 == 0 else (1, 2):  # two and one refinement passes, alternated
            start = time.perf_counter()
            compute_components(crops, faces, refinement_passes=passes)
            (twice if passes == 2 else once).append((time.perf_counter() - start) / len(faces))
        # the detector's own landmarks, not refined
        component_geometry.refine_landmarks_batch = lambda views, refinement_passes=1: [None] * len(views)
        try:
            start = time.perf_counter()
            compute_components(crops, faces)
            unrefined.append((time.perf_counter() - start) / len(faces))
        finally:
            component_geometry.refine_landmarks_batch = refine
    lines = ["# Components: cost beside scoring", "", *machine_header(), "",
             f"{len(photos)} LFW-dev photos (250x250 JPEG), default model, batch {args.batch}, {args.rounds} rounds.",
             "", "| what | median ms per face | median ratio to score, per round (min-max) | median ratio to the "
             "former order, per round | CPU ms per face |", "|---|---:|---:|---:|---:|"]
    former = np.array(wall[serial])
    for name in variants:
        ratios, against = np.array(wall[name]) / plain, np.array(wall[name]) / former
        lines.append(f"| {name} | {1000 * np.median(wall[name]):.2f} | {np.median(ratios):.3f} "
                     f"({ratios.min():.3f}-{ratios.max():.3f}) | {np.median(against):.3f} | "
                     f"{1000 * np.median(cpu[name]):.2f} |")
    lines += ["", "The components alone (crops, landmarks and regions given, on the calling thread):", "",
              "| what | median ms per face |", "|---|---:|",
              f"| components (two refinement passes, the default) | {1000 * np.median(twice):.2f} |",
              f"| components, one refinement pass | {1000 * np.median(once):.2f} |",
              f"| components, landmarks not refined (the detector's own) | {1000 * np.median(unrefined):.2f} |",
              "", "The bar: score + components at most 1.25 times score.", ""]
    emit("\n".join(lines), results_path("components.md" if args.batch == 64 else f"components_batch{args.batch}.md"))


if __name__ == "__main__":
    main()
