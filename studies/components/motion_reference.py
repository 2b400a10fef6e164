"""``motion_blur``'s typical face and its threshold, on LFW-dev faces of training identities.

1. The reference (:data:`fiqa.components.capture.MOTION_REFERENCE_DB`): the mean of :func:`motion_spectrum` over
   one photo of each of 300 training identities (the occlusion model's cover left out, as the component reads
   them), each part's about its mean, made mirror-symmetric (bins ``k`` and ``8 - k`` averaged); and what is taken
   off where one part alone is read (:data:`fiqa.components.capture.MOTION_ONE_PART_DB`). Printed for pasting into
   ``capture.py``; the run says whether the shipped ones match.
2. The threshold (:data:`fiqa.components.capture.MOTION_THRESHOLD_DB`): ``motion_blur`` on 200 other faces of
   training identities under effects written here (none of fiqa's degradation code): straight smears of 3-15
   pixels (anti-aliased, and drawn as one-pixel lines), shaky paths and smooth oriented Gaussians at seeded angles,
   and the effects that must not read as motion (Gaussian blur, a defocus disk, too few pixels, JPEG and WebP,
   noise, dark glasses, a mask (and each smeared, where one part of the face is read), clear spectacles with dark
   frames 2-5 pixels wide, stripes of light 4 and 6 pixels apart), with the share of faces above candidate
   thresholds.

    .venv/bin/python -m studies.components.motion_reference --random-state 0
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from studies.components.validate_components import held_apart_photos
from studies.report_file import write_report

from fiqa.components import compute_components
from fiqa.components.capture import (
    MOTION_ONE_PART_DB,
    MOTION_REFERENCE_DB,
    MOTION_THRESHOLD_DB,
    edge_region,
    luminance,
    motion_spectrum,
)
from fiqa.components.occlusion import occlusion_measures
from fiqa.detect.pipeline import FacePipeline

REPO = Path(__file__).resolve().parents[2]
DEFAULT_LFW = REPO.parent / "shared" / "data" / "lfw-dev"
DEFAULT_OUT = REPO / "studies" / "results" / "components_motion.md"
THRESHOLDS = (6.0, 7.0, 8.0, 9.0, 10.0, 11.0)


def smear_kernel(length: float, angle: float) -> np.ndarray:
    """A straight smear of ``length`` pixels at ``angle`` (radians): 400 points along the segment, each spread
    bilinearly over its four pixels."""
    size = int(math.ceil(length)) + 3
    size += 1 - size % 2
    t = np.linspace(-length / 2.0, length / 2.0, 400)
    return _splatted(np.column_stack([t * math.cos(angle), t * math.sin(angle)]), size)


def _splatted(path: np.ndarray, size: int) -> np.ndarray:
    """A kernel of ``size`` x ``size`` (odd) from points (x, y) about its centre, each spread bilinearly over its four
    pixels, normalised to sum 1."""
    kernel = np.zeros((size, size))
    for x, y in path + (size - 1) / 2.0:
        x0, y0 = int(math.floor(x)), int(math.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0:y0 + 2, x0:x0 + 2] += np.array([[(1 - fx) * (1 - fy), fx * (1 - fy)], [(1 - fx) * fy, fx * fy]])
    return (kernel / kernel.sum()).astype(np.float32)


def disk_kernel(radius: float) -> np.ndarray:
    """A lens's defocus: a uniform disk of ``radius`` pixels, its rim's pixels weighted by their area inside
    (8 x 8 samples a pixel)."""
    size = 2 * int(math.ceil(radius)) + 3
    centre = (size - 1) / 2.0
    offsets = (np.arange(8) + 0.5) / 8.0 - 0.5
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    kernel = sum(((xx + dx - centre) ** 2 + (yy + dy - centre) ** 2 <= radius ** 2).astype(np.float64)
                 for dx in offsets for dy in offsets)
    return (kernel / kernel.sum()).astype(np.float32)


def line_kernel(length: float, angle: float) -> np.ndarray:
    """A straight smear of ``length`` pixels at ``angle`` drawn as a one-pixel line (OpenCV's 8-connected line
    between the rounded end points: a jagged path, not an anti-aliased one)."""
    size = int(math.ceil(length)) + 3
    size += 1 - size % 2
    centre = (size - 1) / 2.0
    dx, dy = length / 2.0 * math.cos(angle), length / 2.0 * math.sin(angle)
    kernel = np.zeros((size, size), np.float32)
    cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1.0, 1,
             cv2.LINE_8)
    return kernel / kernel.sum()


def shaky_kernel(length: float, rng: np.random.Generator) -> np.ndarray:
    """A hand's shaky path: ``4 length`` steps of a quarter pixel whose heading drifts (a random walk of 0.15 rad a
    step) from a random start, each point spread bilinearly over its four pixels."""
    heading = float(rng.uniform(0.0, np.pi))
    points = [(0.0, 0.0)]
    for _ in range(int(4 * length)):
        heading += float(rng.normal(0.0, 0.15))
        x, y = points[-1]
        points.append((x + 0.25 * math.cos(heading), y + 0.25 * math.sin(heading)))
    path = np.array(points) - np.mean(points, axis=0)
    return _splatted(path, 2 * int(np.abs(path).max() + 3) + 1)


def oriented_gaussian_kernel(along: float, angle: float) -> np.ndarray:
    """A Gaussian of ``along`` pixels along ``angle`` and 0.4 across it (a smooth, not box-shaped, smear)."""
    yy, xx = np.mgrid[-10:11, -10:11].astype(np.float64)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    kernel = np.exp(-u ** 2 / (2 * along ** 2) - v ** 2 / (2 * 0.4 ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def _filtered(crop: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(crop, -1, kernel, borderType=cv2.BORDER_REFLECT101)


def one_pass_at_a_time(crop: np.ndarray, width: int) -> np.ndarray:
    """A separable blur in 8 bits one direction at a time: three horizontal box passes, then three vertical ones,
    each rounded to whole grey levels (as imaging libraries approximate a Gaussian)."""
    for size in ((width, 1),) * 3 + ((1, width),) * 3:
        crop = cv2.blur(crop, size)
    return crop


def _coded(crop: np.ndarray, ext: str, flag: int, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(ext, crop, [flag, quality])[1], cv2.IMREAD_COLOR)


def _glasses(crop: np.ndarray) -> np.ndarray:
    out = crop.copy()
    for x in (38, 74):
        cv2.ellipse(out, (x, 52), (15, 10), 0, 0, 360, (25, 25, 25), -1)
    cv2.line(out, (50, 50), (62, 50), (25, 25, 25), 2)
    return out


def _mask(crop: np.ndarray) -> np.ndarray:
    out = crop.copy()
    cv2.rectangle(out, (22, 72), (90, 112), (205, 200, 195), -1)
    return out


def dark_frames(width: int, half: tuple[int, int], radius: int) -> object:
    """Clear spectacles with dark frames (OpenCV): a rounded rectangle of ``2 half`` pixels (corners of ``radius``)
    round each eye of the template and a bridge, lines ``width`` pixels wide; ``radius`` = the half height draws an
    oval."""
    def draw(crop: np.ndarray) -> np.ndarray:
        out = crop.copy()
        colour, (hx, hy), r = (25, 22, 20), half, radius
        for x, y in ((38, 52), (74, 52)):
            x0, x1, y0, y1 = x - hx, x + hx, y - hy, y + hy
            for start, end in (((x0 + r, y0), (x1 - r, y0)), ((x0 + r, y1), (x1 - r, y1)),
                               ((x0, y0 + r), (x0, y1 - r)), ((x1, y0 + r), (x1, y1 - r))):
                cv2.line(out, start, end, colour, width, cv2.LINE_8)
            for cx, cy, angle in ((x0 + r, y0 + r, 180), (x1 - r, y0 + r, 270), (x1 - r, y1 - r, 0),
                                  (x0 + r, y1 - r, 90)):
                cv2.ellipse(out, (cx, cy), (r, r), 0, angle, angle + 90, colour, width, cv2.LINE_8)
        cv2.line(out, (53, 49), (59, 49), colour, width)
        return out
    return draw


def _stripes(period: int, axis: int) -> object:
    """Stripes of light ``period`` pixels apart at 15 % depth (blind shadows, a screen's moire): the light varies
    down the face (``axis`` 0), across it (1) or along the diagonal (2)."""
    position = (np.arange(112)[:, None], np.arange(112)[None, :], np.indices((112, 112)).sum(axis=0))[axis]
    gain = (1.0 - 0.075 + 0.075 * np.cos(2 * np.pi * position / period))[..., None]
    return lambda crop: np.clip(crop * gain, 0, 255).astype(np.uint8)


def effects(rng: np.random.Generator) -> dict[str, object]:
    """name -> function(crop) -> crop; the smears' angles drawn from ``rng`` per face."""
    out: dict[str, object] = {"none": lambda c: c}
    for length in (3, 5, 7, 10, 15):
        out[f"smear {length} px"] = lambda c, n=length: _filtered(c, smear_kernel(n, float(rng.uniform(0, np.pi))))
    for length in (5, 10):
        out[f"one-pixel line {length} px"] = lambda c, n=length: _filtered(
            c, line_kernel(n, float(rng.uniform(0, np.pi))))
        out[f"shaky path {length} px"] = lambda c, n=length: _filtered(c, shaky_kernel(n, rng))
    for along in (1.5, 2.5):
        out[f"oriented Gaussian {along:g} px"] = lambda c, s=along: _filtered(
            c, oriented_gaussian_kernel(s, float(rng.uniform(0, np.pi))))
    for sigma in (1.2, 3.0):
        out[f"Gaussian blur {sigma:g} px"] = lambda c, s=sigma: cv2.GaussianBlur(c, (0, 0), s)
    for radius in (2.5, 4.0):
        out[f"defocus disk {radius:g} px"] = lambda c, r=radius: _filtered(c, disk_kernel(r))
    for factor in (0.4, 0.25):
        out[f"{factor:g} of the pixels (area, bilinear)"] = lambda c, f=factor: cv2.resize(
            cv2.resize(c, None, fx=f, fy=f, interpolation=cv2.INTER_AREA), (112, 112), interpolation=cv2.INTER_LINEAR)
    for quality in (5, 20):
        out[f"JPEG {quality}"] = lambda c, q=quality: _coded(c, ".jpg", cv2.IMWRITE_JPEG_QUALITY, q)
        out[f"WebP {quality}"] = lambda c, q=quality: _coded(c, ".webp", cv2.IMWRITE_WEBP_QUALITY, q)
    for width in (5, 7):
        out[f"box {width} px x 3, rounded after each 1-D pass"] = lambda c, w=width: one_pass_at_a_time(c, w)
    out["Gaussian noise 15"] = lambda c: np.clip(c + rng.normal(0.0, 15.0, c.shape), 0, 255).astype(np.uint8)
    out["dark glasses"] = _glasses
    out["mask"] = _mask
    for name, cover in (("dark glasses", _glasses), ("mask", _mask)):
        out[f"{name}, then smear 10 px"] = lambda c, f=cover: _filtered(f(c), smear_kernel(10, float(rng.uniform(0,
                                                                                                      np.pi))))
    for width in (2, 3, 5):  # OpenCV draws lines 3 and 4 (5 and 6) wide alike
        out[f"dark frames {width} px, 30 x 22 rounded"] = dark_frames(width, (15, 11), 8)
        out[f"dark frames {width} px, 34 x 24 squarer"] = dark_frames(width, (17, 12), 6)
        out[f"dark frames {width} px, 32 x 22 oval"] = dark_frames(width, (16, 11), 11)
    for period in (4, 6):
        for axis, across in enumerate(("down the face", "across it", "diagonal")):
            out[f"stripes of light {period} px apart, {across}"] = _stripes(period, axis)
    return out


def _spectra(crops: np.ndarray) -> np.ndarray:
    """:func:`motion_spectrum` of each crop, the occlusion model's cover left out ((B, 2, 8))."""
    _, _, covered = occlusion_measures(crops)
    return np.stack([motion_spectrum(luminance(c), cover) for c, cover in zip(crops, covered)])


def reference(crops: np.ndarray) -> np.ndarray:
    """The mirror-symmetric mean spectrum of ``crops``, each part's about its mean (decibels, (2, 8))."""
    mean = np.nanmean(_spectra(crops), axis=0)
    mean = (mean + mean[..., (-np.arange(8)) % 8]) / 2.0  # bin k and its mirror image's bin 8 - k
    return mean - mean.mean(axis=-1, keepdims=True)


def one_part_offset(crops: np.ndarray, reference_db: np.ndarray) -> np.ndarray:
    """How much more one part's own largest difference reads than the smaller of the two parts' (the value where
    both are read), the median over ``crops`` read in both parts (decibels, one per part)."""
    excess = _spectra(crops) - reference_db
    difference = excess - np.roll(excess, 4, axis=2)
    both = np.all(np.isfinite(difference[:, :, 0]), axis=1)
    value = np.max(np.min(difference[both], axis=1), axis=1)
    return np.median(np.max(difference[both], axis=2) - value[:, None], axis=0)


FORMER_REFERENCE_DB = np.array([-0.72, -1.05, -0.83, 0.57, 3.35, 0.57, -0.83, -1.05])
FORMER_THRESHOLD_DB = 9.0


def former_motion_blur(y: np.ndarray, covered: np.ndarray) -> float:
    """The measure ``motion_blur`` was until the two parts (22edc66), written here for comparison: one Hann window
    over rows 30-109 and columns 24-87 of the edge region, its band's mean log power in 8 direction bins less
    :data:`FORMER_REFERENCE_DB` (that measure's reference, made as :func:`reference` made it), the largest
    difference between a bin and the one at right angles; its ``hold_still`` threshold was 9 dB."""
    rows, cols = 80, 64
    taper = cv2.GaussianBlur(edge_region(y, covered)[30:110, 24:88].astype(np.float64), (0, 0), 3.0,
                             borderType=cv2.BORDER_CONSTANT)
    weight = taper * np.outer(np.hanning(rows), np.hanning(cols))
    if weight.sum() <= 0:
        return math.nan
    face = y[30:110, 24:88].astype(np.float64)
    power = np.abs(np.fft.fft2((face - (face * weight).sum() / weight.sum()) * weight)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(rows), np.fft.fftfreq(cols), indexing="ij")
    radius = np.hypot(fy, fx)
    band = (radius >= 0.12 - 1e-9) & (radius <= 0.35 + 1e-9)
    direction = np.floor(np.mod(np.arctan2(fy, fx), np.pi) / (np.pi / 8) + 0.5).astype(int) % 8
    decibels = 10 * np.log10(power + np.sum(weight ** 2) / 12.0)
    means = np.array([decibels[band & (direction == k)].mean() for k in range(8)]) - FORMER_REFERENCE_DB
    return float(np.max(means - np.roll(means, 4)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    pipeline = FacePipeline()
    photos = held_apart_photos(args.lfw, 500, args.random_state, part="train")
    crops = [f.crop for f in (pipeline.process(p) for p in photos) if f.ok]
    fitted, tuning = np.stack(crops[:300]), np.stack(crops[300:500])
    made = np.round(reference(fitted), 2)
    matches = bool(np.array_equal(made, MOTION_REFERENCE_DB))
    print("MOTION_REFERENCE_DB =", np.array2string(made, separator=", "), "(matches the shipped one)" if matches
          else "(differs from the shipped one: paste it into fiqa/components/capture.py and run again)")
    offset = np.round(one_part_offset(fitted, made), 2)
    offset_matches = bool(np.array_equal(offset, MOTION_ONE_PART_DB))
    print("MOTION_ONE_PART_DB =", np.array2string(offset, separator=", "), "(matches the shipped one)"
          if offset_matches else "(differs from the shipped one: paste it into fiqa/components/capture.py)")
    rng = np.random.default_rng(args.random_state)
    lines = [
        "# `motion_blur`: its reference face and its threshold (training identities)", "",
        f"Command: `.venv/bin/python -m studies.components.motion_reference --random-state {args.random_state}`. "
        f"Identities: `split_identities(test_fraction=0.5, random_state={args.random_state})`, part 'train', one "
        "photo each; no held-apart face and none of fiqa's degradation code is used.", "",
        f"Reference (mean of `motion_spectrum` over {len(fitted)} faces, mirror-symmetric, each part's about its "
        f"mean; rows: the upper and lower parts, bins 0-7 = 0, 22.5, ... 157.5 degrees): "
        f"`{np.array2string(made, separator=', ', max_line_width=200)}` dB "
        f"({'the shipped value' if matches else 'DIFFERS from the shipped value'}). Taken off where one part alone "
        f"is read (the median, over the same faces, of one part's own largest difference less the smaller of the "
        f"two parts'): `{np.array2string(offset, separator=', ')}` dB "
        f"({'the shipped value' if offset_matches else 'DIFFERS from the shipped value'}).", "",
        f"`motion_blur` (dB) on {len(tuning)} other faces under effects written in this script (smear angles seeded "
        "per face); n: the faces measured (the others are NaN: most of the face covered or clipped white); the "
        f"share of them above each candidate threshold. Shipped threshold: {MOTION_THRESHOLD_DB:g} dB. Last column: "
        "the former measure over the whole face in one window (`former_motion_blur`, until 22edc66) above its "
        f"{FORMER_THRESHOLD_DB:g} dB, on the same images.", "",
        "| effect | n | p10 | median | p90 | p98 | " + " | ".join(f"> {t:g}" for t in THRESHOLDS)
        + f" | former > {FORMER_THRESHOLD_DB:g} |",
        "|---|" + "---:|" * (6 + len(THRESHOLDS)),
    ]
    for name, effect in effects(rng).items():
        images = np.stack([effect(c) for c in tuning])
        table = compute_components(images)
        value = table.column("motion_blur", raw=True)
        measured = np.isfinite(value)
        _, _, covered = occlusion_measures(images)
        former = np.array([former_motion_blur(luminance(image), cover) for image, cover, keep
                           in zip(images, covered, measured) if keep])
        value = value[measured]
        p10, p50, p90, p98 = np.percentile(value, [10, 50, 90, 98])
        shares = " | ".join(f"{100 * np.mean(value > t):.0f} %" for t in THRESHOLDS)
        lines.append(f"| {name} | {len(value)} | {p10:.1f} | {p50:.1f} | {p90:.1f} | {p98:.1f} | {shares} | "
                     f"{100 * np.mean(former > FORMER_THRESHOLD_DB):.0f} % |")
    lines += ["", f"Ran in {time.perf_counter() - start:.0f} s."]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
