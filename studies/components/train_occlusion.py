"""Train the occlusion model of ``fiqa.components.occlusion`` and write its weights and card.

    python -m studies.components.train_occlusion --random-state 0

Writes ``src/fiqa/components/models/occlusion.npz`` and ``occlusion.json`` (``--out`` to write elsewhere). The same
seed on the same data recomputes the same weights file, byte for byte (single-threaded PyTorch, fixed zip entry
times, one thread); ``--check`` trains a second time into a temporary folder and compares the bytes. About 5 minutes
on the 2-core development machine (one thread; needs ~10 GB of memory at 12 samples per face), twice that with
``--check``.

1. Every LFW-dev photo is aligned with fiqa's own pipeline (cached under the temporary folder,
   ``studies/components/occlusion_data.py``); the person folders are split 50/50 into train and test identities
   (``fiqa.core.identities.split_identities``, ``--random-state``). Only train identities are trained on.
   A seeded 15 % of the train identities is kept out of the fit, to choose settings on
   (``validate_occlusion.py --part tuning``, training degradations only).
2. Each training face gives ``--variants`` synthetic samples (``studies/components/occlusion_synth.py``): generic
   occluders painted with exact coverage masks, plus capture nuisances labelled as not occluded (alignment jitter,
   shadows cast by a blind or foliage, the light and the camera's response: colour casts (a white balance off),
   side light, veiling glare or haze, exposure gains up to 4x with clipping, tone curves and contrast compression;
   and ``fiqa.augment.degrade.DEGRADATIONS`` only; no evaluation degradation is drawn).
3. ``fiqa.components.occlusion.cell_features`` describes each 8x8 cell; a small perceptron (two ReLU layers and a
   learned per-cell offset) is fitted to each cell's covered fraction with a cross-entropy loss (PyTorch, Adam).
4. The card records the data, the command, the parameters, the seed, the weights' SHA-256 and a validation on
   synthetic occluders over test identities (``studies/components/validate_occlusion.py`` adds the held-out
   degradation table).
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np
from studies.components.occlusion_data import DEFAULT_LFW, ROOT, load_aligned, tuning_identities
from studies.components.occlusion_synth import synthesise

from fiqa.components.occlusion import (
    GRID,
    SUB,
    OcclusionModel,
    cell_features,
    load_occlusion_model,
    occlusion_values,
    region_masks,
)
from fiqa.core.identities import split_identities
from fiqa.core.provenance import file_sha256, versions

logger = logging.getLogger(__name__)

DEFAULT_OUT = ROOT / "src" / "fiqa" / "components" / "models"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def synthetic_set(crops: np.ndarray, variants: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """``variants`` synthetic samples of each crop: images (N, 112, 112, 3) uint8 and coverage (N, 112, 112)."""
    children = np.random.SeedSequence(random_state).spawn(len(crops))
    images = np.empty((len(crops) * variants, 112, 112, 3), np.uint8)
    coverage = np.empty((len(crops) * variants, 112, 112), np.float32)
    for index, child in enumerate(children):
        rng = np.random.default_rng(child)
        for variant in range(variants):
            other = crops[int(rng.integers(len(crops)))]
            row = index * variants + variant
            images[row], coverage[row] = synthesise(crops[index], other, rng)
    return images, coverage


def cell_targets(coverage: np.ndarray) -> np.ndarray:
    """Covered fraction of each cell's quadrants: (N, 112, 112) -> (N, 196, 4) float32 (the order of
    ``OcclusionModel.coverage``)."""
    step = 112 // (GRID * SUB)
    fine = coverage.reshape(len(coverage), GRID, SUB, step, GRID, SUB, step).mean(axis=(3, 6))
    return fine.transpose(0, 1, 3, 2, 4).reshape(len(coverage), GRID * GRID, SUB * SUB).astype(np.float32)


def fit(features: np.ndarray, targets: np.ndarray, *, hidden: tuple[int, int], epochs: int, batch_size: int,
        learning_rate: float, weight_decay: float, random_state: int) -> dict[str, np.ndarray]:
    """Fit the cell perceptron; returns the arrays of :class:`fiqa.components.occlusion.OcclusionModel`."""
    import torch

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(random_state)
    n_images, n_cells, n_features = features.shape
    flat = features.reshape(-1, n_features)
    mean = flat.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = (flat.std(axis=0, dtype=np.float64) + 1e-3).astype(np.float32)
    inputs = torch.from_numpy((flat - mean) / scale)
    labels = torch.from_numpy(targets.reshape(-1, targets.shape[-1]).astype(np.float32))
    cells = torch.arange(n_cells).repeat(n_images)

    layer1 = torch.nn.Linear(n_features, hidden[0])
    position = torch.nn.Embedding(n_cells, hidden[0])
    torch.nn.init.zeros_(position.weight)
    layer2 = torch.nn.Linear(hidden[0], hidden[1])
    layer3 = torch.nn.Linear(hidden[1], targets.shape[-1])
    modules = torch.nn.ModuleList([layer1, position, layer2, layer3])
    optimiser = torch.optim.AdamW(modules.parameters(), lr=learning_rate, weight_decay=weight_decay)
    steps_per_epoch = (len(labels) + batch_size - 1) // batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate,
                                                   total_steps=epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(random_state)
    for epoch in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(labels), batch_size):
            batch = order[start:start + batch_size]
            hidden1 = torch.relu(layer1(inputs[batch]) + position(cells[batch]))
            logits = layer3(torch.relu(layer2(hidden1)))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(batch)
        logger.info("epoch %d/%d: cross-entropy %.4f", epoch + 1, epochs, total / len(labels))

    def array(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().numpy().astype(np.float32)

    return {"mean": mean, "scale": scale, "w1": array(layer1.weight.T), "position": array(position.weight),
            "b1": array(layer1.bias), "w2": array(layer2.weight.T), "b2": array(layer2.bias),
            "w3": array(layer3.weight.T), "b3": array(layer3.bias)}


def write_weights(arrays: dict[str, np.ndarray], path: Path) -> None:
    """An ``.npz`` (zip of ``.npy``) whose bytes depend on the arrays only (fixed entry times and order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in OcclusionModel.ARRAYS:
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())
    partial.replace(path)


def synthetic_validation(model: OcclusionModel, crops: np.ndarray, random_state: int) -> dict[str, object]:
    """Region errors on synthetic occluders (the training generator) over test-identity faces."""
    images, coverage = synthetic_set(crops, 1, random_state)
    values = occlusion_values(images, model=model)
    regions = region_masks()
    truth = {name: (coverage > 0.5).reshape(len(coverage), -1).astype(np.float64) @ (
        regions[key].ravel() / regions[key].sum()) for name, key in
        (("eyes_visible", "eyes"), ("mouth_occlusion", "mouth"), ("face_occlusion", "face"))}
    truth["eyes_visible"] = 1.0 - truth["eyes_visible"]
    clean = coverage.reshape(len(coverage), -1).max(axis=1) == 0
    out: dict[str, object] = {"n_images": len(images), "n_without_occluder": int(clean.sum())}
    for name, expected in truth.items():
        # a sample exposed or veiled until flat or clipped is not assessed (NaN): left out, and counted
        judged = np.isfinite(values[name])
        error = np.abs(values[name][judged] - expected[judged])
        out[name] = {"mean_absolute_error": float(np.mean(error)),
                     "median_absolute_error": float(np.median(error)),
                     "pearson_r": float(np.corrcoef(values[name][judged], expected[judged])[0, 1]),
                     "mean_on_faces_without_occluder": float(np.mean(values[name][judged & clean])),
                     "n_not_assessed": int((~judged).sum())}
    return out


def train(lfw: Path, out: Path, *, random_state: int, variants: int, hidden: tuple[int, int], epochs: int,
          batch_size: int, learning_rate: float, weight_decay: float, n_validation: int) -> Path:
    faces = load_aligned(lfw)
    split = split_identities(faces.all_identities, test_fraction=0.5, random_state=random_state)
    tuning = tuning_identities(split.train, random_state)
    fitted = split.mask(faces.identities, "train") & ~np.isin(faces.identities, tuning)
    train_crops = faces.crops[fitted]
    test_crops = faces.crops[split.mask(faces.identities, "test")]
    logger.info("%d training faces (%d identities; %d more identities kept for tuning), %d test faces",
                len(train_crops), len(split.train) - len(tuning), len(tuning), len(test_crops))
    images, coverage = synthetic_set(train_crops, variants, random_state)
    features = np.concatenate([cell_features(images[start:start + 512])[0] for start in range(0, len(images), 512)])
    targets = cell_targets(coverage)
    logger.info("%d synthetic images, %d cells, %d features; %.1f %% of cell area covered", len(images),
                targets.size, features.shape[-1], 100 * targets.mean())
    del images, coverage
    arrays = fit(features, targets, hidden=hidden, epochs=epochs, batch_size=batch_size,
                 learning_rate=learning_rate, weight_decay=weight_decay, random_state=random_state)
    weights = out / "occlusion.npz"
    write_weights(arrays, weights)
    model = OcclusionModel(**arrays)
    rng = np.random.default_rng(random_state)
    chosen = np.sort(rng.choice(len(test_crops), size=min(n_validation, len(test_crops)), replace=False))
    validation = synthetic_validation(model, test_crops[chosen], random_state + 1)
    card = {
        "name": "occlusion",
        "file": weights.name,
        "sha256": file_sha256(weights),
        "size_bytes": weights.stat().st_size,
        "model": ("per-cell occluder coverage on the aligned 112x112 crop: 14 x 14 cells of 8 x 8 pixels, "
                  f"{features.shape[-1]} features per cell (fiqa.components.occlusion.cell_features), a perceptron "
                  f"{features.shape[-1]} -> {hidden[0]} (+ per-cell offset) -> {hidden[1]} -> 4 (the cell's "
                  "4x4-pixel quadrants), sigmoid"),
        "training_data": {
            "dataset": "LFW-dev (Labeled Faces in the Wild, development photos; one folder per person)",
            "alignment": "fiqa.detect.pipeline.FacePipeline(FaceAligner()) onto the ArcFace 112x112 template",
            "n_photos_aligned": len(faces.crops), "n_photos_without_face": faces.n_no_face,
            "identity_split": split.describe(),
            "trained_on": f"{len(train_crops)} faces of the train identities, {variants} synthetic samples each",
            "tuning_identities": f"{len(tuning)} train identities kept out of the fit "
                                 "(studies/components/occlusion_data.py tuning_identities), to choose settings on "
                                 "with the training degradations",
            "occluders": "studies/components/occlusion_synth.py (generic shapes, colours, textures, photo patches)",
            "nuisances_labelled_not_occluded": "alignment jitter; on 15 % of the samples a shadow cast on the face "
                                               "and the occluders alike by a blind (slats 5-40 pixels apart, at any "
                                               "angle) or foliage, the light cut by 0.2-0.8 in it; "
                                               "on 60 % of the samples the light and the camera's "
                                               "response over the whole image, occluders included: colour casts "
                                               "(white balance off by up to exp(+-0.6) along blue-amber and "
                                               "exp(+-0.4) along green-magenta), "
                                               "side light, veiling glare or haze toward a light level (weight up "
                                               "to 0.75), exposure gains 0.35-4 clipped at 255, gamma 0.4-2.2, "
                                               "contrast x0.25-1.4; fiqa.augment.degrade.DEGRADATIONS blur, "
                                               "downsample, jpeg (60 % of the JPEG draws on a photo's grid of "
                                               "0.6-1.7 photo pixels per crop pixel, turned and shifted), noise, "
                                               "low_light; a Gaussian blur of 4-12 pixels on 8 % of the samples",
            "never_used": "fiqa.augment.degrade.EVALUATION_DEGRADATIONS (held out for validation)",
        },
        "command": f"python -m studies.components.train_occlusion --random-state {random_state}",
        "parameters": {"variants": variants, "hidden": list(hidden), "epochs": epochs, "batch_size": batch_size,
                       "learning_rate": learning_rate, "weight_decay": weight_decay, "loss": "binary cross-entropy "
                       "on each quadrant's covered fraction", "optimiser": "AdamW, one-cycle schedule",
                       "threads": 1, "occluded_pixel": "interpolated coverage > 0.5"},
        "random_state": random_state,
        "versions": versions(),
        "validation": {"synthetic_occluders_on_test_identities": validation},
    }
    previous = out / "occlusion.json"
    if previous.is_file():  # keep the held-out table of validate_occlusion.py when the weights did not change
        old = json.loads(previous.read_text(encoding="utf-8"))
        if old.get("sha256") == card["sha256"] and "held_out_degradations" in old.get("validation", {}):
            card["validation"]["held_out_degradations"] = old["validation"]["held_out_degradations"]  # type: ignore
    previous.write_text(json.dumps(card, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    load_occlusion_model(weights, previous)  # the written pair loads
    logger.info("wrote %s (%d bytes, sha256 %s)", weights, card["size_bytes"], card["sha256"])
    logger.info("synthetic validation: %s", json.dumps(validation, indent=1))
    return weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW-dev folder (one sub-folder per person)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for occlusion.npz and occlusion.json")
    parser.add_argument("--random-state", type=int, default=0, help="seed of the split, the samples and the fit")
    parser.add_argument("--variants", type=int, default=12, help="synthetic samples per training face")
    parser.add_argument("--hidden", type=int, nargs=2, default=(96, 48), help="widths of the two hidden layers")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--n-validation", type=int, default=1000, help="test faces for the synthetic validation")
    parser.add_argument("--check", action="store_true", help="train a second time into a temporary folder and "
                        "require byte-identical weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = {"random_state": args.random_state, "variants": args.variants, "hidden": tuple(args.hidden),
               "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
               "weight_decay": args.weight_decay, "n_validation": args.n_validation}
    weights = train(args.lfw, args.out, **options)  # type: ignore[arg-type]
    if args.check:
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            again = train(args.lfw, Path(folder), **options)  # type: ignore[arg-type]
            same = file_sha256(again) == file_sha256(weights)
        logger.info("reproducibility check: %s", "identical weights" if same else "DIFFERENT weights")
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
