"""Integration on real LFW-dev faces with the real SFace backend (the ``lfw_store`` session fixture)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.augment.crops import load_crops
from fiqa.cli import main
from fiqa.embed import create_embedder
from fiqa.evaluate.verify import verification_summary
from fiqa.store import open_store
from tolerances import UNIT_NORM

pytestmark = pytest.mark.lfw


def test_lfw_subset_store(lfw_store):
    assert 250 <= len(lfw_store) <= 300
    assert lfw_store.dim == 128 and lfw_store.meta["backend"]["backend"] == "sface"
    assert lfw_store.meta["alignment"]["policy"] == "largest"
    assert lfw_store.ok.mean() > 0.97  # LFW images are centred faces
    assert set(lfw_store.status) <= {"ok", "no_face"}
    ok = lfw_store.ok
    assert (lfw_store.n_faces[ok] >= 1).all()
    assert sum(lfw_store.meta["counts"].values()) == len(lfw_store)
    # Landmarks inside the 250x250 image, eyes above the mouth corners.
    marks = lfw_store.landmarks[ok]
    assert np.nanmin(marks) >= 0 and np.nanmax(marks) <= 250
    assert (marks[:, [0, 1], 1].mean(axis=1) < marks[:, [3, 4], 1].mean(axis=1)).all()
    np.testing.assert_allclose(np.linalg.norm(lfw_store.vectors[ok], axis=1), 1.0, rtol=0, atol=UNIT_NORM)


def test_lfw_verification_figures(lfw_store):
    summary = verification_summary(lfw_store)
    assert summary.roc_auc > 0.99
    assert 0.55 < summary.mean_mated < 0.8
    assert -0.05 < summary.mean_nonmated < 0.2
    assert summary.n_identities == 30 + (lfw_store.ok[-60:]).sum()


def test_load_crops_reproduce_the_stored_embeddings(lfw_store):
    rows = np.flatnonzero(lfw_store.ok)[::40]
    crops = load_crops(lfw_store, rows)
    vectors = create_embedder("sface").embed(crops)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    # the same unit vector computed twice (each within UNIT_VECTOR_PATHS / 2 per component of the exact one), then a
    # 128-term float32 dot product: within UNIT_NORM of 1
    np.testing.assert_allclose((vectors * lfw_store.vectors[rows]).sum(axis=1), 1.0, rtol=0, atol=UNIT_NORM)


def test_cli_on_aligned_crops_and_bad_input(lfw_store, tmp_path):
    """`fiqa embed --aligned` on crops re-made from the store gives the same vectors; bad files are recorded."""
    rows = np.flatnonzero(lfw_store.ok)[:6]
    person = tmp_path / "crops" / "someone"
    person.mkdir(parents=True)
    for row, crop in zip(rows, load_crops(lfw_store, rows)):
        (person / f"{row:04d}.png").write_bytes(cv2.imencode(".png", crop)[1].tobytes())
    (person / "9998.jpg").write_bytes(b"not an image")
    result = CliRunner().invoke(main, ["embed", str(tmp_path / "crops"), "--out", str(tmp_path / "store"),
                                       "--aligned", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "not_an_image" in result.output and "ok" in result.output
    store = open_store(tmp_path / "store")
    assert store.status.tolist() == ["ok"] * 6 + ["not_an_image"]
    np.testing.assert_allclose((store.vectors[:6] * lfw_store.vectors[rows]).sum(axis=1), 1.0, rtol=0, atol=UNIT_NORM)


def test_cli_detects_no_face_and_fails_only_when_nothing_worked(lfw_store, tmp_path):
    person = tmp_path / "data" / "nobody"
    person.mkdir(parents=True)
    (person / "flat.png").write_bytes(cv2.imencode(".png", np.full((250, 250, 3), 128, np.uint8))[1].tobytes())
    (person / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = CliRunner().invoke(main, ["embed", str(tmp_path / "data"), "--out", str(tmp_path / "store")])
    assert result.exit_code != 0
    assert "not one of 2 samples could be embedded" in result.output
    store = open_store(tmp_path / "store")
    assert dict(zip(store.samples.location, store.status)) == {
        str(person / "broken.jpg"): "not_an_image", str(person / "flat.png"): "no_face"}
