"""The HTTP API of ``fiqa serve`` as an ASGI application (Starlette): ``POST /score``, ``GET /health``,
``GET /model``. See ``docs/serve.md`` for the API, its status codes and its limits. ``POST /score?components=true``
adds each face's quality components and advice (:mod:`fiqa.components`), as ``fiqa score --components`` does.

Every response is JSON. An image's result says what became of that image (``status`` and ``reason``, a ``score``
when ``status`` is ``"ok"``); a request that cannot be taken gets ``{"status": ..., "reason": ...}`` and a 4xx/5xx
code. The HTTP code of a one-image request follows its result's status (:data:`HTTP_STATUS`); a multipart request
answers 200 with one result per part.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fiqa.components import (
    ADVICE,
    DEFAULT_REFINEMENT_PASSES,
    AdviceProfile,
    ComponentTable,
    advise,
    compute_components,
    describe_components,
    load_profile,
)
from fiqa.components.geometry import check_refinement_passes
from fiqa.core.types import Status
from fiqa.detect.pipeline import FaceCrop
from fiqa.score import Scorer
from fiqa.serve.batcher import Batcher
from fiqa.serve.config import MIB, Limits, Workers
from fiqa.serve.faces import crop_box, pipeline_for
from fiqa.serve.multipart import FormError, TooManyParts, split_form

logger = logging.getLogger(__name__)

DECODE_TIMEOUT = "decode_timeout"
"""Status of an image whose decoding and face detection took longer than ``Limits.decode_timeout``."""

HTTP_STATUS: dict[str, int] = {
    Status.OK.value: 200,
    Status.NO_FACE.value: 200,
    Status.NOT_AN_IMAGE.value: 422,
    Status.TOO_LARGE.value: 422,
    Status.TOO_SMALL.value: 422,
    Status.UNREADABLE.value: 422,
    DECODE_TIMEOUT: 422,
    Status.INVALID_SCORE.value: 500,
}
"""HTTP code of a one-image ``POST /score`` by the image's status: 200 when the image was read and looked at (a
score, or no face in it), 422 when the body is not a usable image, 500 when the model failed it."""

IMAGE_MEDIA_TYPES = ("image/", "application/octet-stream")
FORM_MEDIA_TYPE = "multipart/form-data"


class ServeError(Exception):
    """A request the service does not take: answered ``{"status": status, "reason": reason}`` with
    ``http_status``."""

    def __init__(self, http_status: int, status: str, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.http_status, self.status, self.reason, self.headers = http_status, status, reason, headers


class _DecodeTimeout(Exception):
    pass


def _result(status: str, reason: str, face: FaceCrop | None = None, score: float | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One image's JSON result; fields without a value are null (JSON has no NaN); ``extra`` (the components and
    advice, :meth:`Service.components`) is added as it is."""
    body: dict[str, Any] = {"score": score, "status": status, "reason": reason, "n_faces": None,
                            "detection_score": None, "box": None}
    if face is not None and face.n_faces >= 0:  # detection ran
        body["n_faces"] = face.n_faces
        if face.landmarks is not None:
            body["detection_score"] = face.detection_score
            body["box"] = [round(value, 2) for value in crop_box(face.landmarks)]
    return {**body, **(extra or {})}


class Service:
    """What the handlers share: the model, the worker threads, the limits and the counters.

    Parameters
    ----------
    scorer : fiqa.score.Scorer
        Owned by the inference thread from :meth:`start` on.
    limits : Limits
    workers : Workers
    """

    def __init__(self, scorer: Scorer, limits: Limits, workers: Workers,
                 advice_profile: AdviceProfile | None = None,
                 refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> None:
        check_refinement_passes(refinement_passes, "Service")
        self.scorer, self.limits, self.workers = scorer, limits, workers
        self.advice_profile = advice_profile or load_profile()
        self.refinement_passes = refinement_passes
        self.pipeline = pipeline_for(scorer.detection, limits)
        self.batcher = Batcher(scorer, batch_size=workers.batch_size, batch_wait=workers.batch_wait)
        self.pool: ThreadPoolExecutor | None = None
        self.in_flight = 0
        self.n_requests = self.n_rejected = 0
        self.closing = False

    def start(self) -> None:
        """Warm the model up (the first ONNX run allocates), then start the decode pool and the inference thread."""
        self.scorer.score_crops(np.zeros((1, 112, 112, 3), np.uint8))
        self.pool = ThreadPoolExecutor(self.workers.decode_threads, thread_name_prefix="fiqa-serve-decode")
        self.batcher.start()

    def stop(self) -> None:
        """Stop taking requests; score what is queued; stop the threads."""
        self.closing = True
        self.batcher.close()
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def admit(self) -> None:
        """Count one more scoring request in progress, or raise 503 when ``max_pending`` are."""
        if self.closing:
            raise ServeError(503, "shutting_down", "the service is shutting down",
                             {"Retry-After": str(self.limits.retry_after)})
        if self.in_flight >= self.limits.max_pending:
            self.n_rejected += 1
            raise ServeError(503, "overloaded",
                             f"{self.in_flight} requests are in progress (max_pending={self.limits.max_pending}); "
                             f"retry later", {"Retry-After": str(self.limits.retry_after)})
        self.in_flight += 1
        self.n_requests += 1

    def release(self) -> None:
        self.in_flight -= 1

    def check_declared_size(self, request: Request) -> None:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limits.max_body_bytes:
            raise self._too_large(f"Content-Length is {int(declared)} bytes")

    def _too_large(self, what: str) -> ServeError:
        limit = self.limits.max_body_bytes
        return ServeError(413, "body_too_large",
                          f"{what}; the limit is {limit} bytes ({limit / MIB:g} MiB, max_body_bytes)")

    async def read_body(self, request: Request) -> bytes:
        """The request body, refused (413) as soon as it grows past ``max_body_bytes`` and (408) when it takes
        longer than ``body_timeout``; the rest of a refused body is read and dropped by the server, never kept."""
        limit, size, chunks = self.limits.max_body_bytes, 0, []
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise self._too_large(f"the body is longer than {limit} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise ServeError(408, "body_timeout", f"the body took longer than body_timeout="
                                                  f"{self.limits.body_timeout:g} s to arrive") from None
        return b"".join(chunks)

    async def _face(self, data: bytes, components: bool) -> tuple[FaceCrop, ComponentTable | None]:
        """``FacePipeline.process(data)`` in the decode pool, abandoned after ``decode_timeout`` seconds of work (timed
        from when a pool thread starts it, not while it waits for one)."""
        assert self.pool is not None, "Service.start() was not called"
        loop = asyncio.get_running_loop()
        expired: asyncio.Future[None] = loop.create_future()
        timers: list[asyncio.TimerHandle] = []

        def expire() -> None:
            if not expired.done():
                expired.set_result(None)

        def arm() -> None:
            if not expired.done():
                timers.append(loop.call_later(self.limits.decode_timeout, expire))

        def job() -> tuple[FaceCrop, ComponentTable | None]:
            loop.call_soon_threadsafe(arm)
            face = self.pipeline.process(data, views=components)
            if not components or face.crop is None:
                return face, None
            return face, compute_components(face.crop[None], [face], refinement_passes=self.refinement_passes)

        work = loop.run_in_executor(self.pool, job)
        racing: set[asyncio.Future[Any]] = {work, expired}
        try:
            done, _ = await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for timer in timers:
                timer.cancel()
            expired.cancel()
        if work in done:
            return work.result()
        work.add_done_callback(_discard)  # it runs on; its result (or error) is not wanted any more
        raise _DecodeTimeout

    def components(self, table: ComponentTable | None) -> dict[str, Any]:
        """The ``components`` ({name: {value, raw, unit[, reason]}}) and ``advice`` ([{code, text}]) fields of one
        face's result; both null when there is no face to measure."""
        if table is None:
            return {"components": None, "advice": None}
        codes = advise(table, self.advice_profile)[0]
        return {"components": table.row(0), "advice": [{"code": code, "text": ADVICE[code]} for code in codes]}

    async def score_image(self, data: bytes, components: bool = False) -> dict[str, Any]:
        """The JSON result of one encoded image (with its components and advice when asked)."""
        unmeasured = self.components(None) if components else None
        if not data:
            return _result(Status.NOT_AN_IMAGE.value, "the image is empty (0 bytes)", extra=unmeasured)
        try:
            face, table = await self._face(data, components)
        except _DecodeTimeout:
            return _result(DECODE_TIMEOUT, f"decoding and face detection took longer than decode_timeout="
                                           f"{self.limits.decode_timeout:g} s", extra=unmeasured)
        extra = self.components(table) if components else None
        if face.crop is None:
            return _result(face.status.value, face.reason, face, extra=extra)
        quality, _raw = await asyncio.wrap_future(self.batcher.submit(face.crop))
        if not math.isfinite(quality):
            return _result(Status.INVALID_SCORE.value, "the model returned a non-finite quality", face, extra=extra)
        return _result(Status.OK.value, "", face, quality, extra=extra)

    def model_name(self) -> str:
        """The model's registered name (its card's), or its file name: never a path on the server."""
        if self.scorer.card is not None:
            return str(self.scorer.card["name"])
        return Path(self.scorer.model_name).name


def _discard(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


def _wants_components(request: Request) -> bool:
    value = request.query_params.get("components", "0").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ServeError(400, "bad_request", f"components={value!r}: use components=true or components=false")
    return value in _TRUE


async def score(request: Request) -> Response:
    service: Service = request.app.state.service
    components = _wants_components(request)
    media = _media_type(request)
    is_form = media == FORM_MEDIA_TYPE
    if not is_form and not any(media.startswith(kind) for kind in IMAGE_MEDIA_TYPES):
        raise ServeError(415, "unsupported_media_type",
                         f"Content-Type {media or '(none)'!r}: send the image bytes as image/* (or "
                         f"application/octet-stream), or several images as multipart/form-data")
    service.check_declared_size(request)
    service.admit()
    try:
        try:
            body = await service.read_body(request)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening
        if not is_form:
            result = await service.score_image(body, components)
            return JSONResponse(result, status_code=HTTP_STATUS[result["status"]])
        try:
            parts = split_form(body, request.headers["content-type"], service.limits.max_parts)
        except TooManyParts as exc:
            raise ServeError(413, "too_many_parts", str(exc)) from None
        except FormError as exc:
            raise ServeError(400, "bad_request", str(exc)) from None
        results = await asyncio.gather(*(service.score_image(part.data, components) for part in parts))
        return JSONResponse({"results": [{"name": part.name, "filename": part.filename, **result}
                                         for part, result in zip(parts, results)]})
    finally:
        service.release()


async def health(request: Request) -> Response:
    service: Service = request.app.state.service
    body = {"status": "shutting_down" if service.closing else "ok", "model": service.model_name(),
            "model_sha256": service.scorer.model_sha256, "in_flight": service.in_flight,
            "max_pending": service.limits.max_pending, "requests": service.n_requests,
            "rejected": service.n_rejected, "batches": service.batcher.n_batches,
            "crops_scored": service.batcher.n_crops}
    return JSONResponse(body, status_code=503 if service.closing else 200)


async def model(request: Request) -> Response:
    service: Service = request.app.state.service
    scorer = service.scorer
    return JSONResponse({"name": service.model_name(), "sha256": scorer.model_sha256, "card": scorer.card,
                         "metadata": scorer.meta, "components": describe_components(), "advice": ADVICE,
                         "advice_profile": service.advice_profile.to_dict(),
                         "components_refinement_passes": service.refinement_passes})


async def _serve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServeError)
    return JSONResponse({"status": exc.status, "reason": exc.reason}, status_code=exc.http_status,
                        headers=exc.headers)


_HTTP_NAMES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"status": _HTTP_NAMES.get(exc.status_code, f"http_{exc.status_code}"),
                         "reason": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("internal error on %s %s: %r", request.method, request.url.path, exc)
    return JSONResponse({"status": "internal_error", "reason": f"internal error ({type(exc).__name__})"},
                        status_code=500)


def create_app(scorer: Scorer, *, limits: Limits | None = None, workers: Workers | None = None,
               advice_profile: AdviceProfile | None = None,
               refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> Starlette:
    """The ASGI application of ``fiqa serve``; run it with any ASGI server (:func:`fiqa.serve.run` uses uvicorn).

    Parameters
    ----------
    scorer : fiqa.score.Scorer
        The loaded quality model (``fiqa.score.create_scorer(...)``); the service's inference thread owns it while
        the application runs (between its lifespan startup and shutdown).
    limits : Limits, optional
        What one request may be (default :class:`Limits()`).
    workers : Workers, optional
        Decode threads and batching (default :class:`Workers()`).
    advice_profile : AdviceProfile, optional
        Thresholds for the advice of ``POST /score?components=true`` (default: the shipped ``enrolment`` profile).
    refinement_passes : int
        The components' landmark refinement passes (2, the default, or 1: :func:`fiqa.components.compute_components`),
        listed by ``GET /model``.

    Returns
    -------
    starlette.applications.Starlette
        ``app.state.service`` is the :class:`Service`.
    """
    service = Service(scorer, limits or Limits(), workers or Workers(), advice_profile, refinement_passes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.stop()

    handlers: dict[Any, Callable] = {ServeError: _serve_error, HTTPException: _http_error,
                                     Exception: _internal_error}
    app = Starlette(routes=[Route("/score", score, methods=["POST"]), Route("/health", health, methods=["GET"]),
                            Route("/model", model, methods=["GET"])],
                    exception_handlers=handlers, lifespan=lifespan)
    app.state.service = service
    return app
