"""Run the service with uvicorn on one listening socket, and stop it cleanly on SIGINT / SIGTERM."""
from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from fiqa.components import DEFAULT_REFINEMENT_PASSES, load_profile
from fiqa.core.errors import FIQAError, InvalidParameterError, check_int
from fiqa.score import create_scorer
from fiqa.serve.app import create_app
from fiqa.serve.config import Limits, Workers

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Longest time a client may take to send a request's line and headers; the connection is closed after it.
HEADER_TIMEOUT = 10.0
#: Largest request line plus headers (h11's ``max_incomplete_event_size``; its default is 16 KiB).
MAX_HEADER_BYTES = 16 * 1024


class _HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for the request line and headers: a connection that has not sent a
    whole request head ``HEADER_TIMEOUT`` seconds after it opened (or after its previous response) is closed, so
    half-sent headers cannot hold connections open (uvicorn's keep-alive timer only runs between requests)."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self.loop.call_later(HEADER_TIMEOUT, self._header_deadline, self.server_state.total_requests)

    def _header_deadline(self, requests_then: int) -> None:
        if self.transport.is_closing() or self.server_state.total_requests != requests_then:
            return  # closed, or a later response re-armed the timer
        if self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete):
            self.transport.close()  # the head never arrived


def _refuse_ambiguous_length(app: Callable) -> Callable:
    """ASGI wrapper: a request with both Content-Length and Transfer-Encoding (a request-smuggling vector, RFC 9112
    section 6.3) gets 400 and the connection is closed."""
    async def wrapped(scope, receive, send):
        if scope.get("type") == "http":
            names = {name.lower() for name, _ in scope.get("headers", [])}
            if b"content-length" in names and b"transfer-encoding" in names:
                body = (b'{"status": "bad_request", "reason": "Content-Length and Transfer-Encoding together are '
                        b'refused"}')
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)
    return wrapped


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening (``port`` 0: a free port, see ``getsockname()``).

    Connections that arrive before the server runs wait in the backlog instead of being refused.
    """
    check_int("listen", "port", port, 0)
    if port > 65535:
        raise InvalidParameterError("listen", "port", "an int in [0, 65535]", port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise FIQAError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


def inference_threads(workers: Workers) -> int:
    """onnxruntime threads when none are given: the cores left after the decode threads, at least one (on a
    small machine a second inference thread only fights the decode threads and the event loop for the cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - workers.decode_threads)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    # uvicorn handles the signal itself while it runs (stops accepting, lets in-flight requests finish, runs the
    # lifespan shutdown) and then raises it again: a stop asked for by signal ends the process with status 0.
    raise SystemExit(0)


def run(model: str | os.PathLike | None = None, *, host: str = "127.0.0.1", port: int = 8000,
        limits: Limits | None = None, workers: Workers | None = None, threads: int | None = None,
        graceful_timeout: int = 30, on_ready: Callable[[str], None] | None = None,
        advice_profile: str | os.PathLike | None = None,
        refinement_passes: int = DEFAULT_REFINEMENT_PASSES) -> None:
    """Load a quality model and serve it over HTTP until SIGINT or SIGTERM.

    Parameters
    ----------
    model : str, path or None
        As :func:`fiqa.score.create_scorer` (None: the shipped default model).
    host, port : str, int
        Where to listen; ``port`` 0 picks a free port (``on_ready`` gets the URL).
    limits, workers : Limits, Workers, optional
        See :mod:`fiqa.serve.config`.
    threads : int or None
        onnxruntime intra-op threads of the model (None: :func:`inference_threads`, the cores the decode threads
        leave, at least one).
    graceful_timeout : int, seconds
        On a stop signal, how long in-flight requests may take to finish before the server closes them.
    on_ready : callable, optional
        Called with the service's URL once the model is loaded (connections from then on wait and are served).
    advice_profile : path, optional
        The advice profile of ``POST /score?components=true`` (default: the shipped ``enrolment`` profile).
    refinement_passes : int
        The components' landmark refinement passes (1 or 2; :func:`fiqa.serve.create_app`).
    """
    workers = workers or Workers()
    profile = load_profile(advice_profile)  # a bad profile fails before the port is taken
    sock = listen(host, port)  # first: a taken port fails before the model loads
    previous = {sig: signal.signal(sig, _exit_cleanly) for sig in STOP_SIGNALS}
    try:
        scorer = create_scorer(model, batch_size=workers.batch_size,
                               threads=inference_threads(workers) if threads is None else threads)
        app = create_app(scorer, limits=limits, workers=workers, advice_profile=profile,
                         refinement_passes=refinement_passes)
        config = uvicorn.Config(_refuse_ambiguous_length(app), http=_HeaderTimeoutProtocol, loop="asyncio",
                                lifespan="on", log_config=None, timeout_graceful_shutdown=graceful_timeout,
                                timeout_keep_alive=5, server_header=False,
                                h11_max_incomplete_event_size=MAX_HEADER_BYTES)
        server = uvicorn.Server(config)
        if on_ready is not None:
            on_ready(url_of(sock))
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
