"""Which capture factor predicts recognition failure on LFW-dev? EDC of every quality component, natural and degraded.

    python -m studies.components.edc_components --random-state 0

Faces: the LFW-dev people with >= 2 photos, embedded as ``fiqa demo`` embeds them (:func:`fiqa.demo.embed_and_split`:
YuNet, the central face, SFace), and the held-apart half of the demo's identity split (``test_fraction=0.5``, the
same ``--random-state``). The degraded half is the demo's degraded copy of those faces
(:func:`fiqa.augment.copies.degraded_store`, held-out capture effects, seed ``random_state + 202`` as in the demo).

Every face's components (:func:`fiqa.components.compute_components`) are measured on the store's own aligned crop
(:func:`fiqa.augment.crops.load_crops`; a degraded copy is re-created from its recipe). Geometry comes from the stored
five landmarks and the photo's size read from its header; the store keeps neither the detector's box nor the other
faces' boxes, nor the face region at the photo's grid, so:

- ``single_face_present`` is 0 (alone) where the detector found one face and NaN where it found several;
- ``compression_artifacts`` is measured on the 112-pixel crop's grid (where the degraded copies' WebP re-encoding
  was applied; a natural photo's JPEG grid is not aligned with the crop's);
- a degraded copy shares its parent photo's geometry (the effects act on the crop, not on the photo);
- pose and geometry use the stored landmarks refined on the upright view of the face cut from the photo, as
  ``fiqa score --components`` refines the detector's (:func:`fiqa.evaluate.components.component_tables`; two
  refinement passes, the default).

Each component's 0-100 scalar (higher is better) is then one quality table (NaN rows carry the component's reason
and a non-ok status, ranked lowest) and evaluated with the project's EDC (:func:`fiqa.evaluate.evaluate_quality`:
FNMR at FMR 1e-3, pAUC to 20 % discarded, pair quality = min, comparisons as in the demo with at most 50 mated
pairs per identity, 95 % bootstrap intervals over identities), beside the shipped ``default`` model's score, the
``norm`` baseline and the random floor. No component is a unified quality: a low pAUC says that this factor, alone,
finds the comparisons that fail on this data.

Writes ``studies/results/components_edc.md`` (a ``## Reading`` section already in that file is kept). Caches
(store, degraded copy, components, scores) go under ``--work``; a component cache is reused only when its key
(store fingerprint, rows, the components' code and model files, versions) matches. About 6 minutes on 2 cores with
the store already embedded (by the same :func:`fiqa.demo.embed_and_split` call, e.g. an earlier run), about 6 more
to embed it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks._common import emit, machine_header, results_path
from tqdm import tqdm

from fiqa.augment.crops import load_crops
from fiqa.core.provenance import versions
from fiqa.core.types import EmbeddingStore, QualityTable, Status
from fiqa.demo import embed_and_split, locate_lfw
from fiqa.label import label_rows
from fiqa.store import is_store, open_store, store_fingerprint

logger = logging.getLogger("studies.components.edc_components")

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "studies" / "results"
REPORT_NAME = "components_edc.md"
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw-dev"
DEGRADED_SEED_OFFSET = 202
"""The demo's degraded half is seeded ``random_state + 202`` (``fiqa.demo``)."""
MODEL_METHOD = "model:default (shipped)"
NOT_MEASURED = "not_measured"
"""Status of a face whose component could not be measured (its reason says why); ranked lowest by EDC."""
BATCH = 64
READING_HEADING = "## Reading"


def degraded_half(store: EmbeddingStore, work: Path, test_rows: np.ndarray, random_state: int) -> EmbeddingStore:
    """The demo's degraded copy of the held-apart half, kept at ``work/test-degraded`` and reused."""
    from fiqa.augment.copies import degraded_store

    path = work / "test-degraded"
    if is_store(path):
        return open_store(path)
    return degraded_store(store, path, rows=test_rows, random_state=random_state + DEGRADED_SEED_OFFSET,
                          progress=True)


def _components_key(store: EmbeddingStore, rows: np.ndarray) -> dict:
    """What the cached components of ``rows`` depend on."""
    import fiqa.components

    package = Path(fiqa.components.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in {".py", ".npz", ".json"}):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return {"store_sha256": store_fingerprint(store), "rows_sha256": hashlib.sha256(rows.tobytes()).hexdigest(),
            "components_sha256": digest.hexdigest(), "versions": versions()}


def measure(store: EmbeddingStore, rows: np.ndarray, cache: Path) -> dict[str, np.ndarray]:
    """Components (``scalar``, ``raw`` (k, K), ``reason``, ``names``; as ``fiqa evaluate --components`` measures
    them, :func:`fiqa.evaluate.components.component_tables`) and the shipped model's scores (``model``) of
    ``rows``; cached at ``cache`` under :func:`_components_key`."""
    from fiqa.evaluate.components import component_tables
    from fiqa.score import create_scorer

    key = _components_key(store, rows)
    if cache.exists():
        with np.load(cache, allow_pickle=True) as stored:
            if json.loads(str(stored["key"])) == key:
                return {name: stored[name] for name in stored.files if name != "key"}
        logger.info("%s: made from other inputs; measuring again", cache)
    tables = component_tables(store, rows)
    names = [t.meta["component"] for t in tables]
    scorer = create_scorer("default")
    model = [scorer.score_crops(load_crops(store, rows[start:start + BATCH]))[0]
             for start in tqdm(range(0, len(rows), BATCH), desc=f"model {cache.stem}", unit="batch")]
    result = {"names": np.asarray(names), "scalar": np.column_stack([t.score for t in tables]),
              "raw": np.column_stack([t.columns[f"{name}_raw"] for name, t in zip(names, tables)]),
              "reason": np.column_stack([t.reason for t in tables]).astype(str),
              "model": np.concatenate(model) if model else np.zeros(0)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, key=json.dumps(key), **result)
    partial.replace(cache)
    return result


def quality_tables(store: EmbeddingStore, rows: np.ndarray, measured: dict[str, np.ndarray]) -> list[QualityTable]:
    """One quality table per component (its 0-100 scalar; NaN rows ``not_measured`` with the reason) and one of the
    shipped model's scores."""
    sample_id = store.samples.sample_id[rows].astype(np.int64)
    identity = store.samples.identity[rows]
    tables = []
    for k, name in enumerate(measured["names"]):
        score = measured["scalar"][:, k].astype(np.float64)
        ok = np.isfinite(score)
        tables.append(QualityTable(
            sample_id, np.where(ok, score, np.nan), np.where(ok, Status.OK.value, NOT_MEASURED).astype(object),
            np.where(ok, "", measured["reason"][:, k]).astype(object), {"identity": identity},
            {"method": f"component:{name}", "kind": "component", "source": "fiqa.components"}))
    score = measured["model"].astype(np.float64)
    ok = np.isfinite(score)
    tables.append(QualityTable(sample_id, np.where(ok, score, np.nan),
                               np.where(ok, Status.OK.value, Status.INVALID_SCORE.value).astype(object),
                               np.where(ok, "", "non-finite score").astype(object), {"identity": identity},
                               {"method": MODEL_METHOD, "model": "default"}))
    return tables


def evaluate_set(set_name: str, store: EmbeddingStore, rows: np.ndarray, work: Path, *, random_state: int,
                 n_bootstrap: int, held_apart: dict) -> tuple[list[dict], dict]:
    """EDC rows of every component, the shipped model, the norm and the random floor on one half; and its counts."""
    from fiqa.evaluate import evaluate_quality, paired_pauc_difference, sample_comparisons

    measured = measure(store, rows, work / f"components.{set_name}.npz")
    tables = quality_tables(store, rows, measured)
    tables.append(label_rows(store, rows, "norm", random_state, work / "labels" / f"norm.{set_name}.parquet"))
    mask = np.zeros(len(store), bool)
    mask[rows] = True
    comparisons = sample_comparisons(store, n_nonmated=1_000_000, random_state=random_state, sample_mask=mask,
                                     max_mated_per_identity=50)
    evaluation = evaluate_quality(comparisons, tables, random_state=random_state, n_bootstrap=n_bootstrap,
                                  identities=store.samples, identity_filter={**held_apart, "set": set_name},
                                  store=store, legacy_erc=False, more_fmrs=())
    edc = evaluation.edc
    rows_out = []
    for row in edc.table():
        method = row["method"]
        diff = paired_pauc_difference(edc, method, "random") if method != "random" else (0.0, math.nan, math.nan)
        rows_out.append({**row, "minus_random": diff})
    spread = {}
    for k, name in enumerate(measured["names"]):
        raw, scalar = measured["raw"][:, k], measured["scalar"][:, k]
        finite = np.isfinite(raw)
        spread[str(name)] = {
            "measured": float(finite.mean()),
            "raw_quartiles": np.percentile(raw[finite], [25, 50, 75]).tolist() if finite.any() else [math.nan] * 3,
            "below_50": float(np.mean(scalar[np.isfinite(scalar)] < 50)) if finite.any() else math.nan,
            "distinct_scalars": int(len(np.unique(np.round(scalar[np.isfinite(scalar)], 6)))),
        }
    counts = {"n_faces": len(rows), "n_identities": len(np.unique(store.samples.identity[rows])),
              "n_mated": edc.n_mated, "n_nonmated": edc.n_nonmated, "threshold": edc.threshold,
              "start_fnmr": edc.start_fnmr, "spread": spread}
    return rows_out, counts


def _code_state() -> str:
    """The commit of this checkout, and whether the imported fiqa's measuring code (components, detection,
    augmentation, evaluation) is that commit's: files compared by their git blob hashes."""
    import subprocess

    import fiqa

    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        listed = subprocess.run(["git", "ls-tree", "-r", "HEAD", "src/fiqa"], cwd=REPO, capture_output=True,
                                text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "Code: not a git checkout; commit unknown."
    committed = {line.split("\t", 1)[1].removeprefix("src/fiqa/"): line.split()[2] for line in listed.splitlines()}
    imported = Path(fiqa.__file__).parent
    differ = []
    for part in ("components", "detect", "augment", "evaluate"):
        for path in sorted((imported / part).rglob("*")):
            if not path.is_file() or path.suffix not in {".py", ".npz", ".json", ".toml"}:
                continue
            data = path.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            name = path.relative_to(imported).as_posix()
            if committed.get(name) != blob:
                differ.append(name)
    where = "" if imported == REPO / "src" / "fiqa" else f" (fiqa imported from {imported})"
    if not differ:
        return f"Code: commit {head}{where}; its components, detection, augmentation and evaluation files as committed."
    return f"Code: commit {head}{where}, with these files differing from it: {', '.join(differ)}."


def _interval(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['fnmr_pauc']:.2e} [{row['pauc_ci_low']:.2e}, {row['pauc_ci_high']:.2e}]"


def _versus_random(row: dict | None) -> str:
    if row is None or row["method"] == "random":
        return "-"
    _, low, high = row["minus_random"]
    return "better" if high < 0 else "worse" if low > 0 else "n.s."


def _display(method: str) -> str:
    return method.removeprefix("component:") if method.startswith("component:") else f"*{method}*"


def _reading(path: Path) -> str:
    """The ``## Reading`` section of an earlier report at ``path`` (kept across reruns), or a placeholder."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if READING_HEADING in text:
            return text[text.index(READING_HEADING):].rstrip() + "\n"
    return f"{READING_HEADING}\n\n(to be written after reading the tables)\n"


def report(results: dict[str, tuple[list[dict], dict]], args: argparse.Namespace, command: str, minutes: float,
           split_info: dict, path: Path) -> str:
    by_set = {name: {row["method"]: row for row in rows} for name, (rows, _) in results.items()}
    natural = results["natural"][0]
    order = [row["method"] for row in natural]  # best natural pAUC first
    counts = {name: c for name, (_, c) in results.items()}
    lines = [
        "# EDC per quality component on LFW-dev held-apart faces, natural and degraded",
        "",
        *machine_header(),
        "",
        _code_state(),
        "",
        f"Command: `{command}` ({minutes:.1f} min, {args.n_bootstrap} bootstrap resamples). "
        f"Identity split: `split_identities(test_fraction=0.5, random_state={args.random_state})` over the "
        f"{split_info['n_identities']} LFW-dev people with >= 2 photos and an ok embedding (the demo's split); the "
        f"held-apart half has {counts['natural']['n_identities']} people, {counts['natural']['n_faces']} faces. "
        f"Degraded half: `degraded_store(..., random_state={args.random_state + DEGRADED_SEED_OFFSET})`, one copy "
        "per face with one held-out effect (motion blur, low resolution, WebP, dark sensor, accessory) at severity "
        "0.2-0.9, a quarter left clean.",
        "",
        "EDC as everywhere in fiqa (`fiqa.evaluate.evaluate_quality`): SFace cosine similarity, threshold fixed at FMR "
        "1e-3 on 1,000,000 sampled non-mated pairs of the half, at most 50 mated pairs per identity, pair quality = "
        "min, FNMR pAUC up to 20 % discarded (lower is better), faces a component cannot measure ranked lowest. "
        "95 % percentile intervals from identity resamples with the threshold fixed. \"vs random\": the paired "
        "bootstrap interval of pAUC(method) - pAUC(random) lies below 0 (better), above 0 (worse), or spans 0 (n.s.).",
        "",
        "Not a unified quality: each row asks whether that factor alone finds the comparisons that fail here. "
        "*model:default (shipped)* is the shipped model, **trained on all LFW-dev people (these included)**, so its "
        "row is optimistic and shown only for scale; *norm* is the raw SFace embedding norm (free, not trained on "
        "anything here); *random* is the floor.",
        "",
        "| component | pAUC [95 % CI] natural | vs random | pAUC [95 % CI] degraded | vs random | n mated pairs "
        "nat. / deg. |",
        "|---|---:|:---:|---:|:---:|---|",
    ]
    pairs = f"{counts['natural']['n_mated']:,} / {counts['degraded']['n_mated']:,}"
    for method in order:
        nat, deg = by_set["natural"].get(method), by_set["degraded"].get(method)
        lines.append(f"| {_display(method)} | {_interval(nat)} | {_versus_random(nat)} | {_interval(deg)} | "
                     f"{_versus_random(deg)} | {pairs} |")
    lines += [
        "",
        f"Non-mated pairs: natural {counts['natural']['n_nonmated']:,}, degraded "
        f"{counts['degraded']['n_nonmated']:,}; every pair counts for every row (a face a component cannot measure "
        "is ranked lowest, not left out). "
        f"Starting FNMR at the fixed threshold: natural {counts['natural']['start_fnmr']:.4f} (threshold "
        f"{counts['natural']['threshold']:.4f}), degraded {counts['degraded']['start_fnmr']:.4f} (threshold "
        f"{counts['degraded']['threshold']:.4f}).",
        "",
        "## How much each component varies here",
        "",
        "Raw quartiles (the component's unit, `fiqa components`), the share of faces whose 0-100 scalar is below 50, "
        "and how many distinct scalars the half holds (a component with one value cannot rank anything: its EDC is "
        "the no-discard line, every tie discarded together). Measured: share of faces with a value.",
        "",
        "| component | measured nat. | raw Q1 / median / Q3 natural | < 50 nat. | distinct nat. | raw Q1 / median / "
        "Q3 degraded | < 50 deg. | distinct deg. |",
        "|---|---:|---|---:|---:|---|---:|---:|",
    ]
    for name in counts["natural"]["spread"]:
        nat, deg = counts["natural"]["spread"][name], counts["degraded"]["spread"][name]
        lines.append(f"| {name} | {nat['measured']:.1%} | {' / '.join(f'{v:.3g}' for v in nat['raw_quartiles'])} | "
                     f"{nat['below_50']:.1%} | {nat['distinct_scalars']} | "
                     f"{' / '.join(f'{v:.3g}' for v in deg['raw_quartiles'])} | {deg['below_50']:.1%} | "
                     f"{deg['distinct_scalars']} |")
    lines += [
        "",
        "What the store does not keep, and so what these components did not see: the detector's box and the other "
        "faces' boxes (`single_face_present` is 0 for a photo with one detected face and not measured where the "
        "detector found several; `head_size` and the margins come from the landmarks' fitted scale, as always), and "
        "the face region at the photo's pixel grid (`compression_artifacts` is measured on the aligned crop's grid). "
        "A degraded copy keeps its parent photo's geometry. Pose and geometry use the stored landmarks refined on "
        "the upright view of the face cut from the photo, as `fiqa score --components` refines the detector's.",
        "",
        _reading(path),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW,
                        help="LFW-dev folder (one sub-folder per person); default ../shared/data/lfw-dev beside the "
                             "repository")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fiqa-components-edc"),
                        help="caches: store, split, degraded copy, components, norm labels")
    parser.add_argument("--random-state", type=int, default=0, help="seed of the identity split and of the EDC")
    parser.add_argument("--n-bootstrap", type=int, default=1000, help="identity resamples for the intervals")
    parser.add_argument("--max-identities", type=int, default=None,
                        help="a seeded subset of people (quick checks; the committed result uses all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    store, split, _, test_rows = embed_and_split(
        locate_lfw(args.lfw), work, min_images=2, max_identities=args.max_identities, max_images_per_identity=None,
        test_fraction=0.5, random_state=args.random_state, progress=True)
    degraded = degraded_half(store, work, test_rows, args.random_state)
    n_test = len(split.identities("test"))
    held_apart = {**split.describe(), "description": f"only the {n_test:,} identities of the held-apart half"}
    results = {
        "natural": evaluate_set("natural", store, test_rows, work, random_state=args.random_state,
                                n_bootstrap=args.n_bootstrap, held_apart=held_apart),
        "degraded": evaluate_set("degraded", degraded, np.flatnonzero(degraded.ok), work,
                                 random_state=args.random_state, n_bootstrap=args.n_bootstrap,
                                 held_apart=held_apart),
    }
    command = "python -m studies.components.edc_components " + shlex.join(argv if argv is not None else sys.argv[1:])
    path = results_path(REPORT_NAME, RESULTS)
    text = report(results, args, command.strip(), (time.perf_counter() - started) / 60,
                  {"n_identities": len(split.identities("train")) + n_test}, path)
    emit(text, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
