"""Recognition networks run in onnxruntime: SFace (folded int8 file) and any user ArcFace-style ONNX model."""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
import onnxruntime as ort

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.params import REQUIRED, InstanceOf, Interval, Options, Param, PathLike, validate
from fiqa.core.provenance import file_sha256
from fiqa.embed.base import Embedder
from fiqa.embed.graph import fold_constants
from fiqa.embed.spec import PreprocessSpec, resolve_spec
from fiqa.io.model_files import MODEL_FILES, model_path

logger = logging.getLogger(__name__)

#: SFace's input as OpenCV's FaceRecognizerSF feeds it (``blobFromImage(crop, 1, (112, 112), 0, swapRB=True)``):
#: RGB 0..255, NCHW. The graph itself subtracts 127.5 and multiplies by 1/128.
SFACE_SPEC = PreprocessSpec(input_size=(112, 112), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), channel_order="RGB",
                            layout="NCHW")


@lru_cache(maxsize=4)
def _folded_model_bytes(path: str, sha256: str) -> bytes:
    # In-memory cache keyed by the verified file hash: converting takes about a second, once per process.
    logger.info("folding the int8 block-quantised weights of %s into float32", path)
    return fold_constants(onnx.load(path)).SerializeToString()


#: Environment variable giving the intra-op thread count of sessions opened with ``threads=None`` (unset: all
#: cores). scripts/test.sh sets it to run the numerical tests under a second threading setting (docs/numerics.md).
THREADS_ENV = "FIQA_ORT_THREADS"


def _default_threads() -> int | None:
    value = os.environ.get(THREADS_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise InvalidParameterError("onnxruntime session", THREADS_ENV, "an int >= 1 (or unset)", value)
    return int(value)


def session_options(threads: int | None, optimization: str = "all", *, spinning: bool = True) -> ort.SessionOptions:
    """ONNX Runtime options of every fiqa session: ``threads`` intra-op threads (None: ``$FIQA_ORT_THREADS`` when
    set, else all cores), one inter-op thread, the graph optimisation level, warnings silenced; ``spinning=False``
    lets idle intra-op threads sleep (for many sessions taking turns, whose idle threads would otherwise spin while
    another one computes, and for a session with other work beside it on the same cores: the scorer's, beside the
    components' thread)."""
    options = ort.SessionOptions()
    threads = _default_threads() if threads is None else threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    options.log_severity_level = 3
    return options


#: Devices the onnxruntime sessions and training accept, and the execution providers of each (in order).
DEVICES = {"cpu": ("CPUExecutionProvider",), "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider")}


def check_device(owner: str, device: object) -> str:
    """``device`` if it is one of :data:`DEVICES` and this onnxruntime build can run it, else an
    InvalidParameterError that says what to install."""
    if not isinstance(device, str) or device not in DEVICES:
        raise InvalidParameterError(owner, "device", f"one of {sorted(DEVICES)}", device)
    missing = [name for name in DEVICES[device] if name not in ort.get_available_providers()]
    if missing:
        raise InvalidParameterError(owner, "device", f"a device this onnxruntime can run ({missing[0]} is not in "
                                    f"{ort.get_available_providers()}; for 'cuda' install the GPU build: pip "
                                    f"install 'fiqa[cuda]', which brings onnxruntime-gpu)", device)
    return device


def inference_session(model: str | bytes, *, threads: int | None = None, optimization: str = "all",
                      device: str = "cpu", spinning: bool = True) -> ort.InferenceSession:
    """The one way fiqa opens an onnxruntime session: :func:`session_options` and the execution providers of
    ``device`` (checked by :func:`check_device`; ``cuda`` falls back to the CPU for operators CUDA lacks)."""
    return ort.InferenceSession(model, session_options(threads, optimization, spinning=spinning),
                                providers=list(DEVICES[check_device("onnxruntime session", device)]))


def _static_dim(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, (int, np.integer)) and dim > 0 else None


class OnnxEmbedder(Embedder):
    """A recognition network in onnxruntime with an explicit preprocessing spec.

    Parameters
    ----------
    model : str or Path
        The ONNX file (input: one image tensor of ``spec.input_shape`` with a batch axis; first output: the
        embedding, ``(B, d)`` or anything that flattens to it).
    spec : PreprocessSpec, mapping, or path to a .json/.toml spec file
        The preprocessing; required, never guessed from the graph.
    batch_size : int >= 1, default=64
        Crops per onnxruntime call. A model with a fixed batch axis runs in chunks of that size instead.
    threads : int >= 1 or None, default=None
        onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
    optimization : {"all", "extended", "basic", "none"}, default="all"
        onnxruntime graph optimisation level.
    device : {"cpu", "cuda"}, default="cpu"
        Where onnxruntime runs the network (``cuda`` needs ``fiqa[cuda]``, see :func:`check_device`).

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The file is missing or not ONNX, or its input does not match ``spec`` (the message names the file).
    """

    name = "onnx"
    param_specs: ClassVar[dict[str, Param]] = {
        "model": Param(REQUIRED, [PathLike()], "The ONNX file of the recognition network."),
        "spec": Param(REQUIRED, [InstanceOf(PreprocessSpec), InstanceOf(Mapping, "a mapping"), PathLike()],
                      "The preprocessing (a PreprocessSpec, a mapping, or a .json/.toml file); never guessed."),
        "batch_size": Param(64, [Interval(int, 1, None, closed="left")], "Crops per onnxruntime call."),
        "threads": Param(None, [Interval(int, 1, None, closed="left"), None],
                         "onnxruntime intra-op threads (None: one per physical core)."),
        "optimization": Param("all", [Options(("all", "extended", "basic", "none"))],
                              "onnxruntime graph optimisation level."),
        "device": Param("cpu", [Options(tuple(DEVICES))], "Where onnxruntime runs the network (cuda needs "
                        "fiqa[cuda])."),
    }

    def __init__(self, model: str | Path, *, spec: object, batch_size: int = 64, threads: int | None = None,
                 optimization: str = "all", device: str = "cpu") -> None:
        owner = type(self).__name__
        validate(owner, {"model": model, "spec": spec, "batch_size": batch_size, "threads": threads,
                         "optimization": optimization, "device": device}, OnnxEmbedder.param_specs)
        self.spec = resolve_spec(spec, owner)
        self.batch_size = int(batch_size)
        self.threads = None if threads is None else int(threads)
        self.optimization = optimization
        self.device = check_device(owner, device)
        self.model_path = Path(model)
        if not self.model_path.is_file():
            raise ModelFileError(f"ONNX model file {str(self.model_path)!r} does not exist.")
        self.model_sha256 = file_sha256(self.model_path)
        self._start(self._model_bytes())

    def _model_bytes(self) -> bytes:
        return self.model_path.read_bytes()

    def _start(self, model_bytes: bytes) -> None:
        where = str(self.model_path)
        try:
            self._session = inference_session(model_bytes, threads=self.threads, optimization=self.optimization,
                                              device=self.device)
        except Exception as exc:  # onnxruntime raises several private exception types
            raise ModelFileError(f"onnxruntime cannot load {where!r} as an ONNX model: {exc}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelFileError(f"ONNX model {where!r} has {len(inputs)} inputs {names}; fiqa needs exactly one "
                                 f"image input.")
        shape = list(inputs[0].shape)
        expected = list(self.spec.input_shape)
        if len(shape) != 4 or any(_static_dim(got) not in (None, want) for got, want in zip(shape[1:], expected)):
            raise ModelFileError(
                f"ONNX model {where!r} takes input {inputs[0].name!r} of shape {shape}, which does not match the "
                f"preprocessing spec ({self.spec.layout}, input_size {self.spec.input_size}): expected "
                f"[batch, {', '.join(map(str, expected))}]."
            )
        self._input_name = inputs[0].name
        self._output_name = self._session.get_outputs()[0].name
        fixed_batch = _static_dim(shape[0])
        self._chunk = fixed_batch or self.batch_size
        self._fixed_batch = fixed_batch is not None
        probe = self._run(np.zeros((1, *self.spec.input_shape), np.float32))
        self.dim = int(probe.shape[1])

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        count = len(tensor)
        if self._fixed_batch and count < self._chunk:
            tensor = np.concatenate([tensor, np.zeros((self._chunk - count, *tensor.shape[1:]), tensor.dtype)])
        try:
            output = self._session.run([self._output_name], {self._input_name: tensor})[0]
        except Exception as exc:
            raise ModelFileError(f"ONNX model {str(self.model_path)!r} failed on an input of shape "
                                 f"{list(tensor.shape)} built from the preprocessing spec: {exc}") from None
        return np.asarray(output, np.float32).reshape(len(tensor), -1)[:count]

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        parts = [self._run(self.spec.apply(crops[start:start + self._chunk]))
                 for start in range(0, len(crops), self._chunk)]
        return np.concatenate(parts)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "runtime": "onnxruntime", "model_path": str(self.model_path),
                "model_sha256": self.model_sha256, "dim": self.dim, "spec": self.spec.to_dict(),
                "batch_size": self.batch_size, "threads": self.threads, "optimization": self.optimization,
                "device": self.device}


class SFaceEmbedder(OnnxEmbedder):
    """SFace (OpenCV Zoo, 128-D) in onnxruntime, batched, with its int8 block-quantised weights folded to float32.

    The verified file from ``fiqa.io.model_files.model_path("sface")`` is converted by
    ``fiqa.embed.graph.fold_constants`` (dequantised weights as float32 initialisers, the dangling graph inputs
    dropped, a dynamic batch axis) and cached in memory per process, keyed by the file's SHA-256. Preprocessing is
    ``SFACE_SPEC``, the same as OpenCV's ``FaceRecognizerSF``.

    Parameters
    ----------
    batch_size, threads, optimization, device
        As for ``OnnxEmbedder``.
    """

    name = "sface"
    param_specs: ClassVar[dict[str, Param]] = {name: param for name, param in OnnxEmbedder.param_specs.items()
                                              if name not in ("model", "spec")}

    def __init__(self, *, batch_size: int = 64, threads: int | None = None, optimization: str = "all",
                 device: str = "cpu") -> None:
        super().__init__(model_path("sface"), spec=SFACE_SPEC, batch_size=batch_size, threads=threads, device=device,
                         optimization=optimization)

    def _model_bytes(self) -> bytes:
        return _folded_model_bytes(str(self.model_path), MODEL_FILES["sface"].sha256)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "conversion": "int8 block DequantizeLinear folded to float32; dynamic batch"}
