"""The seed analysis' controlled scenarios, built from real LFW faces, synthetic degradations and a real recogniser.

Three kinds of *case* are mixed into a background of real identities (``docs/new-labeller.md`` explains why):

- ``A`` (role ``consistent``): one person, ``burst_size`` near-identical clean shots (one photo, small shifts and
  brightness changes): consistent *and* high quality; a labeller should rate it high.
- ``B`` (role ``burst``): one person, ``burst_size`` near-identical shots that are all equally degraded (one photo,
  one degradation at ``burst_severity``, small shifts): consistent but poor; a labeller should not rate it high.
- ``C`` (roles ``good`` / ``poor``): one person, one clean photo plus ``n_poor`` mutually similar degraded shots of
  another photo of them: the good image should rank first in its class.
- background (role ``background``): ``n_background`` real identities with up to ``images_per_identity`` photos
  each; every photo is degraded with probability 1/2 by a random degradation at a random severity in
  [0.2, 1], so the known severity varies across the whole set (Spearman of a label with severity).

Every random choice derives from ``seed``; :func:`scenario_metrics` computes the numbers the issue asks for.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.stats import spearmanr

from fiqa.augment.degrade import DEGRADATIONS, degrade
from fiqa.core.errors import DataSourceError, InvalidParameterError, check_fraction, check_int
from fiqa.core.provenance import provenance

logger = logging.getLogger(__name__)

__all__ = ["ScenarioSet", "build_scenarios", "scenario_metrics"]


@dataclass(frozen=True)
class ScenarioSet:
    """Embedded scenario samples, one row each.

    Attributes
    ----------
    vectors : ndarray of shape (N, d), float32
        L2-normalised embeddings.
    norms : ndarray of shape (N,), float32
        Raw embedding norms.
    identities : ndarray of shape (N,), object (str)
        The LFW person (cases get a ``"<case>:"`` prefix so a case never shares a class with the background).
    severity : ndarray of shape (N,), float64
        Known degradation severity in [0, 1] (0 = the original photo).
    kind : ndarray of shape (N,), object (str)
        Degradation name, ``""`` for clean samples.
    role : ndarray of shape (N,), object (str)
        ``consistent``, ``burst``, ``good``, ``poor`` or ``background``.
    case : ndarray of shape (N,), object (str)
        ``"A0"``, ``"B1"``, ``"C0"``, ... or ``""`` for the background.
    location : ndarray of shape (N,), object (str)
        Source photo of each sample.
    meta : dict
        Parameters, embedder description, versions.
    """

    vectors: np.ndarray
    norms: np.ndarray
    identities: np.ndarray
    severity: np.ndarray
    kind: np.ndarray
    role: np.ndarray
    case: np.ndarray
    location: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.identities)


def _jitter(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A near-duplicate shot: shift by up to 2 pixels and change brightness by up to 3 %."""
    dx, dy = rng.integers(-2, 3, size=2)
    matrix = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    shifted = cv2.warpAffine(crop, matrix, (crop.shape[1], crop.shape[0]), borderMode=cv2.BORDER_REFLECT101)
    gain = 1.0 + rng.uniform(-0.03, 0.03)
    return np.clip(np.rint(shifted.astype(np.float32) * gain), 0, 255).astype(np.uint8)


_Row = tuple[np.ndarray, str, float, str, str, str, str]
"""One scenario sample: (aligned crop, identity, severity, degradation kind, role, case, source photo)."""


def build_scenarios(lfw_dir: str | Path, *, n_cases: int = 2, burst_size: int = 8, n_poor: int = 8,
                    burst_kind: str = "blur", burst_severity: float = 0.8, n_background: int = 30,
                    images_per_identity: int = 4, random_state: int = 0, embedder: Any = None,
                    aligner: Any = None) -> ScenarioSet:
    """Build scenarios A, B, C (``n_cases`` of each) and the background from a folder-per-person face set.

    Parameters
    ----------
    lfw_dir : path
        A folder with one sub-folder of JPEGs per person (LFW layout).
    n_cases : int >= 1
        Independent instances of each of A, B and C (different people).
    burst_size, n_poor : int >= 2
        Shots in each A / B burst; poor shots in each C class.
    burst_kind : str
        Degradation of the B bursts (a key of ``fiqa.augment.degrade.DEGRADATIONS``); C's poor shots use the kinds in
        turn, one kind per case.
    burst_severity : float in (0, 1]
        Severity of the B bursts; C's poor shots take severities in [0.6, 0.9].
    n_background, images_per_identity : int
        Background identities (each with at least 2 photos) and the most photos used per identity.
    random_state : int
        Every random choice (people, jitter, degradations).
    embedder, aligner : optional
        A ``fiqa.embed`` embedder (default ``create_embedder("sface")``) and a ``fiqa.detect.FaceAligner``.

    Returns
    -------
    ScenarioSet
    """
    _check_params(
        n_cases, burst_size, n_poor, burst_kind, burst_severity, n_background, images_per_identity, random_state
    )
    root = Path(lfw_dir)
    photos = _people_with_photos(root, 3 * n_cases + n_background)
    if embedder is None:
        from fiqa.embed import create_embedder

        embedder = create_embedder("sface")
    if aligner is None:
        from fiqa.detect import FaceAligner

        aligner = FaceAligner()

    rng = np.random.default_rng(random_state)
    people = _People(root, photos, aligner, rng)
    kinds = sorted(DEGRADATIONS)
    rows: list[_Row] = []
    for index in range(n_cases):
        rows += _consistent_burst(people, rng, index, burst_size)
        rows += _degraded_burst(people, rng, index, burst_size, burst_kind, burst_severity)
        rows += _good_among_poor(people, rng, index, n_poor, kinds[index % len(kinds)])
    for _ in range(n_background):
        rows += _background(people, rng, images_per_identity, kinds)

    params = {
        "n_cases": n_cases,
        "burst_size": burst_size,
        "n_poor": n_poor,
        "burst_kind": burst_kind,
        "burst_severity": burst_severity,
        "n_background": n_background,
        "images_per_identity": images_per_identity,
        "random_state": random_state,
        "lfw_dir": str(root),
    }
    return _embed_rows(rows, embedder, params)


def _check_params(
    n_cases: int,
    burst_size: int,
    n_poor: int,
    burst_kind: str,
    burst_severity: float,
    n_background: int,
    images_per_identity: int,
    random_state: int,
) -> None:
    owner = "build_scenarios"
    for name, value, minimum in (
        ("n_cases", n_cases, 1),
        ("burst_size", burst_size, 2),
        ("n_poor", n_poor, 2),
        ("n_background", n_background, 0),
        ("images_per_identity", images_per_identity, 2),
        ("random_state", random_state, 0),
    ):
        check_int(owner, name, value, minimum)
    if burst_kind not in DEGRADATIONS:
        raise InvalidParameterError(owner, "burst_kind", f"one of {sorted(DEGRADATIONS)}", burst_kind)
    check_fraction(owner, "burst_severity", burst_severity, low_open=True, high_open=False)


def _people_with_photos(root: Path, needed: int) -> dict[str, list[Path]]:
    """Each person's JPEGs in a folder-per-person face set, checked to hold ``needed`` people with >= 2 photos."""
    if not root.is_dir():
        raise DataSourceError(f"{root}: face folder does not exist")
    photos = {p.name: sorted(p.glob("*.jpg")) for p in sorted(root.iterdir()) if p.is_dir()}
    multi = sum(len(files) >= 2 for files in photos.values())
    if multi < needed:
        raise DataSourceError(f"{root}: needs {needed} people with at least 2 photos, found {multi}")
    return photos


class _People:
    """The people with at least 2 photos (``photos``: name -> JPEGs), handed out in a seeded random order."""

    def __init__(self, root: Path, photos: dict[str, list[Path]], aligner: Any, rng: np.random.Generator) -> None:
        self.root = root
        self.photos = photos
        self.aligner = aligner
        multi = sorted(name for name, files in photos.items() if len(files) >= 2)
        self.chosen = [multi[i] for i in rng.permutation(len(multi))]
        self.cursor = 0

    def _aligned(self, path: Path) -> np.ndarray | None:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataSourceError(f"{path}: cannot be read as an image")
        return self.aligner.align(image).crop

    def next_person(self, count: int) -> tuple[str, list[tuple[Path, np.ndarray]]]:
        """The next person with at least two detectable faces among their first ``max(count, 2)`` photos: their
        name and (photo, aligned crop) of each detected one."""
        while self.cursor < len(self.chosen):
            name = self.chosen[self.cursor]
            self.cursor += 1
            crops = []
            for path in self.photos[name][: max(count, 2)]:
                crop = self._aligned(path)
                if crop is not None:
                    crops.append((path, crop))
            if len(crops) >= 2:
                return name, crops
        raise DataSourceError(f"{self.root}: ran out of people with two detectable faces")


def _consistent_burst(people: _People, rng: np.random.Generator, index: int, burst_size: int) -> list[_Row]:
    """Case ``A<index>``: ``burst_size`` near-identical clean shots of one photo."""
    name, crops = people.next_person(2)
    path, crop = crops[0]
    return [
        (_jitter(crop, rng), f"A{index}:{name}", 0.0, "", "consistent", f"A{index}", str(path))
        for _ in range(burst_size)
    ]


def _degraded_burst(
    people: _People, rng: np.random.Generator, index: int, burst_size: int, burst_kind: str, burst_severity: float
) -> list[_Row]:
    """Case ``B<index>``: ``burst_size`` near-identical shots of one photo, all equally degraded (same kind,
    severity and noise/occluder draw)."""
    name, crops = people.next_person(2)
    path, crop = crops[0]
    burst_seed = int(rng.integers(2**31))
    return [
        (
            degrade(_jitter(crop, rng), burst_kind, burst_severity, random_state=burst_seed),
            f"B{index}:{name}",
            float(burst_severity),
            burst_kind,
            "burst",
            f"B{index}",
            str(path),
        )
        for _ in range(burst_size)
    ]


def _good_among_poor(people: _People, rng: np.random.Generator, index: int, n_poor: int, kind: str) -> list[_Row]:
    """Case ``C<index>``: one clean photo, then ``n_poor`` mutually similar shots of another photo of the same
    person degraded by ``kind`` at severities spread over [0.6, 0.9]."""
    name, crops = people.next_person(2)
    (good_path, good), (poor_path, poor) = crops[0], crops[1]
    rows: list[_Row] = [(good, f"C{index}:{name}", 0.0, "", "good", f"C{index}", str(good_path))]
    poor_seed = int(rng.integers(2**31))
    for severity in np.linspace(0.6, 0.9, n_poor):
        shot = degrade(_jitter(poor, rng), kind, float(severity), random_state=poor_seed)
        rows.append((shot, f"C{index}:{name}", float(severity), kind, "poor", f"C{index}", str(poor_path)))
    return rows


def _background(people: _People, rng: np.random.Generator, images_per_identity: int, kinds: list[str]) -> list[_Row]:
    """One background person's photos, each degraded with probability 1/2 (random kind and severity in [0.2, 1])."""
    name, crops = people.next_person(images_per_identity)
    rows: list[_Row] = []
    for path, crop in crops:
        if rng.random() < 0.5:
            kind = kinds[int(rng.integers(len(kinds)))]
            severity = float(rng.uniform(0.2, 1.0))
            crop = degrade(crop, kind, severity, random_state=int(rng.integers(2**31)))
        else:
            kind, severity = "", 0.0
        rows.append((crop, name, severity, kind, "background", "", str(path)))
    return rows


def _embed_rows(rows: list[_Row], embedder: Any, params: dict[str, Any]) -> ScenarioSet:
    """Embed the rows' crops and assemble the :class:`ScenarioSet`."""
    images = np.stack([r[0] for r in rows])
    logger.info("build_scenarios: embedding %d crops", len(images))
    raw = np.asarray(embedder.embed(images), dtype=np.float32)
    norms = np.linalg.norm(raw, axis=1).astype(np.float32)
    columns = list(zip(*[r[1:] for r in rows]))
    meta = provenance(**params)
    meta["embedder"] = embedder.describe() if hasattr(embedder, "describe") else repr(embedder)
    return ScenarioSet(
        vectors=raw / norms[:, None],
        norms=norms,
        identities=np.asarray(columns[0], dtype=object),
        severity=np.asarray(columns[1], dtype=np.float64),
        kind=np.asarray(columns[2], dtype=object),
        role=np.asarray(columns[3], dtype=object),
        case=np.asarray(columns[4], dtype=object),
        location=np.asarray(columns[5], dtype=object),
        meta=meta,
    )


def scenario_metrics(scores: np.ndarray, scenarios: ScenarioSet) -> dict[str, float]:
    """The issue's numbers for one set of quality scores (higher = better) on a :class:`ScenarioSet`.

    Parameters
    ----------
    scores : ndarray of shape (N,), float
        Quality per scenario row; NaN rows (unlabelled) are left out of percentiles and correlations.

    Returns
    -------
    dict
        ``good_rank_C``: mean rank of the good image inside its C class (1 = first; ``1 + n_poor`` = last);
        ``good_first_C``: fraction of C cases where it ranks first;
        ``burst_percentile_B``: mean percentile (0-100) of B's burst images among all scored rows;
        ``consistent_percentile_A``: the same for A's clean bursts;
        ``spearman_severity``: Spearman correlation of the score with ``-severity`` over all scored rows
        (1 = quality falls exactly as severity rises).
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(scenarios),):
        raise InvalidParameterError(
            "scenario_metrics", "scores", f"an array of shape ({len(scenarios)},)", f"shape {scores.shape}"
        )
    valid = np.isfinite(scores)
    ranked = np.full(len(scores), np.nan)
    order = np.argsort(np.argsort(scores[valid], kind="stable"), kind="stable")
    ranked[valid] = 100.0 * (order + 0.5) / valid.sum()
    ranks, firsts = [], []
    for case in sorted({c for c in scenarios.case if c.startswith("C")}):
        members = scenarios.case == case
        good = members & (scenarios.role == "good")
        rank = 1 + int((scores[members & (scenarios.role == "poor")] >= scores[good][0]).sum())
        ranks.append(rank)
        firsts.append(rank == 1)
    burst = scenarios.role == "burst"
    consistent = scenarios.role == "consistent"
    return {
        "good_rank_C": float(np.mean(ranks)),
        "good_first_C": float(np.mean(firsts)),
        "burst_percentile_B": float(np.nanmean(ranked[burst])),
        "consistent_percentile_A": float(np.nanmean(ranked[consistent])),
        "spearman_severity": float(spearmanr(scores[valid], -scenarios.severity[valid]).statistic),
    }
