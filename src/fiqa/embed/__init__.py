"""Recognition backends behind one registry, each with an explicit preprocessing spec.

>>> embedder = create_embedder("sface")                  # doctest: +SKIP
>>> embedder.embed(crops).shape                          # crops: (B, 112, 112, 3) uint8 BGR  # doctest: +SKIP
(B, 128)

Backends
--------
``sface`` (default)
    SFace in onnxruntime, batched, int8 weights folded to float32 (``SFaceEmbedder``).
``sface-opencv``
    SFace through OpenCV's one-at-a-time ``FaceRecognizerSF`` (the reference ``sface`` is checked against).
``onnx``
    Any ArcFace-style ONNX file: ``create_embedder("onnx", model="r50.onnx", spec="r50.toml")``.
``dlib``
    dlib's ResNet, optional extra: ``pip install 'fiqa[dlib]'``.
"""
from __future__ import annotations

from fiqa.core.registry import Registry
from fiqa.embed.base import Embedder
from fiqa.embed.onnx_runtime import SFACE_SPEC, OnnxEmbedder, SFaceEmbedder
from fiqa.embed.reference import DLIB_SPEC, DlibEmbedder, OpenCVSFaceEmbedder
from fiqa.embed.spec import PreprocessSpec

DEFAULT_EMBEDDER = "sface"

EMBEDDERS: Registry[Embedder] = Registry("embedder")
EMBEDDERS.register("sface", SFaceEmbedder, summary="SFace (128-D) in onnxruntime, batched, int8 weights folded to "
                   "float32", reference="Zhong et al., SFace, IEEE TIP 2021; OpenCV Zoo", dim=128,
                   needs=("the sface model file",))
EMBEDDERS.register("sface-opencv", OpenCVSFaceEmbedder, summary="SFace through OpenCV FaceRecognizerSF, one crop per "
                   "call (the reference sface is checked against)", reference="OpenCV Zoo", dim=128,
                   needs=("the sface model file",))
EMBEDDERS.register("onnx", OnnxEmbedder, summary="Any ArcFace-style ONNX model given by path and an explicit "
                   "preprocessing spec", dim=None, needs=())
EMBEDDERS.register("dlib", DlibEmbedder, summary="dlib ResNet (128-D), an independent second recogniser",
                   reference="dlib (King, JMLR 2009)", dim=128, needs=("the optional extra fiqa[dlib]",))


def create_embedder(name: str = DEFAULT_EMBEDDER, **params: object) -> Embedder:
    """Create a registered recognition backend.

    Parameters
    ----------
    name : str, default="sface"
        One of ``list_embedders()``; an unknown name fails with "did you mean" suggestions.
    **params
        Keyword parameters of the backend (``batch_size``, ``threads``; ``model`` and ``spec`` for ``onnx``).

    Returns
    -------
    Embedder
    """
    return EMBEDDERS.create(name, **params)


def list_embedders() -> list[str]:
    """Names of the registered backends, sorted."""
    return EMBEDDERS.names()


__all__ = ["DEFAULT_EMBEDDER", "DLIB_SPEC", "EMBEDDERS", "SFACE_SPEC", "DlibEmbedder", "Embedder", "OnnxEmbedder",
           "OpenCVSFaceEmbedder", "PreprocessSpec", "SFaceEmbedder", "create_embedder", "list_embedders"]
