"""One cache rule: an artifact is reused only under the key of what made it (fiqa.core.cache), and the demo's
cached steps follow it."""
from __future__ import annotations

import numpy as np

from fiqa.core.cache import artifact_key, cached, fingerprint, key_path, read_key
from fiqa.io.table import load_quality
from fiqa.label import label_rows


def _counting(path):
    calls = []

    def compute():
        calls.append(1)
        path.write_text(str(len(calls)))
        return len(calls)

    return calls, compute


def test_an_artifact_is_reused_only_under_the_same_key(tmp_path):
    path = tmp_path / "artifact.txt"
    calls, compute = _counting(path)

    def load(p):
        return int(p.read_text())

    assert cached(path, artifact_key(seed=0, rows=[1, 2]), compute, load) == 1
    assert read_key(path)["seed"] == 0 and key_path(path).name == "artifact.txt.key.json"
    assert cached(path, artifact_key(seed=0, rows=(1, 2)), compute, load) == 1  # same key (tuple == list in JSON)
    assert cached(path, artifact_key(seed=1, rows=[1, 2]), compute, load) == 2  # another seed: recomputed
    assert read_key(path)["seed"] == 1
    key_path(path).unlink()  # a file without a key (from before the rule, or an interrupted run) is not trusted
    assert cached(path, artifact_key(seed=1, rows=[1, 2]), compute, load) == 3
    assert len(calls) == 3


def test_the_key_carries_versions_and_fingerprints():
    key = artifact_key(rows_sha256=fingerprint(np.arange(5)))
    assert key["versions"]["fiqa"] and key["versions"]["numpy"] == np.__version__
    assert fingerprint(np.arange(5)) != fingerprint(np.arange(5, dtype=np.int32))
    assert fingerprint(np.arange(5)) != fingerprint(np.arange(1, 6))


def test_demo_labels_rerun_with_another_seed_are_recomputed_and_the_same_seed_reuses_them(lfw_store, tmp_path):
    # the demo's labelling step (fiqa.label.label_rows) on a small real store: before the rule, a rerun with another
    # random_state returned the first run's labels because the file was there
    rows = np.flatnonzero(lfw_store.ok)
    path = tmp_path / "labels" / "sdd.test.parquet"
    path.parent.mkdir()
    first = label_rows(lfw_store, rows, "sdd", 0, path)
    written = path.stat().st_mtime_ns
    again = label_rows(lfw_store, rows, "sdd", 0, path)
    assert path.stat().st_mtime_ns == written  # same seed: reused, not rewritten
    np.testing.assert_array_equal(again.score, first.score)
    other = label_rows(lfw_store, rows, "sdd", 1, path)
    assert path.stat().st_mtime_ns != written  # another seed: recomputed
    assert other.meta["random_state"] == 1 and load_quality(path).meta["random_state"] == 1
    assert not np.array_equal(other.score, first.score, equal_nan=True)
    assert read_key(path)["random_state"] == 1
    # other rows (another split) recompute too
    fewer = label_rows(lfw_store, rows[: len(rows) // 2], "sdd", 1, path)
    assert len(fewer) < len(other)
