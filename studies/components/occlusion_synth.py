"""Synthetic occluders with exact coverage masks, and capture nuisances that occlude nothing.

The occlusion model of ``fiqa.components.occlusion`` learns from these. Occluders are deliberately generic (no one
accessory is imitated): shapes (rectangles, rotated rectangles, ellipses, polygons, bands of any height at any
height, hand-like blobs, covers entering from a frame edge, the black rectangle of
``fiqa.augment.degrade.DEGRADATIONS["occlusion"]``) filled with uniform colours from the whole colour range (dark,
light, saturated, skin tones of this or another face), colour gradients, noise and stripe textures, and patches cut
from other training photos (background, hair, clothes). The nuisances, labelled "not occluded", are alignment
jitter; shadows cast by a blind or foliage (:func:`_cast_shadow`); the light and the camera's response over the
whole image, occluders included (colour casts, side light, veiling glare or haze, exposure gains clipped at 255,
gamma curves and contrast compression: :func:`_photometric`);
and the training degradations of ``fiqa.augment.degrade.DEGRADATIONS`` (blur, downsample, jpeg, noise, low_light),
JPEG more often on a photo's pixel grid than on the crop's (:func:`_on_photo_grid`), and blurs stronger than those
(:data:`STRONG_BLUR_SIGMA`); the evaluation degradations are never drawn here, nor imitated.

The light is drawn wide on purpose. With mild changes only (contrast 0.6-1.4, an offset of +-40, a side light) the
model took bright, washed-out skin for a light, flat cover: on 400 faces of the tuning identities, values times 1 to 4
(clipped) gave Spearman rho -0.74 for eyes_visible and +0.71 for face_occlusion; trained with the effects below,
-0.09 and +0.15, with the error on synthetic occluders of the former generator within 3 % of before.
"""
from __future__ import annotations

import cv2
import numpy as np

from fiqa.augment.degrade import DEGRADATIONS, degrade

SIZE = 112
CAPTURE_KINDS = ("blur", "downsample", "jpeg", "noise", "low_light")
SHAPES = ("rectangle", "rotated_rectangle", "ellipse", "polygon", "band", "hand", "edge_cover", "blob",
          "black_rectangle")
FILLS = ("uniform", "dark", "light", "skin", "gradient", "noise_texture", "stripes", "photo_patch")

assert set(CAPTURE_KINDS) < set(DEGRADATIONS)


def _centre(rng: np.random.Generator) -> tuple[float, float]:
    """An occluder centre: near the eyes, near the mouth, or anywhere on the crop."""
    draw = rng.random()
    if draw < 0.3:
        return float(rng.uniform(20, 92)), float(rng.normal(52, 8))
    if draw < 0.55:
        return float(rng.uniform(25, 87)), float(rng.normal(92, 10))
    return float(rng.uniform(0, SIZE)), float(rng.uniform(0, SIZE))


def _shape_mask(shape: str, rng: np.random.Generator) -> np.ndarray:
    """A (112, 112) uint8 mask (255 inside, anti-aliased edges) of one occluder shape."""
    # drawn at 4x with 2 fractional bits, then area-reduced: smooth, exact-coverage edges
    scale = 4
    big = np.zeros((SIZE * scale, SIZE * scale), np.uint8)
    cx, cy = _centre(rng)

    def pts(points: np.ndarray) -> np.ndarray:
        return np.round(points * scale).astype(np.int32)

    def ellipse(centre: np.ndarray, full_axes: np.ndarray, angle: float) -> None:
        box = ((float(centre[0] * scale), float(centre[1] * scale)),
               (float(full_axes[0] * scale), float(full_axes[1] * scale)), float(angle))
        cv2.ellipse(big, box, 255, -1)

    if shape == "rectangle":
        w, h = rng.uniform(8, 80), rng.uniform(8, 60)
        corners = np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2],
                            [cx - w / 2, cy + h / 2]])
        cv2.fillPoly(big, [pts(corners)], 255)
    elif shape == "rotated_rectangle":
        w, h, angle = rng.uniform(8, 90), rng.uniform(6, 50), rng.uniform(0, 180)
        box = cv2.boxPoints(((cx, cy), (w, h), angle))
        cv2.fillPoly(big, [pts(box)], 255)
    elif shape == "ellipse":
        axes = (rng.uniform(5, 45), rng.uniform(4, 35))
        ellipse(np.array([cx, cy]), 2 * np.array(axes), rng.uniform(0, 180))
    elif shape == "polygon":
        radius = rng.uniform(8, 45)
        points = np.array([cx, cy]) + rng.uniform(-radius, radius, (int(rng.integers(3, 9)), 2))
        cv2.fillPoly(big, [pts(cv2.convexHull(points.astype(np.float32)).reshape(-1, 2))], 255)
    elif shape == "band":
        height = rng.uniform(4, 50)
        top = rng.uniform(-10, SIZE) if rng.random() < 0.5 else cy - height / 2
        left, right = (0.0, float(SIZE)) if rng.random() < 0.5 else sorted(rng.uniform(0, SIZE, 2))
        right = max(right, left + 20)
        angle = rng.normal(0, 6)
        box = cv2.boxPoints((((left + right) / 2, top + height / 2), (right - left, height), angle))
        cv2.fillPoly(big, [pts(box)], 255)
    elif shape == "hand":
        size = rng.uniform(14, 34)
        rotation = rng.uniform(0, 2 * np.pi)
        palm = np.array([cx, cy])
        ellipse(palm, np.array([size * 1.6, size * 2.0]), np.degrees(rotation))
        for finger in range(int(rng.integers(3, 6))):
            direction = rotation + np.pi / 2 + (finger - 2) * rng.uniform(0.15, 0.35)
            length = size * rng.uniform(0.9, 1.6)
            tip = palm + (size * 0.8 + length / 2) * np.array([np.cos(direction), np.sin(direction)])
            ellipse(tip, np.array([length, size * 0.35]), np.degrees(direction))
    elif shape == "edge_cover":
        side = int(rng.integers(0, 4))
        depth = rng.uniform(10, 60)
        corners = {0: [(0, 0), (depth, 0), (depth + rng.uniform(-20, 20), SIZE), (0, SIZE)],
                   1: [(SIZE, 0), (SIZE - depth, 0), (SIZE - depth + rng.uniform(-20, 20), SIZE), (SIZE, SIZE)],
                   2: [(0, SIZE), (0, SIZE - depth), (SIZE, SIZE - depth + rng.uniform(-20, 20)), (SIZE, SIZE)],
                   3: [(0, 0), (0, depth), (SIZE, depth + rng.uniform(-20, 20)), (SIZE, 0)]}[side]
        cv2.fillPoly(big, [pts(np.array(corners, dtype=np.float64))], 255)
    elif shape == "blob":
        for _ in range(int(rng.integers(2, 5))):
            centre = np.array([cx, cy]) + rng.normal(0, 10, 2)
            ellipse(centre, rng.uniform(8, 40, 2), rng.uniform(0, 180))
    elif shape == "black_rectangle":  # the geometry of DEGRADATIONS["occlusion"]
        area = 0.5 * rng.uniform(0.02, 1.0)
        side = int(round(SIZE * np.sqrt(area)))
        top, left = int(rng.integers(0, SIZE - side + 1)), int(rng.integers(0, SIZE - side + 1))
        big[top * scale:(top + side) * scale, left * scale:(left + side) * scale] = 255
    else:  # pragma: no cover - SHAPES lists every branch
        raise ValueError(shape)
    return cv2.resize(big, (SIZE, SIZE), interpolation=cv2.INTER_AREA)


def _random_colour(rng: np.random.Generator, value: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(0, 255), rng.uniform(*value) * 255]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).reshape(3).astype(np.float32)


def _fill(kind: str, crop: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A (112, 112, 3) float32 BGR texture to paint through a mask."""
    if kind == "uniform":
        texture = np.broadcast_to(_random_colour(rng), (SIZE, SIZE, 3)).astype(np.float32)
    elif kind == "dark":
        texture = np.broadcast_to(_random_colour(rng, (0.0, 0.2)), (SIZE, SIZE, 3)).astype(np.float32)
    elif kind == "light":
        texture = np.broadcast_to(_random_colour(rng, (0.8, 1.0)), (SIZE, SIZE, 3)).astype(np.float32)
    elif kind == "skin":  # the skin tone of this face or of another one, scaled
        source = crop if rng.random() < 0.5 else other
        colour = np.median(source[60:90, 35:77].reshape(-1, 3), axis=0).astype(np.float32)
        colour = np.clip(colour * rng.uniform(0.7, 1.3) + rng.normal(0, 8, 3), 0, 255)
        texture = np.broadcast_to(colour, (SIZE, SIZE, 3)).astype(np.float32)
    elif kind == "gradient":
        first, second = _random_colour(rng), _random_colour(rng)
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        ramp = (np.cos(angle) * xs + np.sin(angle) * ys)
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
        texture = first + ramp[..., None] * (second - first)
    elif kind == "noise_texture":
        noise = rng.normal(0, 1, (SIZE, SIZE)).astype(np.float32)
        noise = cv2.GaussianBlur(noise, (0, 0), rng.uniform(0.5, 6))
        noise = (noise - noise.min()) / (np.ptp(noise) + 1e-6)
        first, second = _random_colour(rng), _random_colour(rng)
        texture = first + noise[..., None] * (second - first)
    elif kind == "stripes":
        period, angle = rng.uniform(3, 20), rng.uniform(0, np.pi)
        ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        wave = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * xs + np.sin(angle) * ys) / period)
        first, second = _random_colour(rng), _random_colour(rng)
        texture = first + wave[..., None].astype(np.float32) * (second - first)
    elif kind == "photo_patch":  # background, hair or clothes of another photo, magnified
        side = int(rng.integers(16, 48))
        region = rng.random()
        if region < 0.4:
            top, left = int(rng.integers(0, 24)), int(rng.integers(0, SIZE - side))
        elif region < 0.8:
            top = int(rng.integers(0, SIZE - side))
            left = int(rng.integers(0, 12)) if rng.random() < 0.5 else int(rng.integers(SIZE - side - 12, SIZE - side))
        else:
            top, left = int(rng.integers(0, SIZE - side)), int(rng.integers(0, SIZE - side))
        patch = other[top:top + side, left:left + side]
        texture = cv2.resize(patch, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    else:  # pragma: no cover - FILLS lists every branch
        raise ValueError(kind)
    if rng.random() < 0.5:  # shading across the occluder
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        ramp = (np.cos(angle) * xs + np.sin(angle) * ys) / SIZE
        texture = texture * (1.0 + rng.uniform(-0.3, 0.3) * ramp)[..., None]
    return texture


def _jitter(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = float(np.clip(rng.normal(0, 3), -8, 8))
    scale = float(np.clip(rng.normal(1, 0.03), 0.92, 1.08))
    matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, scale)
    matrix[:, 2] += np.clip(rng.normal(0, 1.5, 2), -4, 4)
    return cv2.warpAffine(crop, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _tint(rng: np.random.Generator, spread: float) -> np.ndarray:
    """Per-channel (B, G, R) factors of a coloured light or a white balance off by a little: exp(N(0, spread))."""
    return np.exp(rng.normal(0.0, spread, 3)).astype(np.float32)


def _light_colour(rng: np.random.Generator) -> np.ndarray:
    """Per-channel (B, G, R) factors of the light's colour as the camera's white balance left it: off along the
    blue-amber axis by up to ``exp(+-0.6)`` each way (blue over red from 1/3.3 to 3.3: daylight, shade or a screen's
    light under a white balance set for warmer light, or the reverse), along the green-magenta axis by up to
    ``exp(+-0.4)`` (green over the geometric mean of red and blue: fluorescent or LED light), and a little per channel,
    ``exp(N(0, 0.05))``."""
    amber, green = rng.uniform(-0.6, 0.6), rng.uniform(-0.4, 0.4)
    return np.exp(np.array([amber - green / 2, green / 2, -amber - green / 2]) + rng.normal(0.0, 0.05, 3)).astype(
        np.float32)


def _ramp(rng: np.random.Generator) -> np.ndarray:
    """(112, 112) float32 linear ramp across the crop in a random direction, -0.5 to 0.5 along its axis."""
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return ((np.cos(angle) * (xs - SIZE / 2) + np.sin(angle) * (ys - SIZE / 2)) / SIZE).astype(np.float32)


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The light and the camera's response, applied to the whole image (an occluder is lit and exposed like the
    face behind it), each step drawn on its own, in the order the light meets them:

    1. the light's colour (:func:`_light_colour`; 30 %) and its falloff from one side (a ramp, the
       darker side down to 40 % of the lit one; 35 %);
    2. veiling glare or haze, stray light added by the air or the lens: ``(1 - a) image + a L``, ``a`` up to 0.75,
       ``L`` light grey to white, slightly coloured, uniform or stronger toward one side (30 %); or an exposure gain
       on the values, clipped at 255 like a sensor (20 %): 1.15 to 4 (log-uniform, seven draws in ten) or 0.35 to
       0.9; or both, weaker (``a`` up to 0.4, gain up to 2; 10 %);
    3. the tone curve: a gamma of 0.4 to 2.2 (20 %), or the contrast scaled by 0.25 to 1.4 about the mean or another
       level (30 %).

    A veil, a gain and a tone curve stacked at full strength leave a white image whose occluder is invisible yet
    labelled covered: the combination is drawn weaker. The coverage is the occluders' whatever the light.
    """
    out = image.astype(np.float32)
    if rng.random() < 0.3:
        out = out * _light_colour(rng)
    if rng.random() < 0.35:  # light from one side
        out = out * (1.0 + rng.uniform(0.2, 1.2) * _ramp(rng))[..., None]
    exposure = rng.random()
    if exposure < 0.6:  # veiling glare or haze, a gain, or (less of) both
        veil, gain = exposure < 0.3 or exposure >= 0.5, exposure >= 0.3
        if veil:  # toward a light level, uniform or stronger toward one side
            amount = np.full((SIZE, SIZE), rng.uniform(0.1, 0.75 if not gain else 0.4), np.float32)
            if rng.random() < 0.4:
                amount = np.clip(amount * (1.0 + rng.uniform(0.5, 1.5) * _ramp(rng)), 0.0, 0.85)
            level = rng.uniform(170, 255) * _tint(rng, 0.03)
            out = out * (1.0 - amount[..., None]) + amount[..., None] * level
        if gain:  # exposure: a gain on the values (more often above 1), clipped like a sensor
            high = 4.0 if not veil else 2.0
            out = out * (np.exp(rng.uniform(np.log(1.15), np.log(high))) if rng.random() < 0.7
                         else rng.uniform(0.35, 0.9))
    out = np.clip(out, 0, 255)
    tone = rng.random()
    if tone < 0.2:  # a gamma curve (brighter below 1, darker above)
        out = 255.0 * (out / 255.0) ** np.exp(rng.uniform(np.log(0.4), np.log(2.2)))
    elif tone < 0.5:  # contrast compressed (or stretched) about the mean or another level
        mean = float(out.mean())
        level = mean if rng.random() < 0.5 else rng.uniform(60, 230)
        out = (out - mean) * rng.uniform(0.25, 1.4) + level
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


SHADOW_SHARE = 0.15
SHADOW_PERIOD = (5.0, 40.0)  # crop pixels between a blind's slats (log-uniform)
SHADOW_DEPTH = (0.2, 0.8)
SHADOW_PENUMBRA = (0.4, 3.0)  # pixels, the Gaussian softening of the shadow's edges (log-uniform): the light's size


def _cast_shadow(rng: np.random.Generator) -> np.ndarray:
    """(112, 112) float32 light factor of a shadow cast on the scene by something between the light and the face,
    which covers nothing: a blind's slats (two draws in three: a square wave :data:`SHADOW_PERIOD` pixels long, at
    any angle, the shadow 30-70 % of each period) or foliage (the shade of a smooth random field, 30-80 % of the
    crop, the rest flecks of light), its edges softened by :data:`SHADOW_PENUMBRA`, the shadowed light cut by
    :data:`SHADOW_DEPTH`. Light through a blind drew occlusion advice on 71-98 % of the tuning faces at a depth of
    0.7 with the model trained before these shadows, 0.7-1.3 % with the one trained with them
    (``validate_occlusion.py --part tuning``, the study's own shadows drawn with Pillow)."""
    if rng.random() < 2.0 / 3.0:
        period = float(np.exp(rng.uniform(*np.log(SHADOW_PERIOD))))
        angle = rng.uniform(0.0, np.pi)
        ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
        phase = (np.cos(angle) * xs + np.sin(angle) * ys) / period + rng.uniform(0.0, 1.0)
        shadow = ((phase % 1.0) < rng.uniform(0.3, 0.7)).astype(np.float32)
    else:
        cells = int(rng.integers(3, 11))
        field = cv2.resize(rng.random((cells, cells)).astype(np.float32), (SIZE, SIZE),
                           interpolation=cv2.INTER_CUBIC)
        shadow = (field < np.quantile(field, rng.uniform(0.3, 0.8))).astype(np.float32)
    penumbra = float(np.exp(rng.uniform(*np.log(SHADOW_PENUMBRA))))
    shadow = cv2.GaussianBlur(shadow, (0, 0), penumbra, borderType=cv2.BORDER_REFLECT101)
    return (1.0 - rng.uniform(*SHADOW_DEPTH) * shadow).astype(np.float32)


PHOTO_GRID_KINDS = ("jpeg",)
"""Capture effects whose result depends on where the image's pixel grid lies: a block codec codes the photo on the
photo's own 8-pixel grid, which the aligned crop sees rotated, scaled and shifted, not on the crop's."""
PHOTO_GRID_SHARE = 0.6
PHOTO_SCALES = (0.6, 1.7)  # photo pixels per crop pixel: a face from about 0.6 to 1.7 times the crop's size
STRONG_BLUR_SHARE = 0.08
STRONG_BLUR_SIGMA = (4.0, 12.0)
"""A Gaussian blur of 4-12 crop pixels (log-uniform) on this share of the samples, the covers blurred with the face
and still labelled covered: the training kinds blur by 4 at most, and whole photos of training identities blurred by
8 pixels (about 8 crop pixels on LFW-dev) drew ``uncover_mouth`` on 20 % of them, ``uncover_face`` on 12 %, the
model reading outside what it was trained on."""


def _on_photo_grid(image: np.ndarray, effect: object, rng: np.random.Generator) -> np.ndarray:
    """``effect`` applied on a photo's pixel grid rather than the crop's: the crop mapped onto a grid of ``r`` photo
    pixels per crop pixel (log-uniform in :data:`PHOTO_SCALES`), turned by up to 10 degrees and shifted by a
    fraction of a block, the effect applied there, and mapped back (bilinear both ways, borders reflected). With
    codec effects drawn only on the crop's own grid, the model took a photo coded at JPEG quality 5 for a covered
    face: on 120 faces of tuning identities, face_occlusion > 0.2 on 2 % when the crop itself was coded, 25-31 % when
    it was coded at 0.8 or 1.3 times its size (and 33 % of whole photos scored with components). Two side effects,
    left as they are: the photo (``112 r + 8`` pixels a side) is too small for a turned and shifted crop by a
    sliver along its edges (1 % of the crop's pixels on average, never in the eye, mouth or face regions), which
    read reflected content there; and below ``r = 1`` the warp to the photo is bilinear without a prefilter, so
    these draws also carry a mildly aliased downsample (an identity effect changes a face by 2 grey levels on
    average at ``r = 0.6``), labelled not covered like the codec."""
    scale = float(np.exp(rng.uniform(*np.log(PHOTO_SCALES))))
    angle = float(np.radians(rng.uniform(-10.0, 10.0)))
    size = int(np.ceil(SIZE * scale)) + 8
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = np.array([(SIZE - 1) / 2.0, (SIZE - 1) / 2.0])
    to_photo = np.empty((2, 3))
    to_photo[:, :2] = rotation
    to_photo[:, 2] = (size - 1) / 2.0 + rng.uniform(-4.0, 4.0, 2) - rotation @ centre
    photo = cv2.warpAffine(image, to_photo, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    return cv2.warpAffine(effect(photo), to_photo, (SIZE, SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT101)


def synthesise(crop: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sample from one aligned crop.

    Parameters
    ----------
    crop : ndarray (112, 112, 3), uint8
        The face.
    other : ndarray (112, 112, 3), uint8
        Another training photo (source of skin tones and photo patches).
    rng : numpy.random.Generator

    Returns
    -------
    image : ndarray (112, 112, 3), uint8
    coverage : ndarray (112, 112), float32 in [0, 1]
        The fraction of each pixel covered by an occluder (0 everywhere when none was painted).
    """
    image = _jitter(crop, rng) if rng.random() < 0.7 else crop.copy()
    coverage = np.zeros((SIZE, SIZE), np.float32)
    n_occluders = int(rng.choice(4, p=[0.3, 0.42, 0.18, 0.10]))
    canvas = image.astype(np.float32)
    for _ in range(n_occluders):
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        alpha = _shape_mask(shape, rng).astype(np.float32) / 255.0
        fill = "dark" if shape == "black_rectangle" else FILLS[int(rng.integers(len(FILLS)))]
        texture = np.zeros((SIZE, SIZE, 3), np.float32) if shape == "black_rectangle" \
            else _fill(fill, crop, other, rng)
        opacity = 1.0 if rng.random() < 0.8 else float(rng.uniform(0.85, 1.0))
        canvas = canvas * (1.0 - opacity * alpha[..., None]) + texture * (opacity * alpha[..., None])
        coverage = np.maximum(coverage, alpha)
    if rng.random() < SHADOW_SHARE:  # cast on the face and the covers alike, before the camera sees them
        canvas = canvas * _cast_shadow(rng)[..., None]
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        image = _photometric(image, rng)
    draw = rng.random()
    n_capture = 0 if draw < 0.25 else (1 if draw < 0.75 else 2)
    for kind in rng.choice(CAPTURE_KINDS, size=n_capture, replace=False):
        # severities skewed high (sqrt of a uniform draw): strong capture effects are where occlusion is confused
        severity = float(np.sqrt(rng.uniform(0.0025, 1.0)))
        if kind in PHOTO_GRID_KINDS and rng.random() < PHOTO_GRID_SHARE:
            image = _on_photo_grid(image, lambda big, k=str(kind), s=severity: degrade(big, k, s, random_state=rng),
                                   rng)
        else:
            image = degrade(image, str(kind), severity, random_state=rng)
    if rng.random() < STRONG_BLUR_SHARE:  # beyond the training kinds' blur (sigma <= 4 crop pixels)
        image = _strong_blur(image, rng)
    return image, coverage


def _strong_blur(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A Gaussian blur of :data:`STRONG_BLUR_SIGMA` pixels (log-uniform), the covers blurred with the face."""
    return cv2.GaussianBlur(image, (0, 0), float(np.exp(rng.uniform(*np.log(STRONG_BLUR_SIGMA)))))
