"""Scoring speed of fiqa's shipped quality model (SFace's feature graph and the trained head in one ONNX graph)
beside the SFace recogniser alone, on aligned 112x112 crops, 2 onnxruntime threads. Configurations are interleaved
round-robin in one run so machine load affects them alike; medians are reported.

- throughput: aligned faces/s at batch 64 (preprocessing included), quality model vs SFace embedding;
- single-image latency: one crop in, one quality out (batch 1), median;
- FLOPs of both graphs (``fiqa.embed.graph.count_flops``).

``--model`` measures another model file (either form: ``model.onnx`` or ``head.onnx``) instead of the shipped one.
Prints a Markdown table and writes ``benchmarks/results/score.md``.

Run: ``.venv/bin/python benchmarks/bench_score.py [--repeats 7] [--threads 2] [--model runs/x/model.onnx]``
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx

from _common import emit, machine_header, median_seconds, results_path, seconds
from fiqa.embed import create_embedder
from fiqa.embed.graph import count_flops, fold_constants
from fiqa.embed.quality_model import load_quality_model
from fiqa.io.model_files import model_path
from fiqa.score import create_scorer
from fiqa.score.packaged import load_packaged_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    header = machine_header()

    scorer = create_scorer(args.model, batch_size=args.batch, threads=args.threads)
    graph = load_packaged_model()[0] if args.model is None else load_quality_model(args.model)[0]
    embedder = create_embedder("sface", batch_size=args.batch, threads=args.threads)
    crops = np.random.default_rng(0).integers(0, 256, size=(args.batch, 112, 112, 3), dtype=np.uint8)
    one = crops[:1]
    for _ in range(2):  # warm-up
        scorer.score_crops(crops), embedder.embed(crops), scorer.score_crops(one), embedder.embed(one)
    times: dict[str, list[float]] = {"quality": [], "sface": [], "quality_1": [], "sface_1": []}
    for _ in range(args.repeats):
        times["quality"].append(seconds(lambda: scorer.score_crops(crops)))
        times["sface"].append(seconds(lambda: embedder.embed(crops)))
        times["quality_1"].append(median_seconds(lambda: scorer.score_crops(one), 10))
        times["sface_1"].append(median_seconds(lambda: embedder.embed(one), 10))
    flops_quality = count_flops(onnx.load_from_string(graph))
    flops_sface = count_flops(fold_constants(onnx.load(model_path("sface"))))

    median = {name: float(np.median(values)) for name, values in times.items()}
    rows = [
        ("SFace embedding alone", args.batch / median["sface"], 1e3 * median["sface_1"], flops_sface),
        ("quality model (SFace features + head)", args.batch / median["quality"], 1e3 * median["quality_1"],
         flops_quality),
    ]
    lines = [
        "# Scoring speed: exported quality model vs the recogniser alone",
        "",
        *header,
        "",
        f"{args.threads} onnxruntime threads, batch {args.batch}, {args.repeats} interleaved repeats, medians. "
        "Aligned 112x112 crops; preprocessing included.",
        "",
        "| model | faces/s (batch) | single-image latency (ms) | GFLOPs / face |",
        "|---|---:|---:|---:|",
        *[f"| {name} | {fps:.0f} | {latency:.2f} | {flops / 1e9:.3f} |" for name, fps, latency, flops in rows],
        "",
        f"Head cost on top of the recogniser: throughput time x{median['quality'] / median['sface']:.3f}, "
        f"latency x{median['quality_1'] / median['sface_1']:.3f}, FLOPs x{flops_quality / flops_sface:.3f} "
        "(target <= 1.10).",
    ]
    emit("\n".join(lines), results_path("score.md"))


if __name__ == "__main__":
    main()
