"""Quality components as quality tables (fiqa.evaluate.components) and ``fiqa evaluate --components``: one EDC row
per component, measured from the store's own crops and landmarks, next to the --scores tables."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from fiqa.cli import main
from fiqa.components import COMPONENTS, ComponentTable, compute_components
from fiqa.core.types import Status
from fiqa.evaluate.components import COMPONENT_PREFIX, NOT_MEASURED, component_tables, store_faces
from fiqa.io.table import save_quality


def test_component_tables_are_the_components_of_the_store_faces(lfw_store):
    from fiqa.augment.crops import load_crops

    rows = np.flatnonzero(lfw_store.ok)[:24]
    tables = component_tables(lfw_store, rows, batch_size=10, progress=False)
    assert [t.method for t in tables] == [f"{COMPONENT_PREFIX}{name}" for name in COMPONENTS]
    # the same batches of 10 through the same code: equal bit for bit (the occlusion model's matrix products may round
    # differently for other batch sizes)
    batches = []
    for i in range(0, len(rows), 10):
        contexts: dict = {}
        crops = load_crops(lfw_store, rows[i:i + 10], contexts=contexts)
        assert sorted(contexts) == sorted(rows[i:i + 10].tolist())  # every detected face has its upright view
        batches.append(compute_components(crops, store_faces(lfw_store, rows[i:i + 10], contexts=contexts)))
    expected = ComponentTable.concatenate(batches)
    several = lfw_store.n_faces[rows] > 1
    for k, (name, table) in enumerate(zip(COMPONENTS, tables)):
        assert table.meta["kind"] == "component" and table.meta["unit"] == COMPONENTS[name].unit
        assert table.meta["refinement_passes"] == 2  # the default, as scoring measures
        np.testing.assert_array_equal(table.sample_id, lfw_store.samples.sample_id[rows])
        want = expected.scalar[:, k].copy()
        if name == "single_face_present":
            want[several] = math.nan
        np.testing.assert_array_equal(table.score, want)
        measured = np.isfinite(table.score)
        assert np.all((table.score[measured] >= 0) & (table.score[measured] <= 100))
        assert np.all(table.status[measured] == Status.OK.value)
        assert np.all(table.status[~measured] == NOT_MEASURED) and all(table.reason[~measured])
    single = tables[list(COMPONENTS).index("single_face_present")]
    assert all("several faces" in reason for reason in single.reason[several])
    assert np.all(single.score[~several] > 99)  # one detected face: alone


def test_store_components_read_pose_and_geometry_as_scoring_does(lfw_store):
    """The store's landmarks are refined on the upright view cut from the photo, as ``fiqa score --components``
    refines the detector's: the same photos give the same pose and geometry either way (the same operations on the
    same pixels and landmarks: equal, not close)."""
    from fiqa.augment.crops import load_crops
    from fiqa.score import create_scorer

    rows = np.flatnonzero(lfw_store.ok)[:12]
    tables = {t.method: t for t in component_tables(lfw_store, rows, progress=False)}
    scored = create_scorer().score([str(lfw_store.samples.location[r]) for r in rows], components=True,
                                   progress=False)
    np.testing.assert_array_equal(scored.columns["n_faces"], lfw_store.n_faces[rows])
    for name in ("head_pose_yaw", "head_pose_pitch", "head_pose_roll", "inter_eye_distance", "head_size",
                 "crop_left", "crop_right", "margin_above", "margin_below"):
        np.testing.assert_array_equal(tables[f"{COMPONENT_PREFIX}{name}"].columns[f"{name}_raw"],
                                      scored.columns[f"{name}_raw"], err_msg=name)
    # and the refinement ran: without the views, the detector's own landmarks give another roll
    unrefined = compute_components(load_crops(lfw_store, rows), store_faces(lfw_store, rows))
    roll = tables[f"{COMPONENT_PREFIX}head_pose_roll"].columns["head_pose_roll_raw"]
    assert np.any(np.abs(unrefined.column("head_pose_roll", raw=True) - roll) > 0.1)


def test_rows_that_are_not_ok_keep_the_store_status_and_reason(lfw_store):
    import dataclasses

    broken = dataclasses.replace(lfw_store, status=lfw_store.status.copy(), reason=lfw_store.reason.copy())
    broken.status[1], broken.reason[1] = Status.NO_FACE.value, "no face found"
    tables = component_tables(broken, [0, 1], progress=False)
    for table in tables:
        assert table.status[1] == Status.NO_FACE.value and table.reason[1] == "no face found"
        assert math.isnan(table.score[1])


def _edc_methods(folder) -> dict[str, str]:
    with open(folder / "edc.csv", encoding="utf-8") as handle:
        return {row["method"]: row["kind"] for row in csv.DictReader(handle) if row["group"] == "all"}


def test_evaluate_components_adds_one_edc_row_per_component(lfw_store, tmp_path):
    from fiqa.label import create_labeler, label_store

    norm = save_quality(label_store(lfw_store, create_labeler("norm")), tmp_path / "norm.parquet")
    args = ["evaluate", str(lfw_store.root), "--scores", str(norm), "--n-nonmated", "5000", "--n-bootstrap", "0",
            "--no-legacy-erc", "-q"]
    plain = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert set(_edc_methods(tmp_path / "plain")) == {"norm", "random"}
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "with"), "--components"])
    assert result.exit_code == 0, result.output
    methods = _edc_methods(tmp_path / "with")
    assert set(methods) == {"norm", "random", *(f"{COMPONENT_PREFIX}{name}" for name in COMPONENTS)}
    assert {kind for method, kind in methods.items() if method.startswith(COMPONENT_PREFIX)} == {"component"}
    assert methods["norm"] == "baseline"
    page = (tmp_path / "with" / "report.html").read_text(encoding="utf-8")
    plain_page = (tmp_path / "plain" / "report.html").read_text(encoding="utf-8")
    assert "Quality components by capture condition" in page and "Quality components by" not in plain_page
    # LFW-dev's faces are small (about 44 px between the eyes): the lowest-quality faces say so beside the photo
    assert "<span class=why>inter_eye_distance" in page and "<span class=why>" not in plain_page
    # a shared report names no absolute path of this machine (issue 25): titles are relative to the data source
    for location in lfw_store.samples.location[:50]:
        assert str(location) not in page and str(Path(str(location)).parent) not in page


def test_store_faces_take_the_photo_size_as_decoded(tmp_path):
    """A JPEG whose EXIF orientation turns it: its header says 60 x 100 (h x w), the decoder (and so the landmarks
    the store keeps) sees 100 x 60; the geometry must use the latter."""
    from types import SimpleNamespace

    from PIL import Image

    from fiqa.core.meta import StoreMeta

    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (100, 60), (120, 110, 100)).save(path, exif=exif)
    store = SimpleNamespace(meta=StoreMeta(dim=4, params={"aligned": False}),
                            samples=SimpleNamespace(location=np.array([str(path)], dtype=object)),
                            n_faces=np.array([1]), landmarks=np.zeros((1, 5, 2), np.float32))
    assert store_faces(store, [0])[0].image_size == (100, 60)
