"""Feature maps from inside the frozen SFace recogniser, computed once per store and cached on disk.

The "head" regressor reads SFace's last feature map (``conv_14_relu``: 1024 x 7 x 7, after the last PReLU and
before the BatchNorm/dropout/fully connected embedding layer; the place where SDD-FIQA's quality head sits). The
recogniser graph is the verified SFace file with its int8 weights folded to float32 (``fiqa.embed.graph``), cut at
that tensor (:func:`recogniser_trunk`). The cache is a float16 ``.npy`` (memory-mapped when read) of shape
(N, 1024, 7, 7) aligned with the store's rows (zeros where the store has no ok sample), plus a JSON sidecar; its
file name is a digest of the store's samples and landmarks, the model file's SHA-256 and the layer name.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from tqdm.auto import tqdm

from ..embed.graph import fold_constants
from ..embed.onnx_runtime import SFACE_SPEC
from ..embed.spec import PreprocessSpec
from ..errors import InvalidParameterError, ModelFileError, StoreError
from ..io.table import read_json, write_json
from ..models import MODEL_FILES, model_path
from ..provenance import provenance
from ..types import EmbeddingStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recogniser:
    """Which recogniser feature map the head reads.

    Attributes
    ----------
    name : str
        Model name for :func:`fiqa.models.model_path`.
    input_name, feature_name : str
        Graph input and the internal tensor the head reads.
    feature_shape : (C, H, W)
    spec : PreprocessSpec
        How aligned BGR uint8 crops become the graph input.
    """

    name: str
    input_name: str
    feature_name: str
    feature_shape: tuple[int, int, int]
    spec: PreprocessSpec

    @property
    def sha256(self) -> str:
        return MODEL_FILES[self.name].sha256


SFACE_FEATURES = Recogniser("sface", "data", "conv_14_relu", (1024, 7, 7), SFACE_SPEC)


@lru_cache(maxsize=2)
def _trunk_bytes(recogniser: Recogniser) -> bytes:
    # folding and cutting the graph takes seconds: once per process and recogniser
    return _build_trunk(recogniser).SerializeToString()


def recogniser_trunk(recogniser: Recogniser = SFACE_FEATURES) -> onnx.ModelProto:
    """The recogniser graph from its input to ``feature_name``, float32 weights, dynamic batch axis.

    Returns
    -------
    onnx.ModelProto
        Input ``recogniser.input_name`` (batch, 3, 112, 112); output ``recogniser.feature_name``
        (batch, C, H, W). A fresh copy on every call.
    """
    return onnx.load_from_string(_trunk_bytes(recogniser))


def _build_trunk(recogniser: Recogniser) -> onnx.ModelProto:
    full = fold_constants(onnx.load(model_path(recogniser.name)), batch_name="batch")
    graph = full.graph
    producers = {output: node for node in graph.node for output in node.output}
    if recogniser.feature_name not in producers:
        raise ModelFileError(f"{model_path(recogniser.name)}: no tensor {recogniser.feature_name!r} in the graph")
    needed, stack, kept_ids = set(), [recogniser.feature_name], set()
    while stack:  # walk back from the feature tensor to the input
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        node = producers.get(name)
        if node is not None and id(node) not in kept_ids:
            kept_ids.add(id(node))
            stack.extend(i for i in node.input if i)
    nodes = [node for node in graph.node if id(node) in kept_ids]
    output = helper.make_tensor_value_info(recogniser.feature_name, onnx.TensorProto.FLOAT,
                                           ["batch", *recogniser.feature_shape])
    inputs = [value for value in graph.input if value.name == recogniser.input_name]
    initialisers = [init for init in graph.initializer if init.name in needed]
    trunk = helper.make_model(helper.make_graph(nodes, f"{recogniser.name}-trunk", inputs, [output], initialisers),
                              opset_imports=list(full.opset_import), ir_version=full.ir_version,
                              producer_name="fiqa.train.features")
    onnx.checker.check_model(trunk, full_check=True)
    return trunk


def _session(model_bytes: bytes, threads: int | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


class FeatureExtractor:
    """Runs the recogniser trunk on aligned crops.

    Parameters
    ----------
    recogniser : Recogniser
    threads : int or None
        onnxruntime intra-op threads (None: its default, all cores).
    """

    def __init__(self, recogniser: Recogniser = SFACE_FEATURES, *, threads: int | None = None) -> None:
        self.recogniser = recogniser
        self._session = _session(_trunk_bytes(recogniser), threads)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Feature maps of ``crops`` (B, 112, 112, 3) uint8 BGR: ndarray (B, C, H, W), float32."""
        tensor = self.recogniser.spec.apply(crops)
        return self._session.run([self.recogniser.feature_name], {self.recogniser.input_name: tensor})[0]


def _store_key(store: EmbeddingStore, recogniser: Recogniser) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([recogniser.name, recogniser.sha256, recogniser.feature_name]).encode())
    digest.update("\n".join(store.samples.location.astype(str)).encode())
    digest.update(np.ascontiguousarray(store.ok).tobytes())
    digest.update(np.nan_to_num(np.ascontiguousarray(store.landmarks, np.float32), nan=-1.0).tobytes())
    return digest.hexdigest()


def cached_features(store: EmbeddingStore, rows: np.ndarray | None = None, *,
                    recogniser: Recogniser = SFACE_FEATURES, cache_dir: str | Path | None = None,
                    batch_size: int = 64, threads: int | None = None) -> np.ndarray:
    """Feature maps of store samples, computed once per sample and then read from the cache.

    Parameters
    ----------
    store : EmbeddingStore
    rows : ndarray of shape (k,), int, optional
        Store rows that must be computed (default: every ok sample). Rows already in the cache are not
        recomputed; the cache grows as later calls ask for more rows.
    recogniser : Recogniser
    cache_dir : path or None
        Folder of the cache files; default ``<store root>/features``.
    batch_size : int >= 1
    threads : int or None

    Returns
    -------
    ndarray of shape (N, C, H, W), float16, memory-mapped read-only
        Row ``i`` belongs to store row ``i``; rows not computed (not asked for, or not ok) are zero.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidParameterError("cached_features", "batch_size", "an int >= 1", batch_size)
    rows = np.flatnonzero(store.ok) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    if len(rows) and (rows[0] < 0 or rows[-1] >= len(store) or not store.ok[rows].all()):
        raise InvalidParameterError("cached_features", "rows", f"indices in [0, {len(store)}) of ok samples",
                                    rows[(rows < 0) | (rows >= len(store))][:5].tolist() or
                                    rows[~store.ok[np.clip(rows, 0, len(store) - 1)]][:5].tolist())
    from ..store import load_crops  # the store module imports heavy I/O; only needed on a cache miss

    cache_dir = Path(cache_dir) if cache_dir is not None else Path(store.root) / "features"
    key = _store_key(store, recogniser)
    path = cache_dir / f"{recogniser.name}-{recogniser.feature_name}-{key[:20]}.npy"
    done_path = path.with_name(path.name[:-4] + ".done.npy")
    shape = (len(store), *recogniser.feature_shape)
    if path.exists():
        meta = read_json(path.with_name(path.name + ".json"))
        features = np.load(path, mmap_mode="r+")
        if features.shape != shape or meta.get("key") != key:
            raise StoreError(f"{path}: feature cache does not match its store (shape {features.shape}, expected "
                             f"{shape}); delete it to recompute")
        # no marks yet (interrupted before the first batch was flushed): nothing counts as computed
        done = np.load(done_path) if done_path.exists() else np.zeros(len(store), bool)
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.npy")
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape).flush()
        os.replace(tmp, path)
        write_json(path.with_name(path.name + ".json"), {
            "key": key, "store": str(store.root), "recogniser": recogniser.name, "model_sha256": recogniser.sha256,
            "feature_name": recogniser.feature_name, "shape": list(shape), "dtype": "float16", **provenance()})
        features, done = np.load(path, mmap_mode="r+"), np.zeros(len(store), bool)
    missing = rows[~done[rows]]
    if len(missing):
        logger.info("computing %d feature maps into %s", len(missing), path)
        extractor = FeatureExtractor(recogniser, threads=threads)
        for start in tqdm(range(0, len(missing), batch_size), desc="recogniser features", unit="batch"):
            batch = missing[start:start + batch_size]
            features[batch] = extractor(load_crops(store, batch)).astype(np.float16)
            if (start // batch_size) % 16 == 15 or start + batch_size >= len(missing):
                features.flush()  # rows are marked done only after their values are on disk
                done[missing[:start + len(batch)]] = True
                tmp = done_path.with_name(f".{done_path.name}.tmp{os.getpid()}.npy")
                np.save(tmp, done)
                os.replace(tmp, done_path)
    del features
    return np.load(path, mmap_mode="r")
