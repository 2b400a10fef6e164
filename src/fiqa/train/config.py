"""Optimisation settings of the training loop (numpy only: the CLI reads the defaults without loading PyTorch)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fiqa.core.errors import InvalidParameterError

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
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise InvalidParameterError("TrainConfig", name, expected, getattr(self, name))

        def is_int(value: object) -> bool:
            return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

        def is_real(value: object) -> bool:
            return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
                and math.isfinite(value)

        check("epochs", is_int(self.epochs) and self.epochs >= 1, "an int >= 1")
        check("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "an int >= 1")
        check("learning_rate", is_real(self.learning_rate) and self.learning_rate > 0, "a float > 0")
        check("weight_decay", is_real(self.weight_decay) and self.weight_decay >= 0, "a float >= 0")
        check("warmup_epochs", is_real(self.warmup_epochs) and self.warmup_epochs >= 0, "a float >= 0")
        check("huber_delta", is_real(self.huber_delta) and self.huber_delta > 0, "a float > 0")
        check("patience", is_int(self.patience) and self.patience >= 1, "an int >= 1")
        check("random_state", is_int(self.random_state), "an int")
        check("num_workers", is_int(self.num_workers) and self.num_workers >= 0, "an int >= 0")
