"""Baseline labels for evaluation: mean positive similarity, raw embedding norm, random."""
from __future__ import annotations

import numpy as np

from fiqa.label.base import (
    LABELERS,
    Labeler,
    LabelInput,
    LabelResult,
    class_sums,
    rowwise_dot,
)


class MeanPositiveLabeler(Labeler):
    """Mean cosine similarity of an image to every other image of its identity.

    The seed's critique says SDD-FIQA degenerates into this at scale; it is exact here:
    ``(x . s_y - 1) / (n_y - 1)`` with ``s_y`` the sum of the identity's unit vectors.

    Parameters
    ----------
    random_state : int or None, default=0
        Unused (deterministic); recorded for uniformity.
    """

    name = "mean-positive"

    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        counts = np.bincount(data.codes, minlength=data.n_identities)
        sums = class_sums(data.vectors, data.codes, data.n_identities)
        dot_sum = rowwise_dot(data.vectors, sums, data.codes)
        others = counts[data.codes] - 1
        score = np.divide(dot_sum - 1.0, others, out=np.full(len(others), np.nan), where=others > 0)
        return LabelResult(score, {"mean_positive": score})


class NormLabeler(Labeler):
    """The raw embedding norm before normalisation (MagFace-style recognisers encode quality in it).

    The store's reading of the training-free quality method ``norm`` (:class:`fiqa.score.training_free.EmbeddingNorm`),
    which owns the name: one measure, computed by one function (:func:`fiqa.store.raw_norms`), which the
    method applies to a face and embedding applied to every face of the store (``norms.npy``). Its registry entry
    says so (``same_as``). Needs ``norms`` at ``fit``; every image with a valid norm is labelled, singletons included.

    Parameters
    ----------
    random_state : int or None, default=0
        Unused (deterministic); recorded for uniformity.
    """

    name = "norm"
    requires_norms = True

    def _min_class_size(self) -> int:
        return 1

    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        assert data.norms is not None  # fit() rejects a call without norms (requires_norms)
        return LabelResult(data.norms.astype(np.float64))


class RandomLabeler(Labeler):
    """Uniform random labels in [0, 100): the floor every method must beat.

    Parameters
    ----------
    random_state : int or None, default=0
        Seed of the labels.
    """

    name = "random"

    def _min_class_size(self) -> int:
        return 1

    def _label(self, data: LabelInput, rng: np.random.Generator) -> LabelResult:
        return LabelResult(100.0 * rng.random(len(data.codes)))


LABELERS.register("mean-positive", MeanPositiveLabeler,
                  summary="Mean cosine similarity of an image to every other image of its identity (baseline)")
LABELERS.register("norm", NormLabeler, needs=("norms",), same_as=("training-free quality method", "norm"),
                  summary="The raw embedding norm before normalisation (MagFace-style recognisers encode quality in "
                          "it), as the store recorded it: the training-free method 'norm'")
LABELERS.register("random", RandomLabeler, summary="Uniform random labels in [0, 100): the floor every method must "
                                                   "beat")
