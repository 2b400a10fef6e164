"""``fiqa serve [--model NAME_OR_PATH] [--host 127.0.0.1] [--port 8000]``: the quality model over HTTP."""
from __future__ import annotations

from typing import Any

import click

from fiqa.commands._common import LazyDefault, one_line

_EXTRA = ("starlette", "uvicorn", "python_multipart", "h11")


def _limit(name: str, scale: float = 1.0) -> LazyDefault:
    """The default of ``fiqa.serve.config.Limits.<name>`` (times ``scale``), read only when needed: ``fiqa --help``
    does not import OpenCV."""
    return LazyDefault("fiqa.serve.config", "Limits", lambda cls: _scaled(getattr(cls(), name), scale))


def _worker(name: str, scale: float = 1.0) -> LazyDefault:
    return LazyDefault("fiqa.serve.config", "Workers", lambda cls: _scaled(getattr(cls(), name), scale))


def _scaled(value: Any, scale: float) -> Any:
    return value if scale == 1.0 else value * scale


def _option(*names: str, envvar: str, **kwargs):
    kwargs.setdefault("show_default", True)
    return click.option(*names, envvar=f"FIQA_SERVE_{envvar}", show_envvar=True, **kwargs)


@click.command("serve")
@_option("--model", envvar="MODEL", default=None, metavar="NAME_OR_PATH", show_default=False,
         help="A shipped model (`fiqa models`), a model folder with a card.json, or an ONNX model written by "
              "`fiqa train`. Default: the shipped 'default' model.")
@_option("--host", envvar="HOST", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
@_option("--port", envvar="PORT", type=click.IntRange(0, 65535), default=8000, help="0: any free port.")
@_option("--max-body-mb", envvar="MAX_BODY_MB", type=click.FloatRange(min=0, min_open=True),
         default=_limit("max_body_bytes", 1 / 1024 / 1024),
         help="Largest request body in MiB (one image or a whole form): 413.")
@_option("--max-pixels", envvar="MAX_PIXELS", type=click.IntRange(min=1), default=_limit("max_pixels"),
         help="Largest image in pixels, read from its header before decoding: 422 too_large.")
@_option("--decode-timeout", envvar="DECODE_TIMEOUT", type=click.FloatRange(min=0, min_open=True),
         default=_limit("decode_timeout"), help="Seconds one image may take to decode and detect: 422 decode_timeout.")
@_option("--body-timeout", envvar="BODY_TIMEOUT", type=click.FloatRange(min=0, min_open=True),
         default=_limit("body_timeout"), help="Seconds a request body may take to arrive: 408.")
@_option("--max-pending", envvar="MAX_PENDING", type=click.IntRange(min=1), default=_limit("max_pending"),
         help="Scoring requests in progress at once; more get 503 with Retry-After.")
@_option("--max-parts", envvar="MAX_PARTS", type=click.IntRange(min=1), default=_limit("max_parts"),
         help="Images in one multipart request: 413 too_many_parts.")
@_option("--batch-size", envvar="BATCH_SIZE", type=click.IntRange(min=1), default=_worker("batch_size"),
         help="Most crops per inference call (batched across concurrent requests).")
@_option("--batch-wait-ms", envvar="BATCH_WAIT_MS", type=click.FloatRange(0, 1000),
         default=_worker("batch_wait", 1000), help="Milliseconds a batch may wait for more crops.")
@_option("--decode-threads", envvar="DECODE_THREADS", type=click.IntRange(min=1), default=_worker("decode_threads"),
         help="Threads decoding images and detecting faces.")
@_option("--threads", envvar="THREADS", type=click.IntRange(min=1), default=None, show_default=False,
         help="onnxruntime threads of the model. Default: the cores left after the decode threads (at least 1).")
@_option("--graceful-timeout", envvar="GRACEFUL_TIMEOUT", type=click.IntRange(min=0), default=30,
         help="On SIGINT/SIGTERM, seconds in-flight requests may take to finish.")
@_option("--advice-profile", envvar="ADVICE_PROFILE", type=click.Path(dir_okay=False), default=None,
         show_default=False, metavar="FILE",
         help="Advice profile for POST /score?components=true (default: the shipped 'enrolment' profile).")
# default: fiqa.components.DEFAULT_REFINEMENT_PASSES (a test keeps them equal; read here, it would load OpenCV and the
# components for --help)
@_option("--refinement-passes", envvar="REFINEMENT_PASSES", type=click.IntRange(1, 2), default=2,
         help="Landmark refinement passes of the components' pose and geometry: 2 reads the eye distance and yaw "
              "more precisely than 1, which saves about 0.3 ms a face (docs/components.md).")
def command(model: str | None, host: str, port: int, max_body_mb: float, max_pixels: int, decode_timeout: float,
            body_timeout: float, max_pending: int, max_parts: int, batch_size: int, batch_wait_ms: float,
            decode_threads: int, threads: int | None, graceful_timeout: int, advice_profile: str | None,
            refinement_passes: int) -> None:
    """Serve a quality model over HTTP: POST /score (image bytes, or a multipart form of images), GET /health,
    GET /model. Stops on SIGINT/SIGTERM after the requests in progress are answered. API: docs/serve.md."""
    from fiqa.serve.config import MIB, Limits, Workers

    try:
        from fiqa.serve.server import run
    except ModuleNotFoundError as exc:
        if exc.name not in _EXTRA:
            raise
        raise click.ClickException(f"fiqa serve needs {exc.name}: pip install 'fiqa[serve]'") from None
    limits = Limits(max_body_bytes=max(1, round(max_body_mb * MIB)), max_pixels=max_pixels,
                    decode_timeout=decode_timeout, body_timeout=body_timeout, max_pending=max_pending,
                    max_parts=max_parts)
    workers = Workers(decode_threads=decode_threads, batch_size=batch_size, batch_wait=batch_wait_ms / 1000)

    def ready(url: str) -> None:
        click.echo(one_line(f"fiqa serve: listening on {url} (POST {url}/score; Ctrl+C to stop)"))

    run(model, host=host, port=port, limits=limits, workers=workers, threads=threads,
        graceful_timeout=graceful_timeout, on_ready=ready, advice_profile=advice_profile,
        refinement_passes=refinement_passes)
