"""The shipped default model: its file and card agree, tampering is refused, it scores a photo with nothing but the
package (no store, labels or training data), through the API and the CLI, without importing PyTorch."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import subprocess
import sys
from importlib import resources

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner

import fiqa
from default_model_tools import placeholder_head
from fiqa.cli import main
from fiqa.core.errors import ModelFileError, UnknownNameError
from fiqa.detect import FaceAligner
from fiqa.embed.features import FEATURES_NAME, FeatureExtractor, FeatureSpec, compose
from fiqa.embed.quality_model import model_metadata, write_digest
from fiqa.score import (
    OUTPUT_NAMES,
    create_scorer,
    list_models,
    load_model_folder,
    load_quality_model,
    model_card,
    read_metadata,
)
from fiqa.score.packaged import validate_card
from tolerances import SAME_GRAPH_SCORE

DEFAULT = resources.files("fiqa.score").joinpath("default")


@pytest.fixture(scope="module")
def card():
    return model_card("default")


@pytest.fixture(scope="module")
def photo(lfw_dir):
    return str(lfw_dir / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg")


def test_default_is_registered_and_its_card_names_the_packaged_file_by_hash(card):
    assert "default" in list_models() and "default" in fiqa.list_models()
    data = DEFAULT.joinpath(card["file"]).read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert card["name"] == "default"  # the key types are validate_card's (model_card ran it); the facts are here
    assert card["training_data"]["name"] and "research" in card["training_data"]["licence_note"]
    assert card["thresholds_note"]
    assert json.loads(DEFAULT.joinpath("card.json").read_text(encoding="utf-8")) == card


def test_card_agrees_with_the_head_it_describes(card):
    head = onnx.load_from_string(DEFAULT.joinpath(card["file"]).read_bytes())
    meta = model_metadata(head)
    assert [value.name for value in head.graph.input] == [FEATURES_NAME]
    assert [value.name for value in head.graph.output] == list(OUTPUT_NAMES)
    assert {"fiqa_version", "preprocess", "label_method", "calibration", "training", "features"} <= set(meta)
    assert meta["label_method"] == card["label_method"]
    spec = FeatureSpec.from_dict(meta["features"])  # raises when the recogniser file here differs
    assert card["recogniser"]["sha256"] == spec.sha256


def test_rejecting_below_a_higher_score_rejects_at_least_as_many(card):
    """What validate_card does not check (it checks ranges and increasing scores): the rejected fraction is a
    cumulative count, so it cannot fall as the threshold rises, and the table spans more than one fraction."""
    rejected = [row["rejected_fraction"] for row in card["thresholds"]]
    assert all(a <= b for a, b in itertools.pairwise(rejected)) and rejected[-1] > rejected[0]


def test_malformed_cards_are_refused_with_the_key_named(card):
    with pytest.raises(ModelFileError, match="'thresholds_note' missing"):
        validate_card({k: v for k, v in card.items() if k != "thresholds_note"}, "x/card.json")
    with pytest.raises(ModelFileError, match="x/card.json.*scores must increase"):
        validate_card({**card, "thresholds": card["thresholds"][::-1]}, "x/card.json")
    with pytest.raises(ModelFileError, match="'sha256' must be 64"):
        validate_card({**card, "sha256": "abc"})


def test_a_tampered_copy_is_refused_naming_the_file(tmp_path, card):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("card.json", card["file"]):
        (folder / name).write_bytes(DEFAULT.joinpath(name).read_bytes())
    load_model_folder(folder)  # the intact copy loads
    data = bytearray((folder / card["file"]).read_bytes())
    data[-1] ^= 0x01
    (folder / card["file"]).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=re.escape(str(folder / card["file"])) + ".*SHA-256"):
        load_model_folder(folder)
    with pytest.raises(ModelFileError, match=card["file"]):
        create_scorer(folder)
    (folder / "card.json").unlink()
    with pytest.raises(ModelFileError, match="card.json"):
        create_scorer(folder)


def test_unknown_names_and_missing_paths_are_refused():
    with pytest.raises(UnknownNameError, match="Did you mean 'default'"):
        create_scorer("defualt")
    with pytest.raises(ModelFileError, match="nothing.onnx.*does not exist"):
        create_scorer("nothing.onnx")


def test_default_scorer_scores_an_lfw_photo_with_nothing_but_the_package(photo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no store, labels or training folder around
    scorer = create_scorer()
    table = scorer.score([photo], progress=False)
    assert table.status.tolist() == ["ok"]
    assert math.isfinite(table.score[0]) and 0 <= table.score[0] <= 100
    assert table.meta["model"] == "default" and table.meta["model_sha256"] == scorer.card["sha256"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.numerics
def test_composed_default_equals_the_feature_graph_followed_by_the_head(lfw_dir, card):
    aligner = FaceAligner()
    photos = sorted(lfw_dir.glob("A*/*.jpg"))[:3]
    crops = np.stack([aligner.align(cv2.imread(str(p))).crop for p in photos])
    quality, raw = create_scorer().score_crops(crops)
    head_bytes = DEFAULT.joinpath(card["file"]).read_bytes()
    spec = FeatureSpec.from_dict(model_metadata(onnx.load_from_string(head_bytes))["features"])
    head = ort.InferenceSession(head_bytes, providers=["CPUExecutionProvider"])
    expected = head.run(list(OUTPUT_NAMES), {FEATURES_NAME: FeatureExtractor(spec)(crops)})
    # the composed graph runs the feature graph's nodes, then the head's: the same kernels on the same numbers
    np.testing.assert_allclose(quality, expected[0], rtol=0, atol=SAME_GRAPH_SCORE)
    np.testing.assert_allclose(raw, expected[1], rtol=0, atol=SAME_GRAPH_SCORE)


@pytest.mark.numerics
def test_head_and_full_graph_forms_load_alike_and_score_the_same(lfw_dir, tmp_path):
    head = placeholder_head()
    onnx.save(head, tmp_path / "head.onnx")
    onnx.save(compose(head), tmp_path / "model.onnx")
    for name in ("head.onnx", "model.onnx"):  # the SHA-256 files fiqa train writes, which scoring checks
        write_digest(tmp_path / name, (tmp_path / name).read_bytes())
    full_bytes, full_meta = load_quality_model(tmp_path / "model.onnx")
    assert full_bytes == (tmp_path / "model.onnx").read_bytes()  # a full graph is used as it is
    assert full_meta == load_quality_model(tmp_path / "head.onnx")[1] == read_metadata(tmp_path / "head.onnx")
    photos = [str(p) for p in sorted(lfw_dir.glob("B*/*.jpg"))[:2]]
    from_head = create_scorer(tmp_path / "head.onnx").score(photos, progress=False)
    from_full = create_scorer(tmp_path / "model.onnx").score(photos, progress=False)
    np.testing.assert_allclose(from_head.score, from_full.score, rtol=0, atol=SAME_GRAPH_SCORE)  # as above
    assert np.all(np.isfinite(from_head.score))


def test_a_head_without_features_metadata_or_with_other_preprocessing_is_refused(tmp_path):
    head = placeholder_head()
    props = {p.key: p.value for p in head.metadata_props}
    for name, changes in [("nofeatures", {"features": None}),
                          ("otherprep", {"preprocess": json.dumps({**json.loads(props["preprocess"]),
                                                                   "channel_order": "BGR"})})]:
        del head.metadata_props[:]
        onnx.helper.set_model_props(head, {k: v for k, v in {**props, **changes}.items() if v is not None})
        onnx.save(head, tmp_path / f"{name}.onnx")
    with pytest.raises(ModelFileError, match="nofeatures.onnx.*'features'"):
        load_quality_model(tmp_path / "nofeatures.onnx")
    with pytest.raises(ModelFileError, match="otherprep.onnx.*preprocess"):
        load_quality_model(tmp_path / "otherprep.onnx")


def test_score_command_without_model_prints_one_line_per_image(photo, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"junk")
    result = CliRunner().invoke(main, ["score", photo, str(junk)])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(line[0], line[2]) for line in lines] == [(photo, "ok"), (str(junk), "not_an_image")]
    assert 0 <= float(lines[0][1]) <= 100 and lines[0][1] == f"{float(lines[0][1]):.1f}" and lines[1][1] == "nan"


def test_models_command_lists_default_and_prints_its_card(card):
    listing = CliRunner().invoke(main, ["models"])
    assert listing.exit_code == 0, listing.output
    assert listing.stdout.splitlines()[1].startswith("default ")
    shown = CliRunner().invoke(main, ["models", "default"])
    assert shown.exit_code == 0, shown.output
    assert card["sha256"] in shown.stdout and "FNMR" in shown.stdout and "rejected" in shown.stdout
    assert f"{card['thresholds'][-1]['score']:.1f}" in shown.stdout
    as_json = CliRunner().invoke(main, ["models", "default", "--json"])
    assert json.loads(as_json.stdout) == card
    unknown = CliRunner().invoke(main, ["models", "defualt"])
    assert unknown.exit_code != 0 and "Did you mean 'default'" in unknown.output


def test_scoring_with_the_default_model_does_not_import_torch(photo):
    code = ("import sys, fiqa; table = fiqa.create_scorer().score([sys.argv[1]], progress=False); "
            "assert table.ok.all(), table.reason; "
            "assert not [m for m in sys.modules if m == 'torch' or m.startswith('torch.')], 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code, photo], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_the_files_the_card_cites_exist_in_the_source_tree(card):
    """The card's pointers to fuller results name files of this repository that exist (they are not in the wheel,
    and the card says so)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = card["evaluation"]["more"]
    cited = re.findall(r"[\w./-]+\.md", text)
    assert cited and all((root / path).is_file() for path in cited), cited
    assert "not installed" in text
