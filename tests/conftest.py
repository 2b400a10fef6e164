"""Shared fixtures. Data sets the tests need are located here, never downloaded.

LFW-dev is read from ``$FIQA_LFW`` or ``../shared/data/lfw-dev`` (relative to the project root). When it is
missing, tests that need it fail under ``CI=true`` and are skipped elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    # registered here, not in pyproject.toml, next to the rule it serves: scripts/test.sh runs the tests marked
    # ``numerics`` a second time under other BLAS and onnxruntime thread settings (docs/numerics.md)
    config.addinivalue_line("markers", "numerics: compares two computations of the same numbers within a rounding "
                                       "bound; run again by scripts/test.sh under a second BLAS/threading setting")
    # the user cache (composed scoring models) of a test session is its own, never the user's ~/.cache/fiqa
    if not os.environ.get("FIQA_CACHE"):
        import tempfile

        os.environ["FIQA_CACHE"] = tempfile.mkdtemp(prefix="fiqa-test-cache-")


def _lfw_path() -> Path:
    return Path(os.environ.get("FIQA_LFW") or ROOT.parent / "shared" / "data" / "lfw-dev")


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    """The LFW-dev folder (one sub-folder per person)."""
    path = _lfw_path()
    if not path.is_dir():
        message = f"LFW-dev not found at {path} (set FIQA_LFW or place shared/data/lfw-dev beside the project)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def lfw_subset(lfw_dir: Path, *, n_identities: int = 30, min_images: int = 5, max_images: int = 8,
               n_singletons: int = 60) -> list[tuple[Path, str]]:
    """A deterministic LFW-dev subset: the first ``n_identities`` people (by name) with at least ``min_images``
    images (capped at ``max_images`` each), then the first ``n_singletons`` people with one image."""
    several, singles = [], []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= min_images and len(several) < n_identities:
            several.append([(path, person.name) for path in images[:max_images]])
        elif len(images) == 1 and len(singles) < n_singletons:
            singles.append((images[0], person.name))
        if len(several) == n_identities and len(singles) == n_singletons:
            break
    return [item for group in several for item in group] + singles


@pytest.fixture(scope="session")
def lfw_store(lfw_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real SFace embedding store (``fiqa.core.types.EmbeddingStore``) of ``lfw_subset(lfw_dir)`` (~300 images:
    30 identities with 5-8 images each and 60 singletons), built once per test session."""
    from fiqa.embed.extract import embed_source
    from fiqa.io import open_source

    folder = tmp_path_factory.mktemp("lfw_store")
    rows = "".join(f"{path},{identity}\n" for path, identity in lfw_subset(lfw_dir))
    (folder / "subset.csv").write_text("path,identity\n" + rows, encoding="utf-8")
    listed = open_source(folder / "subset.csv", allow_outside=True)  # it names the photos where LFW keeps them
    return embed_source(listed, folder / "store", backend="sface", progress=False)


@pytest.fixture(scope="session")
def exported_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small quality model exported as ``fiqa train`` exports a feature head (``model.onnx`` and ``head.onnx``,
    with their SHA-256 files): an untrained head, a seeded quantile calibration."""
    import numpy as np
    import torch

    from fiqa.train import export_onnx, fit_quantile_calibration
    from fiqa.train.models import CalibratedRegressor, QualityHead

    torch.manual_seed(0)
    head = QualityHead()
    head.init_output_bias(50.0)
    rng = np.random.default_rng(0)
    calibration = fit_quantile_calibration(rng.normal(50, 5, 200), rng.uniform(0, 100, 200))
    return export_onnx(CalibratedRegressor(head, calibration).eval(),
                       tmp_path_factory.mktemp("model") / "model.onnx", shape="head", metadata={"label_method": "t"})
