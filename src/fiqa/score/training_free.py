"""Training-free quality methods: published measures that need no labels and no training, computed per image from
the recogniser itself, behind one registry beside the labellers (so the evaluation can set them against fiqa's
trained models on the same comparisons).

``ser-fiq``
    SER-FIQ (Terhörst et al., CVPR 2020): the robustness of a face's embedding to dropout at the embedding layer.
    The recogniser's trunk runs once; only its last layer (dropout -> fully connected -> batch norm, SFace's own
    ``dropout5 -> pre_fc1 -> fc1``) is sampled ``n_samples`` times with seeded dropout masks, and the quality is
    ``2 * sigmoid(-(2 / m**2) * sum_{i<j} ||e_i - e_j||)`` over the ``m`` L2-normalised embeddings. The official code
    runs the whole network ``m`` times (2-3 s per image); here the cost is one trunk pass plus ``m`` small
    matrix products.
``flip-consistency``
    Cosine similarity of the embeddings of a face and of its mirror image (the flip part of FaceQAN's
    perturbation consistency): a face the recogniser reads consistently scores near 1.
``norm``
    Norm of the raw (not normalised) embedding: MagFace's principle, which SFace shows too.

>>> method = create_quality_method("ser-fiq", n_samples=100, random_state=0)   # doctest: +SKIP
>>> method.score_crops(crops)                                 # crops: (B, 112, 112, 3) uint8 BGR  # doctest: +SKIP
>>> table = score_store(method, store)                        # a QualityTable like a model's scores  # doctest: +SKIP

Every method implements :class:`fiqa.score.method.QualityMethod` and is scored by the one
:func:`fiqa.score.method.score_store` / :func:`fiqa.score.method.score_images` path, as the learned models are.

Higher is better for every method.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import numpy_helper
from threadpoolctl import threadpool_limits

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.core.params import Interval, Options, Param, validate
from fiqa.core.provenance import provenance
from fiqa.core.registry import Registry
from fiqa.core.types import EmbeddingStore
from fiqa.embed.graph import fold_constants
from fiqa.embed.onnx_runtime import DEVICES, SFACE_SPEC, check_device, inference_session
from fiqa.io.model_files import MODEL_FILES, model_path
from fiqa.store import raw_norms

__all__ = [
    "QUALITY_METHODS",
    "SERFIQ",
    "EmbeddingNorm",
    "FlipConsistency",
    "create_quality_method",
    "list_quality_methods",
]

# SFace's last layers: the trunk ends in ``bn1`` (B, 1024, 7, 7); dropout5 -> flatten -> pre_fc1 (Gemm) -> fc1 (BN)
_TRUNK_OUTPUT, _DROPOUT, _GEMM, _EMBEDDING_BN = "bn1", "dropout5", "pre_fc1", "fc1"


class _SFaceTail:
    """SFace split at its embedding layer: an onnxruntime session from crops to the trunk output ``bn1`` and the
    raw embedding ``fc1``, and the last layer (Gemm + batch norm) as numpy arrays so it can be run with dropout."""

    def __init__(self, threads: int | None, device: str = "cpu") -> None:
        graph, self.weight, self.bias, self.bn, self.dropout_ratio = _tail_parts()
        self._session = inference_session(graph, threads=threads, device=device)

    def trunk(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(features, embeddings)``: the flattened trunk output (B, 50176) and the raw embedding (B, 128)."""
        mapped, embedding = self._session.run([_TRUNK_OUTPUT, _EMBEDDING_BN], {"data": SFACE_SPEC.apply(crops)})
        return mapped.reshape(len(crops), -1), embedding

    def last_layer(self, features: np.ndarray) -> np.ndarray:
        """The raw embedding of flattened trunk outputs (..., 50176) -> (..., 128): Gemm then batch norm."""
        gamma, beta, mean, variance, epsilon = self.bn
        return ((features @ self.weight.T + self.bias) - mean) * (gamma / np.sqrt(variance + epsilon)) + beta


@lru_cache(maxsize=1)
def _tail_parts() -> tuple[bytes, np.ndarray, np.ndarray, tuple, float]:
    """The trunk graph and SFace's last-layer weights (seconds: the graph is folded once per process)."""
    path = model_path("sface")
    folded = fold_constants(onnx.load(str(path)), batch_name="batch")
    nodes = {node.name: node for node in folded.graph.node}
    if not {_DROPOUT, _GEMM, _EMBEDDING_BN} <= set(nodes):
        raise ModelFileError(f"{path}: not the SFace graph fiqa knows (no {_DROPOUT}/{_GEMM}/{_EMBEDDING_BN} nodes)")
    constants = {init.name: numpy_helper.to_array(init) for init in folded.graph.initializer}
    gemm, norm = nodes[_GEMM], nodes[_EMBEDDING_BN]
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in gemm.attribute}
    weight = constants[gemm.input[1]].astype(np.float32)
    weight = weight if attributes.get("transB", 0) else weight.T  # as (out, in)
    bias = constants[gemm.input[2]].astype(np.float32)
    epsilon = next((a.f for a in norm.attribute if a.name == "epsilon"), 1e-5)
    bn = (*(constants[name].astype(np.float32) for name in norm.input[1:5]), np.float32(epsilon))
    ratio_name = nodes[_DROPOUT].input[1] if len(nodes[_DROPOUT].input) > 1 else ""
    ratio = float(constants[ratio_name]) if ratio_name in constants else 0.5
    del folded.graph.output[:]
    folded.graph.output.extend([
        onnx.helper.make_tensor_value_info(_TRUNK_OUTPUT, onnx.TensorProto.FLOAT, ["batch", weight.shape[1]
                                                                                   // 49, 7, 7]),
        onnx.helper.make_tensor_value_info(_EMBEDDING_BN, onnx.TensorProto.FLOAT, ["batch", weight.shape[0]])])
    trunk = onnx.utils.Extractor(folded).extract_model(["data"], [_TRUNK_OUTPUT, _EMBEDDING_BN])
    return trunk.SerializeToString(), weight, bias, bn, ratio


class _Method:
    """Shared parts: parameters, the SFace split, batching."""

    name = ""
    #: The keyword parameters of ``__init__`` (default, constraints, meaning), checked by ``create_quality_method``.
    param_specs: ClassVar[dict[str, Param]] = {
        "batch_size": Param(32, [Interval(int, 1, None, closed="left")], "Faces per recogniser call."),
        "threads": Param(None, [Interval(int, 1, None, closed="left"), None],
                         "onnxruntime intra-op threads (None: all cores)."),
        "device": Param("cpu", [Options(tuple(DEVICES))], "Where onnxruntime runs SFace (cuda needs fiqa[cuda])."),
    }

    def __init__(self, *, batch_size: int = 32, threads: int | None = None, device: str = "cpu") -> None:
        validate(type(self).__name__, {"batch_size": batch_size, "threads": threads, "device": device},
                 _Method.param_specs)
        self.batch_size = int(batch_size)
        self.threads = None if threads is None else int(threads)
        self.device = check_device(type(self).__name__, device)
        self._tail: _SFaceTail | None = None

    @property
    def tail(self) -> _SFaceTail:
        if self._tail is None:
            self._tail = _SFaceTail(self.threads, self.device)
        return self._tail

    def params(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "threads": self.threads, "device": self.device}

    # the QualityMethod protocol (fiqa.score.method): what score_store and score_images need
    input = "crops"
    extra_columns: tuple[str, ...] = ()

    @property
    def non_finite_reason(self) -> str:
        return f"{self.name} gave a non-finite value"

    def check_store(self, store: EmbeddingStore) -> None:
        """Only SFace stores: the methods read SFace's own layers, so the crops must be SFace's."""
        backend = store.meta.backend
        if backend.get("model_sha256") != MODEL_FILES["sface"].sha256:
            raise InvalidParameterError(f"{type(self).__name__} ({self.name!r})", "store",
                                        "a store embedded with SFace",
                                        f"a store embedded with {backend.get('backend')!r}")

    def score_batch(self, inputs: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``(quality, {})`` of aligned crops (:meth:`score_crops`)."""
        return self.score_crops(inputs), {}

    def table_meta(self, **settings: Any) -> dict[str, Any]:
        """``method`` (the registered name) and provenance: the method's parameters and the scoring settings."""
        return {"method": self.name, **provenance(**{**self.params(), **settings})}

    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """Quality of aligned crops (B, 112, 112, 3) uint8 BGR: ndarray (B,), float64, higher is better."""
        crops = np.asarray(crops)
        if crops.ndim != 4 or crops.shape[1:] != (112, 112, 3) or crops.dtype != np.uint8:
            raise InvalidParameterError(f"{type(self).__name__}.score_crops", "crops",
                                        "a (B, 112, 112, 3) uint8 array", f"{crops.dtype} array of shape {crops.shape}")
        if len(crops) == 0:
            return np.zeros(0)
        return np.concatenate([self._score(crops[start:start + self.batch_size])
                               for start in range(0, len(crops), self.batch_size)])

    def _score(self, crops: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SERFIQ(_Method):
    """SER-FIQ on SFace: stochastic embeddings from dropout at the embedding layer, trunk run once.

    Parameters
    ----------
    n_samples : int >= 2, default=100
        Stochastic embeddings per face (the paper's m).
    dropout : float in (0, 1) or None
        Dropout rate; None takes the recogniser's own (SFace's ``dropout5``).
    random_state : int >= 0, default=0
        Seeds the dropout masks; face ``i`` of a call always gets the same masks, so a score does not depend on
        the batch a face came in.
    batch_size, threads, device : see :class:`EmbeddingNorm`.
    """

    name = "ser-fiq"
    param_specs: ClassVar[dict[str, Param]] = {
        **_Method.param_specs,
        "n_samples": Param(100, [Interval(int, 2, None, closed="left")],
                           "Stochastic embeddings per face (the paper's m)."),
        "dropout": Param(None, [Interval(float, 0, 1, closed="neither"), None],
                         "Dropout rate; None takes the recogniser's own (SFace's dropout5)."),
        "random_state": Param(0, [Interval(int, 0, None, closed="left")],
                              "Seeds the dropout masks (the same masks for every face, whatever its batch)."),
    }

    def __init__(self, *, n_samples: int = 100, dropout: float | None = None, random_state: int = 0,
                 batch_size: int = 32, threads: int | None = None, device: str = "cpu") -> None:
        super().__init__(batch_size=batch_size, threads=threads, device=device)
        validate("SERFIQ", {"n_samples": n_samples, "dropout": dropout, "random_state": random_state},
                 self.param_specs)
        self.n_samples = int(n_samples)
        self.dropout = None if dropout is None else float(dropout)
        self.random_state = int(random_state)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "n_samples": self.n_samples, "dropout": self.dropout,
                "random_state": self.random_state}

    def _score(self, crops: np.ndarray) -> np.ndarray:
        features, _ = self.tail.trunk(crops)
        rate = self.dropout if self.dropout is not None else self.tail.dropout_ratio
        # the masks depend only on the seed, not on the face: the same m dropout patterns for every face, as
        # the official code draws them per forward pass; reproducible whatever the batch
        masks = np.random.default_rng(self.random_state).random((self.n_samples, features.shape[1])) >= rate
        kept = masks.astype(np.float32) * np.float32(1.0 / (1.0 - rate))
        scores = np.empty(len(crops))
        # one face per product, BLAS on one thread: measured fastest here (49 ms of CPU per face with the trunk,
        # against 181 ms with every BLAS thread on such small products and 60-69 ms with faces stacked)
        with threadpool_limits(1, user_api="blas"):
            for i, face in enumerate(features):
                embeddings = self.tail.last_layer(kept * face)
                embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
                scores[i] = _serfiq_quality(embeddings)
        return scores


def _serfiq_quality(embeddings: np.ndarray) -> float:
    """``2 * sigmoid(-(2 / m**2) * sum_{i<j} ||e_i - e_j||)`` of m unit embeddings (m, d)."""
    m = len(embeddings)
    gram = np.clip(embeddings.astype(np.float64) @ embeddings.T.astype(np.float64), -1.0, 1.0)
    distances = np.sqrt(np.maximum(2.0 - 2.0 * gram[np.triu_indices(m, k=1)], 0.0))
    return float(2.0 / (1.0 + np.exp(2.0 * distances.sum() / m ** 2)))


class FlipConsistency(_Method):
    """Cosine similarity between the embeddings of a face and of its mirror image."""

    name = "flip-consistency"

    def _score(self, crops: np.ndarray) -> np.ndarray:
        _, embedding = self.tail.trunk(crops)
        _, mirrored = self.tail.trunk(np.ascontiguousarray(crops[:, :, ::-1]))
        a = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
        b = mirrored / np.maximum(np.linalg.norm(mirrored, axis=1, keepdims=True), 1e-12)
        return np.einsum("ij,ij->i", a.astype(np.float64), b.astype(np.float64))


class EmbeddingNorm(_Method):
    """Norm of the raw (not normalised) SFace embedding (:func:`fiqa.store.raw_norms`).

    This entry owns the name ``norm``: the ``norm`` labeller (:class:`fiqa.label.baselines.NormLabeler`, registered
    with ``same_as=("training-free quality method", "norm")``) is the same measure read from a store's ``norms.npy``,
    which embedding computed with the same function. List ``norm`` once, as one or the other.

    Parameters
    ----------
    batch_size : int >= 1, default=32
        Faces per recogniser call.
    threads : int or None
        onnxruntime intra-op threads (None: all cores).
    device : {"cpu", "cuda"}, default="cpu"
        Where onnxruntime runs SFace (``cuda`` needs ``fiqa[cuda]``).
    """

    name = "norm"

    def _score(self, crops: np.ndarray) -> np.ndarray:
        _, embedding = self.tail.trunk(crops)
        return raw_norms(embedding)


QUALITY_METHODS: Registry[_Method] = Registry("training-free quality method")
QUALITY_METHODS.register("ser-fiq", SERFIQ, summary="SER-FIQ: embedding robustness to dropout at the embedding layer",
                         reference="Terhörst et al., SER-FIQ, CVPR 2020", higher_is_better=True,
                         needs=("photos", "a store embedded with SFace"))
QUALITY_METHODS.register("flip-consistency", FlipConsistency,
                         summary="Cosine of the embeddings of a face and of its mirror image",
                         reference="the flip part of FaceQAN (Babnik et al., IJCB 2022)", higher_is_better=True,
                         needs=("photos", "a store embedded with SFace"))
QUALITY_METHODS.register("norm", EmbeddingNorm, summary="Norm of the raw (not normalised) SFace embedding",
                         reference="MagFace's principle (Meng et al., CVPR 2021)", higher_is_better=True,
                         needs=("photos", "a store embedded with SFace"))


def create_quality_method(name: str, **params: Any) -> _Method:
    """A training-free quality method by name (``list_quality_methods()``), its parameters checked against the
    declared ones first; unknown names get suggestions."""
    return QUALITY_METHODS.create(name, **params)


def list_quality_methods() -> list[str]:
    """Names of the training-free quality methods, sorted (metadata: ``QUALITY_METHODS.entry(name)``)."""
    return QUALITY_METHODS.names()
