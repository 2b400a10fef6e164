"""``fiqa serve``: the quality model behind an HTTP API (Starlette on uvicorn; the ``serve`` extra).

>>> from fiqa.serve import run
>>> run(port=8000)                     # doctest: +SKIP

then ``curl --data-binary @face.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/score``.

:func:`create_app` builds the ASGI application around a loaded :class:`fiqa.score.Scorer`, for any ASGI server;
:class:`Limits` and :class:`Workers` hold its settings. The API is described in ``docs/serve.md``. Names are
imported lazily, so the settings are usable without the web stack installed.
"""
from __future__ import annotations

from fiqa.core.lazy import lazy_exports
from fiqa.serve.config import Limits, Workers

_EXPORTS = {"create_app": "fiqa.serve.app", "HTTP_STATUS": "fiqa.serve.app", "run": "fiqa.serve.server"}

__all__ = ["HTTP_STATUS", "Limits", "Workers", "create_app", "run"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
