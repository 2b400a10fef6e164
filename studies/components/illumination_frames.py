"""``illumination_uniformity`` against dark spectacle frames and against light falling off, on training identities.

Dark frames round the eyes take little light from a face but are many stops darker than skin; a measure of uneven
light should barely notice them and should follow light that falls off across the face. On 200 LFW-dev faces of
training identities (none of fiqa's degradation code), the table gives:

- the level 10 % of the faces as they are exceed (so that measures on different scales are compared at the same
  false rate), and the share of faces above it with frames 2 or 3 pixels wide (dark grey, anti-aliased) drawn round
  both eyes and across the nose bridge;
- Spearman's rho of the measure with the severity (0, 0.2, ... 1; pooled over faces, and the median of each face's
  own rho) for light falling off in linear light toward one side, toward the top, and the audit's corner shadow.

    .venv/bin/python -m studies.components.illumination_frames --random-state 0

The measure is the shipped one. To read the code of another commit (the mean of the log2 light before 4470ae9),
point ``PYTHONPATH`` at that commit's ``src`` in a worktree and pass ``--out``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import spearmanr
from studies.components.audit_components import corner_shadow
from studies.components.validate_components import _to_linear, _to_srgb, held_apart_crops
from studies.report_file import write_report

from fiqa.components import compute_components
from fiqa.detect.align import ARCFACE_TEMPLATE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "studies" / "results" / "components_illumination.md"
SEVERITIES = np.linspace(0.0, 1.0, 6)
_COLUMNS = np.linspace(0.0, 1.0, 112)[None, :, None]
_ROWS = np.linspace(0.0, 1.0, 112)[:, None, None]


def side_falloff(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Light falling off toward the photo's left, to 1 - 0.85 s at the border (linear light)."""
    return _to_srgb(_to_linear(crop) * (1.0 - 0.85 * s * (1.0 - _COLUMNS)))


def top_falloff(crop: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Light falling off toward the top (a brim's shadow), to 1 - 0.85 s at the top border, none below 60 %."""
    return _to_srgb(_to_linear(crop) * (1.0 - 0.85 * s * np.clip(1.0 - _ROWS / 0.6, 0.0, 1.0)))


def frames(crop: np.ndarray, width: int) -> np.ndarray:
    """Dark spectacle frames: an ellipse of 14 x 10 pixels round each eye of the template and a bridge."""
    out = crop.copy()
    left, right = ARCFACE_TEMPLATE[0], ARCFACE_TEMPLATE[1]
    for eye in (left, right):
        cv2.ellipse(out, (int(eye[0]), int(eye[1])), (14, 10), 0, 0, 360, (20, 20, 20), width, cv2.LINE_AA)
    cv2.line(out, (int(left[0]) + 14, int(left[1])), (int(right[0]) - 14, int(right[1])), (20, 20, 20), width,
             cv2.LINE_AA)
    return out


def _values(crops: np.ndarray) -> np.ndarray:
    return np.asarray(compute_components(crops).column("illumination_uniformity", raw=True), dtype=np.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw", type=Path, default=REPO.parent / "shared" / "data" / "lfw-dev")
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--random-state", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    started = time.time()
    _, crops = held_apart_crops(args.lfw, 300, args.random_state, "train")
    crops = crops[:args.faces]
    level = float(np.nanpercentile(_values(crops), 90))
    cells = [f"{level:.3f}"]
    for width in (2, 3):
        cells.append(f"{np.nanmean(_values(np.stack([frames(c, width) for c in crops])) > level):.1%}")
    for effect in (side_falloff, top_falloff, corner_shadow):
        table = np.stack([_values(np.stack([effect(c, float(s), None) for c in crops])) for s in SEVERITIES])
        severity = np.broadcast_to(SEVERITIES[:, None], table.shape)
        ok = np.isfinite(table)
        pooled = spearmanr(severity[ok], table[ok]).statistic
        per_face = np.nanmedian([spearmanr(SEVERITIES, table[:, i]).statistic for i in range(table.shape[1])
                                 if np.all(np.isfinite(table[:, i]))])
        cells.append(f"{pooled:+.3f} ({per_face:+.2f})")
    lines = ["# `illumination_uniformity`: dark frames and light falling off (training identities)", "",
             f"Command: `.venv/bin/python -m studies.components.illumination_frames --random-state "
             f"{args.random_state}`: {len(crops)} LFW-dev faces of training identities "
             f"(`split_identities(test_fraction=0.5, random_state={args.random_state})`, part 'train'); the effects "
             "are written in the script (the corner shadow is the audit's).", "",
             "| level 10 % of the faces exceed (stops) | 2 px frames above it | 3 px frames above it | side falloff "
             "rho pooled (per face) | top falloff | corner shadow |",
             "|---:|---:|---:|---:|---:|---:|", "| " + " | ".join(cells) + " |", "",
             f"Ran in {time.time() - started:.0f} s."]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()
