"""Reproduce docs/new-labeller.md: controlled scenarios and held-out LFW-dev EDC for sdd, cr and reference-consensus.

    python benchmarks/study_new_labeller.py --embeddings /work/scratch/lfw_sface_quick.npz

``--embeddings`` is either a fiqa embedding store folder or an ``.npz`` with ``vectors`` (raw, N x d), ``identity``
and ``ok``. Part 1 builds the seed's scenarios (A, B, C) from LFW-dev faces with ``fiqa.scenarios`` and SFace.
Part 2 splits LFW-dev identities with a seed; the labeller's parameters are chosen on the *tune* half only, then
every labeller labels the *held-out* half and EDC pAUC (FNMR at FMR 1e-3, discard <= 0.20) is computed on the
held-out comparisons (up to 20 random mated pairs per identity, 200,000 random non-mated pairs). Writes ``benchmarks/results/
study_new_labeller.md`` and ``docs/img/new_labeller_edc.png``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from _common import emit, results_path  # noqa: E402

from fiqa.errors import FIQAError  # noqa: E402
from fiqa.evaluate.edc import compute_edc  # noqa: E402
from fiqa.evaluate.split import split_identities  # noqa: E402
from fiqa.label import create_labeler, list_labelers  # noqa: E402
from fiqa.scenarios import build_scenarios, scenario_metrics  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BASELINES = ("sdd", "sdd-refined", "cr")
MAX_PAIRS_PER_IDENTITY = 20
GRID = {"norm_weight": (0.0, 0.25, 1.0), "negative_weight": (0.0, 0.5, 1.0)}


def load_embeddings(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit vectors (n, d) float32, identities (n,) str, raw norms (n,) float32) of the usable rows."""
    if path.suffix == ".npz":
        data = np.load(path)
        ok = data["ok"].astype(bool)
        raw = data["vectors"][ok].astype(np.float32)
        norms = np.linalg.norm(raw, axis=1).astype(np.float32)
        return raw / norms[:, None], data["identity"][ok].astype(str), norms
    from fiqa.store import open_store
    store = open_store(path)
    ok = np.asarray(store.ok)
    return (np.asarray(store.vectors[ok], np.float32), store.samples.identity[ok].astype(str),
            np.asarray(store.norms[ok], np.float32))


def comparisons(identities: np.ndarray, n_nonmated: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                              np.ndarray]:
    """Up to MAX_PAIRS_PER_IDENTITY mated pairs per identity and ``n_nonmated`` random non-mated pairs: (mated_a, mated_b, nonmated_a, nonmated_b)."""
    rng = np.random.default_rng(seed)
    order = np.argsort(identities, kind="stable")
    _, starts, counts = np.unique(identities[order], return_index=True, return_counts=True)
    mated_a, mated_b = [], []
    for start, count in zip(starts, counts):
        if count > 1:
            a, b = np.triu_indices(count, k=1)
            pick = rng.permutation(len(a))[:MAX_PAIRS_PER_IDENTITY]  # no single person dominates the FNMR
            a, b = a[pick], b[pick]
            mated_a.append(order[start + a])
            mated_b.append(order[start + b])
    a = rng.integers(0, len(identities), 3 * n_nonmated)
    b = rng.integers(0, len(identities), 3 * n_nonmated)
    keep = identities[a] != identities[b]
    return np.concatenate(mated_a), np.concatenate(mated_b), a[keep][:n_nonmated], b[keep][:n_nonmated]


def edc_pauc(vectors, identities, scores: dict[str, np.ndarray], seed: int):
    mated_a, mated_b, non_a, non_b = comparisons(identities, 200_000, seed)
    mated = np.einsum("ij,ij->i", vectors[mated_a], vectors[mated_b])
    nonmated = np.einsum("ij,ij->i", vectors[non_a], vectors[non_b])
    result = compute_edc(mated, {k: np.fmin(v[mated_a], v[mated_b]) for k, v in scores.items()},
                         nonmated, {k: np.fmin(v[non_a], v[non_b]) for k, v in scores.items()},
                         fmr=1e-3, discard_limit=0.2, missing="lowest")
    return {row["method"]: row["fnmr_pauc"] for row in result.table()}, result


def fiqa_protocol(vectors, identities, norms, scores: dict[str, np.ndarray], seed: int) -> list[str]:
    """The same labels under ``fiqa.evaluate.sample_comparisons`` (uniform mated pairs, no per-identity cap)."""
    from fiqa.evaluate import sample_comparisons
    from fiqa.types import EmbeddingStore, SampleTable

    n = len(identities)
    ids = np.arange(n, dtype=np.int64)
    store = EmbeddingStore(Path("held-out"), SampleTable(ids, np.full(n, "", object), identities.astype(object),
                                                        "npz"), np.full(n, "ok", object), np.full(n, "", object),
                           vectors, norms, np.full((n, 5, 2), np.nan, np.float32), np.full(n, -1, np.int32))
    comparisons = sample_comparisons(store, max_mated=200_000, n_nonmated=200_000, seed=seed)
    a, b, mated = comparisons.sample_a, comparisons.sample_b, comparisons.mated
    result = compute_edc(comparisons.similarity[mated], {k: np.fmin(v[a[mated]], v[b[mated]]) for k, v in scores.items()},
                         comparisons.similarity[~mated], {k: np.fmin(v[a[~mated]], v[b[~mated]]) for k, v in
                                                          scores.items()}, fmr=1e-3, discard_limit=0.2,
                         missing="lowest")
    paucs = {row["method"]: row["fnmr_pauc"] for row in result.table()}
    return ["", f"Same labels, fiqa.evaluate.sample_comparisons protocol (all {int(mated.sum())} mated pairs, no "
            f"per-identity cap, so the largest identities dominate; threshold {result.threshold:.4f}, start FNMR "
            f"{result.start_fnmr:.4f}):", "", "| labels of | pAUC |", "|---|---|"] + [
        f"| {name} | {paucs[name]:.5f} |" for name in sorted(paucs, key=paucs.get)]


def label(name: str, params: dict, vectors, identities, norms) -> np.ndarray | None:
    try:
        return create_labeler(name, **params).fit(vectors, identities, norms=norms).labels_.score
    except FIQAError as exc:
        print(f"  {name}: {exc}", file=sys.stderr)
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    available = set(list_labelers())
    methods = [m for m in BASELINES if m in available]
    lines = ["# New labeller study (generated by benchmarks/study_new_labeller.py)", ""]

    # ---- part 1: controlled scenarios ----------------------------------------------------------------------------
    scen = build_scenarios(args.lfw, n_cases=3, n_background=40, seed=args.seed)
    lines += [f"## Controlled scenarios ({len(scen)} SFace embeddings of LFW-dev faces, seed {args.seed})", "",
              "| labeller | rank of good image in C (1 = first) | C cases good first | burst percentile B | "
              "clean burst percentile A | Spearman with -severity |", "|---|---|---|---|---|---|"]
    configs = [(m, {}) for m in methods] + [("reference-consensus", {"norm_weight": 0.0}),
                                            ("reference-consensus", {})]
    for name, params in configs:
        score = label(name, params, scen.vectors, scen.identities.astype(str), scen.norms)
        tag = name + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")
        if score is None:
            lines.append(f"| {tag} | n/a (no class is large enough) | | | | |")
            continue
        m = scenario_metrics(score, scen)
        lines.append(f"| {tag} | {m['good_rank_C']:.2f} | {m['good_first_C']:.2f} | {m['burst_percentile_B']:.1f} | "
                     f"{m['consistent_percentile_A']:.1f} | {m['spearman_severity']:.3f} |")
    print("\n".join(lines))

    # ---- part 2: held-out LFW-dev ----------------------------------------------------------------------------
    vectors, identities, norms = load_embeddings(args.embeddings)
    split = split_identities(identities, test_fraction=0.5, seed=args.seed)
    tune, test = split.mask(identities, "train"), split.mask(identities, "test")
    tuning = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values))
        score = label("reference-consensus", params, vectors[tune], identities[tune], norms[tune])
        paucs, _ = edc_pauc(vectors[tune], identities[tune], {"rc": np.nan_to_num(score, nan=-1.0)}, args.seed)
        tuning.append((paucs["rc"], params))
    best_pauc, best = min(tuning, key=lambda item: item[0])
    lines += ["", f"## Held-out LFW-dev ({int(test.sum())} images of {len(split.identities('test'))} identities; "
              f"tuned on {int(tune.sum())} images of the other {len(split.identities('train'))})", "",
              "Tuning grid (EDC pAUC on the tune half): " + ", ".join(
                  f"{p} -> {v:.5f}" for v, p in tuning), "", f"Chosen: {best}", ""]
    scores = {}
    for name, params in [(m, {}) for m in methods] + [("reference-consensus", best)]:
        score = label(name, params, vectors[test], identities[test], norms[test])
        if score is not None:
            scores[name] = score  # NaN (unlabelled singletons) ranks lowest in the EDC
    paucs, result = edc_pauc(vectors[test], identities[test], scores, args.seed)
    lines += [f"EDC: FNMR at the threshold for FMR 1e-3 (threshold {result.threshold:.4f}, start FNMR "
              f"{result.start_fnmr:.4f}), {result.n_mated} mated and {result.n_nonmated} non-mated comparisons; "
              "pAUC up to a discard fraction of 0.20 (lower is better).", "",
              "| labels of | pAUC |", "|---|---|"]
    lines += [f"| {name} | {paucs[name]:.5f} |" for name in sorted(paucs, key=paucs.get)]
    lines += fiqa_protocol(vectors[test], identities[test], norms[test], scores, args.seed)
    print("\n".join(lines[-2 * len(paucs) - 12:]))

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, curve in result.fnmr_curves.items():
        axes.step(curve.discard_fractions, curve.error_rates, where="post", label=f"{name} ({paucs[name]:.4f})")
    axes.set_xlim(0, 0.3)
    axes.set_xlabel("discarded fraction of mated comparisons")
    axes.set_ylabel("FNMR (FMR 1e-3 threshold)")
    axes.legend()
    image = ROOT / "docs" / "img" / "new_labeller_edc.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(image, dpi=120, bbox_inches="tight")
    print(f"wrote {image}")
    emit("\n".join(lines), results_path("study_new_labeller.md"), echo=False)


if __name__ == "__main__":
    main()
