"""Regressor trained on reference-consensus labels, beside the demo's sdd / sdd-refined / cr regressors.

    python benchmarks/study_new_labeller_regressor.py --demo runs/demo --out /work/scratch/H/rc-regressor

Reuses a finished ``fiqa demo`` folder (its store, ``split.json``, per-half labels, models' test-half scores and
cached SFace features) and does for ``reference-consensus`` (defaults, ``random_state=seed``) exactly what the
demo does for each of its labellers: label the training half and the held-apart test half separately
(``fiqa.demo.label_rows``), train the head regressor on the training-half labels
(``TrainConfig(epochs=30, seed=seed)``), score the test half with the exported ONNX model, and evaluate every
table on the same held-apart comparisons (``sample_comparisons(..., n_nonmated=1_000_000, seed=seed,
max_mated_per_identity=50)``, then ``evaluate_quality``). Nothing is written inside ``--demo``; the new labels,
model and scores go to ``--out``. Writes ``benchmarks/results/new_labeller_regressor.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _common import emit, machine_header, results_path
from scipy.stats import spearmanr

from fiqa.demo import label_rows
from fiqa.evaluate import evaluate_quality, load_split, sample_comparisons
from fiqa.io.table import load_quality, save_quality
from fiqa.provenance import provenance
from fiqa.score import create_scorer
from fiqa.store import load_crops, open_store
from fiqa.train import TrainConfig, train_regressor
from fiqa.types import QualityTable

NEW = "reference-consensus"
DEMO_LABELLERS = ("sdd", "sdd-refined", "cr")
DEMO_BASELINES = ("mean-positive", "norm")


def score_test_half(store, rows: np.ndarray, model_path: Path, method: str, path: Path) -> QualityTable:
    """The exported model's scores of the store rows ``rows``, as the demo saves them (cached at ``path``)."""
    if path.exists():
        return load_quality(path)
    quality, raw = create_scorer(model_path).score_crops(load_crops(store, rows))
    table = QualityTable(store.samples.sample_id[rows], quality, store.status[rows], store.reason[rows],
                         {"raw_score": raw, "identity": store.samples.identity[rows]},
                         {"method": f"model:{method}", "model": str(model_path), **provenance(label_method=method)})
    save_quality(table, path)
    return table


def spearman_with(labels: QualityTable, scores: QualityTable) -> float:
    """Spearman correlation of a model's scores with the labels it was trained to predict, on the test half."""
    labelled = labels.aligned_to(scores.sample_id)
    both = np.isfinite(labelled) & np.isfinite(scores.score)
    return float(spearmanr(scores.score[both], labelled[both]).statistic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.resolve().is_relative_to(args.demo.resolve()):
        sys.exit(f"--out {args.out} lies inside --demo {args.demo}; choose a folder outside the demo")
    args.out.mkdir(parents=True, exist_ok=True)

    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    ok = np.asarray(store.ok)
    train_rows = np.flatnonzero(ok & split.mask(identity, "train"))
    test_rows = np.flatnonzero(ok & split.mask(identity, "test"))

    train_labels = label_rows(store, train_rows, NEW, args.seed, args.out / "labels" / f"{NEW}.train.parquet")
    test_labels = label_rows(store, test_rows, NEW, args.seed, args.out / "labels" / f"{NEW}.test.parquet")
    trained = train_regressor(store, train_labels, args.out / "models" / NEW,
                              config=TrainConfig(epochs=args.epochs, seed=args.seed),
                              feature_cache_dir=args.demo / "features")
    new_scores = score_test_half(store, test_rows, trained.model_path, NEW,
                                 args.out / "scores" / f"{NEW}.test.parquet")

    tables = [test_labels, new_scores]
    spearman = {f"model:{NEW}": spearman_with(test_labels, new_scores)}
    for method in DEMO_LABELLERS:
        labels = load_quality(args.demo / "labels" / f"{method}.test.parquet")
        scores = load_quality(args.demo / "scores" / f"{method}.test.parquet")
        tables += [labels, scores]
        spearman[f"model:{method}"] = spearman_with(labels, scores)
    tables += [load_quality(args.demo / "labels" / f"{method}.test.parquet") for method in DEMO_BASELINES]

    comparisons = sample_comparisons(store, n_nonmated=1_000_000, seed=args.seed,
                                     sample_mask=split.mask(identity, "test"), max_mated_per_identity=50)
    evaluation = evaluate_quality(comparisons, tables, seed=args.seed, legacy_erc=False,
                                  identity_filter=split.describe())
    rows = evaluation.edc.table()
    metrics = json.loads((trained.out_dir / "metrics.json").read_text(encoding="utf-8"))
    n_labelled = {part: int(np.sum(np.isfinite(t.score))) for part, t in (("train", train_labels),
                                                                          ("test", test_labels))}

    lines = ["# Regressor on reference-consensus labels (generated by benchmarks/study_new_labeller_regressor.py)",
             "", *machine_header(), "",
             f"Command: `python benchmarks/study_new_labeller_regressor.py --demo {args.demo} --out {args.out}"
             + (f" --epochs {args.epochs}" if args.epochs != 30 else "")
             + (f" --seed {args.seed}" if args.seed != 0 else "") + "`", "",
             f"Store {args.demo / 'store'}: {len(identity):,} images, {int(ok.sum()):,} ok; identity split "
             f"{args.demo / 'split.json'}: {len(train_rows):,} training images of "
             f"{len(split.identities('train')):,} people, {len(test_rows):,} test images of "
             f"{len(split.identities('test')):,} people. {NEW} labelled {n_labelled['train']:,} training and "
             f"{n_labelled['test']:,} test images; its regressor trained on {metrics.get('n_train', '?')} "
             f"(+{metrics.get('n_validation', '?')} validation) images, best epoch "
             f"{metrics.get('best_epoch', '?')}. Comparisons on the test half only: {evaluation.edc.n_mated:,} mated "
             f"(at most 50 per identity), {evaluation.edc.n_nonmated:,} non-mated; threshold at FMR 1e-3 "
             f"{evaluation.edc.threshold:.4f}, start FNMR {evaluation.edc.start_fnmr:.4f}.", "",
             "EDC FNMR pAUC at FMR 1e-3, discard 0 to 0.20 (lower is better); Spearman of each model's scores with "
             "its own labeller's test-half labels.", "",
             "| method | FNMR pAUC | FNMR at 0.20 discard | Spearman with own test labels |", "|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r["fnmr_pauc"]):
        rho = spearman.get(row["method"])
        lines.append(f"| {row['method']} | {row['fnmr_pauc']:.5f} | {row['fnmr_at_limit']:.4f} | "
                     f"{'' if rho is None else f'{rho:.3f}'} |")
    missing = [f"{row['method']} has no quality for samples in {row['n_mated_missing_quality']:,} mated "
               f"comparisons (ranked lowest, so discarded first)" for row in rows if row["n_mated_missing_quality"]]
    errors = round(evaluation.edc.start_fnmr * evaluation.edc.n_mated)
    lines += ["", f"Scale: {errors} mated comparisons are false non-matches before discarding, so a pAUC difference "
              f"of 0.0001 is about {0.0001 / 0.2 * evaluation.edc.n_mated:.1f} comparisons on average over the "
              "discard range." + ("" if not missing else " " + "; ".join(missing) + ".")]
    emit("\n".join(lines), results_path("new_labeller_regressor.md"))


if __name__ == "__main__":
    main()
