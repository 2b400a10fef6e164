"""Validity of the quality components on LFW-dev faces of held-apart identities (issue 23's must-show).

1. Controlled validity: each capture/occlusion component against degradations that no component was designed,
   trained or tuned on: the project's held-out evaluation effects (``fiqa.augment.degrade.EVALUATION_DEGRADATIONS``)
   and four effects written here in linear light after the components were fixed (under/over-exposure by a camera
   gain in stops, light falling from one side, haze). Spearman's rho of every component with every factor's
   severity (11 levels, pooled over faces), and each component's rho with its own factor.
2. Geometry against exact transforms of the photos: rotations (roll), mirroring (yaw sign), rescaling (inter-eye
   distance), a crop through the head on the right (crop margins), a second face beside the first.
3. Pose on landmark-warped synthetic turns: the photo warped so its five landmarks move as the 3-D face model
   turned by a known yaw or pitch would move them (a smooth thin-plate field through the landmarks, the photo's
   border fixed), then detected again: monotonicity and mirror consistency. This checks the estimator's response,
   not its accuracy on real turned heads (no pose ground truth here).

    .venv/bin/python -m studies.components.validate_components --faces 150 --photos 80 --random-state 0
    .venv/bin/python -m studies.components.validate_components --faces 150 --photos 80 --random-state 0 \
        --sections 23 --refinement-passes 1 --out studies/results/components_validity_one_pass.md

The second: sections 2 and 3 with one landmark refinement pass (``compute_components(..., refinement_passes=1)``;
the default is two). ``--part train`` reads training identities, for choosing settings.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.stats import spearmanr
from studies.report_file import write_report

from fiqa.augment.degrade import EVALUATION_DEGRADATIONS, degrade
from fiqa.components import COMPONENTS, compute_components
from fiqa.components.capture import MOTION_THRESHOLD_DB, capture_values, luminance
from fiqa.components.compression import route_features
from fiqa.components.geometry import DEFAULT_REFINEMENT_PASSES, FACE_MODEL_MM, REFINEMENT_PASSES, fit_pose
from fiqa.core.identities import split_identities
from fiqa.detect.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[2]
SEVERITIES = np.linspace(0.0, 1.0, 11)


# ---- held-out effects written for this study (linear light; never used to design a component) ----
def _to_linear(crop: np.ndarray) -> np.ndarray:
    v = crop.astype(np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _to_srgb(linear: np.ndarray) -> np.ndarray:
    v = np.clip(linear, 0.0, 1.0)
    out = np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def underexposure(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _to_srgb(_to_linear(crop) * 2.0 ** (-5.0 * s))          # 0 to -5 stops


def overexposure(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _to_srgb(_to_linear(crop) * 2.0 ** (3.0 * s))           # 0 to +3 stops, clipped


def side_light(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    ramp = np.linspace(1.0 - 0.95 * s, 1.0, crop.shape[1])         # one side down to 5 % of the light
    ramp = ramp if rng.random() < 0.5 else ramp[::-1]
    return _to_srgb(_to_linear(crop) * ramp[None, :, None])


def haze(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _to_srgb((1.0 - 0.85 * s) * _to_linear(crop) + 0.85 * s * 0.45)  # veiling light


NEW_EFFECTS = {"underexposure": underexposure, "overexposure": overexposure, "side_light": side_light,
               "haze": haze}


def _accessory_kind(seed: int) -> str:
    """Which accessory ``degrade(..., "accessory", random_state=seed)`` paints (its first draw)."""
    return "sunglasses" if np.random.default_rng(seed).random() < 0.5 else "mask"


OWN = {  # factor -> (component, expected sign of rho)
    "motion_blur": ("sharpness", +1), "low_resolution": ("sharpness", +1), "webp": ("compression_artifacts", -1),
    "dark_sensor": ("noise", +1), "sunglasses": ("eyes_visible", -1), "mask": ("mouth_occlusion", +1),
    "underexposure": ("under_exposure", +1), "overexposure": ("over_exposure", +1),
    "side_light": ("illumination_uniformity", +1), "haze": ("dynamic_range", -1),
}
EXTRA_OWN = {"motion_blur": [("motion_blur", +1)], "sunglasses": [("face_occlusion", +1)],
             "mask": [("face_occlusion", +1)], "underexposure": [("luminance_mean", -1)]}
CROP_COMPONENTS = [n for n, c in COMPONENTS.items() if c.group == "capture"] + \
    ["eyes_visible", "mouth_occlusion", "face_occlusion"]


def _webp_quality(severity: float) -> str:
    """The quality the held-out ``webp`` effect codes at (``EVALUATION_DEGRADATIONS["webp"]``: 60 - 58 s), for
    tables; "none" at severity 0, where the effect is not applied."""
    return "none" if severity == 0 else str(int(round(60 - 58 * severity)))


def held_apart_photos(lfw: Path, n: int, random_state: int, part: str = "test") -> list[Path]:
    names = np.array(sorted(p.name for p in lfw.iterdir() if p.is_dir()))
    test = split_identities(names, test_fraction=0.5, random_state=random_state).identities(part)
    rng = np.random.default_rng(random_state)
    return [sorted((lfw / name).glob("*.jpg"))[0] for name in rng.permutation(test)[:n]]


def held_apart_crops(lfw: Path, n: int, random_state: int, part: str = "test") -> tuple[list[Path], np.ndarray]:
    """:func:`held_apart_photos` and the aligned crops of those in which fiqa's pipeline finds a face."""
    photos = held_apart_photos(lfw, n, random_state, part)
    pipeline = FacePipeline()
    return photos, np.stack([f.crop for f in (pipeline.process(p) for p in photos) if f.ok])


def degraded_table(crops: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """factor -> (severity per row, face index per row, raw components (rows, K)) over every crop and severity."""
    out: dict[str, tuple[list, list, list]] = {}
    factors = [k for k in EVALUATION_DEGRADATIONS if k != "accessory"] + ["accessory", *NEW_EFFECTS]
    for factor in factors:
        for s in SEVERITIES:
            batch, kinds = [], []
            for i, crop in enumerate(crops):
                seed = 1000 + i
                if factor in NEW_EFFECTS:
                    batch.append(crop if s == 0 else NEW_EFFECTS[factor](crop, s, np.random.default_rng(seed)))
                    kinds.append(factor)
                else:
                    batch.append(degrade(crop, factor, float(s), random_state=seed))
                    kinds.append(_accessory_kind(seed) if factor == "accessory" else factor)
            raw = compute_components(np.stack(batch)).raw
            for kind in sorted(set(kinds), key=kinds.index):  # first drawn first: the same order in every run
                rows = [j for j, k in enumerate(kinds) if k == kind]
                sev, face, values = out.setdefault(kind, ([], [], []))
                sev.extend([s] * len(rows))
                face.extend(rows)
                values.append(raw[rows])
    return {k: (np.array(sev), np.array(face), np.concatenate(values)) for k, (sev, face, values) in out.items()}


def _per_face_rho(severity: np.ndarray, face: np.ndarray, values: np.ndarray) -> float:
    """Median over faces of Spearman's rho between severity and the value (one face's own sequence)."""
    rhos = []
    for index in np.unique(face):
        rows = face == index
        ok = rows & ~np.isnan(values)
        if ok.sum() > 2 and np.ptp(values[ok]) > 0:
            rhos.append(spearmanr(severity[ok], values[ok]).statistic)
    return float(np.median(rhos)) if rhos else math.nan


OFF_DIAGONAL_NOTES = """Off-diagonal cells above 0.3, and why:

- `noise` falls with every effect that removes fine variation or light: motion blur, low resolution, WebP, haze,
  under-exposure and the flat accessories (the same pixels carry less noise; the direction is "less noise", never a
  false alarm).
- Light: darkening lowers `luminance_mean` and `dynamic_range` and raises `under_exposure` (`dark_sensor` at severity
  above 0.83 is under-exposed too: it re-brightens only up to 4x); brightening does the opposite and clips
  (`over_exposure`); haze adds veiling light (brighter, less range, smaller light differences across the face);
  `side_light` takes light away (`luminance_mean` falls). Each is what the component measures.
- The light components leave out what the occlusion model marks covered, so the accessories do not move them
  (before that, the sunglasses band read as under-exposed pixels and uneven light, the mask as brighter light).
- The occlusion model is trained with light and exposure effects of its own (gain, veil, gamma, contrast, colour
  casts; not these) labelled "not occluded", so over-exposure and haze no longer read as a cover (before: eyes /
  mouth / face -0.60 / +0.41 / +0.57 and -0.44 / +0.25 / +0.43; `studies/components/occlusion_synth.py`). Its
  gain clipped at 255 and its veil toward a light level are of the same family as these two factors (written apart,
  in sRGB rather than linear light), so these rows show a fix within the family; the Pillow brightness of
  `components_audit.md`, another implementation, is the independent check.
- `sharpness` reads the face's own edges only: the outline of what the occlusion model marks covered and of
  clipped-white areas is left out with a 6-pixel margin (a lens blurs neither the rim of sunglasses nor the line
  where an over-exposed cheek saturates). Before, the blur index read those hard edges as sharp (sunglasses -0.33,
  over-exposure -0.38).
"""


def _band_power(crop: np.ndarray, band: tuple[float, float] = (0.3, 0.4)) -> float:
    """log10 of the mean power of the face's luminance in a band of spatial frequencies (cycles per pixel), under a
    soft face-ellipse window: how much fine detail the crop holds."""
    from fiqa.components.capture import face_mask

    window = cv2.GaussianBlur(face_mask().astype(np.float64), (0, 0), 4.0)
    y = luminance(crop).astype(np.float64)
    y = (y - (y * window).sum() / window.sum()) * window
    f = np.fft.fftfreq(y.shape[0])
    radius = np.hypot(f[:, None], f[None, :])
    power = np.abs(np.fft.fft2(y)) ** 2
    return float(np.log10(power[(radius >= band[0]) & (radius < band[1])].mean()))


def shortfall_notes(crops: np.ndarray, table: dict) -> list[str]:
    """What the own factors that miss the bar do to the faces, measured here (not assumed)."""
    names = list(COMPONENTS)
    levels = SEVERITIES[::2]  # the table's own severity values: rows are picked by equality, not closeness
    lines = ["Own factors below the bar, and what the effect does to these faces (medians over the faces):", ""]
    detail = [np.median([_band_power(c if s == 0 else degrade(c, "low_resolution", s, random_state=1000 + i))
                         - _band_power(c) for i, c in enumerate(crops)]) for s in levels]
    lines.append("- `low_resolution` -> `sharpness`: fine detail (log10 power at 0.3-0.4 cycles per pixel, against the "
                 "undegraded crop) at severities " + ", ".join(f"{s:.1f}" for s in levels) + ": "
                 + ", ".join(f"{d:+.2f}" for d in detail) + ". LFW-dev's crops hold little detail at these "
                 "frequencies to begin with, so the lower half of the severity range removes none (nearest sampling "
                 "even adds aliased energy); no measure of the detail present can order those severities, and faces "
                 "differ in detail before any degradation. The per-face rho shows the order within a face.")
    severity, _, raw = table["side_light"]
    values = raw[:, names.index("illumination_uniformity")]
    natural = values[severity == 0]
    flat = np.clip(160 + np.random.default_rng(0).normal(0, 3, (112, 112, 1)), 0, 255).astype(np.uint8).repeat(3, 2)
    # the light statistic alone (capture_values): the occlusion model takes this drawn face's shaded side for a cover
    base = capture_values(flat)["illumination_uniformity"]
    added = [capture_values(side_light(flat, s, np.random.default_rng(0)))["illumination_uniformity"] - base
             for s in (0.5, 1.0)]
    lines.append(f"- `side_light` -> `illumination_uniformity`: on an evenly lit grey face (grey 160, a little "
                 f"texture) the effect adds "
                 f"{added[0]:.2f} stops at severity 0.5 and {added[1]:.2f} at 1 (it dims the crop's whole width, "
                 f"the face ellipse spans the middle half); these faces before it read {np.median(natural):.2f} "
                 f"stops (quartiles {np.percentile(natural, 25):.2f}-{np.percentile(natural, 75):.2f}): LFW-dev's "
                 "own uneven light is as large as what the effect adds, so faces, not severities, set the pooled "
                 "order. The per-face rho shows the order within a face.")
    column = names.index("motion_blur")
    smear = {factor: (table[factor][0], table[factor][2][:, column]) for factor in ("motion_blur", "low_resolution")}
    median = [float(np.nanmedian(smear["motion_blur"][1][smear["motion_blur"][0] == s])) for s in levels]
    fired = {factor: [100 * float(np.mean(values[severity == s] > MOTION_THRESHOLD_DB)) for s in levels]
             for factor, (severity, values) in smear.items()}
    lines.append("- `motion_blur` -> `motion_blur`: a detector of a smear along one direction (it tells `hold_still` "
                 "from a blur in every direction), not a grade of its length. At severities "
                 + ", ".join(f"{s:.1f}" for s in levels) + " (smears of " + ", ".join(
                     f"{1 + 14 * s:.1f}" for s in levels) + " pixels) it reads " + ", ".join(
                     f"{m:.1f}" for m in median) + " dB (medians), and the share of faces above its threshold ("
                 f"{MOTION_THRESHOLD_DB:g} dB: `hold_still`) is " + ", ".join(f"{f:.0f} %" for f in
                                                                             fired["motion_blur"])
                 + "; for `low_resolution`, a blur in every direction, " + ", ".join(
                     f"{f:.0f} %" for f in fired["low_resolution"]) + ". It fires from the first smears on and then "
                 "stays: once a smear's transfer-function zeros fall in the band, a longer smear adds zeros rather "
                 "than depth to a direction's mean log power, so the value plateaus and its rank correlation with "
                 "the length is low. Grading the blur's size is `sharpness`'s part (its rho above); this "
                 "component's part is the direction, the `hold_still` advice.")
    severity, _, raw = table["webp"]
    values = raw[:, names.index("compression_artifacts")]
    grid = [float(np.nanmedian(values[severity == s])) for s in levels]
    routed = [float(np.mean([route_features(luminance(degrade(c, "webp", s, random_state=1000 + i))) is not None
                             for i, c in enumerate(crops)])) for s in levels]
    lines.append("- `webp` -> `compression_artifacts`: the estimated quality setting at severities "
                 + ", ".join(f"{s:.1f}" for s in levels) + " (WebP quality " + ", ".join(
                     _webp_quality(s) for s in levels) + "): "
                 + ", ".join(f"{g:.1f}" for g in grid)
                 + "; the 4-pixel grid that sends a face to the WebP route is seen on " + ", ".join(
                     f"{100 * r:.0f} %" for r in routed) + " of the faces. VP8's in-loop filter grows with the "
                 "quantiser and smooths that grid away at the strongest compression: a face whose grid is gone is "
                 "read by the JPEG route, which sees no JPEG grid either and reads a high quality "
                 "(`fiqa.components.compression`). Re-coding every face (about 2.5 ms each) would leave the cost "
                 "bar; at the chosen grid thresholds a quarter of uncoded crops take the re-coding already (the "
                 "first figure above), and lower thresholds send more.")
    return [*lines, ""]


def validity_section(crops: np.ndarray) -> list[str]:
    table = degraded_table(crops)
    names = list(COMPONENTS)
    lines = ["## 1. Controlled validity (held-out degradations, Spearman's rho of raw value vs severity)", "",
             f"{len(crops)} faces x {len(SEVERITIES)} severities per factor (severity 0 "
             "included), pooled. Own factor in **bold**; an off-diagonal |rho| > 0.3 in *italics* (justified below).",
             "", "| factor | " + " | ".join(CROP_COMPONENTS) + " |", "|---|" + "---:|" * len(CROP_COMPONENTS)]
    own_rows = []
    for factor, (severity, face, raw) in table.items():
        cells = []
        own = {OWN[factor][0], *(c for c, _ in EXTRA_OWN.get(factor, []))} if factor in OWN else set()
        for name in CROP_COMPONENTS:
            values = raw[:, names.index(name)]
            ok = np.isfinite(values) | np.isinf(values)
            rho = spearmanr(severity[ok], values[ok]).statistic if ok.sum() > 2 else math.nan
            text = f"{rho:+.2f}" if np.isfinite(rho) else "n/a"
            cells.append(f"**{text}**" if name in own else f"*{text}*" if abs(rho) > 0.3 else text)
            if name in own:
                sign = dict([OWN[factor], *EXTRA_OWN.get(factor, [])])[name]
                own_rows.append((factor, name, sign, rho, _per_face_rho(severity, face, values)))
        lines.append(f"| {factor} | " + " | ".join(cells) + " |")
    lines += ["", "Own factor (bar: rho >= 0.8 in the expected direction). Pooled: over every face and severity, so "
              "faces that differ before any degradation (uneven light, dark skin, glasses) count against the factor; "
              "per face: the median over faces of each face's own rho across the 11 severities.", "",
              "| factor | component | expected | pooled rho | bar met (pooled) | per-face median rho |",
              "|---|---|---|---:|---|---:|"]
    for factor, name, sign, rho, per_face in own_rows:
        lines.append(f"| {factor} | {name} | {'rises' if sign > 0 else 'falls'} | {rho:+.3f} | "
                     f"{'yes' if sign * rho >= 0.8 else 'NO'} | {per_face:+.3f} |")
    lines += ["", OFF_DIAGONAL_NOTES, *shortfall_notes(crops, table)]
    return lines


# ---- geometry ----
def _detect(pipeline: FacePipeline, image: np.ndarray, passes: int = DEFAULT_REFINEMENT_PASSES):
    face = pipeline.process(image, views=True)
    if not face.ok:
        return None
    return face, compute_components(face.crop[None], [face], refinement_passes=passes)


def _raw(result, name: str) -> float:
    return float(result[1].column(name, raw=True)[0])


def _rotate(image: np.ndarray, angle: float) -> np.ndarray:
    h, w = image.shape[:2]
    pad = int(0.3 * max(h, w))
    big = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    centre = (big.shape[1] / 2, big.shape[0] / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)  # angle > 0: counter-clockwise on the screen
    return cv2.warpAffine(big, matrix, (big.shape[1], big.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT)


def geometry_section(photos: list[Path], others: list[Path], passes: int = DEFAULT_REFINEMENT_PASSES) -> list[str]:
    pipeline = FacePipeline()
    roll_errors, mirror_errors, scale_errors, roll_turned = [], [], [], []
    by_factor: dict[float, list[float]] = {}
    crop_cases = {"crop_right": 0, "crop_left": 0, "margin_above": 0, "margin_below": 0, "n": 0}
    second = []
    frontal = 0
    for index, path in enumerate(photos):
        image = cv2.imread(str(path))
        base = _detect(pipeline, image, passes)
        if base is None:
            continue
        if abs(_raw(base, "head_pose_yaw")) > 15:  # turned faces: roll only (their symmetry is weaker)
            turned_base = _raw(base, "head_pose_roll")
            for angle in (-40, -20, 20, 40):
                turned = _detect(pipeline, _rotate(image, angle), passes)
                if turned is not None:
                    roll_turned.append((_raw(turned, "head_pose_roll") - turned_base) - (-angle))
            continue  # the other transforms: near-frontal photos, what a capture gate sees
        frontal += 1
        base_roll = _raw(_detect(pipeline, _rotate(image, 0.0), passes) or base, "head_pose_roll")
        for angle in (-40, -30, -20, -10, 10, 20, 30, 40):
            turned = _detect(pipeline, _rotate(image, angle), passes)
            if turned is not None:  # a clockwise turn on the screen is a positive roll
                roll_errors.append((_raw(turned, "head_pose_roll") - base_roll) - (-angle))
        mirrored = _detect(pipeline, cv2.flip(image, 1), passes)
        if mirrored is not None:
            mirror_errors.append(_raw(mirrored, "head_pose_yaw") + _raw(base, "head_pose_yaw"))
        for factor in (0.5, 0.75, 1.5, 2.0):
            size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
            scaled = _detect(pipeline, cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1
                                                  else cv2.INTER_CUBIC), passes)
            if scaled is not None:
                ratio = _raw(scaled, "inter_eye_distance") / _raw(base, "inter_eye_distance")
                scale_errors.append(ratio / (size[0] / image.shape[1]) - 1.0)
                by_factor.setdefault(factor, []).append(abs(scale_errors[-1]))
        landmarks = base[0].landmarks
        cut = int(round(landmarks[1, 0] + 0.35 * _raw(base, "inter_eye_distance")))
        cropped = _detect(pipeline, np.ascontiguousarray(image[:, :cut]), passes)
        if cropped is not None and all(_raw(base, m) >= 0 for m in ("crop_left", "crop_right", "margin_above",
                                                                     "margin_below")):
            crop_cases["n"] += 1
            for margin in ("crop_right", "crop_left", "margin_above", "margin_below"):
                crop_cases[margin] += _raw(cropped, margin) < 0
        other = cv2.imread(str(others[index % len(others)]))
        other = cv2.resize(other, (image.shape[1], image.shape[0]))
        pair = _detect(pipeline, np.hstack([image, other]), passes)
        if pair is not None:
            second.append(_raw(pair, "single_face_present"))
    roll, mirror, scale, turned_roll = (np.abs(np.array(v)) for v in (roll_errors, mirror_errors, scale_errors,
                                                                      roll_turned))
    second_arr = np.array(second)
    n = crop_cases["n"]
    return [
        "## 2. Geometry against exact transforms (full pipeline: YuNet detection on the transformed photo)", "",
        f"{frontal} near-frontal photos (|yaw| <= 15 degrees as estimated on the original).", "",
        "| transform | bar | cases | median error | 95th pct | max | within bar |",
        "|---|---|---:|---:|---:|---:|---:|",
        f"| rotation by -40..40 degrees (roll change vs angle) | 1 degree | {len(roll)} | {np.median(roll):.2f} | "
        f"{np.percentile(roll, 95):.2f} | {roll.max():.2f} | {np.mean(roll <= 1.0):.1%} |",
        f"| the same, photos with \\|yaw\\| > 15 degrees (turns of -40, -20, 20, 40) | 1 degree | {len(turned_roll)} | "
        f"{np.median(turned_roll):.2f} | {np.percentile(turned_roll, 95):.2f} | {turned_roll.max():.2f} | "
        f"{np.mean(turned_roll <= 1.0):.1%} |",
        f"| mirror (yaw + mirrored yaw) | 2 degrees | {len(mirror)} | {np.median(mirror):.2f} | "
        f"{np.percentile(mirror, 95):.2f} | {mirror.max():.2f} | {np.mean(mirror <= 2.0):.1%} |",
        f"| rescale x0.5, 0.75, 1.5, 2 (inter-eye distance ratio vs factor) | 3 % | {len(scale)} | "
        f"{np.median(scale):.2%} | {np.percentile(scale, 95):.2%} | {scale.max():.2%} | {np.mean(scale <= 0.03):.1%} |",
        *(f"| rescale x{factor:g} only | 3 % | {len(errors)} | {np.median(errors):.2%} | "
          f"{np.percentile(errors, 95):.2%} | {max(errors):.2%} | {np.mean(np.array(errors) <= 0.03):.1%} |"
          for factor, errors in sorted(by_factor.items())),
        "",
        f"Crop through the head on the right ({n} photos whose four margins were >= 0 before): crop_right < 0 in "
        f"{crop_cases['crop_right']}/{n}; crop_left < 0 in {crop_cases['crop_left']}/{n}, margin_above < 0 in "
        f"{crop_cases['margin_above']}/{n}, margin_below < 0 in {crop_cases['margin_below']}/{n}.", "",
        f"A second person's photo beside the first ({len(second_arr)} pairs): single_face_present raw median "
        f"{np.median(second_arr):.2f}; above the enrolment profile's 0.5 (advice several_faces) in "
        f"{np.mean(second_arr > 0.5):.1%}.", ""]


# ---- pose on landmark-warped turns ----
def _rotation(yaw: float, pitch: float) -> np.ndarray:
    y, p = math.radians(yaw), math.radians(pitch)
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return ry @ rx


def _warp_to(image: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Warp ``image`` so the points ``source`` land on ``target`` (a thin-plate field, the border fixed)."""
    h, w = image.shape[:2]
    border = np.array([[x, y] for x in np.linspace(0, w - 1, 5) for y in (0, h - 1)]
                      + [[x, y] for y in np.linspace(0, h - 1, 5)[1:-1] for x in (0, w - 1)], dtype=np.float64)
    anchors_out = np.vstack([target, border])
    anchors_in = np.vstack([source, border])
    field = RBFInterpolator(anchors_out, anchors_in - anchors_out, kernel="thin_plate_spline")
    grid = np.stack(np.meshgrid(np.arange(w), np.arange(h)), axis=-1).reshape(-1, 2).astype(np.float64)
    where = (grid + field(grid)).reshape(h, w, 2).astype(np.float32)
    return cv2.remap(image, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _moved(yaw: float, pitch: float) -> np.ndarray:
    """How the model's five points move in the image (mm, centred) when the face turns by ``yaw`` and ``pitch``."""
    model = FACE_MODEL_MM @ _rotation(yaw, pitch).T
    return (model[:, :2] - model[:, :2].mean(axis=0)) - (FACE_MODEL_MM[:, :2] - FACE_MODEL_MM[:, :2].mean(axis=0))


def pose_section(photos: list[Path], passes: int = DEFAULT_REFINEMENT_PASSES) -> list[str]:
    pipeline = FacePipeline()
    turns = (-30, -20, -10, 0, 10, 20, 30)
    monotone = {"yaw": [], "pitch": []}
    mirror_gap = []
    slopes = {"yaw": [], "pitch": []}
    used = 0
    for path in photos:
        image = cv2.imread(str(path))
        base = _detect(pipeline, image, passes)
        if base is None or abs(_raw(base, "head_pose_yaw")) > 8 or abs(_raw(base, "head_pose_roll")) > 8:
            continue
        used += 1
        landmarks = base[0].landmarks.astype(np.float64)
        scale = fit_pose(landmarks)[3]
        for axis in ("yaw", "pitch"):
            estimates, warped = [], {}
            for angle in turns:
                target = landmarks + _moved(angle if axis == "yaw" else 0.0, angle if axis == "pitch" else 0.0) * scale
                warped[angle] = _warp_to(image, landmarks, target) if angle else image
                result = _detect(pipeline, warped[angle], passes)
                estimates.append(_raw(result, f"head_pose_{axis}") if result is not None else math.nan)
            values = np.array(estimates)
            if np.all(np.isfinite(values)):
                monotone[axis].append(spearmanr(turns, values).statistic)
                slopes[axis].append(np.polyfit(turns, values - values[3], 1)[0])
                if axis == "yaw":  # the 20-degree turn, mirrored
                    mirrored = _detect(pipeline, cv2.flip(warped[20], 1), passes)
                    if mirrored is not None:
                        mirror_gap.append(_raw(mirrored, "head_pose_yaw") + values[turns.index(20)])
    lines = ["## 3. Pose on landmark-warped synthetic turns", "",
             f"{used} near-frontal photos (|yaw|, |roll| <= 8 degrees), each warped to yaw and to pitch "
             f"turns of {list(turns)} degrees, then detected again.", "",
             "| axis | photos | Spearman(turn, estimate) median | min | fraction = 1.0 | slope (estimate per degree) "
             "median |", "|---|---:|---:|---:|---:|---:|"]
    for axis in ("yaw", "pitch"):
        rho = np.array(monotone[axis])
        lines.append(f"| {axis} | {len(rho)} | {np.median(rho):.3f} | {rho.min():.3f} | {np.mean(rho >= 0.999):.1%} |"
                     f" {np.median(slopes[axis]):.2f} |")
    gap = np.abs(np.array(mirror_gap))
    lines += ["", "Mirror consistency of the warped 20-degree yaw turn: |yaw + mirrored yaw| median "
              f"{np.median(gap):.2f} degrees, max {gap.max():.2f} ({len(gap)} photos).", ""]
    return lines


# ---- compression on whole photos ----
def photo_compression_section(photos: list[Path]) -> list[str]:
    """``compression_artifacts`` as scoring a photo reads it: the whole photo coded by the held-out ``webp`` effect
    (OpenCV's WebP at quality 60 - 58 s), detected again, the face region read at the photo's own grid (section 1
    reads the crop's)."""
    pipeline = FacePipeline()
    levels = SEVERITIES[::2]
    rows = []  # (photo, severity, estimate)
    for index, photo in enumerate(photos):
        image = cv2.imread(str(photo), cv2.IMREAD_COLOR)
        for s in levels:  # the held-out effect itself, on the whole photo (severity 0: the photo unchanged)
            face = pipeline.process(degrade(image, "webp", s, random_state=index), views=True)
            if face.ok:
                rows.append((index, s, float(compute_components(face.crop[None], [face])
                                             .column("compression_artifacts", raw=True)[0])))
    if not rows:
        return ["## 1b. `compression_artifacts` on whole photos", "", "No face was found in any coded photo.", ""]
    table = np.array(rows)
    severity, values = table[:, 1], table[:, 2]
    pooled = spearmanr(severity, values, nan_policy="omit").statistic
    medians = [float(np.nanmedian(values[severity == s])) for s in levels]
    return ["## 1b. `compression_artifacts` on whole photos (as `fiqa score` reads a photo)", "",
            f"{len(photos)} photos (LFW-dev's own JPEGs) WebP-coded by OpenCV at the `webp` effect's "
            "qualities, detected again; the estimate is read on the face region at the photo's own pixel grid, "
            "where the windows are 48-112 pixels a side and rarely square (section 1 reads 112-pixel crops).", "",
            "| WebP quality | " + " | ".join(_webp_quality(s) for s in levels)
            + " |", "|---|" + "---:|" * len(levels),
            "| median estimate | " + " | ".join(f"{m:.1f}" for m in medians) + " |", "",
            f"Spearman's rho with the severity: pooled {pooled:+.3f}, "
            f"per face (median) {_per_face_rho(severity, table[:, 0], values):+.3f}. The uncoded photos are "
            "LFW-dev's own JPEGs, read at their own JPEG quality.", ""]


def _shown(path: Path) -> str:
    """``path`` as a command line in the report names it: relative to the repository where it lies inside."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--faces", type=int, default=150, help="held-apart photos for section 1")
    parser.add_argument("--photos", type=int, default=60, help="held-apart photos for sections 2 and 3")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--sections", default="1b23", help="which sections to run (default all: 1b23)")
    parser.add_argument("--part", choices=("test", "train"), default="test",
                        help="identities: the held-apart half (reported) or the training half (for choosing settings)")
    parser.add_argument("--refinement-passes", type=int, choices=REFINEMENT_PASSES, default=DEFAULT_REFINEMENT_PASSES,
                        help="the landmark refinement's passes for sections 2 and 3 (compute_components)")
    parser.add_argument("--out", type=Path, default=REPO / "studies" / "results" / "components_validity.md")
    args = parser.parse_args()
    started = time.time()
    photos, crops = held_apart_crops(args.lfw, args.faces, args.random_state, args.part)
    default_out = REPO / "studies" / "results" / "components_validity.md"
    lines = [f"# Quality components: validity on {'held-apart' if args.part == 'test' else 'training'} LFW-dev "
             "identities", "",
             f"Command: `.venv/bin/python -m studies.components.validate_components --faces {args.faces} --photos "
             f"{args.photos} --random-state {args.random_state}"
             + (f" --sections {args.sections}" if args.sections != "1b23" else "")
             + (f" --refinement-passes {args.refinement_passes}"
                if args.refinement_passes != DEFAULT_REFINEMENT_PASSES else "")
             + (f" --part {args.part}" if args.part != "test" else "")
             + (f" --out {_shown(args.out)}" if args.out.resolve() != default_out.resolve() else "")
             + f"` (identity split `split_identities(test_fraction=0.5, random_state={args.random_state})`, "
             f"{'test' if args.part == 'test' else 'training'} half only).", ""]
    if "1" in args.sections:
        lines += validity_section(crops)
    if "b" in args.sections:
        lines += photo_compression_section(photos[:args.photos])
    if "2" in args.sections:
        lines += geometry_section(photos[:args.photos], photos[args.photos:2 * args.photos],
                                  args.refinement_passes)
    if "3" in args.sections:
        lines += pose_section(photos[:args.photos], args.refinement_passes)
    lines += [f"Ran in {time.time() - started:.0f} s."]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
