"""A small real training run on LFW-dev: SFace store -> SDD labels -> head regressor -> ONNX -> scores."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.augment.crops import load_crops
from fiqa.cli import main
from fiqa.embed.features import SFACE_TAPS, FeatureExtractor
from fiqa.io.table import save_quality
from fiqa.label import create_labeler, label_store
from fiqa.score import create_scorer, score_store
from fiqa.train import read_metadata
from fiqa.train.features import cached_features
from tolerances import U16, U32, two_paths

pytestmark = [pytest.mark.lfw, pytest.mark.slow]


def test_train_command_end_to_end_on_lfw(lfw_store, tmp_path):
    labels = label_store(lfw_store, create_labeler("sdd", n_positives=4, n_negatives=8, n_repeats=3))
    labels_path = save_quality(labels, tmp_path / "sdd.parquet")
    out = tmp_path / "model"
    result = CliRunner().invoke(main, ["train", str(lfw_store.root), str(labels_path), "--out", str(out),
                                       "--epochs", "2", "--batch-size", "32", "--validation-fraction", "0.3"])
    assert result.exit_code == 0, result.output
    assert "validation Spearman" in result.output
    for name in ("model.onnx", "head.onnx", "checkpoint.pt", "history.json", "training.png", "metrics.json",
                 "split.json"):
        assert (out / name).stat().st_size > 0, name

    split = json.loads((out / "split.json").read_text())
    assert not set(split["train"]) & set(split["test"])
    assert set(split["train"]) | set(split["test"]) == set(lfw_store.samples.identity[labels.ok].astype(str))
    meta = read_metadata(out / "model.onnx")
    assert meta["label_method"] == labels.method and meta["training"]["n_train"] > 0
    assert len(json.loads((out / "history.json").read_text())["history"]) == 2

    scores = score_store(create_scorer(out / "model.onnx"), lfw_store, progress=False)
    assert np.array_equal(scores.ok, lfw_store.ok)
    assert np.all((scores.score[scores.ok] >= 0) & (scores.score[scores.ok] <= 100))
    assert np.ptp(scores.score[scores.ok]) > 0

    # the cache holds the labelled rows training asked for; it grows on demand and then serves every ok row
    labelled = lfw_store.ok & labels.ok
    features = cached_features(lfw_store, np.flatnonzero(labelled))
    assert features.shape == (len(lfw_store), SFACE_TAPS.dim) and not features.flags.writeable
    assert np.all(features[~lfw_store.ok] == 0) and np.all(features[labelled].any(axis=1))
    before = np.array(features[labelled])
    features = cached_features(lfw_store)
    np.testing.assert_array_equal(features[labelled], before)
    assert np.all(features[lfw_store.ok].any(axis=1))
    # a cached row is the feature graph's output on the row's re-created crop (float16)
    row = int(np.flatnonzero(lfw_store.ok)[0])
    expected = FeatureExtractor()(load_crops(lfw_store, [row]))[0]
    # the same graph on the same crop (bit-identical in float32, docs/numerics.md), stored as float16: within its unit
    # roundoff u16 = 2^-11 relative, or half its smallest subnormal (2^-25) near 0
    np.testing.assert_allclose(features[row].astype(np.float32), expected, rtol=U16, atol=2.0**-25)
    # the log-norm column equals the store's own norm: float16 storage (u16 relative) of the graph's log |v|, which
    # is within gamma_130 / 2 of numpy's float32 log of the store's norm (two paths), plus the logs' roundings
    log_norm = float(np.log(lfw_store.norms[row]))
    assert features[row, -1] == pytest.approx(log_norm, abs=U16 * abs(log_norm) + two_paths(130) / 2
                                              + 4 * U32 * abs(log_norm))


def test_full_network_inputs_read_a_batch_as_its_rows(lfw_store):
    # TensorPairs hands the inputs one array of rows per batch: the full network's crops must come back per row
    import torch

    from fiqa.train.loop import TensorPairs
    from fiqa.train.regressor import _CropInputs

    ok = np.flatnonzero(lfw_store.ok)[:4]
    inputs = _CropInputs(lfw_store)
    data = TensorPairs(inputs, ok, np.arange(4, dtype=np.float32))
    x, y = data[[3, 0, 2]]
    assert x.shape == (3, 3, 112, 112) and y.tolist() == [3.0, 0.0, 2.0]
    for k, position in enumerate([3, 0, 2]):
        assert torch.equal(x[k], torch.from_numpy(inputs[int(ok[position])]))


def test_train_needs_no_image_when_the_store_holds_features(lfw_dir, tmp_path, monkeypatch):
    """A store embedded with its features, the photos then moved away: ``fiqa train`` trains and exports (the gate
    checks head.onnx on the stored features, and the head joined with the recogniser on noise crops); an export
    that fails keeps the trained checkpoint, says so in one line, and a rerun exports without training again."""
    import shutil

    import fiqa.train.regressor as regressor
    from conftest import lfw_subset
    from fiqa.core.errors import ModelFileError

    photos = tmp_path / "photos"
    for path, identity in lfw_subset(lfw_dir, n_identities=12, min_images=5, max_images=6, n_singletons=0):
        (photos / identity).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, photos / identity / path.name)
    runner = CliRunner()
    store, labels, out = tmp_path / "store", tmp_path / "sdd.parquet", tmp_path / "model"
    for args in (["embed", str(photos), "-o", str(store), "--features", "--no-progress"],
                 ["label", str(store), "-m", "sdd", "-o", str(labels), "-p", "n_repeats=2"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    photos.rename(tmp_path / "moved-away")
    train = ["train", str(store), str(labels), "-o", str(out), "--epochs", "2", "--batch-size", "16",
             "--validation-fraction", "0.3", "--no-progress"]

    def failing_export(*args, **kwargs):
        raise ModelFileError("simulated export failure")

    monkeypatch.setattr(regressor, "export_onnx", failing_export)
    result = runner.invoke(main, train)
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert "training finished but the export failed (simulated export failure)" in result.output
    assert "checkpoint.pt" in result.output and "run the same command again" in result.output
    assert (out / "checkpoint.pt").exists() and not (out / "model.onnx").exists()
    history = (out / "history.json").read_text()

    monkeypatch.undo()
    result = runner.invoke(main, train)
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").stat().st_size > 0 and (out / "head.onnx").stat().st_size > 0
    assert (out / "history.json").read_text() == history  # exported from the checkpoint, not trained again
    assert json.loads((out / "metrics.json").read_text())["inputs"] == "store features"
    assert read_metadata(out / "model.onnx")["label_method"] == "sdd"
