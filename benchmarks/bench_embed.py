"""Embedding throughput of ``sface`` (onnxruntime, batched) beside OpenCV's one-at-a-time FaceRecognizerSF and
the machine's float32 matmul roofline, plus YuNet detection + alignment per image. All measured in one run,
configurations interleaved round-robin so machine load affects them alike; medians reported.

Prints Markdown tables and writes them to ``benchmarks/results/embed.md``.

Run: ``.venv/bin/python benchmarks/bench_embed.py [--repeats 5] [--lfw ../shared/data/lfw-dev]``
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import onnx
from threadpoolctl import threadpool_limits

from _common import emit, machine_header, median_seconds, results_path, seconds
from fiqa.detect import FaceAligner
from fiqa.embed import create_embedder
from fiqa.embed.graph import count_flops, fold_constants
from fiqa.io.model_files import model_path

ROOT = Path(__file__).resolve().parents[1]


def matmul_gflops(threads: int, repeats: int, size: int = 1024) -> float:
    """Median float32 GEMM throughput of numpy's BLAS at ``threads`` threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with threadpool_limits(limits=threads):
        per_product = median_seconds(lambda: [a @ b for _ in range(4)], repeats, warmup=1) / 4
    return 2 * size ** 3 / per_product / 1e9


def load_crops(lfw: Path, count: int) -> np.ndarray:
    files = sorted(lfw.glob("*/*.jpg"))[:count * 2]
    aligner = FaceAligner()
    crops = [c for c in (aligner.align(cv2.imread(str(f))).crop for f in files) if c is not None]
    return np.stack(crops[:count])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--opencv-faces", type=int, default=16)
    parser.add_argument("--detect-images", type=int, default=60)
    args = parser.parse_args()
    header = machine_header()

    crops = load_crops(args.lfw, 64)
    flops = count_flops(fold_constants(onnx.load(str(model_path("sface")))))

    # --- embedding throughput, interleaved -------------------------------------------------------------------
    configs: dict[str, tuple] = {}
    for threads in (1, 2):
        for optimization in ("all", "basic"):
            embedder = create_embedder("sface", threads=threads, optimization=optimization, batch_size=64)
            for batch in (1, 16, 64):
                if optimization != "all" and batch != 64:
                    continue
                configs[f"sface ort opt={optimization} threads={threads} batch={batch}"] = \
                    ("ort", threads, batch, embedder)
    opencv = create_embedder("sface-opencv")
    for threads in (1, 2):
        configs[f"sface-opencv threads={threads} (one at a time)"] = ("opencv", threads, 1, opencv)

    rates: dict[str, list[float]] = {name: [] for name in configs}
    matmul: dict[int, list[float]] = {1: [], 2: []}
    for _kind, threads, batch, embedder in configs.values():  # warm-up
        cv2.setNumThreads(threads)
        embedder.embed(crops[:batch])
    for _ in range(args.repeats):
        for name, (kind, threads, batch, embedder) in configs.items():
            cv2.setNumThreads(threads)
            count = args.opencv_faces if kind == "opencv" else max(batch, 64)
            work = crops[:count]
            rates[name].append(count / seconds(lambda: [embedder.embed(work[first:first + batch])
                                                        for first in range(0, count, batch)]))
        for threads in matmul:  # the roofline is measured in the same round, under the same load
            matmul[threads].append(matmul_gflops(threads, 3))
    gflops = {threads: float(np.median(values)) for threads, values in matmul.items()}
    cv2.setNumThreads(-1)

    # --- detection + alignment per image -----------------------------------------------------------------------
    files = sorted(args.lfw.glob("*/*.jpg"))[: args.detect_images]
    images = [cv2.imread(str(f)) for f in files]
    aligner = FaceAligner()
    detect_ms = []
    cv2.setNumThreads(1)
    for image in images[:3]:
        aligner.align(image)
    for image in images:
        detect_ms.append(seconds(lambda: aligner.align(image)) * 1e3)
    decode_ms = [seconds(lambda: cv2.imread(str(f))) * 1e3 for f in files]
    cv2.setNumThreads(-1)

    # --- report ------------------------------------------------------------------------------------------------
    opencv_rate = {t: float(np.median(rates[f"sface-opencv threads={t} (one at a time)"])) for t in (1, 2)}
    lines = [
        "# Embedding benchmark (`benchmarks/bench_embed.py`)",
        "",
        *header,
        "",
        f"SFace cost counted from the folded graph's Conv/Gemm shapes: **{flops / 1e9:.3f} GFLOP per face**. "
        f"float32 1024x1024 matmul (numpy BLAS): {gflops[1]:.1f} GFLOP/s on 1 thread, {gflops[2]:.1f} GFLOP/s on "
        f"2 threads; roofline = matmul GFLOP/s / GFLOP per face = {gflops[1] * 1e9 / flops:.1f} faces/s (1 thread), "
        f"{gflops[2] * 1e9 / flops:.1f} faces/s (2 threads).",
        "",
        f"| configuration | faces/s (median of {args.repeats}) | x OpenCV same threads | fraction of roofline |",
        "|---|---:|---:|---:|",
    ]
    for name, (_kind, threads, _batch, _) in configs.items():
        rate = float(np.median(rates[name]))
        roofline = gflops[threads] * 1e9 / flops
        lines.append(f"| {name} | {rate:.1f} | {rate / opencv_rate[threads]:.2f} | {rate / roofline:.2f} |")
    lines += [
        "",
        f"Detection + alignment (YuNet via cv2.FaceDetectorYN, 1 OpenCV thread, {len(images)} LFW-dev 250x250 "
        f"images): median **{np.median(detect_ms):.1f} ms/image** (p90 {np.percentile(detect_ms, 90):.1f} ms); "
        f"JPEG decode alone median {np.median(decode_ms):.2f} ms/image.",
    ]
    emit("\n".join(lines), results_path("embed.md"))


if __name__ == "__main__":
    main()
