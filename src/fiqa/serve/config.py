"""What one request may be and how the service runs: the limits and worker settings of ``fiqa serve``.

Kept apart from the web stack so the command's help and the defaults are importable without Starlette.
"""
from __future__ import annotations

from dataclasses import dataclass

from fiqa.core.errors import check_int
from fiqa.core.params import Interval, validate
from fiqa.io.image import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE, check_limits

MIB = 1024 * 1024


def _check_seconds(owner: str, name: str, value: object) -> float:
    validate(owner, {name: value}, {name: [Interval(float, 0, None, closed="neither")]})
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Limits:
    """What the service accepts; anything beyond gets a JSON error with a status and a reason.

    Parameters
    ----------
    max_body_bytes : int >= 1, default 10 MiB
        Largest request body, a single image or a whole multipart form (413 ``body_too_large``). Checked from
        ``Content-Length`` before reading and again while the body streams in; a larger body is never held.
    max_pixels, min_side : int >= 1
        :func:`fiqa.io.image.decode_image`'s limits (422 ``too_large`` / ``too_small``); the pixel count is read
        from the image header before decoding.
    decode_timeout : float > 0, seconds
        Longest decode + detection + alignment of one image, timed from when a worker thread takes it up
        (422 ``decode_timeout``).
    body_timeout : float > 0, seconds
        Longest time to receive a request body (408 ``body_timeout``).
    max_pending : int >= 1
        Scoring requests in progress at once (reading, decoding, waiting for or in inference); one more gets
        503 ``overloaded`` with ``Retry-After``.
    max_parts : int >= 1
        Parts in one multipart form (413 ``too_many_parts``).
    retry_after : int >= 1, seconds
        The ``Retry-After`` value sent with 503.
    """

    max_body_bytes: int = 10 * MIB
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE
    decode_timeout: float = 10.0
    body_timeout: float = 30.0
    max_pending: int = 64
    max_parts: int = 16
    retry_after: int = 1

    def __post_init__(self) -> None:
        owner = "Limits"
        for name in ("max_body_bytes", "max_pending", "max_parts", "retry_after"):
            check_int(owner, name, getattr(self, name), 1)
        check_limits(self.max_pixels, self.min_side, owner)
        for name in ("decode_timeout", "body_timeout"):
            object.__setattr__(self, name, _check_seconds(owner, name, getattr(self, name)))


@dataclass(frozen=True)
class Workers:
    """How the work is spread: decode and detection in a small thread pool, inference in one thread that owns
    the quality model and batches crops across concurrent requests.

    Parameters
    ----------
    decode_threads : int >= 1, default 2
        Threads decoding, detecting and aligning images.
    batch_size : int >= 1, default 8
        Most crops per inference call. On CPU a larger batch scores no faster per face, and onnxruntime's memory
        arena grows to fit the largest batch it has run (about 70 MiB at 8 crops, 370 MiB at 32, for the
        default model).
    batch_wait : float >= 0, seconds, default 0.002
        How long the inference thread lets a batch gather, counted from when its first crop was queued (a crop
        that already waited that long is run at once with whatever else is queued).
    """

    decode_threads: int = 2
    batch_size: int = 8
    batch_wait: float = 0.002

    def __post_init__(self) -> None:
        check_int("Workers", "decode_threads", self.decode_threads, 1)
        check_int("Workers", "batch_size", self.batch_size, 1)
        validate("Workers", {"batch_wait": self.batch_wait}, {"batch_wait": [Interval(float, 0, 1)]})
        object.__setattr__(self, "batch_wait", float(self.batch_wait))
