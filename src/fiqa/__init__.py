"""fiqa: face image quality assessment, from a folder of faces to a deployable quality model.

The public API is small; each name is imported lazily (``import fiqa`` does not load PyTorch or onnxruntime)::

    source = fiqa.open_source("lfw/")                         # folder / list file / RecordIO / loose images
    store = fiqa.embed_source(source, "store/")                # detect, align, embed (resumable)
    labels = fiqa.label_store(store, fiqa.create_labeler("sdd", random_state=0))
    model = fiqa.train_regressor(store, labels, "model/")      # Huber loss, exported to model/model.onnx
    scores = fiqa.create_scorer("model/model.onnx").score(["photo.jpg"])
    scores = fiqa.create_scorer().score(["photo.jpg"])        # the shipped default model (fiqa.list_models())
"""
from __future__ import annotations

__version__ = "0.1.0"

from fiqa.core.errors import FIQAError
from fiqa.core.lazy import lazy_exports
from fiqa.core.types import EmbeddingStore, QualityTable, SampleTable, Status

_EXPORTS = {
    "open_source": "fiqa.io.sources",
    "read_image": "fiqa.io.image",
    "open_store": "fiqa.store",
    "embed_source": "fiqa.embed.extract",
    "create_embedder": "fiqa.embed",
    "list_embedders": "fiqa.embed",
    "create_labeler": "fiqa.label",
    "list_labelers": "fiqa.label",
    "label_store": "fiqa.label",
    "split_identities": "fiqa.core.identities",
    "sample_comparisons": "fiqa.evaluate",
    "compute_edc": "fiqa.evaluate",
    "evaluate_quality": "fiqa.evaluate",
    "augment_store": "fiqa.augment",
    "train_regressor": "fiqa.train",
    "train_recipe": "fiqa.train",
    "create_scorer": "fiqa.score",
    "list_models": "fiqa.score",
    "model_card": "fiqa.score",
    "save_quality": "fiqa.io.table",
    "load_quality": "fiqa.io.table",
}

__all__ = ["__version__", "FIQAError", "EmbeddingStore", "QualityTable", "SampleTable", "Status", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
