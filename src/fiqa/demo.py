"""The end-to-end demo: LFW -> embeddings -> pseudo-labels -> regressors -> EDC on held-apart identities.

Every stage is the public API a user would call; the demo only wires them together and records what it did.
Each stage's output is kept under the output folder with the key of what made it (:mod:`fiqa.core.cache`: input
fingerprints, parameters, versions) and reused on a re-run only when the key is the same, so an interrupted demo
resumes where it stopped and a re-run with other settings (another ``random_state``) recomputes what they change.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import spearmanr

from fiqa.core.atomic import write_json
from fiqa.core.cache import artifact_key, cached
from fiqa.core.errors import DataSourceError, FIQAError, InvalidParameterError, check_int
from fiqa.core.outputs import check_not_in_inputs, make_output_dir
from fiqa.core.provenance import file_sha256, provenance
from fiqa.core.types import EmbeddingStore, QualityTable
from fiqa.io.table import load_quality, save_quality
from fiqa.store import is_store, open_store, table_key

if TYPE_CHECKING:
    from fiqa.core.identities import IdentitySplit
    from fiqa.train.regressor import TrainedModel

logger = logging.getLogger(__name__)

DEFAULT_LABELLERS = ("sdd", "sdd-refined", "cr", "reference-consensus")
DEFAULT_BASELINES = ("mean-positive",)
DEFAULT_TRAINING_FREE = ("ser-fiq", "flip-consistency", "norm")
"""Training-free published methods (:mod:`fiqa.score.training_free`) scored per image on each test set. A name is
one method, evaluated once: it is listed either here or among the labellers and baselines, not both (``norm``, the
raw SFace embedding norm, is the training-free method; its labeller is the same measure read from the store)."""

DEFAULT_SERFIQ_SAMPLES = 100
"""SER-FIQ's stochastic embeddings per face in the demo (the paper's m = 100): with the trunk run once, about two
SFace passes per image on one CPU thread."""


LFW_ENV = "FIQA_LFW"
"""The environment variable naming the LFW folder when none is given."""


def locate_lfw(path: str | os.PathLike | None = None) -> Path:
    """The LFW folder (one sub-folder per person): ``path``, else ``$FIQA_LFW``.

    The package assumes no location and downloads nothing: ``scripts/demo.sh`` sets ``FIQA_LFW`` to the checkout's
    shared data when it is unset.

    Raises
    ------
    DataSourceError
        When neither is given, or the folder does not exist (the message says how to provide one).
    """
    given = path if path is not None else os.environ.get(LFW_ENV) or None
    if given is None:
        raise DataSourceError(f"no LFW folder given: pass one (one sub-folder per person) or set {LFW_ENV}")
    if not Path(given).is_dir():
        where = "" if path is not None else f" (from {LFW_ENV})"
        raise DataSourceError(f"{given}{where}: LFW folder does not exist (expected one sub-folder per person)")
    return Path(given)


@dataclass(frozen=True)
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    out_dir : Path
    report : Path
        The HTML report of the natural held-apart half.
    degraded_report : Path
        The HTML report of the same faces with held-out capture effects (:func:`fiqa.augment.copies.degraded_store`).
    summary : list of dict
        One row per set ("natural", "degraded") and method: FNMR pAUC with its 95 % interval, for models the
        Spearman correlation with that set's labels, and for models and training-free methods the wall-clock
        ``seconds_per_image`` of scoring the set (crop loading included; None for labels).
    """

    out_dir: Path
    report: Path
    degraded_report: Path
    summary: list[dict]


@dataclass(frozen=True)
class _Methods:
    """What each test set is evaluated with: methods computed as labels (labellers and baselines), training-free
    methods scored per image, and SER-FIQ's sample count. A name listed in both is refused: one name, one method."""

    labels: tuple[str, ...]
    training_free: tuple[str, ...]
    serfiq_samples: int

    @classmethod
    def of(cls, labellers: Sequence[str], baselines: Sequence[str], training_free: Sequence[str],
           serfiq_samples: int) -> _Methods:
        labels = (*labellers, *baselines)
        twice = sorted(set(labels) & set(training_free))
        if twice:
            raise InvalidParameterError("run_demo", "training_free", "names not also given as labellers or baselines "
                                        "(one name is one method, evaluated once)", twice)
        return cls(labels, tuple(training_free), check_int("run_demo", "serfiq_samples", serfiq_samples, 2))


def _select_samples(lfw: Path, out_dir: Path, *, min_images: int, max_identities: int | None,
                    max_images_per_identity: int | None, random_state: int) -> Path:
    """A list file of the people with at least ``min_images`` photos (optionally seeded subsets of people and of
    each person's photos)."""
    from fiqa.io import open_source

    samples = open_source(lfw, kind="folder").samples
    identity = samples.identity.astype(str)
    names, counts = np.unique(identity, return_counts=True)
    chosen = names[counts >= min_images]
    rng = np.random.default_rng(random_state)
    if max_identities is not None and len(chosen) > max_identities:
        chosen = np.sort(rng.choice(chosen, size=max_identities, replace=False))
    if len(chosen) < 4:
        raise DataSourceError(f"{lfw}: only {len(chosen)} people have >= {min_images} images; the demo needs 4")
    keep = np.isin(identity, chosen)
    if max_images_per_identity is not None:
        for name in chosen[counts[np.searchsorted(names, chosen)] > max_images_per_identity]:
            rows = np.flatnonzero(identity == name)
            keep[rng.choice(rows, size=len(rows) - max_images_per_identity, replace=False)] = False
    list_path = out_dir / "samples.csv"
    lines = ["path,identity"] + [f'"{os.path.abspath(p)}","{i}"' for p, i in
                                  zip(samples.location[keep], samples.identity[keep])]
    text = "\n".join(lines) + "\n"
    if not list_path.exists() or list_path.read_text(encoding="utf-8") != text:
        list_path.write_text(text, encoding="utf-8")
    logger.info("demo: %d images of %d people from %s", int(keep.sum()), len(chosen), lfw)
    return list_path


def _model_scores(model_path: Path, name: str, store: EmbeddingStore, rows: np.ndarray, path: Path,
                  progress: bool) -> QualityTable:
    """Scores of ``rows`` of ``store`` by an exported model (the scorer's own path, from the stored landmarks and
    recipes), cached at ``path`` under the model file's fingerprint."""
    from fiqa.score import create_scorer, score_store

    def compute() -> QualityTable:
        started = time.perf_counter()
        table = score_store(create_scorer(model_path), store, rows=rows, progress=progress)
        table = replace(table, meta=table.meta.updated(
            method=f"model:{name}", seconds_per_image=(time.perf_counter() - started) / max(len(rows), 1)))
        save_quality(table, path)
        return table

    key = table_key("model scores", store, rows, name=name, model_sha256=file_sha256(model_path))
    return cached(path, key, compute, load_quality)


def _training_free_scores(name: str, store: EmbeddingStore, rows: np.ndarray, path: Path, *, serfiq_samples: int,
                          random_state: int, progress: bool) -> QualityTable:
    """A training-free method's scores of ``rows`` (:func:`fiqa.score.score_store`, crops from
    the stored landmarks), cached at ``path``, with the wall-clock ``seconds_per_image`` in its meta."""
    from fiqa.score import score_store
    from fiqa.score.training_free import create_quality_method

    params = {"n_samples": serfiq_samples, "random_state": random_state} if name == "ser-fiq" else {}

    def compute() -> QualityTable:
        started = time.perf_counter()
        table = score_store(create_quality_method(name, **params), store, rows=rows, progress=progress)
        table = replace(table, meta=table.meta.updated(
            seconds_per_image=(time.perf_counter() - started) / max(len(rows), 1), n_images_timed=len(rows)))
        save_quality(table, path)
        return table

    return cached(path, table_key("training-free scores", store, rows, name=name, params=params), compute,
                  load_quality)


def _spearman(scores: QualityTable, labels: QualityTable) -> float:
    labelled = labels.aligned_to(scores.sample_id)
    both = np.isfinite(labelled) & np.isfinite(scores.score)
    return float(spearmanr(scores.score[both], labelled[both]).statistic)


def run_demo(lfw: str | os.PathLike | None = None, out_dir: str | os.PathLike = "runs/demo", *,
             labellers: Sequence[str] = DEFAULT_LABELLERS, baselines: Sequence[str] = DEFAULT_BASELINES,
             test_fraction: float = 0.5, min_images: int = 2, max_identities: int | None = None,
             max_images_per_identity: int | None = None, epochs: int = 30, max_mated_per_identity: int | None = 50,
             n_nonmated: int = 1_000_000, n_bootstrap: int = 1000, random_state: int = 0,
             progress: bool = True, training_free: Sequence[str] = DEFAULT_TRAINING_FREE,
             serfiq_samples: int = DEFAULT_SERFIQ_SAMPLES) -> DemoResult:
    """Run the whole pipeline on LFW and write two HTML reports (natural and degraded held-apart faces).

    1. embed the people with at least ``min_images`` photos (YuNet, the central face, 5-point alignment, SFace);
    2. split the identities (seeded) into a training half and a held-apart test half;
    3. train two models on the training half (:mod:`fiqa.train.recipe`): v0.1's plain head on natural faces, and
       the default recipe (augmented copies labelled by their match evidence, the taps head); export each;
    4. make a degraded copy of the test half with capture effects no training recipe draws
       (:func:`fiqa.augment.copies.degraded_store`);
    5. on the natural and on the degraded test half: label it with every labeller and baseline (labels see the
       person's other photos: an upper bound for a single-image model), score it with both models and the
       training-free methods (timed per image), and evaluate every table on that half's comparisons at FMR 1e-3
       and 1e-4, with 95 % bootstrap intervals over identities; the degraded report is broken down by
       degradation kind.

    Parameters
    ----------
    lfw : path, optional
        LFW folder; see :func:`locate_lfw`.
    out_dir : path
        Everything is written here (store, labels, models, report); re-running reuses finished stages.
    labellers, baselines : sequence of str
        Labelling methods and baselines evaluated as labels on each test set.
    test_fraction : float in (0, 1)
        Fraction of identities held apart from labelling-for-training and from training.
    min_images : int >= 2
        People with fewer photos are left out (they form no mated comparison and get no label).
    max_identities : int, optional
        A seeded subset of that many people (for quick runs and tests).
    max_images_per_identity : int, optional
        A seeded subset of at most that many photos of each person.
    epochs : int >= 1
        Maximum training epochs per model (early stopping on a validation split of the training half).
    max_mated_per_identity : int, optional
        Cap on mated pairs per identity in the evaluation (LFW's largest identity would otherwise dominate).
    n_nonmated : int
        Non-mated comparisons sampled for the threshold (FMR 1e-3 needs many).
    n_bootstrap : int >= 0
        Identity resamples for the pAUC intervals.
    random_state : int
        Seeds the subset, the split, augmentation, the labellers, training and pair sampling.
    progress : bool
        Show progress bars.
    training_free : sequence of str
        Training-free methods (``fiqa.score.training_free.list_quality_methods()``) scored per image on each test
        set; none may also be given as a labeller or baseline.
    serfiq_samples : int >= 2
        SER-FIQ's stochastic embeddings per face (seeded by ``random_state``).
    """
    min_images = check_int("run_demo", "min_images", min_images, 2)
    methods = _Methods.of(labellers, baselines, training_free, serfiq_samples)
    lfw_path = locate_lfw(lfw)
    out = check_not_in_inputs(out_dir, [lfw_path])  # never among the photos, as the command
    make_output_dir(out, "demo")  # marked as fiqa's when fiqa creates it
    settings = {"lfw": str(lfw_path), "labellers": list(labellers), "baselines": list(baselines),
                "test_fraction": test_fraction, "min_images": min_images, "max_identities": max_identities,
                "max_images_per_identity": max_images_per_identity, "epochs": epochs,
                "max_mated_per_identity": max_mated_per_identity, "n_nonmated": n_nonmated,
                "n_bootstrap": n_bootstrap, "random_state": random_state, "training_free": list(methods.training_free),
                "serfiq_samples": methods.serfiq_samples}
    write_json(out / "demo.json", provenance(**settings))
    steps = _Steps(progress)
    steps.start("embed and split")
    store, split, train_rows, test_rows = embed_and_split(
        lfw_path, out, min_images=min_images, max_identities=max_identities,
        max_images_per_identity=max_images_per_identity, test_fraction=test_fraction, random_state=random_state,
        progress=progress)
    logger.info("demo: %d training and %d test images", len(train_rows), len(test_rows))
    steps.start("train two models")
    models = _train_models(store, out, train_rows, epochs=epochs, random_state=random_state, progress=progress)
    steps.start("degrade the test half")
    degraded = _degraded_test_half(store, out / "test-degraded", test_rows, random_state=random_state,
                                   progress=progress)
    test_sets = {"natural": (store, test_rows), "degraded": (degraded, np.flatnonzero(degraded.ok))}
    reports, summary = _evaluate_test_sets(test_sets, split, models, out, methods, settings, progress=progress,
                                           steps=steps)
    steps.close()
    return DemoResult(out, Path(reports["natural"]), Path(reports["degraded"]), summary)


class _Steps:
    """The demo's overall progress: which of its steps runs (``step k of n``), the time so far and an estimate of
    the time left, from each step's share of a full LFW-dev run (:data:`STEP_SHARES`), on one bar above the
    stages' own bars and in the log."""

    def __init__(self, progress: bool) -> None:
        from fiqa.core.progress import tqdm

        self.done, self.index = 0.0, 0
        self.current: str | None = None
        self.started = time.perf_counter()
        self.bar = tqdm(total=100, desc="demo", disable=not progress, position=0, leave=True,
                        bar_format="{desc} |{bar}| {elapsed} so far, about {remaining} left {postfix}")

    def start(self, name: str) -> None:
        """Mark the previous step done and ``name`` (a key of :data:`STEP_SHARES`) begun."""
        if self.current is not None:
            self.done += STEP_SHARES[self.current]
            self.bar.update(STEP_SHARES[self.current])
        self.index, self.current = self.index + 1, name
        elapsed = time.perf_counter() - self.started
        left = elapsed * (100 - self.done) / self.done if self.done else float("nan")
        self.bar.set_postfix_str(f"step {self.index} of {len(STEP_SHARES)}: {name}")
        logger.info("demo: step %d of %d: %s (%.0f s so far%s)", self.index, len(STEP_SHARES), name, elapsed,
                    f", about {left / 60:.0f} min left" if np.isfinite(left) else "")

    def close(self) -> None:
        if self.current is not None:
            self.bar.update(STEP_SHARES[self.current])
        self.bar.close()


STEP_SHARES = {"embed and split": 25, "train two models": 30, "degrade the test half": 5,
               "evaluate the natural test half": 20, "evaluate the degraded test half": 20}
"""Each demo step's share (percent) of a full LFW-dev run's time (the README's 15 minutes, rounded): what the
overall bar's time left is estimated from."""


def _evaluate_test_sets(test_sets: dict[str, tuple[EmbeddingStore, np.ndarray]], split: IdentitySplit,
                        models: dict[str, Path], out: Path, methods: _Methods, settings: dict[str, Any], *,
                        progress: bool, steps: _Steps | None = None) -> tuple[dict[str, Path], list[dict]]:
    """Evaluate every test set (:func:`_evaluate_test_set`); write ``summary.json`` (the rows, and the paired
    differences of each model to the norm and the other baselines); return the reports by set and the summary
    rows."""
    n_test = len(split.identities("test"))
    held_apart = {**split.describe(), "description": f"only the {n_test:,} identities of the held-apart half of "
                  f"split.json (never labelled for training, never trained on)"}
    summary, paired, reports = [], [], {}
    for set_name, (set_store, rows) in test_sets.items():
        if steps is not None:
            steps.start(f"evaluate the {set_name} test half")
        reports[set_name], set_summary, set_paired = _evaluate_test_set(
            set_name, set_store, rows, models, out, methods=methods, held_apart=held_apart,
            max_mated_per_identity=settings["max_mated_per_identity"], n_nonmated=settings["n_nonmated"],
            n_bootstrap=settings["n_bootstrap"], random_state=settings["random_state"], progress=progress)
        summary += set_summary
        paired += set_paired
    write_json(out / "summary.json", {"rows": summary, "paired": paired, **provenance(**settings)})
    return reports, summary


def embed_and_split(lfw: Path, out: Path, *, min_images: int, max_identities: int | None,
                    max_images_per_identity: int | None, test_fraction: float, random_state: int,
                    progress: bool) -> tuple[EmbeddingStore, IdentitySplit, np.ndarray, np.ndarray]:
    """Embed the selected LFW people into ``out/store`` and split their identities (``out/split.json``).

    Returns
    -------
    store : EmbeddingStore
    split : IdentitySplit
        Seeded by ``seed``, over the identities with an ok embedding.
    train_rows, test_rows : ndarray of int
        The store rows with an ok embedding on each side of the split.
    """
    from fiqa.detect.align import RESAMPLING
    from fiqa.detect.settings import DetectionSettings
    from fiqa.embed.extract import embed_source
    from fiqa.evaluate import save_split, split_identities
    from fiqa.io import open_source

    source = _select_samples(lfw, out, min_images=min_images, max_identities=max_identities,
                             max_images_per_identity=max_images_per_identity, random_state=random_state)
    # LFW photos are centred on the person they are labelled with; other faces in the frame are bystanders.
    # Keeping the central face instead of the largest lifts LFW-dev's verification ROC AUC from 0.9944 to 0.9993.
    path = out / "store"
    key = artifact_key(step="store", samples_sha256=file_sha256(source), backend="sface", policy="central",
                       resampling=RESAMPLING)  # a store cut another way is made again
    selected = open_source(source, kind="list", allow_outside=True)  # fiqa's own list of LFW photos, outside out/
    # a finished store made by other settings is replaced; an interrupted one is resumed by the same plan only
    central = DetectionSettings(policy="central")
    store = cached(path, key, lambda: embed_source(selected, path, detection=central, resume=not is_store(path),
                                                   progress=progress), open_store)
    identity = store.samples.identity.astype(str)
    split = split_identities(identity[store.ok], test_fraction=test_fraction, random_state=random_state)
    save_split(split, out / "split.json")
    train_rows = np.flatnonzero(store.ok & split.mask(identity, "train"))
    test_rows = np.flatnonzero(store.ok & split.mask(identity, "test"))
    return store, split, train_rows, test_rows


def exported_model(trained: TrainedModel) -> Path:
    """The ONNX file of a model trained in this process (only DDP ranks other than 0 get none)."""
    if trained.model_path is None:
        raise FIQAError(f"{trained.out_dir}: training exported no model (not DDP rank 0)")
    return trained.model_path


def _train_models(store: EmbeddingStore, out: Path, train_rows: np.ndarray, *, epochs: int, random_state: int,
                  progress: bool) -> dict[str, Path]:
    """The two models (v0.1's plain head and the default recipe), trained on ``train_rows`` only, by name."""
    from fiqa.train import TrainConfig
    from fiqa.train.recipe import DEFAULT_RECIPE, PLAIN_RECIPE, train_recipe

    config = TrainConfig(epochs=epochs, random_state=random_state)
    recipes = {"plain head": replace(PLAIN_RECIPE, config=config), "default": replace(DEFAULT_RECIPE, config=config)}
    return {name: exported_model(train_recipe(store, out / "models" / name.replace(" ", "-"), recipe=recipe,
                                              rows=train_rows, feature_cache_dir=out / "features",
                                              progress=progress))
            for name, recipe in recipes.items()}


def _degraded_test_half(store: EmbeddingStore, path: Path, test_rows: np.ndarray, *, random_state: int,
                        progress: bool) -> EmbeddingStore:
    """A copy of the test rows with capture effects no training recipe draws, kept at ``path`` and reused when
    made from the same store, rows and seed."""
    from fiqa.augment.copies import degraded_store

    seed = random_state + 202
    key = table_key("degraded test half", store, test_rows, random_state=seed)
    return cached(path, key, lambda: degraded_store(store, path, rows=test_rows, random_state=seed,
                                                    resume=not is_store(path), progress=progress), open_store)


def _test_set_tables(set_store: EmbeddingStore, rows: np.ndarray, models: dict[str, Path], out: Path, suffix: str,
                     *, methods: _Methods, random_state: int,
                     progress: bool) -> tuple[list[QualityTable], dict[str, float]]:
    """Every method's labels, every model's and training-free method's scores of one test set (cached under
    ``out``), and each model's Spearman correlation with the set's ``reference-consensus`` labels (when they are
    among the labels)."""
    from fiqa.label import label_rows

    tables = [label_rows(set_store, rows, method, random_state, out / "labels" / f"{method}.{suffix}.parquet")
              for method in methods.labels]
    reference = (tables[list(methods.labels).index("reference-consensus")] if "reference-consensus" in methods.labels
                 else None)
    spearman: dict[str, float] = {}
    for name, model_path in models.items():
        scores = _model_scores(model_path, name, set_store, rows,
                               out / "scores" / f"{name.replace(' ', '-')}.{suffix}.parquet", progress)
        tables.append(scores)
        if reference is not None:
            spearman[f"model:{name}"] = _spearman(scores, reference)
    tables += [_training_free_scores(name, set_store, rows, out / "scores" / f"{name}.{suffix}.parquet",
                                     serfiq_samples=methods.serfiq_samples, random_state=random_state,
                                     progress=progress)
               for name in methods.training_free]
    return tables, spearman


def _evaluate_test_set(set_name: str, set_store: EmbeddingStore, rows: np.ndarray, models: dict[str, Path],
                       out: Path, *, methods: _Methods, held_apart: dict, max_mated_per_identity: int | None,
                       n_nonmated: int, n_bootstrap: int, random_state: int,
                       progress: bool) -> tuple[Path, list[dict], list[dict]]:
    """Label, score and evaluate one test set (``"natural"`` or ``"degraded"``) on its own comparisons.

    Returns the HTML report, the set's summary rows (one per method) and its paired differences
    (:func:`fiqa.evaluate.exports.paired_rows`, with the set's name).
    """
    from fiqa.evaluate import evaluate_quality, sample_comparisons
    from fiqa.evaluate.exports import paired_rows
    from fiqa.evaluate.groups import group_labels
    from fiqa.evaluate.report import write_report

    suffix = "test" if set_name == "natural" else "test-degraded"
    tables, spearman = _test_set_tables(set_store, rows, models, out, suffix, methods=methods,
                                        random_state=random_state,
                                        progress=progress)
    mask = np.zeros(len(set_store), bool)
    mask[rows] = True
    comparisons = sample_comparisons(set_store, n_nonmated=n_nonmated, random_state=random_state, sample_mask=mask,
                                     max_mated_per_identity=max_mated_per_identity)
    evaluation = evaluate_quality(comparisons, tables, random_state=random_state, n_bootstrap=n_bootstrap,
                                  identities=set_store.samples, identity_filter={**held_apart, "set": set_name},
                                  store=set_store)
    # the degraded copies record their capture effect: the report breaks the evaluation down by it
    groups = group_labels("degradation", store=set_store) if set_store.recipe is not None else None
    report = write_report(evaluation, out / ("report" if set_name == "natural" else "report-degraded"),
                          store=set_store, groups=groups, group_by="degradation", title=TITLES[set_name])
    cost = {table.method: table.meta.record.get("seconds_per_image") for table in tables}
    more = {row["method"]: row for row in evaluation.more_edc[1e-4].table()} if 1e-4 in evaluation.more_edc else {}
    summary = [{"set": set_name, **row, "spearman_with_test_labels": spearman.get(row["method"]),
                "seconds_per_image": cost.get(row["method"]),
                **{f"{k}_at_fmr_1e-4": more[row["method"]][k] for k in ("fnmr_pauc", "pauc_ci_low", "pauc_ci_high")
                   if row["method"] in more}}
               for row in evaluation.edc.table()]
    return report, summary, [{"set": set_name, **row} for row in paired_rows(evaluation)]


TITLES = {"natural": "Face image quality on held-apart LFW-dev identities: natural photos",
          "degraded": "Face image quality on held-apart LFW-dev identities: degraded copies (capture effects no "
                      "training recipe draws)"}
"""The demo's report titles, one per test set."""
