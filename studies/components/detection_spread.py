"""How far YuNet's decoded detections move between runtimes and kernels: the spread behind the tolerance of
``tests/test_components.py::test_batched_detections_match_the_detectors_own``.

    .venv/bin/python -m studies.components.detection_spread --photos 150

The landmark refinement runs YuNet in onnxruntime (``fiqa.components.geometry._session``: one thread, every graph
optimisation), FaceAligner in OpenCV's ``cv2.dnn``. Here the levelled 96-pixel views of ``--photos`` LFW-dev photos
and their mirror images are detected by OpenCV and by onnxruntime at three graph optimisation levels (``all``:
fused, blocked NCHWc convolutions; ``basic`` and ``none``: plain ones) with one and two threads, and the largest
difference between any two of the seven is printed for the landmarks, the scores and the boxes. Run it again with
``OPENCV_CPU_DISABLE=AVX512-SKX,AVX2,FP16`` for OpenCV's kernels below AVX2. Writes
``studies/results/detection_spread.md``.
"""
from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from studies.report_file import write_report

from fiqa.components import geometry
from fiqa.detect import FaceAligner
from fiqa.detect.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[2]
SETTINGS = [(optimization, threads) for optimization in ("all", "basic", "none") for threads in (1, 2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--photos", type=int, default=150)
    parser.add_argument("--out", type=Path, default=REPO / "studies" / "results" / "detection_spread.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    faces = [face for face in (FacePipeline().process(str(path), views=True)
                               for path in sorted(args.lfw.glob("*/*.jpg"))[:args.photos]) if face.ok]
    views = [geometry._turned(face.context, geometry.symmetry_roll(face.context))[0] for face in faces]
    images = np.stack([image for view in views for image in (view, cv2.flip(view, 1))])
    aligner = FaceAligner(score_threshold=0.5)
    found = {"OpenCV (FaceAligner)": [aligner.detect(image) for image in images]}
    for optimization, threads in SETTINGS:
        session = geometry._session(threads, optimization)
        found[f"onnxruntime, {optimization}, {threads} thread(s)"] = geometry._detect(images, session)
    worst = {"landmarks (px)": 0.0, "scores": 0.0, "boxes (px)": 0.0}
    columns = {"landmarks (px)": slice(4, 14), "scores": slice(14, 15), "boxes (px)": slice(0, 4)}
    for first, second in itertools.combinations(found.values(), 2):
        for one, other in zip(first, second, strict=True):
            if one.shape != other.shape:
                raise SystemExit("two settings found different faces on one view")
            for name, part in columns.items():
                if len(one):
                    worst[name] = max(worst[name], float(np.abs(one[:, part] - other[:, part]).max()))
    lines = ["# YuNet's detections across runtimes and kernels", "",
             f"Command: `.venv/bin/python -m studies.components.detection_spread --photos {args.photos}`. "
             f"{len(images)} levelled 96-pixel views of LFW-dev photos and their mirror images; settings: "
             f"{'; '.join(found)}. OpenCV's CPU kernels: `OPENCV_CPU_DISABLE` = "
             f"`{os.environ.get('OPENCV_CPU_DISABLE', '') or 'unset'}`.", "",
             "| largest difference between any two settings | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.3g} |" for name, value in worst.items()]
    lines += ["", f"Ran in {time.perf_counter() - start:.0f} s."]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
