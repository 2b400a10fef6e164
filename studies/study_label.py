"""How the labellers relate: label distributions and Spearman correlations on real LFW-dev SFace embeddings,
seed-to-seed stability of ``sdd``, and the seed's claim that SDD degenerates into mean positive similarity at scale
(Spearman(sdd, mean-positive) against N on synthetic data).

Input: an embedding store (``--store``, from ``fiqa embed``) or an ``.npz`` with arrays ``vectors`` (N, d) raw,
``identity`` (N,), ``ok`` (N,). Prints Markdown tables and writes them to ``studies/results/label_study.md``.

Run: ``.venv/bin/python -m studies.study_label --store /work/scratch/lfw_sface_store``
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.stats
from benchmarks._common import Report, results_path

from fiqa.datasets import make_embeddings
from fiqa.label import create_labeler, label_store, list_labelers

VARIANTS = {  # report name -> (registry name, parameters)
    "sdd": ("sdd", {}),
    "sdd signed": ("sdd", {"signed": True}),
    "sdd-refined": ("sdd-refined", {}),
    "cr": ("cr", {}),
    "cr leave-one-out": ("cr", {"leave_one_out": True}),
    "mean-positive": ("mean-positive", {}),
    "norm": ("norm", {}),
    "random": ("random", {}),
}


RESULTS = Path(__file__).resolve().parent / "results"

def load_input(args):
    if args.store:
        from fiqa.store import open_store

        store = open_store(args.store)
        return store, None
    data = np.load(args.npz, allow_pickle=False)
    raw = data["vectors"].astype(np.float32)
    norms = np.linalg.norm(raw, axis=1)
    ok = data["ok"] & (norms > 0)
    vectors = np.where(ok[:, None], raw / np.where(norms > 0, norms, 1)[:, None], np.nan).astype(np.float32)
    return None, (vectors[ok], data["identity"][ok], norms[ok])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--store")
    source.add_argument("--npz")
    parser.add_argument("--random-state", "--seed", type=int, default=0)
    parser.add_argument("--synthetic-n", type=int, nargs="*", default=[2_000, 20_000, 200_000])
    args = parser.parse_args()
    emit = Report()
    store, arrays = load_input(args)
    variants = dict(VARIANTS)
    for name in list_labelers():  # methods added by others are studied too
        if name not in {v[0] for v in variants.values()}:
            variants[name] = (name, {})
    def run(name: str, params: dict, random_state: int):
        labeler = create_labeler(name, random_state=random_state, **params)
        if store is not None:
            return label_store(store, labeler)
        vectors, identities, norms = arrays
        return labeler.fit(vectors, identities, norms=norms).labels_

    tables = {label: run(name, params, args.random_state) for label, (name, params) in variants.items()}
    source = args.store or args.npz
    n_rows = len(next(iter(tables.values())))
    emit(f"# Label study on `{source}` ({n_rows:,} samples)")
    emit()
    emit("## Label distributions (labelled samples)")
    emit()
    emit("| method | labelled | not labelled (status counts) | min | 5% | 25% | median | 75% | 95% | max |")
    emit("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, table in tables.items():
        scores = table.score[table.ok]
        q = np.percentile(scores, [0, 5, 25, 50, 75, 95, 100])
        others = ", ".join(f"{k} {v}" for k, v in table.meta["status_counts"].items() if k != "ok")
        emit(f"| {label} | {len(scores):,} | {others or '-'} | " + " | ".join(f"{v:.3g}" for v in q) + " |")
    emit()
    names = list(tables)
    emit("## Spearman correlations (each pair over the samples both methods label)")
    emit()
    emit("| | " + " | ".join(names) + " |")
    emit("|---|" + "---:|" * len(names))
    for a in names:
        row = []
        for b in names:
            both = tables[a].ok & tables[b].ok
            row.append(scipy.stats.spearmanr(tables[a].score[both], tables[b].score[both]).statistic)
        emit(f"| {a} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    emit()
    first, again, other = run("sdd", {}, 1), run("sdd", {}, 1), run("sdd", {}, 2)
    ok = first.ok
    rho = scipy.stats.spearmanr(first.score[ok], other.score[ok]).statistic
    emit(f"`sdd` (K = 12) seed 1 vs seed 2: Spearman {rho:.3f}; seed 1 twice: "
         f"{'identical' if np.array_equal(first.score, again.score, equal_nan=True) else 'DIFFERENT'} labels.")
    emit()
    emit("## Does SDD degenerate into mean positive similarity at scale? (synthetic, d = 512, 50 images/identity)")
    emit()
    emit("| N | identities | Spearman(sdd, mean-positive) | Spearman(sdd, true quality) | "
         "Spearman(mean-positive, true quality) | std of mean negative / std of mean positive |")
    emit("|---:|---:|---:|---:|---:|---:|")
    for n in args.synthetic_n:
        data = make_embeddings(n, 512, n // 50, min_class_size=2, random_state=args.random_state)
        sdd = create_labeler("sdd", random_state=args.random_state).fit(data.vectors, data.identities).labels_
        positive = create_labeler("mean-positive").fit(data.vectors, data.identities).labels_
        rho = scipy.stats.spearmanr(sdd.score, positive.score).statistic
        spread = np.std(sdd.columns["mean_negative"]) / np.std(sdd.columns["mean_positive"])
        emit(f"| {n:,} | {n // 50:,} | {rho:.3f} | "
             f"{scipy.stats.spearmanr(sdd.score, data.quality).statistic:.3f} | "
             f"{scipy.stats.spearmanr(positive.score, data.quality).statistic:.3f} | {spread:.3f} |")
    emit()
    emit.write(results_path("label_study.md", RESULTS))


if __name__ == "__main__":
    main()
