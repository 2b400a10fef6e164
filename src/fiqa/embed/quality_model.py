"""The quality-model file contract, shared by training (which writes the files) and scoring (which reads them).

A trained quality model is an ONNX file in one of two forms, both with the same outputs and metadata:

``full``
    One graph from an aligned face to quality. Input ``data``: float32 (batch, 3, 112, 112), the recogniser's
    input (see the ``preprocess`` metadata entry).
``head``
    Only the small trained part. Input ``features``: float32 (batch, ``FeatureSpec.dim``), the pooled recogniser
    features of :mod:`fiqa.embed.features`. The ``features`` metadata entry (``FeatureSpec.to_dict()``) names
    the recogniser; :func:`load_quality_model` joins the two (:func:`fiqa.embed.features.compose`) after checking
    the recogniser file's SHA-256, so a head of a few hundred KiB ships without the recogniser's weights.

Outputs: ``quality`` (batch,), calibrated 0..100 (higher is better), and ``raw_score`` (batch,), the regressor's
uncalibrated output, both float32. ``metadata_props`` hold JSON strings: ``fiqa_version``, ``preprocess``,
``label_method``, ``calibration``, ``training``, and for a head ``features``; training may add more (``shape``,
``recogniser``, ``label_range``). Nothing here imports PyTorch.

A model file given by its path carries its SHA-256 beside it (``model.onnx.sha256``, written with the file by
:func:`fiqa.train.export_onnx`, in ``sha256sum`` format): :func:`load_verified_model` refuses a file whose bytes
differ from it (a flipped bit, a truncated copy, a replaced file) and a file without one (for a model one trusts, write
it: ``sha256sum model.onnx > model.onnx.sha256``). A model folder's ``card.json`` and the shipped models record the
digest the same way.

Before a model is used, its metadata is checked against its graph (:func:`check_signature`): the input is float32
of shape (batch, 3, H, W) as its ``preprocess`` entry says (a full graph) or (batch, ``FeatureSpec.dim``) as its
``features`` entry says (a head), with a free batch axis, and both outputs are float32 (batch,). A file that only
claims to be a quality model fails here with a :class:`~fiqa.core.errors.ModelFileError` naming it, not later
inside ONNX Runtime.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import onnx

from fiqa.core.cache import artifact_key, cached_bytes
from fiqa.core.errors import FIQAError, ModelFileError
from fiqa.embed.spec import PreprocessSpec
from fiqa.io.model_files import model_path

INPUT_NAME = "data"
"""Input of a full-graph model: aligned faces, float32 (batch, 3, 112, 112)."""
OUTPUT_NAMES = ("quality", "raw_score")
"""Outputs of every quality model, in this order: calibrated 0-100 quality and the uncalibrated score."""


def model_metadata(model: onnx.ModelProto, where: str = "<model>") -> dict[str, Any]:
    """The ``metadata_props`` of a quality model, JSON values decoded.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        ``fiqa_version`` or ``preprocess`` is missing (the message names ``where``).
    """
    meta: dict[str, Any] = {}
    for prop in model.metadata_props:
        try:
            meta[prop.key] = json.loads(prop.value)
        except json.JSONDecodeError:
            meta[prop.key] = prop.value
    if "fiqa_version" not in meta or "preprocess" not in meta:
        raise ModelFileError(f"{where}: not a fiqa quality model (no fiqa_version/preprocess metadata)")
    return meta


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises its own DecodeError types
        raise ModelFileError(f"{where}: not an ONNX model ({exc})") from None


def _read(path: str | Path) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file does not exist")
    return path.read_bytes()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``metadata_props`` of a quality model file (either form), JSON values decoded."""
    return model_metadata(_parse(_read(path), str(path)), str(path))


def model_form(model: onnx.ModelProto, where: str = "<model>") -> str:
    """``"full"`` (input ``data``) or ``"head"`` (input ``features``); refuses anything else."""
    from fiqa.embed.features import FEATURES_NAME

    inputs = [value.name for value in model.graph.input]
    outputs = {value.name for value in model.graph.output}
    missing = [name for name in OUTPUT_NAMES if name not in outputs]
    if missing:
        raise ModelFileError(f"{where}: a quality model has outputs {list(OUTPUT_NAMES)}; {missing} missing")
    if inputs == [INPUT_NAME]:
        return "full"
    if inputs == [FEATURES_NAME]:
        return "head"
    raise ModelFileError(f"{where}: a quality model has one input, {INPUT_NAME!r} (a full graph) or "
                         f"{FEATURES_NAME!r} (a head); this one has {inputs}")


def preprocess_spec(meta: Mapping[str, Any], where: str = "<model>") -> PreprocessSpec:
    """The :class:`~fiqa.embed.spec.PreprocessSpec` of a model's ``preprocess`` metadata entry.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The entry is missing or malformed (the message names ``where``).
    """
    values = meta.get("preprocess")
    if not isinstance(values, Mapping):
        raise ModelFileError(f"{where}: its 'preprocess' metadata must be a JSON object of PreprocessSpec fields; "
                             f"it is {values!r}")
    try:
        return PreprocessSpec.from_dict(values)
    except (FIQAError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: its 'preprocess' metadata is malformed ({exc})") from None


def _describe(value: onnx.ValueInfoProto) -> str:
    """``float32 (batch, 3, 112, 112)``-like text of a graph input or output, as declared."""
    if not value.type.HasField("tensor_type"):
        return f"a {value.type.WhichOneof('value') or 'untyped'} value"
    tensor = value.type.tensor_type
    try:
        kind = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type else "untyped"
    except ValueError:
        kind = f"element type {tensor.elem_type}"
    kind = {"float": "float32", "double": "float64"}.get(kind, kind)
    if not tensor.HasField("shape"):
        return f"{kind} of undeclared shape"
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return f"{kind} ({', '.join(dims)}{',' if len(dims) == 1 else ''})"


def _check_value(value: onnx.ValueInfoProto, role: str, sizes: Sequence[int], where: str) -> None:
    """``value`` must be a float32 tensor of shape (batch, *sizes): a free batch axis (symbolic or unknown) and
    the other axes equal to ``sizes`` where the graph fixes them."""
    expected = f"float32 ({', '.join(['batch', *(str(size) for size in sizes)])}{',' if not sizes else ''})"
    tensor = value.type.tensor_type
    wrong = not value.type.HasField("tensor_type") or tensor.elem_type != onnx.TensorProto.FLOAT \
        or not tensor.HasField("shape") or len(tensor.shape.dim) != 1 + len(sizes)
    if not wrong:
        batch, *rest = tensor.shape.dim
        wrong = batch.HasField("dim_value") or any(d.HasField("dim_value") and d.dim_value != size
                                                   for d, size in zip(rest, sizes))
    if wrong:
        raise ModelFileError(f"{where}: its {role} {value.name!r} is {_describe(value)}; a quality model needs "
                             f"{expected} (a free batch axis)")


def check_signature(model: onnx.ModelProto, input_sizes: Sequence[int], where: str = "<model>") -> None:
    """Check a quality model's graph inputs and outputs against what its metadata promises.

    Parameters
    ----------
    model : onnx.ModelProto
        A full graph or a head (see :func:`model_form`).
    input_sizes : sequence of int
        The input's shape without the batch axis: ``PreprocessSpec.input_shape`` of its ``preprocess`` entry
        (a full graph), or ``(FeatureSpec.dim,)`` of its ``features`` entry (a head).

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The input is not float32 (batch, *input_sizes), an output is not float32 (batch,), or the batch axis is
        fixed (the message names ``where``, the tensor and both shapes).
    """
    form = model_form(model, where)
    _check_value(model.graph.input[0], f"input ({form} graph)", tuple(input_sizes), where)
    outputs = {value.name: value for value in model.graph.output}
    for name in OUTPUT_NAMES:
        _check_value(outputs[name], "output", (), where)


@lru_cache(maxsize=2)
def _composed(head_bytes: bytes, where: str) -> bytes:
    """The full graph of a head (seconds: the recogniser graph is rebuilt and merged); cached per head in the
    process and on disk (:func:`fiqa.core.cache.cached_bytes`)."""
    from fiqa.embed.features import FeatureSpec, compose

    head = _parse(head_bytes, where)
    meta = model_metadata(head, where)
    if "features" not in meta:
        raise ModelFileError(f"{where}: a quality head needs a 'features' metadata entry (FeatureSpec.to_dict())")
    if not isinstance(meta["features"], Mapping):
        raise ModelFileError(f"{where}: its 'features' metadata must be a JSON object (FeatureSpec.to_dict()); it "
                             f"is {meta['features']!r}")
    try:
        spec = FeatureSpec.from_dict(meta["features"])
    except ModelFileError as exc:
        raise ModelFileError(f"{where}: {exc}") from None
    if preprocess_spec(meta, where) != spec.spec:
        raise ModelFileError(f"{where}: its 'preprocess' metadata {meta['preprocess']} differs from its "
                             f"recogniser's preprocessing {spec.spec.to_dict()}")
    check_signature(head, (spec.dim,), where)

    def build() -> bytes:
        try:
            return compose(head, spec).SerializeToString()
        except ModelFileError as exc:
            raise ModelFileError(f"{where}: {exc}") from None

    # the composed graph is kept in the user cache under the key of its parts: the head's bytes' SHA-256, the
    # feature specification (which holds the verified recogniser file's SHA-256), fiqa's and onnx's versions (a
    # second start skips the seconds of composition; an entry made from anything else is never used)
    model_path(spec.recogniser)  # verifies the recogniser file's SHA-256
    key = artifact_key(head_sha256=hashlib.sha256(head_bytes).hexdigest(), features=spec.to_dict())
    return cached_bytes("composed-models", key, build)


DIGEST_SUFFIX = ".sha256"
"""A model file's SHA-256 sidecar is the file's name plus this suffix."""


def digest_path(path: str | Path) -> Path:
    """The SHA-256 sidecar of the model file ``path`` (``model.onnx`` -> ``model.onnx.sha256``)."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_digest(path: str | Path, data: bytes, name: str | None = None) -> Path:
    """Write the sidecar of the model file ``path`` holding ``data``, atomically, in ``sha256sum`` format (the hex
    digest, two spaces, the file name ``name`` or ``path``'s): ``sha256sum -c`` and :func:`load_verified_model` check
    it."""
    from fiqa.core.atomic import write_text

    sidecar = digest_path(path)
    write_text(sidecar, f"{hashlib.sha256(data).hexdigest()}  {name or Path(path).name}\n")
    return sidecar


def _recorded_digest(path: Path) -> str | None:
    sidecar = digest_path(path)
    if not sidecar.is_file():
        return None
    try:
        words = sidecar.read_text(encoding="ascii").split()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path}: its digest file {sidecar.name} cannot be read ({exc})") from None
    if not words or len(words[0]) != 64 or any(c not in "0123456789abcdef" for c in words[0].lower()):
        raise ModelFileError(f"{path}: its digest file {sidecar.name} does not start with a SHA-256 (64 hex digits)")
    return words[0].lower()


def load_verified_model(path: str | Path) -> tuple[bytes, dict[str, Any], str]:
    """Load a model file given by its path, as :func:`load_quality_model` does, after checking its bytes against its
    SHA-256 sidecar (:func:`digest_path`).

    Returns
    -------
    model : bytes
    metadata : dict
    sha256 : str
        The file's SHA-256 (the sidecar's).

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The file differs from its sidecar (checked before anything is parsed), is not a quality model (as
        :func:`load_quality_model`), or has no sidecar; the message names the file.
    """
    path = Path(path)
    data = _read(path)
    recorded, digest = _recorded_digest(path), hashlib.sha256(data).hexdigest()
    if recorded is not None and recorded != digest:
        raise ModelFileError(f"{path}: has SHA-256 {digest}, but {digest_path(path).name} says {recorded}: the file "
                             f"is corrupt or altered since it was written; refusing to load it")
    model, meta = quality_model_from_bytes(data, str(path))
    if recorded is None:
        raise ModelFileError(f"{path}: no {digest_path(path).name} beside it, so its integrity cannot be checked "
                             f"(fiqa train writes one with every model); for a file you trust, write it: "
                             f"sha256sum {path.name} > {digest_path(path).name}")
    return model, meta, digest


def quality_model_from_bytes(data: bytes, where: str = "<model>") -> tuple[bytes, dict[str, Any]]:
    """:func:`load_quality_model` on the bytes of a model file; ``where`` names it in error messages."""
    model = _parse(data, where)
    meta = model_metadata(model, where)
    spec = preprocess_spec(meta, where)
    if model_form(model, where) == "full":
        check_signature(model, spec.input_shape, where)
        try:  # types and shapes inside the graph agree with what it declares (strict shape inference)
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # onnx raises ValidationError, InferenceError and others
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelFileError(f"{where}: not a valid ONNX graph ({first})") from None
        return data, meta
    return _composed(data, where), meta


def load_quality_model(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """Load a quality model file of either form as one runnable graph.

    Parameters
    ----------
    path : path
        A full graph (input ``data``), used as it is, or a head (input ``features``), composed with the
        recogniser its ``features`` metadata names.

    Returns
    -------
    model : bytes
        A serialised ONNX graph from aligned faces to ``quality`` and ``raw_score`` (for ``onnxruntime``).
    metadata : dict
        The file's ``metadata_props``, JSON values decoded.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The file is missing, not ONNX, not a fiqa quality model, its graph's inputs or outputs differ from what
        its metadata promises (:func:`check_signature`), or its recogniser file is missing or differs from the one
        it was trained on (the message names the file).
    """
    return quality_model_from_bytes(_read(path), str(path))
