"""Features computed once: what storing the default head's input with the embeddings costs, and what it saves.

Measured side by side in one run, on the same LFW-dev photos (the first people in folder order with at least
``--min-images`` photos, ``--n-images`` in all), the configurations interleaved (their order alternates from one
repeat to the next), median of ``--repeats``:

- **store growth**: bytes per image of ``features.npy`` and of the whole store, with and without features, beside
  the feature cache a second pass writes (:func:`fiqa.train.features.cached_features`, all 3,969 values);
- **extraction**: whole ``embed_source`` calls into fresh stores, ``features=False`` against ``features=True``
  (``--threads`` onnxruntime threads, ``--workers`` decode threads); and SFace alone on the same crops,
  ``SFaceEmbedder.embed`` against :class:`fiqa.embed.features.FeatureEmbedder` (the model cost without decoding);
- **training** the default head (``train_regressor``, ``shape="head"``, ``--epochs`` epochs) on SDD labels:
  from the store's features, against from a cold cache (a copy of the store without features and an empty cache
  folder, so the call runs the second SFace pass: decode, align, feature graph), and from the warm cache (the
  training loop alone); plus the largest weight difference between the models trained from the store and from
  the cache.

Prints a Markdown table and writes it to ``benchmarks/results/features.md``.

Run: ``.venv/bin/python benchmarks/bench_features.py [--n-images 240] [--repeats 3] [--epochs 5]``
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from _common import emit, load_average, machine_header, results_path, seconds
from fiqa.augment.crops import load_crops
from fiqa.core.types import EmbeddingStore, SampleTable
from fiqa.embed import create_embedder
from fiqa.embed.extract import embed_source
from fiqa.embed.features import SFACE_TAPS, FeatureEmbedder
from fiqa.io import DataSource, open_source
from fiqa.io.table import save_quality
from fiqa.label import create_labeler, label_store
from fiqa.store import open_features, open_store
from fiqa.train.config import TrainConfig
from fiqa.train.regressor import train_regressor

ROOT = Path(__file__).resolve().parents[1]
KIB = 1024


def photos(folder: str, n: int, min_images: int) -> DataSource:
    """The first ``n`` photos of the people (folder order) with at least ``min_images`` photos each."""
    source = open_source(folder, kind="folder")
    identities = source.samples.identity.astype(str)
    names, counts = np.unique(identities, return_counts=True)
    keep = np.flatnonzero(np.isin(identities, names[counts >= min_images]))[:n]
    samples = source.samples.subset(keep)
    return DataSource(source.kind, source.spec, SampleTable(np.arange(len(keep)), samples.location,
                                                            samples.identity, samples.source))


def folder_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def without_features(store: EmbeddingStore, path: Path) -> EmbeddingStore:
    """A copy of ``store`` as an extraction without features writes it."""
    shutil.copytree(store.root, path, ignore=shutil.ignore_patterns("features.npy", "features"))
    meta = json.loads((path / "meta.json").read_text())
    meta.pop("features")
    meta["plan"].pop("features")
    (path / "meta.json").write_text(json.dumps(meta))
    return open_store(path)


def interleaved(configs: dict[str, Callable[[int], float]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each configuration per repeat, the order alternating from one repeat to the next."""
    names = list(configs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            times[name].append(configs[name](repeat))
            print(f"repeat {repeat + 1}, {name}: {times[name][-1]:.2f} s", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", default=os.environ.get("FIQA_LFW") or str(ROOT.parent / "shared" / "data" / "lfw-dev"),
                        help="LFW-dev folder")
    parser.add_argument("--n-images", type=int, default=240)
    parser.add_argument("--min-images", type=int, default=4, help="photos per person at least")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--workers", type=int, default=1, help="decode/detect threads")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    source = photos(args.lfw, args.n_images, args.min_images)
    n = len(source.samples)
    header = machine_header()
    work = Path(tempfile.mkdtemp(prefix="fiqa-bench-features-"))
    common = {"backend_params": {"threads": args.threads}, "batch_size": args.batch_size, "chunk_size": 256,
              "n_workers": args.workers, "resume": False, "progress": False}
    try:
        embed_source(source, work / "warm", features=True, **common)  # untimed: SFace folded, graphs built, files read
        stores: dict[str, EmbeddingStore] = {}

        def extraction(features: bool) -> Callable[[int], float]:
            def run(repeat: int) -> float:
                out = work / f"store-{features}-{repeat}"
                started = time.perf_counter()
                stores[str(features)] = embed_source(source, out, features=features, **common)
                return time.perf_counter() - started
            return run

        extract_times = interleaved({"without features": extraction(False), "with features": extraction(True)},
                                    args.repeats)
        plain, store = stores["False"], stores["True"]
        same_vectors = (plain.root / "vectors.npy").read_bytes() == (store.root / "vectors.npy").read_bytes()

        rows = np.flatnonzero(store.ok)
        crops = load_crops(store, rows)
        embedder = create_embedder("sface", threads=args.threads, batch_size=args.batch_size)
        tapped = FeatureEmbedder(embedder)
        model_times = interleaved({"SFace embed": lambda _: seconds(lambda: embedder.embed(crops)),
                                   "SFace embed + features": lambda _: seconds(lambda: tapped(crops))},
                                  max(args.repeats, 5))

        labels = label_store(store, create_labeler("sdd", n_positives=4, n_negatives=8, n_repeats=3,
                                                   random_state=0))
        labels_path = save_quality(labels, work / "labels.parquet")
        config = TrainConfig(epochs=args.epochs, batch_size=64, patience=args.epochs)
        plain_copy = without_features(store, work / "plain-copy")
        # untimed: the first call of a process builds the feature graph the ONNX export is checked with
        train_regressor(store, labels_path, work / "model-warm", config=TrainConfig(epochs=1),
                        validation_fraction=0.25, resume=False)

        def train(kind: str) -> Callable[[int], float]:
            def run(repeat: int) -> float:
                cache = work / f"cache-{repeat}"
                if kind == "warm cache":
                    cache = work / f"cache-{repeat}-warm"
                    if not cache.exists():
                        shutil.copytree(work / f"cache-{repeat}", cache)
                target = store if kind == "store features" else plain_copy
                out = work / f"model-{kind.replace(' ', '-')}-{repeat}"
                started = time.perf_counter()
                train_regressor(target, labels_path, out, config=config, validation_fraction=0.25,
                                feature_cache_dir=cache, resume=False)
                return time.perf_counter() - started
            return run

        # the cold run of a repeat fills cache-<repeat>, which its warm run then copies
        train_times = interleaved({"store features": train("store features"), "cold cache": train("cold cache")},
                                  args.repeats)
        train_times.update(interleaved({"warm cache": train("warm cache")}, args.repeats))
        ours = torch.load(work / "model-store-features-0" / "checkpoint.pt", weights_only=True)["best_model"]
        theirs = torch.load(work / "model-cold-cache-0" / "checkpoint.pt", weights_only=True)["best_model"]
        weight_difference = max(float((ours[k].double() - theirs[k].double()).abs().max()) for k in ours)

        sizes = {"features.npy": (store.root / "features.npy").stat().st_size,
                 "store with features": folder_bytes(store.root), "store without features": folder_bytes(plain.root),
                 "feature cache": sum(p.stat().st_size for p in (work / "cache-0").glob("*.npy"))}
        width = open_features(store)[1]["dim"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    emit(report(args, n, int(store.ok.sum()), int(labels.ok.sum()), header, sizes, width, extract_times,
                model_times, len(crops), train_times, same_vectors, weight_difference),
         results_path("features.md"))


def report(args: argparse.Namespace, n: int, n_ok: int, n_labelled: int, header: list[str], sizes: dict[str, int],
           width: int, extract_times: dict[str, list[float]], model_times: dict[str, list[float]], n_crops: int,
           train_times: dict[str, list[float]], same_vectors: bool, weight_difference: float) -> str:
    """The Markdown report."""
    median = {name: float(np.median(values)) for times in (extract_times, model_times, train_times)
              for name, values in times.items()}
    per_image = {name: size / n / KIB for name, size in sizes.items()}
    growth = per_image["store with features"] - per_image["store without features"]
    off, on = median["without features"], median["with features"]
    plain_model, tapped_model = median["SFace embed"], median["SFace embed + features"]
    store, cold, warm = median["store features"], median["cold cache"], median["warm cache"]
    return "\n".join([
        f"# Features computed once ({n} LFW-dev photos, median of {args.repeats})",
        "",
        *header,
        f"Load average (1 / 5 / 15 min) after: {load_average()} (other work on the machine lowers every row; the "
        f"ratios, measured side by side, are the figures to read).",
        f"Extraction: onnxruntime {args.threads} thread(s), {args.workers} decode thread(s), batch size "
        f"{args.batch_size}; {n_ok} of {n} photos with a face. Stored columns: SFace's last stage averaged over its "
        f"7 x 7 positions ({width} values, float16), the whole input of the default head.",
        "",
        "## Store growth per image",
        "",
        "| | KiB per image |",
        "|---|---:|",
        f"| features.npy ({width} x float16) | {per_image['features.npy']:.2f} |",
        f"| whole store without features | {per_image['store without features']:.2f} |",
        f"| whole store with features | {per_image['store with features']:.2f} |",
        f"| growth (with - without) | **{growth:.2f}** (bar: <= 4) |",
        f"| feature cache of a second pass ({SFACE_TAPS.dim:,d} x float16, for comparison) | "
        f"{per_image['feature cache']:.2f} |",
        "",
        "## Extraction time",
        "",
        "| | s | images/s | ratio |",
        "|---|---:|---:|---:|",
        f"| embed_source, without features | {off:.2f} | {n / off:.1f} | 1.00 |",
        f"| embed_source, with features | {on:.2f} | {n / on:.1f} | {on / off:.3f} |",
        f"| SFace alone on {n_crops} crops: embed | {plain_model:.2f} | {n_crops / plain_model:.1f} | 1.00 |",
        f"| SFace alone on {n_crops} crops: embed + features | {tapped_model:.2f} | {n_crops / tapped_model:.1f} | "
        f"{tapped_model / plain_model:.3f} |",
        "",
        f"- Vectors with features byte for byte those without: {same_vectors}.",
        "",
        f"## Training the default head ({args.epochs} epochs, {n_labelled} SDD-labelled samples)",
        "",
        "| inputs | s | ratio to store features |",
        "|---|---:|---:|",
        f"| store features (no second SFace pass) | {store:.2f} | 1.00 |",
        f"| cold cache (second SFace pass: decode, align, feature graph; then training) | {cold:.2f} | "
        f"{cold / store:.2f} |",
        f"| warm cache (training alone) | {warm:.2f} | {warm / store:.2f} |",
        "",
        f"- Largest |weight difference| between the heads trained from store features and from the cache: "
        f"{weight_difference:.1e}.",
        "",
        "Every timing (s), repeat by repeat:",
        "",
        *[f"- {name}: {', '.join(f'{t:.2f}' for t in values)}"
          for times in (extract_times, model_times, train_times) for name, values in times.items()],
    ])


if __name__ == "__main__":
    main()
