"""A face shrunk many times into the crop and the view (a phone's selfie): bilinear alone against a block mean first.

    .venv/bin/python -m studies.study_high_resolution --photos 60 --random-state 0

LFW-dev's photos are 250 x 250 and their faces (all but one) are shrunk by less than 2 into the crop, where the two
resamplings give the same bytes. A phone's photo holds the face at 4-10 times the crop's size. Here each of
``--photos`` photos of held-apart identities (one per identity) is enlarged ``k`` times (Lanczos) and given sensor
grain (independent Gaussian noise of ``sigma`` grey levels per pixel and channel at the enlarged size), and cut into
the crop from the original photo's landmarks times ``k`` (so that only the resampling differs, not the detector), by:

- ``bilinear``: ``cv2.warpAffine`` alone (fiqa before this study);
- ``shipped``: :func:`fiqa.detect.align.warp_similarity` (the mean of whole ``f x f`` blocks first where the warp
  shrinks by more than 2).

Against the crop of the photo as it is, it reports the SFace embeddings' cosine, the ``noise`` component's change
and how often the enrolment profile's ``noisy`` advice fires.

Section 2, the face's upright view (:func:`fiqa.detect.pipeline.face_context`: 96 pixels, the eyes 24 apart, where
the landmarks are refined and the pose read): each enlarged photo is read by fiqa's own pipeline (detected again),
its view cut by the shipped resampling or by ``cv2.warpAffine`` alone from the same map, and the geometry
components compared with those of the photo as it is: roll and yaw in degrees, the inter-eye distance divided by
``k``. Writes ``studies/results/high_resolution.md``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from studies.components.validate_components import held_apart_photos
from studies.report_file import write_report

from fiqa.components import advise, compute_components, load_profile
from fiqa.detect.align import ARCFACE_TEMPLATE, estimate_similarity, warp_similarity
from fiqa.detect.pipeline import CONTEXT_SIDE, FaceCrop, FacePipeline
from fiqa.embed import create_embedder
from fiqa.io.image import read_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw-dev"
DEFAULT_OUT = REPO / "studies" / "results" / "high_resolution.md"
ENLARGEMENTS = (4, 8)
GRAINS = (0.0, 4.0, 12.0, 24.0)
VIEW_CASES = ((4, 0.0), (8, 0.0), (4, 24.0), (8, 12.0), (8, 24.0))
"""(k, grain sigma) of section 2."""


def _bilinear(image: np.ndarray, matrix: np.ndarray, side: int = 112) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def _enlarged(photo: np.ndarray, k: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``photo`` enlarged ``k`` times (Lanczos), with grain of ``sigma`` grey levels per pixel and channel."""
    photo = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_LANCZOS4)
    if sigma > 0:
        photo = np.clip(np.rint(photo + rng.normal(0.0, sigma, photo.shape)), 0, 255).astype(np.uint8)
    return photo


def _geometry(faces: list[FaceCrop]) -> dict[str, np.ndarray]:
    """Roll, yaw and inter-eye distance of each face (NaN where none was found)."""
    found = [face for face in faces if face.ok]
    ok = np.array([face.ok for face in faces])
    out = {name: np.full(len(faces), np.nan) for name in ("head_pose_roll", "head_pose_yaw", "inter_eye_distance")}
    if found:
        table = compute_components(np.stack([face.crop for face in found]), found)
        for name in out:
            out[name][ok] = table.column(name, raw=True)
    return out


def _view_rows(photos: list[np.ndarray], pipeline: FacePipeline, random_state: int) -> list[tuple[object, ...]]:
    """Section 2: per (k, grain, resampling), the median change and the share within issue 23's bars (roll 1
    degree, yaw 2 degrees, inter-eye distance 3 %) against the photo as it is, and the faces compared."""
    rng = np.random.default_rng([random_state, 2])
    base = _geometry([pipeline.process(photo, views=True) for photo in photos])
    rows: list[tuple[object, ...]] = []
    for k, sigma in VIEW_CASES:
        faces: dict[str, list[FaceCrop]] = {"bilinear": [], "shipped": []}
        for photo in photos:
            big = _enlarged(photo, k, sigma, rng)
            face = pipeline.process(big, views=True)
            faces["shipped"].append(face)
            if face.context_to_source is not None:  # the same view, cut by the bilinear warp alone
                view = _bilinear(big, cv2.invertAffineTransform(face.context_to_source), CONTEXT_SIDE)
                face = dataclasses.replace(face, context=view)
            faces["bilinear"].append(face)
        for name, made in faces.items():
            values = _geometry(made)
            roll = np.abs(values["head_pose_roll"] - base["head_pose_roll"])
            yaw = np.abs(values["head_pose_yaw"] - base["head_pose_yaw"])
            eyes = 100 * np.abs(values["inter_eye_distance"] / k / base["inter_eye_distance"] - 1)
            rows.append((k, sigma, name, int(np.isfinite(roll).sum()), np.nanmedian(roll), _within(roll, 1.0),
                         np.nanmedian(yaw), _within(yaw, 2.0), np.nanmedian(eyes), _within(eyes, 3.0)))
    return rows


def _within(changes: np.ndarray, bar: float) -> float:
    """Percentage of the measured (finite) changes below ``bar``."""
    measured = changes[np.isfinite(changes)]
    return 100.0 * float(np.mean(measured < bar)) if len(measured) else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    pipeline, embedder, profile = FacePipeline(), create_embedder(), load_profile()
    rng = np.random.default_rng(args.random_state)
    found = [(path, pipeline.process(path)) for path in held_apart_photos(args.lfw, args.photos, args.random_state)]
    found = [(path, face) for path, face in found if face.ok]
    base = np.stack([face.crop for _, face in found])
    base_vectors = embedder.embed(base)
    base_noise = compute_components(base).column("noise", raw=True)
    rows = []
    for k in ENLARGEMENTS:
        for sigma in GRAINS:
            crops: dict[str, list[np.ndarray]] = {"bilinear": [], "shipped": []}
            for path, face in found:
                photo = _enlarged(read_image(str(path)), k, sigma, rng)
                # the enlarged photo's pixel q shows the photo's pixel (q - (k - 1) / 2) / k
                matrix = estimate_similarity(face.landmarks * k + (k - 1) / 2.0, ARCFACE_TEMPLATE)
                crops["bilinear"].append(_bilinear(photo, matrix))
                crops["shipped"].append(warp_similarity(photo, matrix))
            for name, made in crops.items():
                stack = np.stack(made)
                vectors = embedder.embed(stack)
                cosine = np.sum(vectors * base_vectors, axis=1) / (
                    np.linalg.norm(vectors, axis=1) * np.linalg.norm(base_vectors, axis=1))
                table = compute_components(stack)
                noise = table.column("noise", raw=True) - base_noise
                noisy = np.mean(["noisy" in codes for codes in advise(table, profile)])
                rows.append((k, sigma, name, np.median(cosine), np.percentile(cosine, 5), np.median(noise),
                             100 * noisy))
    lines = ["# A face shrunk many times into the crop: bilinear alone against a block mean first", "",
             f"Command: `.venv/bin/python -m studies.study_high_resolution --photos {args.photos} --random-state "
             f"{args.random_state}`. {len(found)} photos of held-apart LFW-dev identities (one each), enlarged k "
             "times (Lanczos), grain of sigma grey levels per pixel at the enlarged size, cut from the original "
             "landmarks times k. Against the crop of the photo as it is (where `noisy` fires on "
             f"{100 * np.mean(['noisy' in c for c in advise(compute_components(base), profile)]):.0f} %).", "",
             "| k | grain sigma | resampling | SFace cosine, median | 5th percentile | `noise` change, median "
             "(grey levels) | `noisy` advice |", "|---:|---:|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {sigma:g} | {name} | {cos:.4f} | {low:.4f} | {noise:+.2f} | {noisy:.0f} % |"
              for k, sigma, name, cos, low, noise, noisy in rows]
    view_rows = _view_rows([read_image(str(path)) for path, _ in found], pipeline, args.random_state)
    lines += ["", "## 2. The upright view (pose and geometry)", "",
              "The same photos enlarged k times with grain (drawn anew), read by fiqa's pipeline (detected again), "
              "the face's 96-pixel view cut by the shipped resampling or by the bilinear warp alone from the same map; "
              "against the photo as it is: roll and yaw (degrees), the inter-eye distance divided by k; n: faces "
              "found on both.", "",
              "| k | grain sigma | view | n | roll change, median | within 1 degree | yaw change, median | within 2 "
              "degrees | eye distance change, median | within 3 % |",
              "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {k} | {sigma:g} | {name} | {n} | {roll:.2f} | {roll_in:.0f} % | {yaw:.2f} | {yaw_in:.0f} % | "
              f"{eyes:.2f} % | {eyes_in:.0f} % |"
              for k, sigma, name, n, roll, roll_in, yaw, yaw_in, eyes, eyes_in in view_rows]
    lines += ["", f"Ran in {time.perf_counter() - start:.0f} s."]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
