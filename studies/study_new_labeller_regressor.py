"""Regressors trained on reference-consensus labels beside the demo's sdd / sdd-refined / cr regressors, several seeds.

    python -m studies.study_new_labeller_regressor --demo runs/demo --out /work/scratch/rc-regressor

Reuses a finished ``fiqa demo`` folder (its store, ``split.json``, per-half labels, seed-0 models' test-half scores
and cached SFace features) and does for ``reference-consensus`` (defaults) exactly what the demo does for each of
its labellers: label the training half and the held-apart test half separately (``fiqa.label.label_rows``), train
the head regressor on the training-half labels (``TrainConfig(epochs=30, seed=s)``), score the test half with the
exported ONNX model, and evaluate every table on the same held-apart comparisons (``sample_comparisons(...,
n_nonmated=1_000_000, seed=0, max_mated_per_identity=50)``, then ``evaluate_quality``). One regressor seed says
little at this size (about 2k training faces, 69 false non-matches in the test half), so every labeller's regressor
is trained with each of ``--train-seeds`` (the demo's own seed-0 models are reused) and the table reports each
seed and the mean. Nothing is written inside ``--demo``; new labels, models and scores go to ``--out``. Writes
``studies/results/new_labeller_regressor.md``.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchmarks._common import emit, machine_header, results_path
from scipy.stats import spearmanr

from fiqa.augment.crops import load_crops
from fiqa.core.provenance import provenance
from fiqa.core.types import QualityTable
from fiqa.evaluate import evaluate_quality, load_split, sample_comparisons
from fiqa.io.table import load_quality, save_quality
from fiqa.label import label_rows
from fiqa.score import create_scorer
from fiqa.store import open_store
from fiqa.train import TrainConfig, train_regressor

NEW = "reference-consensus"
DEMO_LABELLERS = ("sdd", "sdd-refined", "cr")
DEMO_BASELINES = ("mean-positive", "norm")


RESULTS = Path(__file__).resolve().parent / "results"

def score_test_half(store, rows: np.ndarray, model_path: Path, name: str, label_method: str,
                    path: Path) -> QualityTable:
    """The exported model's scores of the store rows ``rows``, as the demo saves them (cached at ``path``)."""
    if path.exists():
        return load_quality(path)
    quality, raw = create_scorer(model_path).score_crops(load_crops(store, rows))
    table = QualityTable(store.samples.sample_id[rows], quality, store.status[rows], store.reason[rows],
                         {"raw_score": raw, "identity": store.samples.identity[rows]},
                         {"method": name, "model": str(model_path), **provenance(label_method=label_method)})
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
    parser.add_argument("--train-seeds", default="0,1,2", help="comma-separated regressor seeds")
    args = parser.parse_args()
    seeds = [int(s) for s in args.train_seeds.split(",")]
    if args.out.resolve().is_relative_to(args.demo.resolve()):
        sys.exit(f"--out {args.out} lies inside --demo {args.demo}; choose a folder outside the demo")
    args.out.mkdir(parents=True, exist_ok=True)

    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    ok = np.asarray(store.ok)
    train_rows = np.flatnonzero(ok & split.mask(identity, "train"))
    test_rows = np.flatnonzero(ok & split.mask(identity, "test"))

    labels = {NEW: (label_rows(store, train_rows, NEW, 0, args.out / "labels" / f"{NEW}.train.parquet"),
                    label_rows(store, test_rows, NEW, 0, args.out / "labels" / f"{NEW}.test.parquet"))}
    for method in DEMO_LABELLERS:
        labels[method] = tuple(load_quality(args.demo / "labels" / f"{method}.{half}.parquet")
                               for half in ("train", "test"))
    tables = [labels[method][1] for method in labels]
    tables += [load_quality(args.demo / "labels" / f"{method}.test.parquet") for method in DEMO_BASELINES]
    spearman: dict[tuple[str, int], float] = {}
    for method, (train_labels, test_labels) in labels.items():
        for random_state in seeds:
            name = f"model:{method}@{random_state}"
            demo_scores = args.demo / "scores" / f"{method}.test.parquet"
            if method != NEW and random_state == 0 and demo_scores.exists():
                demo_table = load_quality(demo_scores)  # the demo trained it with seed 0
                scores = replace(demo_table, meta={**demo_table.meta, "method": name})
            else:
                trained = train_regressor(store, train_labels, args.out / "models" / method / f"seed{random_state}",
                                          config=TrainConfig(epochs=args.epochs, random_state=random_state),
                                          feature_cache_dir=args.demo / "features")
                scores = score_test_half(store, test_rows, trained.model_path, name, method,
                                         args.out / "scores" / f"{method}.seed{random_state}.test.parquet")
            tables.append(scores)
            spearman[method, random_state] = spearman_with(test_labels, scores)

    comparisons = sample_comparisons(store, n_nonmated=1_000_000, random_state=0,
                                     sample_mask=split.mask(identity, "test"), max_mated_per_identity=50)
    evaluation = evaluate_quality(
        comparisons, tables, random_state=0, legacy_erc=False, identity_filter=split.describe()
    )
    pauc = {row["method"]: row["fnmr_pauc"] for row in evaluation.edc.table()}

    lines = [
        "# Regressors on reference-consensus labels (generated by studies/study_new_labeller_regressor.py)",
        "",
        *machine_header(),
        "",
        f"Command: `python -m studies.study_new_labeller_regressor --demo {args.demo} --out {args.out}"
        + (f" --epochs {args.epochs}" if args.epochs != 30 else "")
        + (f" --train-seeds {args.train_seeds}" if seeds != [0, 1, 2] else "")
        + "`",
        "",
        f"Store {args.demo / 'store'}: {len(identity):,} images; identity split {args.demo / 'split.json'}: "
        f"{len(train_rows):,} training images of {len(split.identities('train')):,} people, "
        f"{len(test_rows):,} test images of {len(split.identities('test')):,} people. Comparisons on the test "
        f"half only: {evaluation.edc.n_mated:,} mated (at most 50 per identity), "
        f"{evaluation.edc.n_nonmated:,} non-mated; threshold at FMR 1e-3 {evaluation.edc.threshold:.4f}, "
        f"start FNMR {evaluation.edc.start_fnmr:.4f}. EDC FNMR pAUC at FMR 1e-3, discard 0 to 0.20 (lower is "
        "better).",
        "",
        "## Regressors (one column per training seed)",
        "",
        "| regressor trained on | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | "
        "Spearman with own test labels (mean) |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    means = {method: float(np.mean([pauc[f"model:{method}@{s}"] for s in seeds])) for method in labels}
    for method in sorted(labels, key=means.get):
        lines.append(
            f"| {method} | "
            + " | ".join(f"{pauc[f'model:{method}@{s}']:.5f}" for s in seeds)
            + f" | {means[method]:.5f} | {np.mean([spearman[method, s] for s in seeds]):.3f} |"
        )
    lines += ["", "## Labels and baselines on the same comparisons", "", "| table | pAUC |", "|---|---|"]
    lines += [
        f"| {name} | {value:.5f} |"
        for name, value in sorted(pauc.items(), key=lambda kv: kv[1])
        if not name.startswith("model:")
    ]
    errors = round(evaluation.edc.start_fnmr * evaluation.edc.n_mated)
    lines += [
        "",
        f"Scale: {errors} mated comparisons are false non-matches before discarding, so a pAUC difference "
        f"of 0.0001 is about {0.0001 / 0.2 * evaluation.edc.n_mated:.1f} comparisons on average over the "
        "discard range.",
    ]
    emit("\n".join(lines), results_path("new_labeller_regressor.md", RESULTS))


if __name__ == "__main__":
    main()
