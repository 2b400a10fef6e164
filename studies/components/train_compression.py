"""Fit the compression estimate of ``fiqa.components.compression`` and write ``models/compression.json``.

    python -m studies.components.train_compression --random-state 0

1. Training identities only (``split_identities(test_fraction=0.5, random_state)``, the person folders LFW-dev's
   held-apart studies leave out): one photo each (``--faces``), aligned by fiqa's own pipeline.
2. Each aligned crop is coded with **Pillow's** WebP and JPEG encoders (not fiqa's degradation code) at
   ``--variants`` seeded qualities each, drawn uniformly over 1-95 (WebP) and 2-98 (JPEG), and blurred
   (Gaussian, sigma 0.5-3.5, ``--variants / 2``) or dimmed (gain 0.25-1 times contrast 0.3-1 about the mean,
   ``--variants / 2``); the uncoded, blurred and dimmed crops count as quality 100. Each photo is
   also rescaled by 0.5-1.6, coded with Pillow's WebP (``--variants / 2``) and detected again: its face region at
   the photo's own grid is what scoring a photo reads (windows of 48-112 pixels a side, rarely square; the crops
   give 112-pixel windows only). One enlargement by nearest neighbour (x2-4) per crop only measures how often the
   WebP route takes such a face (never, at the shipped thresholds); it enters neither fit.
3. WebP route: boosted regression trees (scikit-learn's ``HistGradientBoostingRegressor``, 100 rounds of trees with
   at most 15 leaves) of the quality on :func:`fiqa.components.compression.ghost_features` and the two grid
   contrasts, over every sample the route takes (its 4-pixel grid seen): WebP crops and photos at their quality,
   and the uncoded, blurred, dimmed and JPEG crops it takes at theirs. JPEG route: an isotonic (decreasing)
   regression of the quality on :func:`fiqa.components.compression.blockiness` over the JPEG and uncoded crops it
   takes.
4. The card records the command, the data, the seed, the versions, the grouped cross-validated (5 folds by face)
   Spearman's rho and median error of each route (WebP crops and photos apart), how often the uncoded, blurred and
   dimmed crops the route takes read below quality 45, and how often each kind of sample is taken by the WebP
   route.

About half a minute on the idle development machine (a minute beside other work). The same seed on the same
data writes the same file.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, features
from scipy.stats import spearmanr
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import GroupKFold
from studies.components.occlusion_data import DEFAULT_LFW, ROOT
from studies.components.validate_components import held_apart_photos

from fiqa.components.capture import luminance
from fiqa.components.compression import (
    N_FEATURES,
    PROBES,
    CompressionModel,
    blockiness,
    load_compression_model,
    route_features,
)
from fiqa.core.provenance import versions
from fiqa.detect.pipeline import FacePipeline

logger = logging.getLogger(__name__)

DEFAULT_OUT = ROOT / "src" / "fiqa" / "components" / "models" / "compression.json"
TREES, LEAVES = 100, 15  # boosting rounds and leaves a tree: ~3000 nodes, a ~100 kB file


def export_trees(model: HistGradientBoostingRegressor, x: np.ndarray) -> dict[str, object]:
    """The fitted trees as the node arrays of :class:`fiqa.components.compression.CompressionModel`, checked to
    predict what scikit-learn predicts on ``x``."""
    parts: dict[str, list] = {"roots": [], "feature": [], "threshold": [], "left": [], "right": [], "value": []}
    for (tree,) in model._predictors:  # one tree per round (a single output)
        nodes, offset = tree.nodes, len(parts["feature"])
        parts["roots"].append(offset)
        for node in nodes:
            leaf = bool(node["is_leaf"])
            parts["feature"].append(-1 if leaf else int(node["feature_idx"]))
            parts["threshold"].append(0.0 if leaf else float(node["num_threshold"]))
            parts["left"].append(0 if leaf else offset + int(node["left"]))
            parts["right"].append(0 if leaf else offset + int(node["right"]))
            parts["value"].append(float(node["value"]) if leaf else 0.0)
    baseline = float(np.ravel(model._baseline_prediction)[0])
    trees = {"baseline": baseline, **parts}
    arrays = {k: np.array(v) for k, v in parts.items()}
    walked = CompressionModel(baseline, **arrays, contrast=np.array([0.0, 1.0]), quality=np.array([1.0, 0.0]))
    # the same comparisons on the same float64 values pick the same leaves; the sums differ by the order of adding
    # 100 leaves (at most 100 roundings of values below 100: far under 1e-9); clipping to 0-100 as the walk does
    expected = np.clip(model.predict(x), 0.0, 100.0)
    worst = max(abs(walked.deblocked(row) - want) for row, want in zip(x, expected))
    if worst > 1e-9:
        raise RuntimeError(f"the exported trees predict {worst} away from scikit-learn's")
    return trees


def _pillow(crop: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(crop[..., ::-1])).save(buffer, fmt, quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))[..., ::-1].copy()


def samples(faces: list[tuple[Path, np.ndarray]], variants: int, random_state: int) -> list[tuple]:
    """The coded samples: (kind, face, quality, the WebP route's features or None, blockiness).

    Aligned crops (the crop's grid, a 112-pixel window): uncoded, WebP, JPEG, blurred, enlarged by nearest
    neighbour. Whole photos (the face region at the photo's own grid, as scoring a photo reads it: windows of 48-112
    pixels, rarely square): rescaled by 0.5-1.6, then WebP-coded and detected again by fiqa's pipeline.
    """
    rng = np.random.default_rng(random_state)
    pipeline = FacePipeline()
    out = []
    for face, (photo, crop) in enumerate(faces):
        coded = [("uncoded", 100, crop)]
        coded += [("webp", int(q), _pillow(crop, "WEBP", int(q))) for q in rng.integers(1, 96, variants)]
        coded += [("jpeg", int(q), _pillow(crop, "JPEG", int(q))) for q in rng.integers(2, 99, variants)]
        coded += [("blur", 100, cv2.GaussianBlur(crop, (0, 0), float(sigma)))
                  for sigma in rng.uniform(0.5, 3.5, variants // 2)]
        for gain, contrast in zip(rng.uniform(0.25, 1.0, variants // 2), rng.uniform(0.3, 1.0, variants // 2)):
            mean = float(crop.mean())  # darker and flatter: fewer, smaller steps, so a chance grid reads stronger
            coded.append(("dim", 100, np.clip(np.rint(gain * (mean + contrast * (crop - mean))), 0, 255)
                          .astype(np.uint8)))
        factor = int(rng.integers(2, 5))
        small = cv2.resize(crop, (112 // factor, 112 // factor), interpolation=cv2.INTER_AREA)
        coded.append(("nearest enlargement", 100, cv2.resize(small, (112, 112), interpolation=cv2.INTER_NEAREST)))
        for kind, quality, image in coded:
            y = luminance(image)
            out.append((kind, face, quality, route_features(y), blockiness(y)))
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        for quality, scale in zip(rng.integers(1, 96, variants // 2), rng.uniform(0.5, 1.6, variants // 2)):
            scaled = cv2.resize(image, None, fx=float(scale), fy=float(scale),
                                interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            found = pipeline.process(_pillow(scaled, "WEBP", int(quality)), views=True)
            if found.ok and found.region is not None:
                out.append(("webp photo", face, int(quality), route_features(found.region, found.region_origin),
                            blockiness(found.region, found.region_origin)))
    return out


def _grouped_cv(fit, x: np.ndarray, target: np.ndarray, group: np.ndarray) -> np.ndarray:
    predicted = np.empty(len(target))
    for train, test in GroupKFold(5).split(x, target, group):
        predicted[test] = fit(x[train], target[train]).predict(x[test])
    return predicted


def _figures(target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {"spearman_rho": round(float(spearmanr(target, predicted).statistic), 4),
            "median_abs_error": round(float(np.median(np.abs(target - predicted))), 2)}


def fit(faces: list[tuple[Path, np.ndarray]], variants: int, random_state: int) -> tuple[dict, dict]:
    """The model's parts and the fit's figures, from (photo, aligned crop) pairs."""
    data = samples(faces, variants, random_state)
    routed_fraction = {k: round(float(np.mean([s[3] is not None for s in data if s[0] == k])), 4)
                       for k in sorted({s[0] for s in data})}
    routed = [s for s in data if s[3] is not None]  # every kind the WebP route takes, at its quality (uncoded: 100)
    kind = np.array([s[0] for s in routed])
    group = np.array([s[1] for s in routed])
    target = np.array([s[2] for s in routed], dtype=np.float64)
    x = np.stack([s[3] for s in routed])
    def boosted(a: np.ndarray, b: np.ndarray) -> HistGradientBoostingRegressor:
        return HistGradientBoostingRegressor(max_iter=TREES, max_leaf_nodes=LEAVES, random_state=random_state).fit(a, b)

    cv = np.clip(_grouped_cv(boosted, x, target, group), 0.0, 100.0)
    webp = {"probes": list(PROBES), "n_features": N_FEATURES, **export_trees(boosted(x, target), x)}
    data = [s for s in data if s[0] in ("uncoded", "jpeg") and s[3] is None]  # the JPEG route's own samples
    jgroup = np.array([s[1] for s in data])
    jtarget = np.array([s[2] for s in data], dtype=np.float64)
    contrast = np.array([s[4] for s in data], dtype=np.float64)
    keep = np.isfinite(contrast)

    def isotonic(a: np.ndarray, b: np.ndarray) -> IsotonicRegression:  # a: one column, shape (n, 1)
        return IsotonicRegression(increasing=False, out_of_bounds="clip").fit(a, b)

    jcv = _grouped_cv(isotonic, contrast[keep, None], jtarget[keep], jgroup[keep])
    iso = isotonic(contrast[keep, None], jtarget[keep])
    # the fit is a staircase: one knot per step, at the middle of its contrasts, interpolated linearly between
    # steps, so the map is strictly decreasing and keeps blockiness's order (a staircase would tie whole steps)
    knots, levels = iso.X_thresholds_, iso.y_thresholds_
    steps = np.unique(levels)[::-1]
    jpeg = {"contrast": [float((knots[levels == q].min() + knots[levels == q].max()) / 2) for q in steps],
            "quality": [float(q) for q in steps]}
    webp_rows, photo_rows = kind == "webp", kind == "webp photo"
    figures = {
        "webp_route": {"n_samples": int(len(target)), "n_faces": int(len(np.unique(group))),
                       "n_by_kind": {k: int((kind == k).sum()) for k in np.unique(kind)},
                       "webp": _figures(target[webp_rows], cv[webp_rows]),
                       "webp_photo": _figures(target[photo_rows], cv[photo_rows]),
                       **{f"{k}_routed_reading_below_45": round(float(np.mean(cv[kind == k] < 45)), 4)
                          for k in ("blur", "dim", "uncoded")}},
        "jpeg_route": {"n_samples": int(keep.sum()), **_figures(jtarget[keep], jcv)},
        "routed_fraction": routed_fraction,
    }
    return {"webp": webp, "jpeg": jpeg}, figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--faces", type=int, default=300)
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cv2.setNumThreads(1)
    pipeline = FacePipeline()
    found = [(photo, pipeline.process(photo)) for photo in held_apart_photos(args.lfw, args.faces, args.random_state,
                                                                            part="train")]
    faces = [(photo, face.crop) for photo, face in found if face.ok]
    parts, figures = fit(faces, args.variants, args.random_state)
    card = {
        "what": "the estimate of a block codec's quality setting behind compression_artifacts "
                "(fiqa.components.compression)",
        "command": f"python -m studies.components.train_compression --faces {args.faces} --variants {args.variants} "
                   f"--random-state {args.random_state}",
        "data": f"LFW-dev, one photo of each of {len(faces)} training identities (split_identities("
                f"test_fraction=0.5, random_state={args.random_state}), part 'train'), aligned by fiqa's pipeline; "
                f"the crops coded with Pillow's WebP (quality 1-95) and JPEG (2-98) encoders, {args.variants} seeded "
                f"qualities each, blurred and dimmed ({args.variants // 2} each) and enlarged by nearest neighbour "
                f"(one); the "
                f"photos rescaled by 0.5-1.6 and WebP-coded ({args.variants // 2}), then detected again; no fiqa "
                f"degradation code",
        "validation": figures,
        "versions": {**versions(), "pillow_libwebp": str(features.version("webp"))},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**parts, "card": card}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    load_compression_model(args.out)  # the file reads back
    logger.info("wrote %s: %s", args.out, json.dumps(figures))


if __name__ == "__main__":
    sys.exit(main())
