"""Augmentation: recipes, applying them, the augmented store, load_crops of derived rows, resuming, refusals.

Most tests embed with ``GridEmbedder``, a small deterministic stand-in, so they are about the recipe and storage
logic; detected faces come from a few LFW-dev images (real YuNet landmarks). One test uses the real SFace backend,
re-created from the store's metadata, and the ``fiqa augment`` command.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fiqa.augment.copies import (
    DEFAULT_KINDS,
    PIVOT,
    Degradation,
    JitterRange,
    Recipe,
    apply_recipe,
    augment_store,
    sample_recipes,
)
from fiqa.augment.crops import load_crops
from fiqa.cli import main
from fiqa.core.errors import InvalidParameterError, NoUsableSamplesError, StoreError
from fiqa.detect import ARCFACE_TEMPLATE, warp_to_template
from fiqa.detect.align import RESAMPLING
from fiqa.detect.pipeline import resize_aligned
from fiqa.detect.settings import DetectionSettings
from fiqa.embed.extract import embed_source
from fiqa.io import read_image
from fiqa.store import open_store, partial_path
from tolerances import UNIT_VECTOR_PATHS


class GridEmbedder:
    """Deterministic test embedder: a fixed random projection of the crop's 7x7 grid of mean colours.

    ``zero_below``: crops darker on average than this embed to a zero vector. ``fail_after``: the call that would
    go past this many crops raises (an interrupted run). ``crops_seen`` counts embedded crops.
    """

    name = "grid-test"
    dim = 12

    def __init__(self, zero_below: float = -1.0, fail_after: int | None = None) -> None:
        self.zero_below, self.fail_after = zero_below, fail_after
        self.projection = np.random.default_rng(3).standard_normal((7 * 7 * 3, self.dim))
        self.crops_seen = 0

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if self.fail_after is not None and self.crops_seen + len(crops) > self.fail_after:
            raise RuntimeError("interrupted on purpose")
        self.crops_seen += len(crops)
        grid = crops.reshape(len(crops), 7, 16, 7, 16, 3).mean(axis=(2, 4)).reshape(len(crops), -1)
        vectors = (grid / 255.0 - 0.4) @ self.projection
        vectors[crops.mean(axis=(1, 2, 3)) < self.zero_below] = 0.0
        return vectors.astype(np.float32)

    def describe(self) -> dict:
        return {"backend": self.name, "dim": self.dim}


def expected_vector(crop: np.ndarray) -> np.ndarray:
    raw = GridEmbedder().embed(crop[None])[0].astype(np.float64)
    return raw / np.linalg.norm(raw)


def write_aligned_faces(folder: Path, n: int) -> None:
    """``n`` smooth synthetic 112x112 crops in ``folder/person_<k>/`` (2 per identity)."""
    rng = np.random.default_rng(5)
    for i in range(n):
        small = rng.integers(30, 230, (8, 8, 3), dtype=np.uint8)
        crop = cv2.resize(small, (112, 112), interpolation=cv2.INTER_CUBIC)
        path = folder / f"person_{i // 2:02d}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), crop)


@pytest.fixture()
def aligned_store(tmp_path):
    write_aligned_faces(tmp_path / "faces", 8)
    (tmp_path / "faces" / "person_03" / "007.png").write_bytes(b"not an image")
    return embed_source(tmp_path / "faces", tmp_path / "parent", backend=GridEmbedder(),
                        detection=DetectionSettings(aligned=True),
                        progress=False, n_workers=0)


@pytest.fixture(scope="module")
def lfw_list(lfw_dir, tmp_path_factory):
    """A list file of 9 LFW-dev images: the first three people with at least three images, three each."""
    rows = []
    for person in sorted(p for p in lfw_dir.iterdir() if p.is_dir()):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= 3:
            rows += [(path, person.name) for path in images[:3]]
        if len(rows) == 9:
            break
    path = tmp_path_factory.mktemp("lfw_list") / "faces.csv"
    for image, _ in rows:  # beside the list: a list file's entries outside its folder are refused
        shutil.copyfile(image, path.with_name(image.name))
    path.write_text("path,identity\n" + "".join(f"{path.with_name(image.name)},{name}\n" for image, name in rows),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def lfw_grid_store(lfw_list, tmp_path_factory):
    """The 9 LFW images detected and aligned by YuNet, embedded by GridEmbedder."""
    return embed_source(lfw_list, tmp_path_factory.mktemp("grid") / "store", backend=GridEmbedder(), progress=False)


def store_bytes(path: Path) -> dict[str, bytes]:
    return {name: (path / name).read_bytes() for name in ("vectors.npy", "norms.npy", "landmarks.npy",
                                                          "samples.parquet")}


# ------------------------------------------------------------------------------------------------ recipes
def test_recipe_json_round_trip_is_stable():
    recipe = Recipe(dx=1.5, dy=-2, scale=1.1, angle=-7.25, flip=True,
                    degradations=(("blur", 0.5, 3), Degradation("jpeg", 0.75, 4)))
    text = recipe.to_json()
    assert Recipe.from_json(text) == recipe and Recipe.from_dict(json.loads(text)) == recipe
    assert text == Recipe.from_json(text).to_json() and " " not in text
    assert recipe.degradations[0] == Degradation("blur", 0.5, 3)
    assert Recipe().identity_geometry and not Recipe(flip=True).identity_geometry
    with pytest.raises(InvalidParameterError, match="'kind' parameter of Degradation"):
        Recipe(degradations=(("blurr", 0.5, 0),))
    with pytest.raises(InvalidParameterError, match="'severity' parameter of Degradation"):
        Degradation("noise", 1.5, 0)
    with pytest.raises(InvalidParameterError, match="'scale' parameter of Recipe"):
        Recipe(scale=0)
    with pytest.raises(InvalidParameterError, match="unknown key"):
        Recipe.from_dict({"dx": 1, "shear": 2})


def test_sample_recipes_are_deterministic_per_parent_and_copy():
    recipes = sample_recipes(10, 3, random_state=4)
    assert len(recipes) == 30
    assert recipes == sample_recipes(np.arange(10), 3, random_state=4)
    assert recipes != sample_recipes(10, 3, random_state=5)
    # A parent's recipes depend on its key, not on the other parents or their order.
    assert sample_recipes([7, 2], 3, random_state=4) == recipes[21:24] + recipes[6:9]
    assert sample_recipes([123456789], 1, random_state=4) == sample_recipes([5, 123456789], 1, random_state=4)[1:]


def test_sample_recipes_follow_the_fractions_and_spread_severities():
    recipes = sample_recipes(1500, 2, random_state=0, severity=(0.3, 0.9), clean_fraction=0.2, combined_fraction=0.3)
    n_steps = np.array([len(r.degradations) for r in recipes])
    assert abs(np.mean(n_steps == 0) - 0.2) < 0.03 and abs(np.mean(n_steps == 2) - 0.3) < 0.03
    two = [r for r in recipes if len(r.degradations) == 2]
    assert all(r.degradations[0].kind != r.degradations[1].kind for r in two)
    first = np.array([r.degradations[0].severity if r.degradations else np.nan for r in recipes]).reshape(-1, 2)
    assert np.nanmin(first) >= 0.3 and np.nanmax(first) <= 0.9
    assert np.nanmax(first[:, 0]) <= 0.6 <= np.nanmin(first[:, 1])  # copy c in the c-th stratum of the range
    assert abs(np.nanmean(first[:, 0]) - 0.45) < 0.01 and abs(np.nanmean(first[:, 1]) - 0.75) < 0.01
    kinds = [step.kind for r in recipes for step in r.degradations]
    assert set(kinds) == set(DEFAULT_KINDS)
    dx = np.array([r.dx for r in recipes])
    scale = np.array([r.scale for r in recipes])
    assert np.abs(dx).max() <= 6 and scale.min() >= 0.85 and scale.max() <= 1.15 and dx.std() > 2
    assert 0.4 < np.mean([r.flip for r in recipes]) < 0.6
    flat = sample_recipes(50, 2, random_state=0, geometry=False, kinds=["blur"], clean_fraction=0.0,
                          combined_fraction=0.5)
    assert all(r.identity_geometry and len(r.degradations) == 1 and r.degradations[0].kind == "blur" for r in flat)
    still = sample_recipes(
        50, 1, random_state=0, geometry=JitterRange(max_shift=0, scale=(1, 1), max_angle=0, flip_probability=0)
    )
    assert all(r.identity_geometry for r in still)
    with pytest.raises(InvalidParameterError, match="'kinds' parameter of sample_recipes"):
        sample_recipes(2, 1, kinds=["blur", "fog"])
    with pytest.raises(InvalidParameterError, match="'severity' parameter"):
        sample_recipes(2, 1, severity=(0.8, 0.2))
    with pytest.raises(InvalidParameterError, match="'combined_fraction' parameter"):
        sample_recipes(2, 1, clean_fraction=0.8, combined_fraction=0.3)


# ---------------------------------------------------------------------------------------------- apply_recipe
def test_identity_recipe_reproduces_the_parents_crop():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (180, 160, 3), dtype=np.uint8)
    landmarks = ARCFACE_TEMPLATE * 1.3 + (20, 15)
    np.testing.assert_array_equal(apply_recipe(image, landmarks, Recipe()), warp_to_template(image, landmarks))
    np.testing.assert_array_equal(apply_recipe(image, None, Recipe()), resize_aligned(image))
    flipped = apply_recipe(image, landmarks, Recipe(flip=True))
    np.testing.assert_array_equal(flipped, warp_to_template(image, landmarks)[:, ::-1])
    blurred = apply_recipe(image, landmarks, Recipe(degradations=(("blur", 0.5, 0),)))
    np.testing.assert_array_equal(
        blurred, cv2.GaussianBlur(warp_to_template(image, landmarks), (0, 0), 2.0, borderType=cv2.BORDER_REFLECT101)
    )
    with pytest.raises(InvalidParameterError, match="'image_bgr' parameter of apply_recipe"):
        apply_recipe(image.astype(np.float32), landmarks, Recipe())


@pytest.mark.parametrize("flip", [False, True])
def test_jitter_moves_the_landmarks_where_the_recipe_says(flip):
    """Bright dots at the landmarks of a rotated, scaled face land at the jittered template positions."""
    angle = np.deg2rad(15)
    rotation = 1.7 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ rotation.T + (40, 30)
    yy, xx = np.mgrid[0:320, 0:320]
    image = np.zeros((320, 320), np.float64)
    for x, y in landmarks:
        image += 250 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    image = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    recipe = Recipe(dx=4.0, dy=-3.0, scale=1.1, angle=9.0, flip=flip)
    crop = apply_recipe(image, landmarks, recipe)[..., 0].astype(np.float64)
    expected = cv2.transform(ARCFACE_TEMPLATE[None].astype(np.float64), recipe.jitter_matrix())[0]
    if flip:
        expected[:, 0] = 111 - expected[:, 0]
    for x, y in expected:
        window = (slice(int(y) - 5, int(y) + 6), slice(int(x) - 5, int(x) + 6))
        weights = crop[window]
        centre = ((weights * xx[window]).sum() / weights.sum(), (weights * yy[window]).sum() / weights.sum())
        np.testing.assert_allclose(centre, (x, y), atol=0.35)
    # The rotation turns about the face centre: it stays where it was.
    np.testing.assert_allclose(
        cv2.transform(np.array([[PIVOT]]), Recipe(angle=30, scale=0.9).jitter_matrix())[0, 0], PIVOT, atol=1e-9
    )


# ------------------------------------------------------------------------------------------------- the store
def test_augmented_store_of_aligned_faces(aligned_store, tmp_path):
    assert aligned_store.parent_id is None and aligned_store.recipe is None and not aligned_store.derived.any()
    store = augment_store(
        aligned_store,
        tmp_path / "aug",
        copies=3,
        random_state=1,
        embedder=GridEmbedder(),
        batch_size=4,
        chunk_size=5,
        progress=False,
    )
    n_parents = int(aligned_store.ok.sum())
    assert n_parents == 7 and len(store) == 8 + 3 * 7
    assert store.samples.sample_id.tolist() == list(range(len(store)))
    assert store.parent_id[:8].tolist() == [-1] * 8 and store.recipe[:8].tolist() == [""] * 8
    parents = np.repeat(np.flatnonzero(aligned_store.ok), 3)
    assert store.parent_id[8:].tolist() == aligned_store.samples.sample_id[parents].tolist()
    assert store.samples.identity[8:].tolist() == aligned_store.samples.identity[parents].tolist()
    assert store.samples.location[8:].tolist() == aligned_store.samples.location[parents].tolist()
    assert store.derived.tolist() == [False] * 8 + [True] * 21
    # Originals are copied as they are, byte for byte, including the failed one.
    np.testing.assert_array_equal(store.vectors[:8], aligned_store.vectors)
    np.testing.assert_array_equal(store.norms[:8], aligned_store.norms)
    assert store.status[:8].tolist() == aligned_store.status.tolist()
    # Derived rows: the recipes of sample_recipes, their crops embedded; load_crops re-creates those crops.
    recipes = sample_recipes(aligned_store.samples.sample_id[aligned_store.ok], 3, 1)
    assert store.recipe[8:].tolist() == [r.to_json() for r in recipes]
    rows = np.arange(8, len(store))
    crops = load_crops(store, rows)
    for row, crop, recipe in zip(rows, crops, recipes):
        image = read_image(store.samples.location[row])
        np.testing.assert_array_equal(crop, apply_recipe(image, None, recipe))
        # the same embedder on the same crop (a batch of the run vs alone), normalised in float32 both ways
        np.testing.assert_allclose(store.vectors[row], expected_vector(crop), rtol=0, atol=UNIT_VECTOR_PATHS)
    np.testing.assert_array_equal(load_crops(store, np.arange(3)), load_crops(aligned_store, np.arange(3)))
    info = store.meta["augmentation"]
    assert info["parent"]["path"] == str(aligned_store.root) and info["n_derived"] == 21
    assert info["skipped_parents"] == {"not_an_image": 1} and info["copies"] == 3 and info["random_state"] == 1
    assert store.meta["source"] == aligned_store.meta["source"] and "versions" in store.meta
    assert not partial_path(tmp_path / "aug").exists()


def test_invalid_embeddings_of_copies_are_recorded_not_dropped(aligned_store, tmp_path):
    darkest = GridEmbedder(zero_below=40.0)
    store = augment_store(
        aligned_store,
        tmp_path / "aug",
        copies=2,
        kinds=["low_light"],
        severity=(1.0, 1.0),
        clean_fraction=0.0,
        combined_fraction=0.0,
        embedder=darkest,
        progress=False,
    )
    assert len(store) == 8 + 14
    assert set(store.status[8:]) == {"invalid_vector"}
    assert all("zero" in reason for reason in store.reason[8:])
    assert np.isnan(store.vectors[8:]).all() and np.isnan(store.norms[8:]).all()
    assert store.meta["augmentation"]["derived_counts"] == {"invalid_vector": 14}


def test_no_originals_and_rows_restrict_the_parents(aligned_store, tmp_path):
    rows = np.flatnonzero(np.isin(aligned_store.samples.identity, ["person_00", "person_03"]))
    store = augment_store(
        aligned_store,
        tmp_path / "aug",
        copies=2,
        keep_originals=False,
        rows=rows,
        embedder=GridEmbedder(),
        progress=False,
    )
    # person_03's second image is not an image: it gets no copies.
    assert len(store) == 3 * 2 and store.derived.all()
    assert store.samples.sample_id.tolist() == list(range(6))
    assert store.parent_id.tolist() == [0, 0, 1, 1, 6, 6]
    assert store.samples.identity.tolist() == ["person_00"] * 4 + ["person_03"] * 2
    full = augment_store(aligned_store, tmp_path / "full", copies=2, embedder=GridEmbedder(), progress=False)
    by_parent = {(p, r) for p, r in zip(full.parent_id, full.recipe) if p >= 0}
    assert {(p, r) for p, r in zip(store.parent_id, store.recipe)} <= by_parent  # same recipes per parent
    mask = np.isin(aligned_store.samples.identity, ["person_01"])
    assert augment_store(
        aligned_store, tmp_path / "mask", rows=mask, copies=1, embedder=GridEmbedder(), progress=False
    ).parent_id[8:].tolist() == [2, 3]
    with pytest.raises(NoUsableSamplesError, match="none of the 1 selected rows can be a parent"):
        augment_store(aligned_store, tmp_path / "none", rows=[7], embedder=GridEmbedder(), progress=False)
    with pytest.raises(InvalidParameterError, match="'rows' parameter of augment_store"):
        augment_store(aligned_store, tmp_path / "bad", rows=[99], embedder=GridEmbedder(), progress=False)


def test_same_seed_same_store_other_seed_other_store_chunking_irrelevant(aligned_store, tmp_path):
    def run(name, **kwargs):
        return augment_store(
            aligned_store, tmp_path / name, copies=2, embedder=GridEmbedder(), progress=False, **kwargs
        )

    first, again = run("a", random_state=3), run("b", random_state=3)
    assert store_bytes(first.root) == store_bytes(again.root)
    other = run("c", random_state=4)
    assert other.recipe.tolist() != first.recipe.tolist()
    assert not np.array_equal(other.vectors[8:], first.vectors[8:])
    chunked = run("d", random_state=3, chunk_size=3, batch_size=2, n_workers=0)
    assert chunked.recipe.tolist() == first.recipe.tolist()
    np.testing.assert_array_equal(chunked.vectors, first.vectors)


@pytest.mark.lfw
def test_detected_faces_interrupt_and_resume_give_the_same_store(lfw_grid_store, tmp_path):
    assert lfw_grid_store.ok.all() and len(lfw_grid_store) == 9
    settings = {"copies": 2, "random_state": 2, "batch_size": 2, "chunk_size": 4, "progress": False}
    whole = augment_store(lfw_grid_store, tmp_path / "whole", embedder=GridEmbedder(), **settings)

    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        augment_store(lfw_grid_store, tmp_path / "resumed", embedder=GridEmbedder(fail_after=5), **settings)
    assert not (tmp_path / "resumed").exists()
    assert sorted(p.name for p in partial_path(tmp_path / "resumed").glob("chunk-*")) == ["chunk-0000000.npz"]
    with pytest.raises(StoreError, match=r"interrupted .*'fiqa augment'"):
        open_store(tmp_path / "resumed")
    with pytest.raises(StoreError, match=r"different settings .*differs in: random_state\)"):
        augment_store(lfw_grid_store, tmp_path / "resumed", embedder=GridEmbedder(), **{**settings, "random_state": 9})
    finishing = GridEmbedder()
    resumed = augment_store(lfw_grid_store, tmp_path / "resumed", embedder=finishing, **settings)
    assert finishing.crops_seen == 18 - 4  # the first chunk was kept
    assert store_bytes(resumed.root) == store_bytes(whole.root)
    drop = {"created_utc", "argv"}
    assert {k: v for k, v in resumed.meta.items() if k not in drop} == {
        k: v for k, v in whole.meta.items() if k not in drop
    }

    # Derived rows keep their parent's landmarks and identity; load_crops applies the recipe to the source.
    rows = np.arange(9, 27)
    parents = resumed.parent_id[rows]
    np.testing.assert_array_equal(resumed.landmarks[rows], lfw_grid_store.landmarks[parents])
    assert resumed.samples.identity[rows].tolist() == lfw_grid_store.samples.identity[parents].tolist()
    for row, crop in zip(rows, load_crops(resumed, rows)):
        image = read_image(resumed.samples.location[row])
        recipe = Recipe.from_json(resumed.recipe[row])
        np.testing.assert_array_equal(crop, apply_recipe(image, resumed.landmarks[row], recipe))
        np.testing.assert_allclose(resumed.vectors[row], expected_vector(crop), rtol=0, atol=UNIT_VECTOR_PATHS)


@pytest.mark.lfw
def test_refusals(lfw_grid_store, tmp_path):
    done = augment_store(lfw_grid_store, tmp_path / "aug", copies=1, embedder=GridEmbedder(), progress=False)
    counting = GridEmbedder()
    again = augment_store(lfw_grid_store, tmp_path / "aug", copies=1, embedder=counting, progress=False)
    assert counting.crops_seen == 0 and store_bytes(again.root) == store_bytes(done.root)
    with pytest.raises(StoreError, match=r"finished store made with different settings .*differs in: copies\)"):
        augment_store(lfw_grid_store, tmp_path / "aug", copies=2, embedder=GridEmbedder(), progress=False)
    replaced = augment_store(
        lfw_grid_store, tmp_path / "aug", copies=2, embedder=GridEmbedder(), resume=False, progress=False
    )
    assert len(replaced) == 9 + 18
    with pytest.raises(StoreError, match="already holds 18 derived rows"):
        augment_store(replaced, tmp_path / "twice", embedder=GridEmbedder(), progress=False)
    with pytest.raises(StoreError, match="cannot be the store it is derived from"):
        augment_store(lfw_grid_store, lfw_grid_store.root, embedder=GridEmbedder(), progress=False)

    class OtherModel(GridEmbedder):
        def describe(self):
            return {"backend": "grid-test", "dim": self.dim, "model_sha256": "0" * 64}

    with pytest.raises(StoreError, match="must be embedded by the backend that embedded the store.*model_sha256"):
        augment_store(lfw_grid_store, tmp_path / "other", embedder=OtherModel(), progress=False)
    with pytest.raises(Exception, match="grid-test"):  # not registered: cannot be re-created from the metadata
        augment_store(lfw_grid_store, tmp_path / "meta", progress=False)


def test_a_store_cut_with_another_resampling_is_not_cut_again(lfw_grid_store, tmp_path):
    # the store records how its crops were resampled; a copy whose record says otherwise (or, made before fiqa
    # recorded it, nothing) is refused by whatever would cut its crops again from the photos
    assert lfw_grid_store.meta.alignment["resampling"] == RESAMPLING
    load_crops(lfw_grid_store, [0])  # the store as made: its crops are cut again
    for recorded in (None, "bilinear"):
        old = tmp_path / f"old-{recorded}"
        shutil.copytree(lfw_grid_store.root, old)
        meta = json.loads((old / "meta.json").read_text(encoding="utf-8"))
        if recorded is None:
            del meta["alignment"]["resampling"]
        else:
            meta["alignment"]["resampling"] = recorded
        (old / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
        made = "bilinear alone" if recorded is None else "'bilinear'"
        with pytest.raises(StoreError, match=f"{old}: its crops were cut with resampling {made}"):
            load_crops(open_store(old), [0])
        with pytest.raises(StoreError, match="Extract the store again"):
            augment_store(old, tmp_path / f"aug-{recorded}", copies=1, embedder=GridEmbedder(), progress=False)


@pytest.mark.lfw
def test_sface_store_through_the_command(lfw_list, tmp_path):
    """Real SFace, re-created from the parent's metadata: clean, unjittered copies embed like their parents."""
    parent = embed_source(lfw_list, tmp_path / "parent", backend="sface", progress=False)
    split = tmp_path / "split.json"
    train = sorted(set(parent.samples.identity))[:2]
    split.write_text(
        json.dumps(
            {"train": train, "test": sorted(set(parent.samples.identity))[2:], "random_state": 0, "test_fraction": 0.3}
        )
    )
    result = CliRunner().invoke(
        main,
        [
            "augment",
            str(parent.root),
            "--out",
            str(tmp_path / "aug"),
            "--copies",
            "1",
            "--no-geometry",
            "--clean-fraction",
            "1",
            "--combined-fraction",
            "0",
            "--rows-from",
            str(split),
            "--part",
            "train",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "9 original and 6 derived samples (6 parents x 1 copies)" in result.output
    store = open_store(tmp_path / "aug")
    assert store.meta["backend"]["model_sha256"] == parent.meta["backend"]["model_sha256"]
    assert set(store.samples.identity[9:]) == set(train)
    parents = store.parent_id[9:]
    np.testing.assert_array_equal(load_crops(store, np.arange(9, 15)), load_crops(parent, parents))
    np.testing.assert_allclose(store.vectors[9:], parent.vectors[parents], rtol=0, atol=UNIT_VECTOR_PATHS)
    assert (store.vectors[9:] @ parent.vectors[parents].T).diagonal().min() > 0.9999

    degraded = CliRunner().invoke(
        main,
        [
            "augment",
            str(parent.root),
            "--out",
            str(tmp_path / "blur"),
            "--copies",
            "2",
            "--kinds",
            "blur",
            "--severity-min",
            "1",
        ],
    )
    assert degraded.exit_code == 0, degraded.output
    blurred = open_store(tmp_path / "blur")
    similarity = (blurred.vectors[9:] * parent.vectors[blurred.parent_id[9:]]).sum(axis=1)
    assert similarity.max() < 0.95  # heavy blur moves the embedding away from the parent's
    bad = CliRunner().invoke(main, ["augment", str(parent.root), "--out", str(tmp_path / "x"), "--kinds", "fog"])
    assert bad.exit_code != 0 and "'kinds' parameter of augment_store" in bad.output
