"""The regression loss: Huber, with its delta on the 0-100 target scale.

fiqa trains every regressor on targets rescaled to 0..100 (see :mod:`fiqa.train.data`), so ``delta`` is in
label points: with the default ``delta = 5`` a prediction within 5 points of its label is penalised
quadratically (like MSE / 2), and further errors only linearly (like L1), so a few wrong pseudo-labels cannot
dominate the gradient.
"""
from __future__ import annotations

import torch

from fiqa.core.errors import InvalidParameterError


def huber_loss(prediction: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    """Mean Huber loss.

    ``0.5 * e**2`` where ``|e| <= delta``, else ``delta * (|e| - 0.5 * delta)``, with ``e = prediction - target``.

    Parameters
    ----------
    prediction, target : Tensor of shape (B,), float
    delta : float > 0
        Where the loss turns from quadratic to linear, in target units (label points on the 0-100 scale).

    Returns
    -------
    Tensor of shape (), the mean over the batch.
    """
    if not delta > 0:
        raise InvalidParameterError("huber_loss", "delta", "a float > 0", delta)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(prediction.shape)} != target shape {tuple(target.shape)}")
    error = (prediction - target).abs()
    quadratic = torch.clamp(error, max=delta)
    linear = error - quadratic
    return (0.5 * quadratic**2 + delta * linear).mean()
