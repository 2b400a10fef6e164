"""Per-image cost of the image-admission gate (issue 25): ``read_image`` with decoding in a bounded worker process
against the same gate decoding in this process (``FIQA_DECODE_ISOLATION=0``) and against a bare
``cv2.imdecode(Path.read_bytes())``, on a 250x250 JPEG (the size of an LFW image). Median of per-pair differences,
pairs interleaved so that machine load hits both sides alike.

    python benchmarks/bench_decode_gate.py [--pairs 400]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fiqa.io.image import read_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=400)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8), (5, 5), 2)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "face.jpg"
        path.write_bytes(cv2.imencode(".jpg", image)[1].tobytes())
        read_image(path)  # start the worker

        def isolated() -> float:
            os.environ["FIQA_DECODE_ISOLATION"] = "1"
            start = time.perf_counter()
            read_image(path)
            return time.perf_counter() - start

        def in_process() -> float:
            os.environ["FIQA_DECODE_ISOLATION"] = "0"
            start = time.perf_counter()
            read_image(path)
            return time.perf_counter() - start

        def bare() -> float:
            start = time.perf_counter()
            cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
            return time.perf_counter() - start

        rows = {"worker - in process": [], "worker - bare imdecode": [], "in process - bare imdecode": []}
        absolute: dict[str, list[float]] = {"worker": [], "in process": [], "bare imdecode": []}
        for _ in range(args.pairs):
            a, b, c = isolated(), in_process(), bare()
            absolute["worker"].append(a)
            absolute["in process"].append(b)
            absolute["bare imdecode"].append(c)
            rows["worker - in process"].append(a - b)
            rows["worker - bare imdecode"].append(a - c)
            rows["in process - bare imdecode"].append(b - c)
    print(f"| read_image of a 250x250 JPEG ({args.pairs} pairs) | median ms |")
    print("|---|---|")
    for name, values in {**absolute, **rows}.items():
        print(f"| {name} | {np.median(values) * 1e3:.3f} |")


if __name__ == "__main__":
    main()
