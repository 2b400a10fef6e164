"""Quality features from inside a recogniser: one forward pass, the embedding and pooled earlier feature maps.

A quality model that sees only the recogniser's last, pooled feature map keeps little of what makes a capture
fail: blur, noise and compression live in the early layers, and the norm and direction of the raw embedding say
how sure the recogniser is. :class:`FeatureSpec` names the tensors to read ("taps") and :func:`feature_graph`
adds to the recogniser's graph (weights folded, see :mod:`fiqa.embed.graph`) the nodes that turn them into one
flat vector per face, ``features`` (batch, dim):

- for every 4-D tap (B, C, H, W): its mean and its standard deviation over the H x W positions (2 C values);
- the raw embedding (B, d) before L2 normalisation, and its log norm (1 value; MagFace's principle).

The same graph serves training (features are computed once per store and cached, float16, a few KiB per face:
:mod:`fiqa.train.features`) and scoring (:func:`compose` joins it with a trained head into one ONNX graph, from
an aligned face to ``quality``). Nothing here imports PyTorch.

:class:`FeatureEmbedder` gives the embedding pass some of these columns for free: SFace's own graph with the pooling
nodes of the chosen columns added as a second output, so one run yields the embedding (byte for byte the
embedder's) and the features that ``fiqa embed --features`` stores beside it (``features.npy``, float16; by
default :data:`STORE_COLUMNS`, what the default head reads).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import onnx
from onnx import compose as onnx_compose
from onnx import helper

from fiqa.core.errors import InvalidParameterError, ModelFileError
from fiqa.embed.graph import fold_constants
from fiqa.embed.onnx_runtime import SFACE_SPEC, SFaceEmbedder, _folded_model_bytes, inference_session
from fiqa.embed.spec import PreprocessSpec
from fiqa.io.model_files import MODEL_FILES, model_path
from fiqa.store import FEATURES_FILE

FEATURES_NAME = "features"
"""Name of the feature graph's output and of a head's input."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which tensors of a recogniser make the quality features.

    Attributes
    ----------
    recogniser : str
        Model name for :func:`fiqa.io.model_files.model_path` (its SHA-256 is checked when the file is located).
    input_name : str
        The graph's image input.
    taps : tuple of (name, channels)
        4-D tensors pooled to their mean and standard deviation over positions.
    embedding : tuple of (name, dim)
        The raw embedding tensor (before L2 normalisation).
    spec : PreprocessSpec
        How aligned BGR uint8 crops become the graph input.
    """

    recogniser: str
    input_name: str
    taps: tuple[tuple[str, int], ...]
    embedding: tuple[str, int]
    spec: PreprocessSpec

    @property
    def dim(self) -> int:
        """Length of the feature vector: ``2 * sum(channels) + embedding dim + 1``."""
        return 2 * sum(channels for _, channels in self.taps) + self.embedding[1] + 1

    @property
    def sha256(self) -> str:
        return MODEL_FILES[self.recogniser].sha256

    def layout(self) -> list[tuple[str, int, int]]:
        """``(name, start, stop)`` column ranges of the feature vector, in order."""
        columns, start = [], 0
        for name, channels in self.taps:
            columns += [(f"{name}/mean", start, start + channels), (f"{name}/std", start + channels,
                                                                    start + 2 * channels)]
            start += 2 * channels
        name, dim = self.embedding
        columns += [(name, start, start + dim), (f"{name}/log_norm", start + dim, start + dim + 1)]
        return columns

    def to_dict(self) -> dict[str, Any]:
        return {"recogniser": self.recogniser, "sha256": self.sha256, "input_name": self.input_name,
                "taps": [list(t) for t in self.taps], "embedding": list(self.embedding),
                "preprocess": self.spec.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Rebuild a spec from :meth:`to_dict`; refuses a recogniser file whose hash differs."""
        try:
            spec = cls(str(data["recogniser"]), str(data["input_name"]),
                       tuple((str(n), int(c)) for n, c in data["taps"]),
                       (str(data["embedding"][0]), int(data["embedding"][1])),
                       PreprocessSpec.from_dict(data["preprocess"]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFileError(f"malformed feature specification ({exc!r})") from None
        if spec.recogniser not in MODEL_FILES:
            raise ModelFileError(f"feature specification names an unknown recogniser {spec.recogniser!r}")
        if data.get("sha256") != spec.sha256:
            raise ModelFileError(f"feature specification was made with recogniser file SHA-256 "
                                 f"{data.get('sha256')!r}; the {spec.recogniser!r} file here has {spec.sha256}")
        return spec


SFACE_TAPS = FeatureSpec(
    recogniser="sface", input_name="data",
    taps=(("conv_4_relu", 128), ("conv_6_relu", 256), ("conv_12_relu", 512), ("conv_14_relu", 1024)),
    embedding=("fc1", 128), spec=SFACE_SPEC)
"""SFace: four stages (56x56, 28x28, 14x14 and 7x7 maps after their PReLU) and the 128-D raw embedding."""


STORE_COLUMNS: tuple[str, ...] = (f"{SFACE_TAPS.taps[-1][0]}/mean",)
"""The feature columns an embedding pass stores by default: SFace's last stage (1024 x 7 x 7) averaged over its
positions, the whole input of the default head (:class:`fiqa.train.models.QualityHead`); 1,024 float16 values,
2 KiB per face."""


def _mean_nodes(tap: str) -> tuple[list[onnx.NodeProto], str]:
    """The node computing the mean over H x W of ``tap`` (B, C, H, W) as a (B, C) tensor, and its output."""
    mean = f"{tap}/gap"
    return [helper.make_node("ReduceMean", [tap, "fiqa/axes_hw"], [mean], keepdims=0)], mean


def _std_nodes(tap: str) -> tuple[list[onnx.NodeProto], str]:
    """Nodes computing the standard deviation over H x W of ``tap`` from its mean (:func:`_mean_nodes`)."""
    mean, square, mean_square = f"{tap}/gap", f"{tap}/sq", f"{tap}/gap_sq"
    variance, clipped, std = f"{tap}/var", f"{tap}/var_pos", f"{tap}/std"
    nodes = [
        helper.make_node("Mul", [tap, tap], [square]),
        helper.make_node("ReduceMean", [square, "fiqa/axes_hw"], [mean_square], keepdims=0),
        helper.make_node("Mul", [mean, mean], [f"{tap}/gap2"]),
        helper.make_node("Sub", [mean_square, f"{tap}/gap2"], [variance]),
        helper.make_node("Max", [variance, "fiqa/zero"], [clipped]),
        helper.make_node("Sqrt", [clipped], [std]),
    ]
    return nodes, std


def _pool_nodes(tap: str) -> tuple[list[onnx.NodeProto], list[str]]:
    """Nodes computing mean and std over H x W of ``tap`` (B, C, H, W) as (B, C) tensors."""
    mean_nodes, mean = _mean_nodes(tap)
    std_nodes, std = _std_nodes(tap)
    return mean_nodes + std_nodes, [mean, std]


def _log_norm_nodes(embedding: str) -> tuple[list[onnx.NodeProto], str]:
    """Nodes computing the log L2 norm of the raw embedding (B, d) as a (B, 1) tensor, and its output."""
    nodes = [helper.make_node("Mul", [embedding, embedding], ["fiqa/emb_sq"]),
             helper.make_node("ReduceSum", ["fiqa/emb_sq", "fiqa/axis_1"], ["fiqa/emb_norm2"], keepdims=1),
             helper.make_node("Max", ["fiqa/emb_norm2", "fiqa/tiny"], ["fiqa/emb_norm2_pos"]),
             helper.make_node("Log", ["fiqa/emb_norm2_pos"], ["fiqa/emb_log_norm2"]),
             helper.make_node("Mul", ["fiqa/emb_log_norm2", "fiqa/half"], ["fiqa/emb_log_norm"])]
    return nodes, "fiqa/emb_log_norm"


def _constants() -> list[onnx.TensorProto]:
    """The constant inputs of the pooling and log-norm nodes."""
    return [helper.make_tensor("fiqa/axes_hw", onnx.TensorProto.INT64, [2], [2, 3]),
            helper.make_tensor("fiqa/axis_1", onnx.TensorProto.INT64, [1], [1]),
            helper.make_tensor("fiqa/zero", onnx.TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("fiqa/half", onnx.TensorProto.FLOAT, [], [0.5]),
            helper.make_tensor("fiqa/tiny", onnx.TensorProto.FLOAT, [], [1e-30])]


def _check_graph(model: onnx.ModelProto, spec: FeatureSpec) -> None:
    """Refuse a recogniser graph without the spec's tensors or with an opset before 18."""
    produced = {output for node in model.graph.node for output in node.output}
    missing = [name for name, _ in (*spec.taps, spec.embedding) if name not in produced]
    if missing:
        raise ModelFileError(f"{model_path(spec.recogniser)}: no tensor(s) {missing} in the graph")
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 18:  # ReduceMean takes its axes as an input from opset 18 on
        raise ModelFileError(f"{model_path(spec.recogniser)}: opset {opset} < 18 is not supported")


def _build_feature_graph(spec: FeatureSpec) -> onnx.ModelProto:
    full = fold_constants(onnx.load(model_path(spec.recogniser)), batch_name="batch")
    graph = full.graph
    _check_graph(full, spec)
    nodes, parts = list(graph.node), []
    for tap, _ in spec.taps:
        pooled_nodes, outputs = _pool_nodes(tap)
        nodes += pooled_nodes
        parts += outputs
    embedding = spec.embedding[0]
    norm_nodes, log_norm = _log_norm_nodes(embedding)
    nodes += [*norm_nodes, helper.make_node("Concat", [*parts, embedding, log_norm], [FEATURES_NAME], axis=1)]
    constants = _constants()
    output = helper.make_tensor_value_info(FEATURES_NAME, onnx.TensorProto.FLOAT, ["batch", spec.dim])
    inputs = [value for value in graph.input if value.name == spec.input_name]
    model = helper.make_model(
        helper.make_graph(nodes, f"{spec.recogniser}-features", inputs, [output],
                          [*graph.initializer, *constants]),
        opset_imports=list(full.opset_import), ir_version=full.ir_version, producer_name="fiqa.embed.features")
    # drop the recogniser's own head past the taps it does not need (e.g. nothing after fc1 here)
    model = onnx.utils.Extractor(model).extract_model([spec.input_name], [FEATURES_NAME])
    onnx.checker.check_model(model, full_check=True)
    return model


@lru_cache(maxsize=2)
def _feature_graph_bytes(spec: FeatureSpec) -> bytes:
    return _build_feature_graph(spec).SerializeToString()  # seconds: once per process and spec


def feature_graph(spec: FeatureSpec = SFACE_TAPS) -> onnx.ModelProto:
    """The recogniser graph from its input to ``features`` (batch, ``spec.dim``); a fresh copy on every call."""
    return onnx.load_from_string(_feature_graph_bytes(spec))


class FeatureExtractor:
    """Runs the feature graph on aligned crops: ``extractor(crops)`` -> (B, dim) float32.

    Parameters
    ----------
    spec : FeatureSpec
    threads : int or None
        onnxruntime intra-op threads (None: its default, all cores).
    device : {"cpu", "cuda"}, default="cpu"
    """

    def __init__(self, spec: FeatureSpec = SFACE_TAPS, *, threads: int | None = None, device: str = "cpu") -> None:
        self.spec = spec
        self._session = inference_session(_feature_graph_bytes(spec), threads=threads, device=device)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Features of ``crops`` (B, 112, 112, 3) uint8 BGR: ndarray (B, dim), float32."""
        return self._session.run([FEATURES_NAME], {self.spec.input_name: self.spec.spec.apply(crops)})[0]


def column_indices(spec: FeatureSpec, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    """Positions in ``spec``'s feature vector of the named column groups (names of ``spec.layout()``), in order.

    Returns
    -------
    ndarray of shape (k,), int64
    """
    layout = {name: (start, stop) for name, start, stop in spec.layout()}
    return np.array([i for name in columns for i in range(*layout[name])], np.int64)


def _check_columns(owner: str, spec: FeatureSpec, columns: object) -> tuple[str, ...]:
    """``columns`` as a tuple of distinct names of ``spec.layout()`` in layout order, or InvalidParameterError."""
    order = [name for name, _, _ in spec.layout()]
    names = [columns] if isinstance(columns, str) else list(columns) if isinstance(columns, (list, tuple)) else None
    if not names or any(name not in order for name in names) or len(set(names)) != len(names):
        raise InvalidParameterError(owner, "columns", f"distinct names among {order}", columns)
    return tuple(sorted(names, key=order.index))


def _column_nodes(spec: FeatureSpec, columns: tuple[str, ...]) -> tuple[list[onnx.NodeProto], list[str]]:
    """Nodes computing the column groups ``columns`` (in layout order) from the recogniser's tensors."""
    nodes: list[onnx.NodeProto] = []
    parts: list[str] = []
    averaged: set[str] = set()
    embedding = spec.embedding[0]
    for name in columns:
        if name == embedding:
            parts.append(embedding)
        elif name == f"{embedding}/log_norm":
            norm_nodes, log_norm = _log_norm_nodes(embedding)
            nodes += norm_nodes
            parts.append(log_norm)
        else:  # "<tap>/mean" or "<tap>/std"; the std needs the mean
            tap, statistic = name.rsplit("/", 1)
            mean_nodes, mean = _mean_nodes(tap)
            if tap not in averaged:
                nodes += mean_nodes
                averaged.add(tap)
            if statistic == "mean":
                parts.append(mean)
            else:
                std_nodes, std = _std_nodes(tap)
                nodes += std_nodes
                parts.append(std)
    return nodes, parts


STORE_FEATURES_NAME = "fiqa/store_features"
"""Name of the second output of :class:`FeatureEmbedder`'s graph."""


@lru_cache(maxsize=2)
def _embedding_graph_bytes(model_file: str, sha256: str, spec: FeatureSpec, columns: tuple[str, ...]) -> bytes:
    """The embedder's folded graph, unchanged, with a second output: the column groups ``columns`` (batch, k)."""
    model = onnx.load_from_string(_folded_model_bytes(model_file, sha256))
    _check_graph(model, spec)
    nodes, parts = _column_nodes(spec, columns)
    width = len(column_indices(spec, columns))
    graph = model.graph
    graph.node.extend([*nodes, helper.make_node("Concat", parts, [STORE_FEATURES_NAME], axis=1)])
    graph.initializer.extend(_constants())
    graph.output.append(helper.make_tensor_value_info(STORE_FEATURES_NAME, onnx.TensorProto.FLOAT, ["batch", width]))
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


class FeatureEmbedder:
    """An SFace embedder that also gives feature columns, from the same run: one session, two outputs.

    The graph is the embedder's own (the same folded file, the same session options), so the embeddings are the
    embedder's byte for byte; the pooling nodes of ``columns`` read its intermediate maps and add a second output.
    The column values are those of :func:`feature_graph` (the same nodes on the same tensors).

    Parameters
    ----------
    embedder : SFaceEmbedder
        The recogniser of ``spec`` (``fiqa.embed.create_embedder("sface")``).
    spec : FeatureSpec, default SFACE_TAPS
    columns : sequence of str, default STORE_COLUMNS
        Column groups to compute (names of ``spec.layout()``); kept in layout order.

    Attributes
    ----------
    columns : tuple of str
    index : ndarray of shape (k,), int64
        Positions of the computed values in ``spec``'s full feature vector (:func:`column_indices`).
    width : int
        ``k``, values per face.
    """

    def __init__(self, embedder: object, *, spec: FeatureSpec = SFACE_TAPS,
                 columns: tuple[str, ...] | list[str] = STORE_COLUMNS) -> None:
        owner = "FeatureEmbedder"
        if not isinstance(embedder, SFaceEmbedder) or spec.recogniser != embedder.name:
            raise InvalidParameterError(owner, "embedder", f"an SFaceEmbedder (the feature specification's "
                                        f"recogniser {spec.recogniser!r})",
                                        getattr(embedder, "name", type(embedder).__name__))
        self.embedder, self.spec = embedder, spec
        self.columns = _check_columns(owner, spec, columns)
        self.index = column_indices(spec, self.columns)
        self.width = len(self.index)
        graph = _embedding_graph_bytes(str(embedder.model_path), spec.sha256, spec, self.columns)
        self._session = inference_session(graph, threads=embedder.threads, optimization=embedder.optimization,
                                          device=embedder.device)
        self._input = spec.input_name
        self._outputs = [embedder._output_name, STORE_FEATURES_NAME]
        self._chunk = int(embedder.batch_size)

    @property
    def name(self) -> str:
        return str(self.embedder.name)

    @property
    def dim(self) -> int:
        return int(self.embedder.dim)

    def __call__(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed aligned crops (B, 112, 112, 3) uint8 BGR in the embedder's batches.

        Returns
        -------
        vectors : ndarray of shape (B, d), float32
            What ``embedder.embed(crops)`` returns (raw, not normalised).
        features : ndarray of shape (B, width), float32
        """
        vectors, features = [], []
        for start in range(0, len(crops), self._chunk):
            tensor = self.embedder.spec.apply(crops[start:start + self._chunk])
            embedded, pooled = self._session.run(self._outputs, {self._input: tensor})
            vectors.append(np.asarray(embedded, np.float32).reshape(len(tensor), -1))
            features.append(np.asarray(pooled, np.float32))
        return np.concatenate(vectors), np.concatenate(features)

    def describe(self) -> dict[str, Any]:
        """What a store records about its features (``meta.json`` ``features``)."""
        return {"file": FEATURES_FILE, "dtype": "float16", "columns": list(self.columns), "dim": self.width,
                "spec": self.spec.to_dict()}


def compose(head: onnx.ModelProto, spec: FeatureSpec = SFACE_TAPS) -> onnx.ModelProto:
    """One graph from an aligned face to the head's outputs: the feature graph feeding ``head``.

    Parameters
    ----------
    head : onnx.ModelProto
        A graph with one input named ``features`` (batch, ``spec.dim``).

    Returns
    -------
    onnx.ModelProto
        Input ``spec.input_name``; the head's outputs under their own names; the head's metadata kept.
    """
    inputs = [value.name for value in head.graph.input]
    if inputs != [FEATURES_NAME]:
        raise ModelFileError(f"a quality head must have one input {FEATURES_NAME!r}; this one has {inputs}")
    dims = [d.dim_value for d in head.graph.input[0].type.tensor_type.shape.dim]
    if len(dims) != 2 or dims[1] not in (0, spec.dim):
        raise ModelFileError(f"the head reads features of shape {dims}; this recogniser gives (batch, {spec.dim})")
    trunk = feature_graph(spec)
    trunk_opset = next(o.version for o in trunk.opset_import if o.domain in ("", "ai.onnx"))
    head_opset = next(o.version for o in head.opset_import if o.domain in ("", "ai.onnx"))
    if head_opset != trunk_opset:
        head = onnx.version_converter.convert_version(head, trunk_opset)
    trunk.ir_version = head.ir_version = max(trunk.ir_version, head.ir_version)
    outputs = [value.name for value in head.graph.output]
    renamed = onnx_compose.add_prefix(head, "head/", rename_inputs=False, rename_outputs=False)
    merged = onnx_compose.merge_models(trunk, renamed, io_map=[(FEATURES_NAME, FEATURES_NAME)],
                                       outputs=outputs)
    del merged.metadata_props[:]
    merged.metadata_props.extend(head.metadata_props)
    merged.graph.name = head.graph.name or "fiqa-quality"
    onnx.checker.check_model(merged, full_check=True)
    return merged
