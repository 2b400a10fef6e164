"""Optimisation settings of the training loop (numpy only: the CLI reads the defaults without loading PyTorch)."""
from __future__ import annotations

from dataclasses import dataclass

from fiqa.core.params import Interval, validate

SHAPES = ("head", "mobilefacenet", "taps")
"""Regressor shapes (``fiqa.train.list_regressors()``; a test keeps the two equal)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (all keyword-only, validated on creation).

    Parameters
    ----------
    epochs : int >= 1
        Maximum number of epochs.
    batch_size : int >= 1
        Per process (under DDP the global batch is ``batch_size * world_size``).
    learning_rate : float > 0
        Peak AdamW learning rate.
    weight_decay : float >= 0
        AdamW decoupled weight decay.
    warmup_epochs : float >= 0
        Linear warm-up length; the rate then follows a cosine down to 0 at ``epochs``.
    huber_delta : float > 0
        Huber delta in label points on the 0-100 target scale (see :mod:`fiqa.train.losses`).
    patience : int >= 1
        Stop after this many epochs without a lower validation loss.
    random_state : int
        Seeds initialisation, shuffling and dropout.
    num_workers : int >= 0
        DataLoader worker processes.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    huber_delta: float = 5.0
    patience: int = 5
    random_state: int = 0
    num_workers: int = 0

    def __post_init__(self) -> None:
        validate("TrainConfig", {name: getattr(self, name) for name in _CONSTRAINTS}, _CONSTRAINTS)


_AT_LEAST_ONE = [Interval(int, 1, None, closed="left")]
_POSITIVE = [Interval(float, 0, None, closed="neither")]
_NON_NEGATIVE = [Interval(float, 0, None, closed="left")]
_CONSTRAINTS = {"epochs": _AT_LEAST_ONE, "batch_size": _AT_LEAST_ONE, "learning_rate": _POSITIVE,
                "weight_decay": _NON_NEGATIVE, "warmup_epochs": _NON_NEGATIVE, "huber_delta": _POSITIVE,
                "patience": _AT_LEAST_ONE, "random_state": [Interval(int, None, None)],
                "num_workers": [Interval(int, 0, None, closed="left")]}
"""The constraints of every :class:`TrainConfig` field, checked on creation."""
