"""Split samples by identity, so quality is evaluated on people the labeller and the regressor never saw.

A split is a pair of disjoint identity sets drawn with a seed. It is saved as JSON next to the artifacts that used
it (``save_split``) and its :meth:`IdentitySplit.describe` block goes into their metadata, so every result says
which identities it was trained and evaluated on.

Example
-------
>>> import tempfile, pathlib
>>> from fiqa.datasets import make_embeddings
>>> identity = make_embeddings(200, 8, 20, random_state=0).identities
>>> split = split_identities(identity, test_fraction=0.3, random_state=0)
>>> train_mask = split.mask(identity, "train")   # give these to the labeller / trainer
>>> bool(train_mask.any()), bool((~train_mask).any())
(True, True)
>>> path = save_split(split, pathlib.Path(tempfile.mkdtemp()) / "split.json")  # fiqa evaluate --identities-from
>>> list(load_split(path).test) == list(split.test)
True
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fiqa.core.atomic import write_json
from fiqa.core.errors import InvalidParameterError, StoreError
from fiqa.core.params import Interval, validate

Part = Literal["train", "test"]


@dataclass(frozen=True)
class IdentitySplit:
    """Two disjoint sets of identity names.

    Attributes
    ----------
    train, test : ndarray of shape (n_train,) and (n_test,), object (str)
        Sorted identity names; no name is in both.
    random_state : int or None
        The seed the split was drawn with (None for a split read from plain identity lists).
    test_fraction : float or None
        The requested fraction of identities in ``test``.
    """

    train: np.ndarray
    test: np.ndarray
    random_state: int | None = None
    test_fraction: float | None = None

    def __post_init__(self) -> None:
        overlap = np.intersect1d(self.train.astype(str), self.test.astype(str))
        if len(overlap):
            raise ValueError(f"IdentitySplit: {len(overlap)} identities are in both train and test, "
                             f"e.g. {overlap[0]!r}")

    def identities(self, part: Part) -> np.ndarray:
        """The identity names of ``part`` ("train" or "test"), shape (n,), object (str)."""
        if part not in ("train", "test"):
            raise InvalidParameterError("IdentitySplit.identities", "part", "'train' or 'test'", part)
        return self.train if part == "train" else self.test

    def mask(self, identity: np.ndarray, part: Part) -> np.ndarray:
        """Boolean mask of shape (N,): which entries of ``identity`` (shape (N,), str) belong to ``part``."""
        return np.isin(np.asarray(identity).astype(str), self.identities(part).astype(str))

    def describe(self) -> dict[str, Any]:
        """A JSON-able block for an artifact's metadata: counts, seed, fraction and a digest of both sets."""
        digest = hashlib.sha256(json.dumps([self.train.tolist(), self.test.tolist()]).encode()).hexdigest()
        return {"n_train_identities": int(len(self.train)), "n_test_identities": int(len(self.test)),
                "random_state": self.random_state, "test_fraction": self.test_fraction, "sha256": digest}


def split_identities(identity: np.ndarray, *, test_fraction: float = 0.5, random_state: int = 0) -> IdentitySplit:
    """Draw a seeded split of the distinct identities into train and test.

    Parameters
    ----------
    identity : ndarray of shape (N,), str
        Identity of each sample (repeats allowed; ``""`` means "no identity" and is left out of both sets).
    test_fraction : float in (0, 1)
        Fraction of the distinct identities that go to ``test`` (rounded to the nearest count, and at least one
        identity on each side).
    random_state : int
        Seed of ``numpy.random.default_rng``; the same identities and seed always give the same split.

    Returns
    -------
    IdentitySplit
    """
    validate("split_identities", {"test_fraction": test_fraction, "random_state": random_state},
             {"test_fraction": [Interval(float, 0, 1, closed="neither")], "random_state": [Interval(int, None, None)]})
    names = np.unique(np.asarray(identity).astype(str))
    names = names[names != ""]
    if len(names) < 2:
        raise InvalidParameterError("split_identities", "identity", "an array with at least 2 distinct identities",
                                    f"{len(names)} distinct identities")
    n_test = int(np.clip(round(float(test_fraction) * len(names)), 1, len(names) - 1))
    order = np.random.default_rng(int(random_state)).permutation(len(names))
    test = np.sort(names[order[:n_test]]).astype(object)
    train = np.sort(names[order[n_test:]]).astype(object)
    return IdentitySplit(train, test, int(random_state), float(test_fraction))


def save_split(split: IdentitySplit, path: str | Path) -> Path:
    """Write a split as JSON (``{"train": [...], "test": [...], "seed": ..., "test_fraction": ...}``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"train": split.train.tolist(), "test": split.test.tolist(), "random_state": split.random_state,
                      "test_fraction": split.test_fraction})
    return path


def load_split(path: str | Path) -> IdentitySplit:
    """Read a split written by :func:`save_split`; fails naming the file when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"{path}: split file does not exist") from None
    except json.JSONDecodeError as exc:
        raise StoreError(f"{path}: not a JSON split file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("train"), list) or not isinstance(data.get("test"), list):
        raise StoreError(f"{path}: not a split file, expected JSON with lists 'train' and 'test'")
    try:
        return IdentitySplit(np.asarray(data["train"], dtype=object), np.asarray(data["test"], dtype=object),
                             data.get("random_state"), data.get("test_fraction"))
    except ValueError as exc:
        raise StoreError(f"{path}: {exc}") from None


def read_identity_list(path: str | Path, part: Part) -> np.ndarray:
    """Identity names from a file: a split JSON (its ``part``) or plain text, one identity per line.

    Returns
    -------
    ndarray of shape (n,), object (str)
        Sorted, distinct names; blank lines and lines starting with ``#`` are skipped in text files.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: identity list file does not exist")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("{"):
        return load_split(path).identities(part)
    names = [line.strip() for line in text.splitlines()]
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise StoreError(f"{path}: identity list is empty")
    return np.unique(np.asarray(names, dtype=str)).astype(object)
