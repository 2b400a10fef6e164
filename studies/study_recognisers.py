"""Every quality method against two recognisers, on LFW-dev identities held apart from training.

    python -m studies.study_recognisers --demo runs/demo-v2 --out runs/recognisers-study

Reuses a finished ``fiqa demo`` folder (its SFace store, ``split.json``, the held-apart half's labels in ``labels/`` and
the two models' scores in ``scores/``); writes nothing there.

1. **A second recogniser.** The held-apart half's images are embedded with dlib's ResNet (``create_embedder("dlib")``,
   the same detection settings as the demo's store, ``DetectionSettings.from_params``) into ``OUT/dlib-store``.
2. **Training-free methods** (``fiqa.score.training_free``) on the held-apart half of the SFace store: ``ser-fiq``
   (``--serfiq-samples`` stochastic embeddings, seed 0), ``flip-consistency``, ``norm``; each timed per image (crop
   loading included) and cached in ``OUT/scores``.
3. **One set of comparisons, two recognisers.** The comparisons are sampled once from the held-apart images that are
   ok in both stores (``fiqa.evaluate.recognisers.ok_in_both``; seed 0, at most 50 mated pairs per identity, 1,000,000
   non-mated), scored with SFace and, re-scored by location, with dlib
   (``evaluate_quality(..., comparison_store=dlib)``). Every method (the demo's labels, its two models, the
   training-free methods, random) gets its FNMR pAUC (discard <= 0.20) at FMR 1e-3 and 1e-4 with 95 % bootstrap
   intervals over identities (1,000 resamples). Both full reports (with a per-gender breakdown from
   ``../shared/data/lfw-gender``) go to ``OUT/report-sface`` and ``OUT/report-dlib``.
4. **SER-FIQ here.** Its cost per image against one SFace pass on the same crops (CPU seconds with one thread, and
   wall-clock seconds with the machine's threads, median of 3; numpy's BLAS on one thread throughout), and its
   reproducibility: the same seed twice and in
   other batch sizes (must be identical), another seed and half the samples (Spearman with the seed-0 scores).

Writes ``studies/results/recognisers.md``. The demo's ``norm`` labels are the store's raw SFace norm, the quantity the
training-free ``norm`` recomputes; only the training-free one is evaluated (their Spearman is reported).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from benchmarks._common import Report as MarkdownReport
from benchmarks._common import machine_header, results_path
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from fiqa.augment.crops import load_crops
from fiqa.core.provenance import provenance
from fiqa.core.types import EmbeddingStore, QualityTable
from fiqa.detect import DetectionSettings
from fiqa.embed import create_embedder
from fiqa.embed.extract import embed_source
from fiqa.evaluate import evaluate_quality, load_split, sample_comparisons
from fiqa.evaluate.groups import group_breakdown, read_groups_file
from fiqa.evaluate.recognisers import ok_in_both
from fiqa.evaluate.report import write_report
from fiqa.evaluate.run import Evaluation
from fiqa.io import open_source
from fiqa.io.table import load_quality, save_quality
from fiqa.score import score_store
from fiqa.score.training_free import create_quality_method
from fiqa.store import open_store

RESULTS = Path(__file__).resolve().parent / "results"
LABELS = ("sdd", "sdd-refined", "cr", "reference-consensus", "mean-positive")
MODELS = {"default": "model:default", "plain-head": "model:plain head"}
TRAINING_FREE = ("ser-fiq", "flip-consistency", "norm")
FMRS = (1e-3, 1e-4, 1e-2)
"""Operating points: the main FMR 1e-3, the stricter 1e-4, and 1e-2, where the weaker recogniser still matches most
mated pairs."""


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _dlib_store(store: EmbeddingStore, rows: np.ndarray, out: Path) -> EmbeddingStore:
    """The images of ``rows`` embedded with dlib into ``out / "dlib-store"`` (reused when complete)."""
    listing = out / "test-half.csv"
    lines = ["path,identity"] + [f'"{location}","{identity}"' for location, identity in
                                  zip(store.samples.location[rows], store.samples.identity[rows])]
    text = "\n".join(lines) + "\n"
    if not listing.exists() or listing.read_text(encoding="utf-8") != text:
        listing.write_text(text, encoding="utf-8")
    detection = DetectionSettings.from_params(store.meta.params)  # the SFace store's reading and detection
    # the list names the store's photos where they are, outside this folder: written here, so trusted
    return embed_source(open_source(listing, kind="list", allow_outside=True), out / "dlib-store", backend="dlib",
                        detection=detection, progress=False)


def _training_free(store: EmbeddingStore, rows: np.ndarray, out: Path, serfiq_samples: int,
                   threads: int | None) -> tuple[list[QualityTable], dict[str, float]]:
    """The training-free tables of ``rows`` (cached) and each method's wall seconds per image when computed."""
    tables, seconds = [], {}
    timing_path = out / "scores" / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    for name in TRAINING_FREE:
        path = out / "scores" / f"{name}.test.parquet"
        if not path.exists():
            params = {"n_samples": serfiq_samples, "random_state": 0} if name == "ser-fiq" else {}
            method = create_quality_method(name, threads=threads, **params)
            started = time.perf_counter()
            table = score_store(method, store, rows=rows, progress=False)
            timing[name] = (time.perf_counter() - started) / len(rows)
            save_quality(table, path)
            timing_path.write_text(json.dumps(timing, indent=1))
            _log(f"{name}: {timing[name] * 1e3:.1f} ms per image")
        tables.append(load_quality(path))
        seconds[name] = float(timing.get(name, np.nan))
    return tables, seconds


def _cpu_and_wall(function, repeats: int = 3) -> tuple[float, float]:
    """Median CPU and wall seconds of ``function()`` over ``repeats`` calls (after one untimed call)."""
    function()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        function()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall))


def _serfiq_checks(store: EmbeddingStore, rows: np.ndarray, serfiq_samples: int) -> dict[str, float]:
    """SER-FIQ's cost against one SFace pass on the same crops, and its reproducibility."""
    crops = load_crops(store, rows)
    n = len(crops)
    result: dict[str, float] = {"n_faces": n}
    for threads, label in ((1, "1 thread"), (None, "all threads")):
        sface = create_embedder("sface", threads=threads) if threads else create_embedder("sface")
        serfiq = create_quality_method("ser-fiq", n_samples=serfiq_samples, random_state=0, threads=threads)
        for name, function in (("sface", lambda: sface.embed(crops)), ("ser-fiq", lambda: serfiq.score_crops(crops))):
            cpu, wall = _cpu_and_wall(function)
            result[f"{name} cpu ms ({label})"] = cpu / n * 1e3
            result[f"{name} wall ms ({label})"] = wall / n * 1e3
    started = time.perf_counter()
    load_crops(store, rows)
    result["crop loading wall ms"] = (time.perf_counter() - started) / n * 1e3
    first = create_quality_method("ser-fiq", n_samples=serfiq_samples, random_state=0).score_crops(crops)
    again = create_quality_method("ser-fiq", n_samples=serfiq_samples, random_state=0).score_crops(crops)
    batched = create_quality_method("ser-fiq", n_samples=serfiq_samples, random_state=0,
                                    batch_size=7).score_crops(crops)
    other_seed = create_quality_method("ser-fiq", n_samples=serfiq_samples, random_state=1).score_crops(crops)
    fewer = create_quality_method("ser-fiq", n_samples=max(2, serfiq_samples // 2), random_state=0).score_crops(crops)
    result["max |diff| same seed"] = float(np.max(np.abs(first - again)))
    result["max |diff| batch size 7"] = float(np.max(np.abs(first - batched)))
    result["spearman seed 0 vs seed 1"] = float(spearmanr(first, other_seed).statistic)
    result["median |diff| seed 0 vs seed 1"] = float(np.median(np.abs(first - other_seed)))
    result["spearman m vs m/2"] = float(spearmanr(first, fewer).statistic)
    return result


def _gender_groups(store: EmbeddingStore, folder: Path) -> dict[int, str] | None:
    return read_groups_file(folder, store) if folder.is_dir() else None


def _evaluate(store: EmbeddingStore, tables: list[QualityTable], comparisons, identity_filter: dict,
              comparison_store: EmbeddingStore | None) -> Evaluation:
    return evaluate_quality(comparisons, tables, random_state=0, n_bootstrap=1000, identities=store.samples,
                            identity_filter=identity_filter, legacy_erc=False, store=store,
                            comparison_store=comparison_store, more_fmrs=FMRS[1:])


def _cell(row: dict) -> str:
    return f"{row['fnmr_pauc']:.4f} [{row['pauc_ci_low']:.4f}, {row['pauc_ci_high']:.4f}]"


def _markdown(report: MarkdownReport, args, evaluations: dict[str, Evaluation], costs: dict[str, float],
              checks: dict[str, float], norm_spearman: float, minutes: float, groups) -> None:
    report("# Quality methods against two recognisers (SFace, dlib) on LFW-dev held-apart identities")
    report()
    for line in machine_header():
        report(line)
    report()
    report(f"Command: `python -m studies.study_recognisers --demo {args.demo} --out {args.out} --serfiq-samples "
           f"{args.serfiq_samples}` ({minutes:.1f} min). FNMR pAUC (discard <= 0.20) with 95 % bootstrap intervals "
           "over identities (1,000 resamples), lower is better; the same comparisons for both recognisers.")
    report()
    first = next(iter(evaluations.values()))
    report(f"Comparisons: {first.edc.n_mated:,} mated, {first.edc.n_nonmated:,} non-mated, "
           f"{len(first.sample_id):,} images of {first.edc.bootstrap.n_clusters if first.edc.bootstrap else '?'} "
           "held-apart identities (ok in both stores).")
    report()
    for name, evaluation in evaluations.items():
        comparisons = evaluation.comparisons
        points = ", ".join(f"{result.threshold:.4f} at FMR {target:g} (start FNMR {result.start_fnmr:.4f})"
                           for target, result in evaluation.edcs.items())
        report(f"- {name}: verification ROC AUC {roc_auc_score(comparisons.mated, comparisons.similarity):.4f} "
               f"(mean cosine mated {comparisons.similarity[comparisons.mated].mean():.3f}, non-mated "
               f"{comparisons.similarity[~comparisons.mated].mean():.3f}); thresholds {points}.")
    report()
    report("fiqa's `dlib` backend feeds dlib's ResNet the ArcFace-aligned 112 x 112 crop resized to 150 x 150 "
           "(`fiqa.embed.reference.DlibEmbedder`), not dlib's own padded 5-point chip, so it is a much weaker "
           "recogniser here than dlib's published LFW figures: most mated pairs fail at FMR 1e-3, every method's "
           "pAUC sits near the start FNMR there, and FMR 1e-2 is the more telling column for dlib.")
    report()
    _method_table(report, evaluations)
    report()
    report(f"The demo's `norm` labels and the training-free `norm` agree (Spearman {norm_spearman:.6f}); only the "
           "training-free one is listed.")
    report()
    _cost_section(report, costs, checks, args.serfiq_samples)
    if groups is not None:
        _gender_section(report, evaluations, groups)


def _method_table(report: MarkdownReport, evaluations: dict[str, Evaluation]) -> None:
    names = list(evaluations)
    report("## Every method against both recognisers")
    report()
    report("FNMR pAUC [95 % CI] at each recogniser's own threshold for the FMR named; rank at FMR 1e-3 (1 = best).")
    report()
    report("| method | kind | " + " | ".join(f"{n} FMR {t:g}" for n in names for t in FMRS) + " | "
           + " | ".join(f"rank {n}" for n in names) + " |")
    report("|---|---|" + "---:|" * ((len(FMRS) + 1) * len(names)))
    tables = {(n, t): {r["method"]: r for r in e.edc_at(t).table()} if any(
        np.isclose(t, k) for k in e.edcs if k is not None) else {} for n, e in evaluations.items() for t in FMRS}
    ranks = {n: {r["method"]: i + 1 for i, r in enumerate(e.edc.table())} for n, e in evaluations.items()}
    kinds = next(iter(evaluations.values())).kinds
    for method in sorted(kinds, key=lambda m: tables[names[0], FMRS[0]][m]["fnmr_pauc"]):
        cells = [_cell(tables[n, t][method]) if method in tables[n, t] else "n/a" for n in names for t in FMRS]
        report(f"| {method} | {kinds[method]} | " + " | ".join(cells) + " | "
               + " | ".join(str(ranks[n][method]) for n in names) + " |")


def _cost_section(report: MarkdownReport, costs: dict[str, float], checks: dict[str, float], m: int) -> None:
    report("## Cost per image and SER-FIQ's reproducibility")
    report()
    report("Whole held-apart half through `score_store` (crop loading from the source images included, "
           "wall clock, all threads, shared machine):")
    report()
    report("| method | ms per image |")
    report("|---|---:|")
    for name, value in costs.items():
        report(f"| {name}{f' (m = {m})' if name == 'ser-fiq' else ''} | {value * 1e3:.1f} |")
    report()
    n = int(checks["n_faces"])
    report(f"On the same {n} aligned crops (median of 3 runs; CPU time is the fairer figure on a shared machine):")
    report()
    report(f"| | SFace pass | SER-FIQ (m = {m}) | ratio |")
    report("|---|---:|---:|---:|")
    for key in ("cpu ms (1 thread)", "wall ms (1 thread)", "cpu ms (all threads)", "wall ms (all threads)"):
        sface, serfiq = checks[f"sface {key}"], checks[f"ser-fiq {key}"]
        report(f"| {key} | {sface:.1f} | {serfiq:.1f} | {serfiq / sface:.2f} |")
    report()
    report(f"Crop loading (decode + align from the stored landmarks): {checks['crop loading wall ms']:.1f} ms per "
           "image.")
    report()
    report(f"Reproducibility on those crops: the same seed twice, max |difference| "
           f"{checks['max |diff| same random_state']:.3g}; in batches of 7 instead of 32, "
           f"{checks['max |diff| batch size 7']:.3g}; seed 1 against seed 0, Spearman "
           f"{checks['spearman random_state 0 vs random_state 1']:.4f} (median |difference| "
           f"{checks['median |diff| random_state 0 vs random_state 1']:.2g}); m = {m // 2} against m = {m}, Spearman "
           f"{checks['spearman m vs m/2']:.4f}.")
    report()


def _gender_section(report: MarkdownReport, evaluations: dict[str, Evaluation], groups) -> None:
    report("## Differential rejection by gender (LFW gender lists)")
    report()
    report("Reject rate at the 10 % quality quantile of all compared images, and the group's FNMR at each "
           "recogniser's FMR-1e-3 threshold (before rejection, and of the mated pairs kept).")
    report()
    names = list(evaluations)
    breakdowns = {n: group_breakdown(e, groups, reject_quantile=0.1, n_bootstrap=0) for n, e in evaluations.items()}
    first = breakdowns[names[0]]
    report("| method | " + " | ".join(f"rejected {g}" for g in first.groups) + " | "
           + " | ".join(f"{n} FNMR kept {g}" for n in names for g in first.groups) + " |")
    report("|---|" + "---:|" * (len(first.groups) * (1 + len(names))))
    for m, method in enumerate(first.methods):
        cells = [f"{first.reject_rates[g, m, 0]:.3f}" for g in range(len(first.groups))]
        cells += [f"{breakdowns[n].fnmr_after_reject[g, m, 0]:.4f}" for n in names
                  for g in range(len(first.groups))]
        report(f"| {method} | " + " | ".join(cells) + " |")
    report("| (start FNMR) | " + " | ".join("" for _ in first.groups) + " | "
           + " | ".join(f"{breakdowns[n].start_fnmr[g]:.4f}" for n in names for g in range(len(first.groups)))
           + " |")
    report()
    report("Counts: " + ", ".join(f"{g}: {int(first.n_samples[i]):,} images, {int(first.n_mated[i]):,} mated "
                                  "comparisons" for i, g in enumerate(first.groups)) + ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo-v2"))
    parser.add_argument("--out", type=Path, default=Path("runs/recognisers-study"))
    parser.add_argument("--serfiq-samples", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads of the training-free methods")
    parser.add_argument("--timing-faces", type=int, default=256)
    parser.add_argument("--gender", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
                        / "lfw-gender")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    if out == args.demo.resolve() or args.demo.resolve() in out.parents:
        parser.error("--out must not be inside the demo folder")
    (out / "scores").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    store = open_store(args.demo / "store")
    split = load_split(args.demo / "split.json")
    identity = store.samples.identity.astype(str)
    test_rows = np.flatnonzero(store.ok & split.mask(identity, "test"))
    _log(f"{len(test_rows)} held-apart images; dlib store")
    dlib = _dlib_store(store, test_rows, out)
    _log("training-free methods")
    free_tables, costs = _training_free(store, test_rows, out, args.serfiq_samples, args.threads)
    labels = [load_quality(args.demo / "labels" / f"{name}.test.parquet") for name in LABELS]
    models = [replace(load_quality(args.demo / "scores" / f"{file}.test.parquet"), meta={
        **load_quality(args.demo / "scores" / f"{file}.test.parquet").meta, "method": name})
        for file, name in MODELS.items() if (args.demo / "scores" / f"{file}.test.parquet").exists()]
    norm_labels = load_quality(args.demo / "labels" / "norm.test.parquet")
    norm_free = free_tables[TRAINING_FREE.index("norm")]
    norm_spearman = float(spearmanr(norm_labels.aligned_to(norm_free.sample_id), norm_free.score,
                                    nan_policy="omit").statistic)
    tables = [*labels, *models, *free_tables]

    mask = np.zeros(len(store), bool)
    mask[test_rows] = True
    mask &= ok_in_both(store, dlib)
    _log(f"comparisons of {int(mask.sum())} images ok in both stores")
    comparisons = sample_comparisons(store, n_nonmated=1_000_000, random_state=0, sample_mask=mask,
                                     max_mated_per_identity=50)
    held_apart = {**split.describe(), "description": f"the held-apart half of {args.demo / 'split.json'}, images ok "
                  "in both the SFace and the dlib store"}
    evaluations = {"SFace": _evaluate(store, tables, comparisons, held_apart, None),
                   "dlib": _evaluate(store, tables, comparisons, held_apart, dlib)}
    groups = _gender_groups(store, args.gender)
    for name, evaluation in evaluations.items():
        write_report(evaluation, out / f"report-{name.lower()}", store=store, groups=groups, group_by="gender",
                     title=f"Quality methods on LFW-dev held-apart identities, compared with {name}")
    _log("SER-FIQ cost and reproducibility")
    rng = np.random.default_rng(0)
    timing_rows = np.sort(rng.choice(test_rows, size=min(args.timing_faces, len(test_rows)), replace=False))
    checks = _serfiq_checks(store, timing_rows, args.serfiq_samples)
    report = MarkdownReport()
    _markdown(report, args, evaluations, costs, checks, norm_spearman, (time.perf_counter() - started) / 60, groups)
    (out / "results.json").write_text(json.dumps({
        "rows": {n: e.edc.table() for n, e in evaluations.items()},
        "more_fmrs": {n: {f"{t:g}": r.table() for t, r in e.more_edc.items()} for n, e in evaluations.items()},
        "costs_s_per_image": costs, "serfiq_checks": checks, "norm_spearman": norm_spearman,
        **provenance(**{k: str(v) for k, v in vars(args).items()}), "cpu_count": os.cpu_count()},
        indent=1, default=str))
    report.write(results_path("recognisers.md", RESULTS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
