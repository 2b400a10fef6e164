"""Which quality head generalises: head layouts on SFace's cached ``conv_14_relu`` maps, chosen on training identities.

Protocol (so that the test numbers are honest):

1. Selection uses only the training half of the demo's identity split: for each label method, the training labels
   (``labels/<method>.train.parquet``) are split once more by identity (:func:`fiqa.train.data.make_targets`, 20%
   of the identities for validation); every candidate is trained with :func:`fiqa.train.loop.fit` (the loop
   ``train_regressor`` runs: Huber loss, AdamW, warm-up + cosine, early stopping on the validation loss) and scored
   by its validation Spearman and loss. The candidate with the highest mean validation Spearman over the methods
   is the choice.
2. Only then the previous head and the chosen one are evaluated once on the held-apart test identities: Spearman
   of the predictions with ``labels/<method>.test.parquet`` (labels computed on the test half alone) and the EDC of
   the predictions beside the test labels and a random floor, on
   ``sample_comparisons(store, sample_mask=<test identities>, max_mated_per_identity=50, seed=0)``.

Input: a ``fiqa demo`` output folder (``store/``, ``features/``, ``split.json``, ``labels/``). The test rows' feature
maps are computed into the same cache on first use (one SFace pass over ~3k crops, ~2 min on 2 cores).

Run: ``.venv/bin/python benchmarks/study_head.py --demo runs/demo`` (writes ``benchmarks/results/head.md``).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch
from _common import Report, machine_header, results_path
from torch import nn

from fiqa.evaluate import evaluate_quality, sample_comparisons
from fiqa.evaluate.split import load_split
from fiqa.io.table import load_quality
from fiqa.store import open_store
from fiqa.train.data import make_targets
from fiqa.train.features import SFACE_FEATURES, cached_features
from fiqa.train.loop import TensorPairs, TrainConfig, fit, predict
from fiqa.train.models import QualityHead
from fiqa.types import QualityTable

METHODS = ("sdd", "sdd-refined", "cr")


class _Head(nn.Module):
    """A candidate layout: ``body`` maps (B, C, H, W) to (B, width); a linear output layer gives (B,)."""

    def __init__(self, body: nn.Module, width: int) -> None:
        super().__init__()
        self.body, self.output = body, nn.Linear(width, 1)

    @torch.no_grad()
    def init_output_bias(self, value: float) -> None:
        self.output.bias.fill_(value)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(features)).squeeze(1)


def flat_head(hidden: int = 128, dropout: float = 0.5) -> nn.Module:
    """The previous default: BatchNorm2d -> dropout -> flatten (1024*7*7) -> linear -> PReLU -> linear."""
    c, h, w = SFACE_FEATURES.feature_shape
    return _Head(nn.Sequential(nn.BatchNorm2d(c), nn.Dropout(dropout), nn.Flatten(), nn.Linear(c * h * w, hidden),
                               nn.PReLU(hidden)), hidden)


def reduce_head(channels: int = 32, hidden: int = 64, dropout: float = 0.5) -> nn.Module:
    """1x1 conv reduction (1024 -> channels) -> BN -> PReLU -> flatten -> dropout -> linear -> PReLU -> linear."""
    c, h, w = SFACE_FEATURES.feature_shape
    return _Head(nn.Sequential(nn.Conv2d(c, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.PReLU(channels),
                               nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels * h * w, hidden),
                               nn.PReLU(hidden)), hidden)


class _WeightedPool(nn.Module):
    """Global depthwise conv (one H x W kernel per channel) written as a weighted spatial sum: (B, C, H, W) -> (B, C)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(shape).uniform_(-1.0, 1.0) / math.sqrt(shape[1] * shape[2]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features * self.weight).sum(dim=(2, 3))


def gdc_head(hidden: int = 128, dropout: float = 0.5) -> nn.Module:
    """Global depthwise conv -> BN -> dropout -> linear -> PReLU -> linear."""
    c = SFACE_FEATURES.feature_shape[0]
    return _Head(nn.Sequential(_WeightedPool(SFACE_FEATURES.feature_shape), nn.BatchNorm1d(c), nn.Dropout(dropout),
                               nn.Linear(c, hidden), nn.PReLU(hidden)), hidden)


def pool_head(**params) -> nn.Module:
    """The library's :class:`fiqa.train.models.QualityHead`: global average pooling -> BN -> dropout -> linear ->
    PReLU -> linear (the layout this study chose)."""
    return QualityHead(feature_shape=SFACE_FEATURES.feature_shape, **params)


BASE = TrainConfig()
# name -> (model factory, TrainConfig)
CANDIDATES = {
    "gdc h128": (lambda: gdc_head(hidden=128), BASE),
    "gdc h32": (lambda: gdc_head(hidden=32), BASE),
    "gap h128": (lambda: pool_head(), BASE),
    "1x1conv32 h64": (lambda: reduce_head(), BASE),
    "flat h128 (previous)": (lambda: flat_head(), BASE),
}


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(name: str, features: np.ndarray, position: np.ndarray, targets, workdir: Path) -> tuple[nn.Module, dict]:
    factory, config = CANDIDATES[name]
    torch.manual_seed(config.seed)
    model = factory()
    train_set = TensorPairs(features, position[targets.rows[targets.train]], targets.targets[targets.train])
    validation_set = TensorPairs(features, position[targets.rows[targets.validation]],
                                 targets.targets[targets.validation])
    start = time.perf_counter()
    result = fit(model, train_set, validation_set, config, workdir, resume=False)
    model.eval()
    best = result.history[result.best_epoch - 1]
    return model, {"spearman": result.spearman, "loss": result.best_validation_loss, "train_loss": best["train_loss"],
                   "epoch": result.best_epoch, "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--candidates", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument("--previous", default="flat h128 (previous)", choices=list(CANDIDATES))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: other jobs on shared cores make more threads spin and stall)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    emit = Report()
    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    train_rows = np.flatnonzero(store.ok & split.mask(identity, "train"))
    test_rows = np.flatnonzero(store.ok & split.mask(identity, "test"))
    cache = args.demo / "features"

    # feature maps of the training half, in memory as float16 (about 0.6 GB); position maps store row -> array row
    position = np.full(len(store), -1, np.int64)
    position[train_rows] = np.arange(len(train_rows))
    train_features = np.asarray(cached_features(store, train_rows, cache_dir=cache)[train_rows])
    targets = {m: make_targets(store, load_quality(args.demo / "labels" / f"{m}.train.parquet"), seed=0)
               for m in METHODS}

    emit("# Quality head study: which head on SFace's `conv_14_relu` (1024x7x7) generalises")
    emit()
    emit(" ".join(machine_header()))
    emit()
    emit(f"Demo run `{args.demo}`: {len(train_rows)} training-half and {len(test_rows)} test-half images "
         f"(identity split `split.json`). Selection on the training half only: `make_targets` splits each method's "
         f"training labels by identity (80% train / 20% validation, seed 0); early stopping on the validation "
         f"Huber loss. Base config: `{BASE}`.")
    emit()
    emit("## 1. Selection (validation identities inside the training half)")
    emit()
    emit("Validation Spearman / best validation Huber loss (train loss at that epoch) / best epoch, per label method.")
    emit()
    emit("| candidate | parameters | " + " | ".join(METHODS) + " | mean Spearman | train s |")
    emit("|---|---:|" + "---|" * len(METHODS) + "---:|---:|")
    selection, models = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.candidates:
            cells, rhos, seconds = [], [], 0.0
            for method in METHODS:
                models[name, method], row = train(name, train_features, position, targets[method],
                                                  Path(tmp) / name / method)
                cells.append(f"{row['spearman']:.3f} / {row['loss']:.2f} ({row['train_loss']:.2f}) / {row['epoch']}")
                rhos.append(row["spearman"])
                seconds += row["seconds"]
            selection[name] = float(np.mean(rhos))
            emit(f"| {name} | {n_parameters(CANDIDATES[name][0]()):,} | " + " | ".join(cells)
                 + f" | {selection[name]:.3f} | {seconds:.0f} |")
    chosen = max(selection, key=selection.get)
    emit()
    emit(f"Chosen (highest mean validation Spearman): **{chosen}**.")
    emit()

    # 2. one evaluation on the held-apart test identities, of the models trained above (no retraining)
    test_position = np.arange(len(test_rows))
    test_features = np.asarray(cached_features(store, test_rows, cache_dir=cache)[test_rows])
    test_mask = split.mask(identity, "test")
    comparisons = sample_comparisons(store, sample_mask=test_mask, max_mated_per_identity=50, seed=0)
    emit("## 2. Test (held-apart identities, evaluated once after the choice)")
    emit()
    emit(f"Comparisons: {comparisons.meta.get('n_mated', '?')} mated, {comparisons.meta.get('n_nonmated', '?')} "
         f"non-mated (test identities only, <= 50 mated pairs per identity, seed 0). EDC: FNMR pAUC up to 20% "
         f"discarded at FMR 1e-3 (lower is better), raw and minus the theoretical best.")
    emit()
    emit("| labels | head | Spearman with test labels | FNMR pAUC | pAUC - best |")
    emit("|---|---|---:|---:|---:|")
    for method in METHODS:
        test_labels = load_quality(args.demo / "labels" / f"{method}.test.parquet")
        label_values = test_labels.aligned_to(store.samples.sample_id[test_rows])
        tables = [QualityTable(test_labels.sample_id, test_labels.score, test_labels.status, test_labels.reason,
                               meta={"method": f"labels:{method}"})]
        rho = {}
        for name in dict.fromkeys([args.previous, chosen]):
            test_set = TensorPairs(test_features, test_position, np.zeros(len(test_rows)))
            scores = predict(models[name, method], test_set)
            usable = np.isfinite(label_values)
            rho[name] = scipy.stats.spearmanr(scores[usable], label_values[usable]).statistic
            tables.append(QualityTable(store.samples.sample_id[test_rows], scores, store.status[test_rows],
                                       store.reason[test_rows], meta={"method": f"head:{name}"}))
        edc = {row["method"]: row for row in evaluate_quality(comparisons, tables, seed=0).edc.table()}
        for key, row in edc.items():
            head = key.split(":", 1)[1] if key.startswith("head:") else ("-" if key != "random" else "random")
            label = f"{method} labels" if key.startswith("labels:") else method
            spearman = f"{rho[head]:.3f}" if head in rho else ""
            emit(f"| {label} | {head} | {spearman} | {row['fnmr_pauc']:.2e} | {row['fnmr_pauc_minus_best']:.2e} |")
    report_path = results_path("head.md")
    emit.write(report_path)


if __name__ == "__main__":
    main()
