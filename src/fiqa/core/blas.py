"""One BLAS thread while many small matrix products run, safe across threads.

fiqa's small products (the occlusion model, SER-FIQ's dropout passes, the labellers' per-identity Gram matrices) run
faster on one BLAS thread, and BLAS's idle threads spinning beside the scoring model's slow scoring itself. The
limit is process-wide, and two threads setting and restoring it on their own would each restore the count the other
had set (``threadpoolctl``'s limiter reads the count at entry and puts it back at exit): the scorer measures one
batch's components on a thread of its own while its own thread scores, so such limits overlap. Here the first holder
sets the limit and the last one to leave restores it; between them BLAS stays on one thread.

    >>> from fiqa.core.blas import one_blas_thread
    >>> with one_blas_thread():
    ...     pass
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

__all__ = ["one_blas_thread"]


class _Holders:
    """Who is inside :func:`one_blas_thread`: their number, the limiter the first one set, the last library scan."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.limiter: Any = None  # threadpoolctl's private _ThreadpoolLimiter
        self.controller: ThreadpoolController | None = None
        self.scanned_at = -1  # len(sys.modules) at the scan


_HOLDERS = _Holders()


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """A context in which BLAS runs on one thread, in this thread and every other, until the last thread inside
    leaves (then the count from before the first entered is restored).

    The library scan (about 0.5 ms) is made again only when modules were imported since the last one: an extension
    imported later (SciPy brings its own OpenBLAS) would otherwise stay outside the limit."""
    holders = _HOLDERS
    with holders.lock:
        if holders.count == 0:
            if holders.controller is None or holders.scanned_at != len(sys.modules):
                holders.controller, holders.scanned_at = ThreadpoolController(), len(sys.modules)
            holders.limiter = holders.controller.limit(limits=1, user_api="blas")
        holders.count += 1
    try:
        yield
    finally:
        with holders.lock:
            holders.count -= 1
            if holders.count == 0:
                holders.limiter.restore_original_limits()
                holders.limiter = None
