"""Resumable extraction: chunking, statuses, kill-and-resume equality, parameter errors.

These tests are about the storage and resume logic, so they use a small deterministic embedder
(``PixelEmbedder``) on generated pre-aligned crops; the real SFace path is covered in test_lfw_integration.py.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError, StoreError
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.extract import SampleFailedError, embed_source
from fiqa.store import open_store, partial_path
from tolerances import UNIT_NORM, UNIT_VECTOR_PATHS, dot_bound

ALIGNED = DetectionSettings(aligned=True)


class PixelEmbedder:
    """Deterministic test embedder: a fixed random projection of 8x8-downsampled crops (float64 maths).

    ``delay`` seconds of sleep per batch make a run slow enough to be killed midway; ``calls`` counts crops.
    """

    name = "pixel-test"
    dim = 16

    def __init__(self, delay: float = 0.0, zero_for_mean_below: float = -1.0) -> None:
        self.delay, self.zero_below = delay, zero_for_mean_below
        self.projection = np.random.default_rng(7).standard_normal((8 * 8 * 3, self.dim))
        self.crops_seen = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        self.crops_seen += len(crops)
        small = crops.reshape(len(crops), 8, 14, 8, 14, 3).mean(axis=(2, 4)).reshape(len(crops), -1)
        vectors = (small / 255.0 - 0.5) @ self.projection + 0.1
        vectors[crops.mean(axis=(1, 2, 3)) < self.zero_below] = 0.0
        return vectors.astype(np.float32)

    def describe(self) -> dict:
        return {"backend": self.name, "dim": self.dim}


def write_crops(folder: Path, n: int, random_state: int = 0) -> list[Path]:
    """``n`` random 112x112 PNG crops in ``folder/person_<k>/`` (3 per identity)."""
    rng = np.random.default_rng(random_state)
    paths = []
    for i in range(n):
        path = folder / f"person_{i // 3:03d}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(cv2.imencode(".png", rng.integers(0, 256, (112, 112, 3), dtype=np.uint8))[1].tobytes())
        paths.append(path)
    return paths


def test_store_holds_normalised_vectors_norms_and_statuses(tmp_path):
    paths = write_crops(tmp_path / "data", 10)
    paths[4].write_bytes(b"this is not an image")
    big = np.full((300, 300, 3), 90, np.uint8)  # pre-aligned input of another size is resized to 112x112
    paths[7].write_bytes(cv2.imencode(".png", big)[1].tobytes())
    embedder = PixelEmbedder()
    store = embed_source(tmp_path / "data", tmp_path / "store", backend=embedder, detection=ALIGNED, batch_size=3,
                         chunk_size=4, progress=False)

    assert len(store) == 10 and store.dim == 16
    assert list(store.status) == ["ok"] * 4 + ["not_an_image"] + ["ok"] * 5
    assert store.samples.identity.tolist() == [f"person_{i // 3:03d}" for i in range(10)]
    # Independent expectation: embed each crop alone, normalise by hand.
    for i in [0, 3, 9]:
        crop = cv2.imread(str(paths[i]))
        expected = PixelEmbedder().embed(crop[None])[0].astype(np.float64)
        # float32 norm of 16 squares against float64: gamma_18 / 2 relative; the unit vector within UNIT_VECTOR_PATHS
        np.testing.assert_allclose(store.norms[i], np.linalg.norm(expected), rtol=dot_bound(18) / 2)
        np.testing.assert_allclose(store.vectors[i], expected / np.linalg.norm(expected), rtol=0,
                                   atol=UNIT_VECTOR_PATHS)
    expected_big = PixelEmbedder().embed(np.full((1, 112, 112, 3), 90, np.uint8))[0]
    np.testing.assert_allclose(store.vectors[7], expected_big / np.linalg.norm(expected_big), rtol=0,
                               atol=UNIT_VECTOR_PATHS)
    assert np.isnan(store.vectors[4]).all() and np.isnan(store.norms[4])
    assert (store.n_faces == -1).all()
    np.testing.assert_allclose(np.linalg.norm(store.vectors[store.ok], axis=1), 1.0, rtol=0, atol=UNIT_NORM)
    assert isinstance(store.vectors, np.memmap)
    assert store.meta["counts"] == {"ok": 9, "not_an_image": 1}
    assert store.meta["aligned"] is True and store.meta["backend"] == {"backend": "pixel-test", "dim": 16}
    assert "numpy" in store.meta["versions"] and store.meta["params"]["chunk_size"] == 4
    assert not partial_path(tmp_path / "store").exists()
    reopened = open_store(tmp_path / "store")
    np.testing.assert_array_equal(reopened.vectors, store.vectors)


def test_zero_embedding_is_invalid_vector(tmp_path):
    paths = write_crops(tmp_path / "data", 3)
    paths[1].write_bytes(cv2.imencode(".png", np.zeros((112, 112, 3), np.uint8))[1].tobytes())
    store = embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(zero_for_mean_below=1.0),
                         detection=ALIGNED, progress=False)
    assert store.status.tolist() == ["ok", "invalid_vector", "ok"]
    assert "zero" in store.reason[1]


def test_nothing_usable_writes_store_and_raises(tmp_path):
    folder = tmp_path / "data" / "someone"
    folder.mkdir(parents=True)
    for name in ["a.jpg", "b.jpg"]:
        (folder / name).write_bytes(b"\x00garbage")
    with pytest.raises(NoUsableSamplesError, match="not one of 2 samples"):
        embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED, progress=False)
    assert open_store(tmp_path / "store").status.tolist() == ["not_an_image"] * 2


def test_on_error_raise_stops_at_first_failure(tmp_path):
    paths = write_crops(tmp_path / "data", 4)
    paths[2].unlink()
    paths[2].write_bytes(b"")
    with pytest.raises(SampleFailedError, match="0002.png: not_an_image: empty file"):
        embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED,
                     on_error="raise", progress=False)


def test_rerun_of_complete_store_does_nothing_and_changed_settings_are_refused(tmp_path):
    write_crops(tmp_path / "data", 5)
    first = embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED,
                         chunk_size=2, progress=False)
    again = PixelEmbedder()
    second = embed_source(tmp_path / "data", tmp_path / "store", backend=again, detection=ALIGNED, chunk_size=2,
                          progress=False)
    assert again.crops_seen == 0 and second.meta["created_utc"] == first.meta["created_utc"]
    with pytest.raises(StoreError, match="finished store made with different settings .*differs in: chunk_size"):
        embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED, chunk_size=3,
                     progress=False)
    # Different settings with resume on an interrupted run are refused; --no-resume starts over.
    partial_path(tmp_path / "other").mkdir()
    (partial_path(tmp_path / "other") / "plan.json").write_text('{"batch_size": 1}')
    with pytest.raises(StoreError, match="differs in: .*batch_size"):
        embed_source(tmp_path / "data", tmp_path / "other", backend=PixelEmbedder(), detection=ALIGNED, progress=False)
    store = embed_source(tmp_path / "data", tmp_path / "other", backend=PixelEmbedder(), detection=ALIGNED,
                         resume=False, progress=False)
    np.testing.assert_array_equal(store.vectors, first.vectors)


def test_output_path_holding_other_files_is_refused(tmp_path):
    write_crops(tmp_path / "data", 2)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an embedding store"):
        embed_source(tmp_path / "data", tmp_path / "busy", backend=PixelEmbedder(), detection=ALIGNED, progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("name, value, message", [
    ("batch_size", 0, "'batch_size' parameter of embed_source must be an int >= 1. Got 0"),
    ("chunk_size", 2.5, "'chunk_size' parameter of embed_source must be an int >= 1. Got 2.5"),
    ("on_error", "skip", "'on_error' parameter of embed_source must be one of"),
    ("n_workers", -1, "'n_workers' parameter of embed_source must be an int >= 0 or None"),
    ("engine", "spark", "'engine' parameter of embed_source must be one of 'local', 'ray'"),
    ("engine_options", {"threads": 2}, r"'engine_options' parameter of embed_source must be options of the local "
                                       r"engine \(none\)"),
    ("features", "yes", "'features' parameter of embed_source must be a bool or one of 'auto'"),
])
def test_invalid_parameters(tmp_path, name, value, message):
    with pytest.raises(InvalidParameterError, match=message):
        embed_source(tmp_path, tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED, **{name: value})
    assert not (tmp_path / "store").exists() and not partial_path(tmp_path / "store").exists()


def test_detection_settings_are_checked_where_they_are_made(tmp_path):
    with pytest.raises(InvalidParameterError, match="'max_pixels' parameter of DetectionSettings must be an int >= 1"):
        DetectionSettings(max_pixels=0)
    with pytest.raises(InvalidParameterError, match="'detection' parameter of embed_source must be a "
                                                    "DetectionSettings"):
        embed_source(tmp_path, tmp_path / "store", backend=PixelEmbedder(), detection={"aligned": True})


_CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from test_extract import PixelEmbedder
    from fiqa.detect.settings import DetectionSettings
    from fiqa.embed.extract import embed_source
    embed_source({data!r}, {out!r}, backend=PixelEmbedder(delay=0.15), detection=DetectionSettings(aligned=True),
                 batch_size=4, chunk_size=8, progress=False)
""")


def test_kill_and_resume_gives_the_same_store(tmp_path):
    write_crops(tmp_path / "data", 60)
    data, out = str(tmp_path / "data"), str(tmp_path / "resumed")
    child = subprocess.Popen([sys.executable, "-c", _CHILD.format(tests=str(Path(__file__).parent), data=data,
                                                                   out=out)])
    partial = partial_path(out)
    deadline = time.monotonic() + 60
    while len(list(partial.glob("chunk-*.npz"))) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done = len(list(partial.glob("chunk-*.npz")))
    assert 3 <= done < 8, f"the child should have been killed midway, it finished {done} of 8 chunks"
    assert not Path(out).exists()
    with pytest.raises(StoreError, match="interrupted"):
        open_store(out)

    counting = PixelEmbedder()
    resumed = embed_source(data, out, backend=counting, detection=ALIGNED, batch_size=4, chunk_size=8, progress=False)
    assert counting.crops_seen == 60 - 8 * done  # finished chunks are not recomputed
    whole = embed_source(data, tmp_path / "whole", backend=PixelEmbedder(), detection=ALIGNED, batch_size=4,
                         chunk_size=8, progress=False)
    for name in ["vectors", "norms", "landmarks", "n_faces", "status", "reason"]:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)
    np.testing.assert_array_equal(resumed.samples.location, whole.samples.location)
    assert len(resumed) == 60 and resumed.ok.all()


def test_a_file_name_that_is_not_utf8_is_stored_and_read_back(lfw_dir, tmp_path):
    # hostile case E23/S04: a name with bytes that are not UTF-8 must neither crash the save nor block re-runs
    import os

    from fiqa.augment.crops import load_crops
    from fiqa.score import create_scorer

    photo = next(iter(sorted(lfw_dir.glob("A*/*_0001.jpg"))))
    person = tmp_path / "data" / "Person_A"
    person.mkdir(parents=True)
    bad_name = os.fsdecode(b"bad\xff\xfename.jpg")  # surrogate escapes, as the OS hands such names to Python
    (person / bad_name).write_bytes(photo.read_bytes())
    (person / "good.jpg").write_bytes(photo.read_bytes())
    store = embed_source(tmp_path / "data", tmp_path / "store", progress=False)
    store = open_store(tmp_path / "store")  # read back from disk
    locations = sorted(store.samples.location.tolist())
    assert locations == sorted([str(person / bad_name), str(person / "good.jpg")])
    assert store.ok.all()
    crops = load_crops(store, np.arange(len(store)))  # the stored name still opens the file
    np.testing.assert_array_equal(crops[0], crops[1])
    again = embed_source(tmp_path / "data", tmp_path / "store", progress=False)  # a re-run is not blocked
    assert len(again) == 2
    table = create_scorer().score([str(person / bad_name)], progress=False)
    from fiqa.io.table import load_quality, save_quality
    assert load_quality(save_quality(table, tmp_path / "scores.parquet")).columns["location"][0] == str(
        person / bad_name)


def test_features_need_the_sface_backend(tmp_path):
    write_crops(tmp_path / "data", 3)
    with pytest.raises(InvalidParameterError, match="'features' parameter of embed_source must be False unless"):
        embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED, features=True,
                     progress=False)
    assert not (tmp_path / "store").exists() and not partial_path(tmp_path / "store").exists()
    store = embed_source(tmp_path / "data", tmp_path / "store", backend=PixelEmbedder(), detection=ALIGNED,
                         features=False, progress=False)
    assert "features" not in store.meta and "features" not in store.meta["plan"]
    assert not (store.root / "features.npy").exists()
