"""Image decoding in worker processes whose memory and time are bounded, so that a decoder's own mistake (a bomb its
header check misses, a runaway allocation, a hang) costs one worker, never the host.

Each worker is a small Python process (``python -m fiqa.io.decoder``) that imports only numpy and OpenCV and then

- runs OpenCV with ``OPENCV_IO_MAX_IMAGE_PIXELS`` set to the caller's ``max_pixels``: the decoder's *own* header
  parse refuses an image that is too large before allocating its pixels, so what is checked is what would be decoded
  (TIFF tags as libtiff reads them, AVIF boxes as libavif reads them, ...);
- limits its address space (``RLIMIT_AS``) to what it holds after the imports plus ``memory_budget(max_pixels)``:
  an allocation past it fails in the worker (or kills it) and the image is refused as ``too_large``;
- decodes one image at a time with one OpenCV thread.

The caller waits at most ``timeout`` seconds; a worker that has not answered by then is killed (its memory goes with
it) and the image is refused. Workers are pooled per ``max_pixels`` and reused, so the common path costs one pipe
round trip (``benchmarks/bench_decode_gate.py`` measures it). Where ``resource`` or subprocesses are unavailable, or
with ``FIQA_DECODE_ISOLATION=0``, images are decoded in the calling process, still behind the gate's byte, format and
header checks and OpenCV's own pixel limit.
"""
from __future__ import annotations

import atexit
import json
import os
import selectors
import struct
import subprocess
import sys
import threading
import time
from typing import Any

import numpy as np

from fiqa.core.types import Status
from fiqa.io.admit import AdmissionError

#: Longest decode of one image before its worker is killed (seconds); callers may pass their own.
DEFAULT_DECODE_TIMEOUT = 30.0
#: Longest start of a worker (imports on a loaded machine), not counted in the decode timeout.
START_TIMEOUT = 120.0
_ISOLATION_ENV = "FIQA_DECODE_ISOLATION"
_HEADER = struct.Struct("<cIIII")  # kind (b"K" image / b"E" error), height, width, channels, payload length
_REQUEST = struct.Struct("<Q")


def memory_budget(max_pixels: int) -> int:
    """Bytes a worker may allocate beyond its imports: the BGR output, the decoder's own buffers (a 16-bit RGBA
    source is 8 bytes a pixel) and a fixed margin: 256 MiB + 12 bytes per allowed pixel (736 MiB at 40 MP)."""
    return 256 * 1024 * 1024 + 12 * int(max_pixels)


def isolated() -> bool:
    """Whether images are decoded in worker processes (POSIX with ``resource``, unless ``FIQA_DECODE_ISOLATION=0``)."""
    if os.environ.get(_ISOLATION_ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    try:
        import resource  # noqa: F401
    except ImportError:
        return False
    return hasattr(os, "fork")


def _write_all(stream: Any, data: bytes | memoryview) -> None:
    view = memoryview(data).cast("B")
    while len(view):
        view = view[stream.write(view):]


class _WorkerFailed(Exception):
    pass


class _Worker:
    def __init__(self, max_pixels: int) -> None:
        env = dict(os.environ)
        env.update({"OPENCV_IO_MAX_IMAGE_PIXELS": str(int(max_pixels)), "FIQA_DECODE_BUDGET":
                    str(memory_budget(max_pixels)), "OPENCV_FOR_THREADS_NUM": "1", "OMP_NUM_THREADS": "1",
                    "MALLOC_ARENA_MAX": "1", "OPENCV_IO_ENABLE_OPENEXR": "0"})
        self.process = subprocess.Popen([sys.executable, "-m", "fiqa.io.decoder"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, bufsize=0, env=env, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self._read_exact(1, time.monotonic() + START_TIMEOUT)  # b"R": imports done, limits set

    def decode(self, data: bytes, timeout: float) -> np.ndarray | None:
        try:
            _write_all(self.stdin, _REQUEST.pack(len(data)))
            _write_all(self.stdin, data)
        except OSError as exc:
            raise _WorkerFailed(f"the decoder stopped ({exc})") from None
        deadline = time.monotonic() + timeout
        kind, height, width, channels, length = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))
        payload = self._read_exact(length, deadline)
        if kind == b"E":
            message = json.loads(bytes(payload).decode("utf-8"))
            if message["status"] == "none":
                return None
            raise AdmissionError(Status(message["status"]), message["reason"])
        return np.frombuffer(payload, np.uint8).reshape(height, width, channels)

    def _read_exact(self, size: int, deadline: float) -> bytearray:
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        with selectors.DefaultSelector() as selector:
            selector.register(self.stdout, selectors.EVENT_READ)
            while got < size:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError
                count = self.stdout.readinto(view[got:])  # type: ignore[attr-defined]
                if not count:
                    raise _WorkerFailed(self._death())
                got += count
        return buffer  # writable: np.frombuffer over it gives an array the caller may change

    def _death(self) -> str:
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            return "the decoder stopped answering"
        if code == -9 or code == 137:
            return "the decoder was killed (out of memory?)"
        if code < 0:
            return f"the decoder crashed (signal {-code})"
        return f"the decoder exited with status {code}"

    def kill(self) -> None:
        try:
            self.process.kill()
        except OSError:
            pass
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass


class _Pool:
    """Idle workers per ``max_pixels``; a caller takes one (or starts one), uses it, and gives it back unless it
    failed. At most ``keep`` idle workers per limit are kept."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: dict[int, list[_Worker]] = {}
        self.keep = max(2, (os.cpu_count() or 1) + 1)

    def take(self, max_pixels: int) -> _Worker:
        with self.lock:
            workers = self.idle.get(max_pixels)
            if workers:
                return workers.pop()
        return _Worker(max_pixels)

    def give_back(self, max_pixels: int, worker: _Worker) -> None:
        with self.lock:
            workers = self.idle.setdefault(max_pixels, [])
            if len(workers) < self.keep:
                workers.append(worker)
                return
        worker.kill()

    def forget(self) -> None:
        """In a forked child: drop the parent's workers without touching them."""
        self.lock = threading.Lock()
        self.idle = {}

    def close(self) -> None:
        with self.lock:
            workers = [w for group in self.idle.values() for w in group]
            self.idle.clear()
        for worker in workers:
            worker.kill()


_POOL = _Pool()
atexit.register(_POOL.close)
if hasattr(os, "register_at_fork"):  # a forked child must not share (or kill) its parent's workers
    os.register_at_fork(after_in_child=lambda: _POOL.forget())


def decode_bytes(data: bytes, max_pixels: int, timeout: float = DEFAULT_DECODE_TIMEOUT) -> np.ndarray | None:
    """``cv2.imdecode(data, IMREAD_COLOR)`` in a bounded worker: the image, or None when OpenCV cannot decode it.

    Raises
    ------
    AdmissionError
        ``TOO_LARGE`` when the decoder's own header check or the memory budget refuses the image, ``NOT_AN_IMAGE``
        when the decoder crashed or took longer than ``timeout`` seconds (the worker is killed).
    """
    if not isolated():
        return _decode_here(data, max_pixels)
    worker = _POOL.take(int(max_pixels))
    try:
        image = worker.decode(data, timeout)
    except TimeoutError:
        worker.kill()
        raise AdmissionError(Status.NOT_AN_IMAGE, f"decoding took longer than {timeout:g} s; stopped") from None
    except _WorkerFailed as exc:
        worker.kill()
        raise AdmissionError(Status.TOO_LARGE, f"{exc} while decoding; refused (memory budget "
                                               f"{memory_budget(max_pixels) >> 20} MiB)") from None
    except BaseException:
        worker.kill()
        raise
    _POOL.give_back(int(max_pixels), worker)
    return image


def _classify(exc: Exception, max_pixels: int) -> tuple[str, str]:
    text = str(exc)
    if "CV_IO_MAX_IMAGE" in text:
        return "too_large", f"the decoder's header declares more than max_pixels={max_pixels} pixels"
    if isinstance(exc, MemoryError) or "Insufficient memory" in text or "Failed to allocate" in text:
        return "too_large", f"decoding needs more than the memory budget ({memory_budget(max_pixels) >> 20} MiB)"
    return "not_an_image", "the decoder refused the data (corrupt image)"


def _decode_here(data: bytes, max_pixels: int) -> np.ndarray | None:
    import cv2

    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except (cv2.error, MemoryError) as exc:
        status, reason = _classify(exc, max_pixels)
        raise AdmissionError(Status(status), reason) from None


def _serve() -> None:  # pragma: no cover - runs in the worker process (tests drive it through decode_bytes)
    """The worker loop: one request (8-byte length + encoded bytes) in, one answer out, until stdin closes."""
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # nothing a library prints can corrupt the answers
    import resource

    import cv2

    cv2.setNumThreads(1)
    max_pixels = int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"])
    with open("/proc/self/statm") if os.path.exists("/proc/self/statm") else open(os.devnull) as statm:
        pages = statm.read().split()
    used = int(pages[0]) * os.sysconf("SC_PAGE_SIZE") if pages else 1 << 30
    limit = used + int(os.environ["FIQA_DECODE_BUDGET"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _write_all(channel_out, b"R")

    def read_exact(size: int) -> bytes | None:
        parts, got = [], 0
        while got < size:
            part = channel_in.read(size - got)
            if not part:
                return None
            parts.append(part)
            got += len(part)
        return b"".join(parts)

    def error(status: str, reason: str) -> None:
        payload = json.dumps({"status": status, "reason": reason}).encode("utf-8")
        _write_all(channel_out, _HEADER.pack(b"E", 0, 0, 0, len(payload)) + payload)

    while True:
        header = read_exact(_REQUEST.size)
        if header is None:
            return
        data = read_exact(_REQUEST.unpack(header)[0])
        if data is None:
            return
        try:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        except (cv2.error, MemoryError) as exc:
            error(*_classify(exc, max_pixels))
            continue
        del data
        if image is None:
            error("none", "")
            continue
        image = np.ascontiguousarray(image, dtype=np.uint8)
        if image.ndim == 2:
            image = image[:, :, None]
        _write_all(channel_out, _HEADER.pack(b"K", image.shape[0], image.shape[1], image.shape[2], image.nbytes))
        _write_all(channel_out, image.tobytes())


if __name__ == "__main__":  # pragma: no cover
    _serve()
