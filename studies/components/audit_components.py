"""The quality components and their advice against capture effects written anew for this audit (Pillow and NumPy),
not by the project's degradation code: does each component follow its own factor, and does the advice name the
right reason and no other?

Each effect has an own component (the one that must follow it) and the advice code that should fire; the three
coloured lights and the dark spectacle frames are nuisances (no component measures them, and no advice should
fire). The audit reports Spearman's rho of the own component with the severity (pooled over faces, and the median
over faces of each face's own rho), every other capture/occlusion component with |rho| > 0.3, and, at four
severities, the share of faces given each advice code under the shipped enrolment profile (``move_closer`` is left
out: LFW-dev's faces are all small).

    .venv/bin/python -m studies.components.audit_components --part test

``--part train`` runs it on training identities (what the round's changes were checked on); the reported table is
the held-apart half (``--part test``).
"""
from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter
from scipy.stats import spearmanr
from studies.components.validate_components import SEVERITIES, _per_face_rho, _to_linear, _to_srgb, held_apart_crops
from studies.report_file import write_report

from fiqa.components import COMPONENTS, compute_components
from fiqa.components.advice import advise, load_profile

REPO = Path(__file__).resolve().parents[2]
Effect = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _pil(crop: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(crop[..., ::-1]))


def _bgr(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])


def defocus(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """A uniform disk (a defocused lens's blur) of radius up to 6 pixels."""
    radius = 6.0 * s
    if radius < 0.5:
        return crop
    k = int(math.ceil(radius))
    y, x = np.mgrid[-k:k + 1, -k:k + 1]
    kernel = (x * x + y * y <= radius * radius).astype(np.float32)
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def pillow_blur(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _bgr(_pil(crop).filter(ImageFilter.GaussianBlur(float(3.0 * s))))


def shake(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """A box of 1-13 pixels, horizontal or vertical (seeded)."""
    n = int(round(1 + 12 * s))
    kernel = np.zeros((n, n), np.float32)
    if rng.random() < 0.5:
        kernel[n // 2, :] = 1.0
    else:
        kernel[:, n // 2] = 1.0
    return cv2.filter2D(crop, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def small_face(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Bicubic down to (1 - 0.8 s) of the side and bicubic back (Pillow)."""
    side = max(4, round(crop.shape[1] * (1 - 0.8 * s)))
    return _bgr(_pil(crop).resize((side, side), Image.BICUBIC).resize(crop.shape[1::-1], Image.BICUBIC))


def pillow_jpeg(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """JPEG quality 90 -> 5 without chroma subsampling (4:4:4)."""
    buffer = io.BytesIO()
    _pil(crop).save(buffer, "JPEG", quality=int(round(90 - 85 * s)), subsampling=0)
    return _bgr(Image.open(buffer))


def photon_noise(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise at 2^8 down to 2^1 photons per grey-level step of 64, not re-brightened."""
    if s == 0:
        return crop
    photons = 2.0 ** (8 - 7 * s) / 255 * 64
    return np.clip(rng.poisson(crop.astype(np.float64) * photons) / photons, 0, 255).astype(np.uint8)


def grey_noise(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """The same Gaussian noise (sigma up to 25) in the three channels."""
    noise = rng.normal(0.0, 25.0 * s, crop.shape[:2])[..., None]
    return np.clip(crop + noise, 0, 255).astype(np.uint8)


def darker(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _bgr(ImageEnhance.Brightness(_pil(crop)).enhance(1.0 - 0.9 * s))


def brighter(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _bgr(ImageEnhance.Brightness(_pil(crop)).enhance(1.0 + 2.0 * s))


def flatter(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    return _bgr(ImageEnhance.Contrast(_pil(crop)).enhance(1.0 - 0.85 * s))


def corner_shadow(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Light falling off toward the top-left corner, down to a tenth (a shadow across the face)."""
    yy, xx = np.mgrid[0:crop.shape[0], 0:crop.shape[1]] / (crop.shape[0] - 1)
    ramp = 1.0 - 0.9 * s * np.clip(1.0 - (xx + yy) / 1.2, 0.0, 1.0)
    return np.clip(crop * ramp[..., None], 0, 255).astype(np.uint8)


def hand(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """A skin-coloured ellipse rising over the mouth and nose."""
    out = crop.copy()
    if s > 0:
        cv2.ellipse(out, (56, 100), (int(20 + 25 * s), int(10 + 40 * s)), 0, 0, 360, (120, 150, 200), -1)
    return out


def eye_band(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """A dark diagonally striped band (a scarf, a visor) over the eyes, widening downwards."""
    out = crop.copy()
    if s > 0:
        stripes = ((np.indices(crop.shape[:2]).sum(axis=0) % 8 < 4)[..., None] * 40 + 10).astype(np.uint8)
        rows = slice(40, int(40 + 30 * s))
        out[rows, 15:97] = stripes[rows, 15:97]
    return out


def _in_coloured_light(crop: np.ndarray, gains_bgr: tuple[float, float, float]) -> np.ndarray:
    """The crop lit by a coloured light, or a white balance off: per-channel gains in linear light, clipped."""
    return _to_srgb(_to_linear(crop) * np.asarray(gains_bgr))


def cold_light(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Blue light (daylight or a screen under a white balance set for warm light): blue x (1 + 1.5 s), red x
    (1 - 0.6 s) in linear light."""
    return _in_coloured_light(crop, (1.0 + 1.5 * s, 1.0, 1.0 - 0.6 * s))


def warm_light(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Amber light (tungsten under a daylight white balance): red x (1 + s), blue x (1 - 0.6 s) in linear light."""
    return _in_coloured_light(crop, (1.0 - 0.6 * s, 1.0, 1.0 + s))


def green_light(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Green light (fluorescent tubes): green x (1 + 0.8 s), red and blue x (1 - 0.3 s) in linear light."""
    return _in_coloured_light(crop, (1.0 - 0.3 * s, 1.0 + 0.8 * s, 1.0 - 0.3 * s))


def spectacle_frames(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Clear spectacles with dark frames (Pillow's outlines): a rounded rim round each eye of the template, 30 x 22
    pixels, and a bridge, 1 to 4 pixels wide (severity 0: none). The eyes stay visible: no advice should fire."""
    if s <= 0:
        return crop
    image = _pil(crop)
    draw = ImageDraw.Draw(image)
    width = int(round(1 + 3 * s))
    for x, y in ((38.3, 51.7), (73.5, 51.5)):  # the template's eyes (fiqa.detect.align.ARCFACE_TEMPLATE)
        draw.rounded_rectangle((x - 15, y - 11, x + 15, y + 11), radius=8, outline=(25, 22, 20), width=width)
    draw.line((53.3, 49.0, 58.5, 49.0), fill=(25, 22, 20), width=width)
    return _bgr(image)


EFFECTS: dict[str, tuple[Effect, str | None, int, str | None]] = {
    # name: (effect, own component, expected sign of rho, advice that should fire)
    "defocus (disk)": (defocus, "sharpness", +1, "blurred"),
    "Gaussian blur (Pillow)": (pillow_blur, "sharpness", +1, "blurred"),
    "shake (box, H or V)": (shake, "sharpness", +1, "blurred"),
    "small face (Pillow bicubic)": (small_face, "sharpness", +1, "blurred"),
    "JPEG 4:4:4 (Pillow)": (pillow_jpeg, "compression_artifacts", -1, "compressed"),
    "photon noise": (photon_noise, "noise", +1, "noisy"),
    "grey Gaussian noise": (grey_noise, "noise", +1, "noisy"),
    "darker (Pillow)": (darker, "luminance_mean", -1, "too_dark"),
    "brighter (Pillow)": (brighter, "over_exposure", +1, "too_bright"),
    "less contrast (Pillow)": (flatter, "dynamic_range", -1, "low_contrast"),
    "corner shadow": (corner_shadow, "illumination_uniformity", +1, "uneven_light"),
    "hand over the mouth": (hand, "mouth_occlusion", +1, "uncover_mouth"),
    "striped band over the eyes": (eye_band, "eyes_visible", -1, "remove_eyewear"),
    # nuisances: no component measures the light's colour, and no advice should fire
    "cold light (blue)": (cold_light, None, 0, None),
    "warm light (amber)": (warm_light, None, 0, None),
    "green light": (green_light, None, 0, None),
    "dark spectacle frames": (spectacle_frames, None, 0, None),
}
CROP_COMPONENTS = [n for n, c in COMPONENTS.items() if c.group == "capture"] + \
    ["eyes_visible", "mouth_occlusion", "face_occlusion"]
ADVICE_STEPS = (0, 4, 7, 10)  # positions in SEVERITIES (0.0, 0.4, 0.7, 1.0) where the advice is counted


def audit(crops: np.ndarray) -> list[str]:
    names = list(COMPONENTS)
    profile = load_profile()
    rows = ["| effect | own component | pooled rho | per-face rho | other components with \\|rho\\| > 0.3 |",
            "|---|---|---:|---:|---|"]
    advice_rows = ["| effect | expected advice | " + " | ".join(f"severity {SEVERITIES[k]:.1f}" for k in ADVICE_STEPS)
                   + " |", "|---|---|" + "---|" * len(ADVICE_STEPS)]
    for effect_name, (effect, own, sign, expected) in EFFECTS.items():
        raws, severity, face, given = [], [], [], {}
        for step, s in enumerate(SEVERITIES):
            batch = np.stack([effect(c, float(s), np.random.default_rng(1000 + i)) for i, c in enumerate(crops)])
            table = compute_components(batch)
            raws.append(table.raw)
            severity += [s] * len(crops)
            face += list(range(len(crops)))
            if step in ADVICE_STEPS:
                counts: dict[str, int] = {}
                for codes in advise(table, profile):
                    for code in codes:
                        counts[code] = counts.get(code, 0) + 1
                given[step] = counts
        raw, sev, faces = np.concatenate(raws), np.array(severity), np.array(face)

        def rho(name: str) -> float:
            values = raw[:, names.index(name)]
            ok = np.isfinite(values)
            return float(spearmanr(sev[ok], values[ok]).statistic) if ok.sum() > 2 else math.nan

        others = [f"{n} {rho(n):+.2f}" for n in CROP_COMPONENTS if n != own and abs(rho(n)) > 0.3]
        if own is None:  # a nuisance: only what else moves
            rows.append(f"| {effect_name} | none (a nuisance) | - | - | {', '.join(others) or '-'} |")
        else:
            rows.append(f"| {effect_name} | {own} | {sign * rho(own):+.2f} | "
                        f"{sign * _per_face_rho(sev, faces, raw[:, names.index(own)]):+.2f} | "
                        f"{', '.join(others) or '-'} |")
        cells = []
        for step in ADVICE_STEPS:
            counts = {k: v for k, v in given[step].items() if k != "move_closer"}
            text = ", ".join(f"{'**' + k + '**' if k == expected else k} {v / len(crops):.0%}"
                             for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            cells.append(text or "none")
        advice_rows.append(f"| {effect_name} | {expected or 'none'} | " + " | ".join(cells) + " |")
    return ["## Each effect against its own component (rho signed so that + is the expected direction)", "", *rows,
            "", "## Advice given (share of faces; the expected code in bold; `move_closer` left out)", "",
            *advice_rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--faces", type=int, default=100)
    parser.add_argument("--part", choices=("test", "train"), default="test")
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="default: studies/results/components_audit.md for --part test, a file in /tmp for train")
    args = parser.parse_args()
    if args.out is None:
        args.out = (REPO / "studies" / "results" / "components_audit.md" if args.part == "test"
                    else Path(tempfile.gettempdir()) / "components_audit_train.md")
    started = time.time()
    _, crops = held_apart_crops(args.lfw, args.faces, args.random_state, args.part)
    lines = ["# Quality components against effects written anew (not the project's degradation code)", "",
             f"Command: `.venv/bin/python -m studies.components.audit_components --part {args.part} --faces "
             f"{args.faces} --random-state {args.random_state}`: {len(crops)} LFW-dev faces of "
             f"{'held-apart' if args.part == 'test' else 'training'} identities (one photo each, "
             f"`split_identities(test_fraction=0.5, random_state={args.random_state})`), 11 severities 0-1 per "
             "effect; each effect is defined in the script.", "", *audit(crops),
             f"Ran in {time.time() - started:.0f} s."]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
