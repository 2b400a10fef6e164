"""Every quality method from the command line: ``fiqa score STORE/ --method NAME`` and ``fiqa score photos/``, then
``fiqa evaluate STORE --scores`` on either (photos of the store join it by location); ``fiqa models`` lists learned
models and training-free methods with what each needs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.io.table import load_quality
from fiqa.score.packaged import MODELS
from fiqa.score.training_free import QUALITY_METHODS

pytestmark = pytest.mark.lfw

EVALUATE = ["--n-nonmated", "5000", "--n-bootstrap", "0", "--no-legacy-erc", "--gallery-size", "2", "-q"]


def _invoke(*args: str):
    return CliRunner().invoke(main, [str(arg) for arg in args])


def test_score_a_store_with_a_training_free_method_then_evaluate(lfw_store, tmp_path):
    scores = tmp_path / "s.parquet"
    result = _invoke("score", lfw_store.root, "--method", "ser-fiq", "-o", scores, "--no-progress")
    assert result.exit_code == 0, result.output
    table = load_quality(scores)
    np.testing.assert_array_equal(table.sample_id, lfw_store.samples.sample_id)
    np.testing.assert_array_equal(table.ok, lfw_store.ok)
    assert table.method == "ser-fiq" and np.isfinite(table.score[table.ok]).all()
    assert table.meta["store_sha256"]
    report = _invoke("evaluate", lfw_store.root, "--scores", scores, "-o", tmp_path / "report", *EVALUATE)
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "report.html").is_file()


def _whole_folder_in_store(store) -> Path:
    """A person's folder whose every photo is in the store."""
    locations = {os.path.abspath(str(location)) for location in store.samples.location}
    for identity in sorted(set(store.samples.identity.astype(str))):
        folder = Path(str(store.samples.location[list(store.samples.identity).index(identity)])).parent
        photos = sorted(folder.glob("*.jpg"))
        if len(photos) >= 5 and all(os.path.abspath(photo) in locations for photo in photos):
            return folder
    raise AssertionError("no person folder lies wholly in the store")


@pytest.mark.parametrize("method", [None, "norm"])
def test_scores_of_photos_that_are_a_subset_of_the_store_join_it_by_location(lfw_store, tmp_path, method):
    folder = _whole_folder_in_store(lfw_store)
    scores = tmp_path / "photos.parquet"
    chosen = ["--method", method] if method else []
    result = _invoke("score", folder, *chosen, "-o", scores, "--no-progress")
    assert result.exit_code == 0, result.output
    report = _invoke("evaluate", lfw_store.root, "--scores", scores, "-o", tmp_path / "report", *EVALUATE)
    assert report.exit_code == 0, report.output

    from fiqa.store import join_by_location

    joined = join_by_location(lfw_store, load_quality(scores), "photos.parquet")
    row_of = {int(sid): row for row, sid in enumerate(lfw_store.samples.sample_id)}
    np.testing.assert_array_equal(lfw_store.samples.location[[row_of[int(s)] for s in joined.sample_id]],
                                  joined.columns["location"])


def test_photos_outside_the_store_are_named_in_one_line(lfw_store, lfw_dir, tmp_path):
    inside = _whole_folder_in_store(lfw_store)
    stranger = next(path for path in sorted(lfw_dir.rglob("*.jpg"))
                    if os.path.abspath(path) not in {os.path.abspath(str(loc)) for loc in lfw_store.samples.location})
    copy = tmp_path / "elsewhere" / stranger.name
    copy.parent.mkdir()
    shutil.copy(stranger, copy)
    scores = tmp_path / "mixed.parquet"
    result = _invoke("score", inside, copy, "--method", "norm", "-o", scores, "--no-progress")
    assert result.exit_code == 0, result.output
    refused = _invoke("evaluate", lfw_store.root, "--scores", scores, "-o", tmp_path / "report", *EVALUATE)
    assert refused.exit_code == 1
    lines = refused.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), refused.output
    assert f"1 of its {len(list(inside.glob('*.jpg'))) + 1} photos are not images of" in lines[0]
    assert str(copy) in lines[0] and str(inside) not in lines[0]
    assert "Scorer" not in lines[0] and "fiqa score STORE" in lines[0]


def test_models_lists_learned_models_and_training_free_methods_with_their_needs():
    result = _invoke("models")
    assert result.exit_code == 0, result.output
    for entry in [*MODELS.entries(), *QUALITY_METHODS.entries()]:
        assert entry.summary in result.stdout
        assert f"needs: {' or '.join(entry.fields['needs'])}" in result.stdout
    shown = _invoke("models", "ser-fiq")
    assert shown.exit_code == 0 and "n_samples = 100" in shown.stdout and "Terhörst" in shown.stdout


def test_score_refuses_a_model_and_a_method_together(lfw_store):
    result = _invoke("score", lfw_store.root, "--model", "default", "--method", "norm")
    assert result.exit_code == 2 and "not both" in result.output
