"""Reproduce docs/new-labeller.md: controlled scenarios and held-out LFW-dev EDC for sdd, cr and reference-consensus.

    python -m studies.study_new_labeller --demo runs/demo

Part 1 builds the seed's scenarios (A, B, C; one C case per degradation kind) from LFW-dev faces with
``studies.scenarios`` and SFace, and reports the issue's numbers per labeller plus the good image's rank in every C
case. Part 2 reuses a finished ``fiqa demo`` folder (its SFace store and identity split): reference-consensus'
``norm_weight`` and ``prior_strength`` are chosen on the demo's *training* half only (lowest EDC pAUC), then
every labeller labels the held-apart *test* half and EDC pAUC (FNMR at FMR 1e-3, discard <= 0.20) is computed on
the same comparisons as the demo (``sample_comparisons(..., n_nonmated=1_000_000, max_mated_per_identity=50)``).
Writes ``studies/results/study_new_labeller.md`` and ``docs/img/new_labeller_edc.png``.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from benchmarks._common import emit, machine_header, results_path
from studies.scenarios import ScenarioSet, build_scenarios, scenario_metrics

from fiqa.core.errors import FIQAError
from fiqa.evaluate import load_split, sample_comparisons
from fiqa.evaluate.edc import EDCResult, compute_edc
from fiqa.label import create_labeler
from fiqa.store import open_store

ROOT = Path(__file__).resolve().parents[1]
NEW = "reference-consensus"
BASELINES = ("sdd", "sdd-refined", "cr", "mean-positive")
GRID = {"norm_weight": (0.0, 0.1, 0.2, 0.5), "prior_strength": (0.5, 1.0, 2.0)}


RESULTS = Path(__file__).resolve().parent / "results"

def label(name: str, params: dict, vectors, identities, norms) -> np.ndarray | None:
    try:
        return create_labeler(name, **params).fit(vectors, identities, norms=norms).labels_.score
    except FIQAError as exc:
        print(f"  {name}: {exc}", file=sys.stderr)
        return None


def degradation_effect(lfw: Path, random_state: int, n_faces: int = 48, severities=(0.3, 0.6, 0.75, 0.9)) -> list[str]:
    """Median SFace norm ratio and cosine of degraded to clean crops, per degradation kind and severity."""
    import cv2

    from fiqa.augment.degrade import DEGRADATIONS, degrade
    from fiqa.detect import FaceAligner
    from fiqa.embed import create_embedder

    aligner, embedder = FaceAligner(), create_embedder("sface")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())
    crops = []
    for index in np.random.default_rng(random_state).permutation(len(people)):
        crop = aligner.align(cv2.imread(str(sorted(people[index].glob("*.jpg"))[0]), cv2.IMREAD_COLOR)).crop
        if crop is not None:
            crops.append(crop)
        if len(crops) == n_faces:
            break

    def embed(batch):
        raw = np.asarray(embedder.embed(np.stack(batch)), np.float64)
        norms = np.linalg.norm(raw, axis=1)
        return raw / norms[:, None], norms

    clean, clean_norm = embed(crops)
    lines = [f"Effect of each degradation on SFace ({n_faces} LFW-dev faces, first photo of random people): median "
             "norm ratio to the clean crop / median cosine to it.", "",
             "| kind | " + " | ".join(f"severity {s}" for s in severities) + " |", "|---|" + "---|" * len(severities)]
    for kind in sorted(DEGRADATIONS):
        cells = []
        for severity in severities:
            vectors, norms = embed([degrade(c, kind, severity, random_state=i) for i, c in enumerate(crops)])
            cells.append(f"x{np.median(norms / clean_norm):.2f} / {np.median(np.sum(vectors * clean, 1)):.2f}")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return lines


def good_ranks(score: np.ndarray, scen: ScenarioSet) -> dict[str, int]:
    """Rank (1 = first) of the good image among its C case's images; ties count against it."""
    out = {}
    for case in sorted({c for c in scen.case if c.startswith("C")}):
        members = scen.case == case
        good = score[members & (scen.role == "good")][0]
        out[case] = 1 + int((score[members & (scen.role == "poor")] >= good).sum())
    return out


class HalfEvaluator:
    """EDC pAUC of per-row scores on one half of the demo store, on the demo's comparisons for that half."""

    def __init__(self, store, rows: np.ndarray, random_state: int) -> None:
        mask = np.zeros(len(store), bool)
        mask[rows] = True
        self.comparisons = sample_comparisons(store, n_nonmated=1_000_000, random_state=random_state, sample_mask=mask,
                                              max_mated_per_identity=50)
        position = np.full(len(store), -1)
        position[rows] = np.arange(len(rows))
        self.a, self.b = position[self.comparisons.sample_a], position[self.comparisons.sample_b]

    def __call__(self, scores: dict[str, np.ndarray]) -> tuple[dict[str, float], EDCResult]:
        m = self.comparisons.mated
        a, b, similarity = self.a, self.b, self.comparisons.similarity
        result = compute_edc(similarity[m], {k: np.fmin(v[a[m]], v[b[m]]) for k, v in scores.items()},
                             similarity[~m], {k: np.fmin(v[a[~m]], v[b[~m]]) for k, v in scores.items()},
                             fmr=1e-3, discard_limit=0.2, missing="lowest")  # NaN (unlabelled) ranks lowest
        return {row["method"]: row["fnmr_pauc"] for row in result.table()}, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"))
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--random-state", "--seed", type=int, default=0)
    args = parser.parse_args()
    lines = ["# New labeller study (generated by studies/study_new_labeller.py)", "", *machine_header(), "",
             f"Command: `python -m studies.study_new_labeller --demo {args.demo}`", ""]

    # ---- part 1: controlled scenarios ----------------------------------------------------------------------------
    scen = build_scenarios(args.lfw, n_cases=6, n_background=40, random_state=args.random_state)
    ids = scen.identities.astype(str)
    configs = {"sdd": ("sdd", {}, None), "cr": ("cr", {}, None),
               f"{NEW} (no norms)": (NEW, {}, None), NEW: (NEW, {}, scen.norms)}
    scores = {tag: label(name, params, scen.vectors, ids, norms) for tag, (name, params, norms) in configs.items()}
    lines += [f"## Controlled scenarios ({len(scen)} SFace embeddings of LFW-dev faces, seed {args.random_state})", "",
              "| labeller | rank of good image in C (1 = first of 9) | C cases good first | burst percentile B | "
              "clean burst percentile A | Spearman with -severity |", "|---|---|---|---|---|---|"]
    for tag, score in scores.items():
        m = scenario_metrics(score, scen)
        lines.append(f"| {tag} | {m['good_rank_C']:.2f} | {m['good_first_C']:.2f} | {m['burst_percentile_B']:.1f} | "
                     f"{m['consistent_percentile_A']:.1f} | {m['spearman_severity']:.3f} |")
    ranks = {tag: good_ranks(score, scen) for tag, score in scores.items()}
    lines += ["", "Rank of the good image in each C case, with what SFace itself says about the case: the good "
              "image's raw norm against the poor shots', and the cosine similarity between them.", "",
              "| case | degradation (severity 0.6-0.9) | good norm | poor norms | good-poor cosine | "
              + " | ".join(ranks) + " |", "|---|---|---|---|---|" + "---|" * len(ranks)]
    for case in ranks["sdd"]:
        members = scen.case == case
        good, poor = members & (scen.role == "good"), members & (scen.role == "poor")
        cosine = scen.vectors[poor] @ scen.vectors[good][0]
        lines.append(f"| {case} | {scen.kind[poor][0]} | {scen.norms[good][0]:.2f} | {scen.norms[poor].min():.2f}-"
                     f"{scen.norms[poor].max():.2f} | {cosine.min():.2f}-{cosine.max():.2f} | "
                     + " | ".join(str(r[case]) for r in ranks.values()) + " |")
    lines += ["", *degradation_effect(args.lfw, args.random_state)]
    print("\n".join(lines))

    # ---- part 2: held-out LFW-dev ----------------------------------------------------------------------------
    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    ok = np.asarray(store.ok)
    vectors, norms = np.asarray(store.vectors, np.float32), np.asarray(store.norms, np.float32)
    halves = {half: np.flatnonzero(ok & split.mask(identity, half)) for half in ("train", "test")}
    evaluate = {half: HalfEvaluator(store, rows, args.random_state) for half, rows in halves.items()}

    tune = halves["train"]
    tuning = []
    for values in itertools.product(*GRID.values()):
        params = dict(zip(GRID, values))
        score = label(NEW, params, vectors[tune], identity[tune], norms[tune])
        tuning.append((evaluate["train"]({"q": score})[0]["q"], params))
    best_pauc, best = min(tuning, key=lambda item: item[0])  # the first of equal values: grid order
    defaults = {key: create_labeler(NEW).get_params()[key] for key in GRID}

    test = halves["test"]
    runs = {name: (name, {}, None) for name in BASELINES}
    runs[f"{NEW} (chosen: {', '.join(f'{k}={v}' for k, v in best.items())})"] = (NEW, best, norms[test])
    if best != defaults:
        runs[f"{NEW} (defaults)"] = (NEW, {}, norms[test])
    runs[f"{NEW} without norms (ablation)"] = (NEW, best, None)
    runs[f"{NEW} without bursts (ablation: burst_threshold 0.999)"] = (NEW, {**best, "burst_threshold": 0.999},
                                                                      norms[test])
    scores = {tag: label(name, params, vectors[test], identity[test], n) for tag, (name, params, n) in runs.items()}
    paucs, result = evaluate["test"]({k: v for k, v in scores.items() if v is not None})
    comparisons = evaluate["test"].comparisons
    lines += ["", f"## Held-out LFW-dev ({args.demo}: the demo's store and identity split)", "",
              f"Tuned on the training half ({len(tune):,} images of {len(split.identities('train')):,} people), "
              f"EDC pAUC per setting of {NEW}:", "",
              "| " + " | ".join(GRID) + " | tune-half pAUC |", "|" + "---|" * (len(GRID) + 1)]
    lines += ["| " + " | ".join(str(p[k]) for k in GRID) + f" | {v:.6f} |" for v, p in tuning]
    lines += ["", f"Chosen: {best} (tune-half pAUC {best_pauc:.6f}); defaults of the labeller: {defaults}.", "",
              f"Test half: {len(test):,} images of {len(split.identities('test')):,} people, "
              f"{int(comparisons.mated.sum()):,} mated (at most 50 per identity) and "
              f"{int((~comparisons.mated).sum()):,} non-mated comparisons; threshold at FMR 1e-3 "
              f"{result.threshold:.4f}, start FNMR {result.start_fnmr:.4f} "
              f"({round(result.start_fnmr * result.n_mated)} false non-matches). pAUC of FNMR up to a discard "
              "fraction of 0.20, lower is better.", "", "| labels of | pAUC |", "|---|---|"]
    lines += [f"| {name} | {paucs[name]:.6f} |" for name in sorted(paucs, key=paucs.get)]
    print("\n".join(lines[-len(paucs) - 2:]))

    figure, axes = plt.subplots(figsize=(6.5, 4))
    for name, curve in result.fnmr_curves.items():
        if "ablation" in name or name == "mean-positive":
            continue
        axes.step(curve.discard_fractions, curve.error_rates, where="post", label=f"{name} ({paucs[name]:.5f})")
    axes.set_xlim(0, 0.25)
    axes.set_xlabel("discarded fraction of mated comparisons")
    axes.set_ylabel("FNMR (FMR 1e-3 threshold)")
    axes.set_title("Held-out LFW-dev identities: labels")
    axes.legend(fontsize=7)
    image = ROOT / "docs" / "img" / "new_labeller_edc.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(image, dpi=120, bbox_inches="tight")
    print(f"wrote {image}")
    emit("\n".join(lines), results_path("study_new_labeller.md", RESULTS), echo=False)


if __name__ == "__main__":
    main()
