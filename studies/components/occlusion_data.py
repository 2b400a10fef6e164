"""Aligned LFW-dev crops for the occlusion study, aligned once and cached outside the repository.

    python -m studies.components.occlusion_data --lfw ../shared/data/lfw-dev

Every photo of LFW-dev goes through fiqa's own pipeline (``FacePipeline()``); photos without a face are
left out and counted. The cache (``$TMPDIR/fiqa-occlusion-crops-<key>.npz``) is keyed by the list of photo paths,
their sizes and modification times: another data set, or a changed photo, gets a new file, never a stale one.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_LFW = ROOT.parent / "shared" / "data" / "lfw-dev"


@dataclass(frozen=True)
class AlignedFaces:
    """Aligned crops of one data set.

    Attributes
    ----------
    crops : ndarray of shape (N, 112, 112, 3), uint8, BGR
    identities : ndarray of shape (N,), str
        The person folder of each crop.
    paths : ndarray of shape (N,), str
        Each photo's path relative to the data set folder.
    all_identities : ndarray of shape (P,), str
        Every person folder of the data set, with or without a usable face (what the identity split is drawn over).
    n_no_face : int
        Photos the pipeline found no face in (left out).
    """

    crops: np.ndarray
    identities: np.ndarray
    paths: np.ndarray
    all_identities: np.ndarray
    n_no_face: int


def _photos(lfw: Path) -> tuple[list[Path], list[str]]:
    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    photos = [photo for person in people for photo in sorted((lfw / person).glob("*.jpg"))]
    return photos, people


def _key(lfw: Path, photos: list[Path]) -> str:
    digest = hashlib.sha256()
    for photo in photos:
        stat = photo.stat()
        digest.update(f"{photo.relative_to(lfw)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_aligned(lfw: str | Path = DEFAULT_LFW, *, cache_dir: str | Path | None = None) -> AlignedFaces:
    """Aligned crops of every photo of ``lfw`` (read from the cache when its key matches, else aligned and cached)."""
    lfw = Path(lfw).resolve()
    if not lfw.is_dir():
        raise FileNotFoundError(f"LFW-dev not found at {lfw} (pass --lfw)")
    photos, people = _photos(lfw)
    cache = Path(cache_dir or tempfile.gettempdir()) / f"fiqa-occlusion-crops-{_key(lfw, photos)}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return AlignedFaces(data["crops"], data["identities"], data["paths"], data["all_identities"],
                                int(data["n_no_face"]))
    from tqdm import tqdm

    from fiqa.detect.pipeline import FacePipeline

    pipeline = FacePipeline()
    crops, identities, paths = [], [], []
    n_no_face = 0
    for photo in tqdm(photos, desc="align", mininterval=10.0):
        face = pipeline.process(photo)
        if face.crop is None:
            n_no_face += 1
            continue
        crops.append(face.crop)
        identities.append(photo.parent.name)
        paths.append(str(photo.relative_to(lfw)))
    faces = AlignedFaces(np.stack(crops), np.array(identities), np.array(paths), np.array(people), n_no_face)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, crops=faces.crops, identities=faces.identities, paths=faces.paths,
             all_identities=faces.all_identities, n_no_face=np.int64(n_no_face))
    partial.replace(cache)
    logger.info("aligned %d photos (%d without a face) -> %s", len(crops), n_no_face, cache)
    return faces


def tuning_identities(train_identities: np.ndarray, random_state: int, fraction: float = 0.15) -> np.ndarray:
    """A seeded ``fraction`` of the train identities kept out of the fit, to choose settings on (with the training
    degradations only); the test identities stay untouched until the final validation."""
    names = np.sort(np.asarray(train_identities).astype(str))
    rng = np.random.default_rng([random_state, 15])
    return np.sort(rng.choice(names, size=max(1, round(fraction * len(names))), replace=False))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW-dev folder (one sub-folder per person)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faces = load_aligned(args.lfw)
    logger.info("%d crops of %d people (%d photos without a face)", len(faces.crops), len(set(faces.identities)),
                faces.n_no_face)


if __name__ == "__main__":
    main()
