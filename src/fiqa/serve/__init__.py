"""``fiqa serve``: the quality model behind an HTTP API (Starlette on uvicorn; the ``serve`` extra).

>>> from fiqa.serve import run
>>> run(port=8000)                     # doctest: +SKIP   (curl --data-binary @face.jpg -H 'Content-Type: image/jpeg'
...                                    #                     http://127.0.0.1:8000/score)

:func:`create_app` builds the ASGI application around a loaded :class:`fiqa.score.Scorer`, for any ASGI server;
:class:`Limits` and :class:`Workers` hold its settings. The API is described in ``docs/serve.md``. Names are
imported lazily, so the settings are usable without the web stack installed.
"""
from __future__ import annotations

import importlib
from typing import Any

from fiqa.serve.config import Limits, Workers

_LAZY = {"create_app": "fiqa.serve.app", "HTTP_STATUS": "fiqa.serve.app", "run": "fiqa.serve.server"}

__all__ = ["HTTP_STATUS", "Limits", "Workers", "create_app", "run"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fiqa.serve' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
