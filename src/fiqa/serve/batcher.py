"""One thread owns the quality model and scores crops from concurrent requests in shared batches."""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from fiqa.core.params import Interval, validate
from fiqa.score import Scorer

logger = logging.getLogger(__name__)


@dataclass
class _Pending:
    crop: np.ndarray
    future: Future
    queued: float = field(default_factory=time.monotonic)


_STOP = object()


class Batcher:
    """Score aligned crops submitted from any thread, one ONNX call per batch.

    The inference thread takes the oldest queued crop, then gathers more until ``batch_size`` crops or until
    ``batch_wait`` seconds after that oldest crop was queued, and runs :meth:`fiqa.score.Scorer.score_crops` once.
    Under load batches fill from the queue without waiting; a lone request waits at most ``batch_wait``.

    Parameters
    ----------
    scorer : fiqa.score.Scorer
        Used by the inference thread only, from :meth:`start` until :meth:`close`.
    batch_size : int >= 1
    batch_wait : float >= 0, seconds

    Attributes
    ----------
    n_batches, n_crops : int
        Batches run and crops scored so far.
    """

    def __init__(self, scorer: Scorer, *, batch_size: int, batch_wait: float) -> None:
        validate("Batcher", {"batch_size": batch_size}, {"batch_size": [Interval(int, 1, None)]})
        self.scorer, self.batch_size, self.batch_wait = scorer, batch_size, float(batch_wait)
        self.n_batches = self.n_crops = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="fiqa-serve-inference", daemon=True)
        self._closed = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, crop: np.ndarray) -> Future:
        """Queue one ``(112, 112, 3)`` uint8 BGR crop; the future's result is ``(quality, raw_score)`` floats."""
        if self._closed:
            raise RuntimeError("the inference thread is closed")
        future: Future = Future()
        self._queue.put(_Pending(crop, future))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Score what is queued, then stop the inference thread."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _gather(self, first: _Pending) -> tuple[list[_Pending], bool]:
        batch, stop = [first], False
        deadline = first.queued + self.batch_wait
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch, stop = self._gather(item)
            batch = [pending for pending in batch if pending.future.set_running_or_notify_cancel()]
            if batch:
                self._score(batch)
            if stop:
                while True:  # whatever was queued before the stop is still scored
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        return
                    if item is not _STOP and item.future.set_running_or_notify_cancel():
                        self._score([item])

    def _score(self, batch: list[_Pending]) -> None:
        try:
            quality, raw = self.scorer.score_crops(np.stack([pending.crop for pending in batch]))
        except Exception as exc:  # every waiting request gets the error, and the thread lives on
            logger.exception("inference failed for a batch of %d crops", len(batch))
            for pending in batch:
                pending.future.set_exception(exc)
            return
        self.n_batches += 1
        self.n_crops += len(batch)
        for pending, value, raw_value in zip(batch, quality.tolist(), raw.tolist()):
            pending.future.set_result((value, raw_value))
