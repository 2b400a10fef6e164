"""Which quality-model recipe carries its labels' gain over the embedding norm, on natural and degraded faces.

    python -m studies.study_quality_model --demo runs/demo --out runs/quality-study

Reuses a finished ``fiqa demo`` folder (its store, ``split.json`` and per-half ``reference-consensus`` labels).

1. **Data.** The training half gets ``--copies`` augmented copies per face (``fiqa.augment.copies``: jittered alignment,
   mirror, 0-2 of the training degradations of ``fiqa.augment.DEGRADATIONS``), embedded and labelled together with the
   originals (``reference-consensus``; a photo and its copies are one capture, so a copy is judged by the
   person's other photos). Evaluation sets use capture effects that no training recipe draws
   (``fiqa.augment.degraded_store``, ``fiqa.augment.EVALUATION_DEGRADATIONS``: motion blur, nearest-neighbour low
   resolution, WebP, an under-exposed noisy sensor, sunglasses or a face mask): a *degraded* set where each face
   gets one effect at severity 0.2-0.9 or stays clean (25 %), and one set per effect.
2. **Selection, on training identities only.** Each candidate recipe is trained 4 times, each time on 3/4 of the
   training half's identities, and scores the other quarter (out-of-fold); the FNMR pAUC (FMR 1e-3, discard <= 0.2)
   of the out-of-fold scores on the training half's natural faces and on its degraded set chooses the recipe.
3. **Test, once.** The chosen recipe and the plain head (v0.1: the last stage only, natural labels) are trained on
   the whole training half and scored on the held-apart half: natural, degraded, and each effect separately, with
   95 % bootstrap intervals over identities; per gender (``../shared/data/lfw-gender``): reject rate at the 10 %
   quality quantile, starting FNMR and pAUC within each group.

``gain = (pAUC_norm - pAUC_model) / (pAUC_norm - pAUC_labels)``: the share of the labels' advantage over the norm
that a single-image model keeps (labels see the person's other photos; the model sees one face). Writes
``studies/results/quality_model.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from benchmarks._common import emit, machine_header, results_path

from fiqa.augment.copies import augment_store, degraded_store
from fiqa.augment.degrade import EVALUATION_DEGRADATIONS
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, QualityTable, Status
from fiqa.evaluate import evaluate_quality, load_split, sample_comparisons
from fiqa.evaluate.groups import group_breakdown
from fiqa.io.table import load_quality, save_quality
from fiqa.label import create_labeler, label_store
from fiqa.store import is_store, open_store
from fiqa.train import TrainConfig, train_regressor
from fiqa.train.features import cached_features

LABELLER = "reference-consensus"
CANDIDATES = {  # name: (shape, trained on augmented labels)
    "plain head (v0.1)": ("head", False),
    "plain head + augmentation": ("head", True),
    "taps": ("taps", False),
    "taps + augmentation": ("taps", True),
}


RESULTS = Path(__file__).resolve().parent / "results"

def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _store(path: Path, make) -> EmbeddingStore:
    if not is_store(path):
        make()
    return open_store(path)


def _labels(store: EmbeddingStore, path: Path, rows: np.ndarray | None = None) -> QualityTable:
    """reference-consensus on ``rows`` of ``store`` (default all), cached at ``path``."""
    if path.exists():
        return load_quality(path)
    table = label_store(store, create_labeler(LABELLER, random_state=0), rows=rows)
    save_quality(table, path)
    return table


def _restrict(table: QualityTable, keep_ids: np.ndarray) -> QualityTable:
    keep = np.isin(table.sample_id, keep_ids)
    return QualityTable(table.sample_id[keep], table.score[keep], table.status[keep], table.reason[keep],
                        {k: v[keep] for k, v in table.columns.items()}, dict(table.meta))


def _norm_table(store: EmbeddingStore, rows: np.ndarray) -> QualityTable:
    return QualityTable(store.samples.sample_id[rows], np.asarray(store.norms, np.float64)[rows],
                        store.status[rows], store.reason[rows], {}, {"method": "norm"})


def _predict(head_path: Path, store: EmbeddingStore, rows: np.ndarray, name: str, cache: Path) -> QualityTable:
    """Scores of ``rows`` by a trained head (``head.onnx``) on the store's cached features (no re-decoding)."""
    features = cached_features(store, rows, cache_dir=cache, progress=False)
    session = ort.InferenceSession(str(head_path), providers=["CPUExecutionProvider"])
    quality = np.concatenate([session.run(["quality"], {"features": np.asarray(features[rows[s:s + 1024]],
                                                                                   np.float32)})[0]
                              for s in range(0, len(rows), 1024)]).astype(np.float64)
    return QualityTable(store.samples.sample_id[rows], quality, np.full(len(rows), Status.OK.value, object),
                        np.full(len(rows), "", object), {}, {"method": name})


def _pauc(store: EmbeddingStore, mask: np.ndarray, tables: list[QualityTable], n_bootstrap: int = 0):
    comparisons = sample_comparisons(store, n_nonmated=300_000 if n_bootstrap == 0 else 1_000_000, random_state=0,
                                     sample_mask=mask, max_mated_per_identity=50)
    evaluation = evaluate_quality(comparisons, tables, random_state=0, legacy_erc=False, n_bootstrap=n_bootstrap,
                                  identities=store.samples)
    return evaluation, {row["method"]: row for row in evaluation.edc.table()}


def _gain(rows: dict, model: str) -> float:
    return (rows["norm"]["fnmr_pauc"] - rows[model]["fnmr_pauc"]) / (
        rows["norm"]["fnmr_pauc"] - rows[LABELLER]["fnmr_pauc"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    parser.add_argument("--gender", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "lfw-gender")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "features"
    started = time.perf_counter()

    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    train_rows = np.flatnonzero(store.ok & split.mask(identity, "train"))
    test_rows = np.flatnonzero(store.ok & split.mask(identity, "test"))

    # 1. data
    _log("augmenting the training half")
    augmented = _store(out / "train-augmented", lambda: augment_store(
        store, out / "train-augmented", copies=args.copies, random_state=0, rows=train_rows, progress=False))
    aug_identity = augmented.samples.identity.astype(str)
    aug_train = np.flatnonzero(augmented.ok & split.mask(aug_identity, "train"))
    _log("degraded evaluation sets")
    train_degraded = _store(out / "train-degraded", lambda: degraded_store(
        store, out / "train-degraded", rows=train_rows, random_state=101, progress=False))
    test_degraded = _store(out / "test-degraded", lambda: degraded_store(
        store, out / "test-degraded", rows=test_rows, random_state=202, progress=False))
    per_kind = {kind: _store(out / f"test-{kind}", lambda kind=kind: degraded_store(
        store, out / f"test-{kind}", rows=test_rows, kinds=(kind,), random_state=303, progress=False))
        for kind in EVALUATION_DEGRADATIONS}

    _log("labels")
    natural_labels = _labels(store, args.demo / "labels" / f"{LABELLER}.train.parquet")
    augmented_labels = _labels(augmented, out / "labels-train-augmented.parquet", aug_train)
    test_labels = _labels(store, args.demo / "labels" / f"{LABELLER}.test.parquet")
    deg_label = {name: _labels(s, out / f"labels-{name}.parquet")
                 for name, s in [("train-degraded", train_degraded), ("test-degraded", test_degraded),
                                 *[(f"test-{k}", s) for k, s in per_kind.items()]]}

    # 2. selection by out-of-fold EDC on the training half
    names = np.unique(identity[train_rows])
    rng = np.random.default_rng(12345)
    fold_of = dict(zip(rng.permutation(names), np.arange(len(names)) % args.folds))
    selection: dict[str, dict[str, float]] = {}
    natural_mask = np.zeros(len(store), bool)
    natural_mask[train_rows] = True
    deg_mask = train_degraded.ok.copy()
    for name in args.candidates.split(","):
        shape, use_aug = CANDIDATES[name]
        source, labels = (augmented, augmented_labels) if use_aug else (store, natural_labels)
        natural_scores, degraded_scores = [], []
        for fold in range(args.folds):
            model_dir = out / "cv" / f"{shape}-{'aug' if use_aug else 'nat'}-fold{fold}"
            held = {n for n, f in fold_of.items() if f == fold}
            fold_labels = labels
            if not (model_dir / "head.onnx").exists():
                keep_ids = source.samples.sample_id[~np.isin(source.samples.identity.astype(str), list(held))]
                fold_labels = _restrict(labels, keep_ids)
                train_regressor(source, fold_labels, model_dir, shape=shape, resume=False,
                                config=TrainConfig(epochs=args.epochs, random_state=0), feature_cache_dir=cache)
            nat_rows = train_rows[np.isin(identity[train_rows], list(held))]
            natural_scores.append(_predict(model_dir / "head.onnx", store, nat_rows, name, cache))
            deg_identity = train_degraded.samples.identity.astype(str)
            deg_rows = np.flatnonzero(train_degraded.ok & np.isin(deg_identity, list(held)))
            degraded_scores.append(_predict(model_dir / "head.onnx", train_degraded, deg_rows, name, cache))
        def concat(parts):
            return QualityTable(np.concatenate([p.sample_id for p in parts]), np.concatenate([p.score for p in parts]),
                                np.concatenate([p.status for p in parts]), np.concatenate([p.reason for p in parts]),
                                {}, {"method": name})
        _, nat = _pauc(store, natural_mask, [concat(natural_scores), natural_labels,
                                             _norm_table(store, train_rows)])
        _, deg = _pauc(train_degraded, deg_mask, [concat(degraded_scores), deg_label["train-degraded"],
                                                  _norm_table(train_degraded, np.flatnonzero(deg_mask))])
        selection[name] = {"natural": nat[name]["fnmr_pauc"], "natural_gain": _gain(nat, name),
                           "degraded": deg[name]["fnmr_pauc"], "degraded_gain": _gain(deg, name),
                           "natural_norm": nat["norm"]["fnmr_pauc"], "natural_labels": nat[LABELLER]["fnmr_pauc"],
                           "degraded_norm": deg["norm"]["fnmr_pauc"], "degraded_labels": deg[LABELLER]["fnmr_pauc"]}
        _log(f"{name}: {json.dumps(selection[name])}")
        (out / "selection.json").write_text(json.dumps(selection, indent=1))
    chosen = max(selection, key=lambda n: selection[n]["natural_gain"] + selection[n]["degraded_gain"])
    _log(f"chosen: {chosen}")

    # 3. test once: the chosen recipe and the plain head, trained on the whole training half
    finals = {"plain head (v0.1)": ("head", False), chosen: CANDIDATES[chosen]}
    heads = {}
    for name, (shape, use_aug) in finals.items():
        model_dir = out / "final" / f"{shape}-{'aug' if use_aug else 'nat'}"
        if not (model_dir / "head.onnx").exists():
            train_regressor(
                augmented if use_aug else store,
                augmented_labels if use_aug else natural_labels,
                model_dir,
                shape=shape,
                resume=False,
                config=TrainConfig(epochs=args.epochs, random_state=0),
                feature_cache_dir=cache,
            )
        heads[name] = model_dir / "head.onnx"
    test_sets = {
        "natural": (store, test_rows, test_labels),
        "degraded": (test_degraded, None, deg_label["test-degraded"]),
        **{kind: (s, None, deg_label[f"test-{kind}"]) for kind, s in per_kind.items()},
    }
    results: dict[str, dict] = {}
    evaluations = {}
    for set_name, (s, rows, labels) in test_sets.items():
        rows = np.flatnonzero(s.ok) if rows is None else rows
        mask = np.zeros(len(s), bool)
        mask[rows] = True
        tables = [_predict(path, s, rows, name, cache) for name, path in heads.items()]
        evaluation, table = _pauc(
            s, mask, [*tables, _restrict(labels, s.samples.sample_id[rows]), _norm_table(s, rows)], n_bootstrap=1000
        )
        evaluations[set_name] = evaluation
        results[set_name] = {m: {k: table[m][k] for k in ("fnmr_pauc", "pauc_ci_low", "pauc_ci_high")} for m in table}
        for name in heads:
            results[set_name][name]["gain"] = _gain(table, name)
        results[set_name]["start_fnmr"] = evaluation.edc.start_fnmr
        _log(f"{set_name}: {json.dumps(results[set_name])}")

    gender = {}
    for group, filename in (("female", "female_names.txt"), ("male", "male_names.txt")):
        for line in (args.gender / filename).read_text().split():
            gender[line.strip()] = group
    groups = {int(sid): gender.get(Path(loc).name) for sid, loc in zip(store.samples.sample_id, store.samples.location)}
    breakdown = group_breakdown(evaluations["natural"], groups, reject_quantile=0.1).table()

    lines = [
        "# Quality-model recipes: selection on training identities, one test on held-apart identities",
        "",
        *machine_header(),
        "",
        f"Command: `python -m studies.study_quality_model --demo {args.demo} --out {args.out}` "
        f"({(time.perf_counter() - started) / 60:.1f} min). Labeller `{LABELLER}`; FNMR pAUC at FMR 1e-3, "
        "discard <= 0.20; gain = (norm - model) / (norm - labels).",
        "",
        f"## Selection: out-of-fold on the training half ({args.folds} identity folds)",
        "",
        "| recipe | natural pAUC | natural gain | degraded pAUC | degraded gain |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in selection.items():
        lines.append(
            f"| {name}{' (chosen)' if name == chosen else ''} | {row['natural']:.3g} | "
            f"{row['natural_gain']:+.2f} | {row['degraded']:.3g} | {row['degraded_gain']:+.2f} |"
        )
    first = next(iter(selection.values()))
    lines += [
        "",
        f"norm: natural {first['natural_norm']:.3g}, degraded {first['degraded_norm']:.3g}; labels: "
        f"natural {first['natural_labels']:.3g}, degraded {first['degraded_labels']:.3g}.",
        "",
        "## Test: held-apart half (once)",
        "",
        "| set | start FNMR | "
        + " | ".join(f"{m} pAUC [95% CI]" for m in [*heads, "norm", LABELLER])
        + " | "
        + " | ".join(f"{m} gain" for m in heads)
        + " |",
        "|---|---:|" + "---:|" * (len(heads) * 2 + 2),
    ]
    for set_name, row in results.items():
        cells = [
            f"{row[m]['fnmr_pauc']:.3g} [{row[m]['pauc_ci_low']:.3g}, {row[m]['pauc_ci_high']:.3g}]"
            for m in [*heads, "norm", LABELLER]
        ]
        lines.append(
            f"| {set_name} | {row['start_fnmr']:.4f} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(f"{row[m]['gain']:+.2f}" for m in heads)
            + " |"
        )
    lines += [
        "",
        "## Per gender, natural held-apart half",
        "",
        "| group | method | reject rate at the 10 % quantile | start FNMR | pAUC [95% CI] |",
        "|---|---|---:|---:|---:|",
    ]
    for row in breakdown:
        lines.append(
            f"| {row['group']} | {row['method']} | {row['reject_rate']:.3f} | {row['start_fnmr']:.4f} | "
            f"{row['fnmr_pauc']:.3g} [{row['pauc_ci_low']:.3g}, {row['pauc_ci_high']:.3g}] |"
        )
    (out / "results.json").write_text(
        json.dumps(
            {
                "selection": selection,
                "chosen": chosen,
                "test": results,
                "gender": breakdown,
                **provenance(**vars(args)),
            },
            indent=1,
            default=str,
        )
    )
    emit("\n".join(lines) + "\n", results_path("quality_model.md", RESULTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
