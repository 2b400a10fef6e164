"""One BLAS thread across threads (fiqa.core.blas): the scorer's thread holds the limit while the components' thread
enters and leaves it; the limit stays until the last holder leaves, then the count from before is restored."""
from __future__ import annotations

import threading

import numpy as np  # noqa: F401  (loads numpy's OpenBLAS, which the limit acts on)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fiqa.core.blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [module["num_threads"] for module in threadpool_info() if module["user_api"] == "blas"]


def test_a_holder_on_another_thread_neither_sets_nor_restores_while_this_thread_holds():
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        if not before or max(before) < 2:
            pytest.skip(f"this BLAS runs on one thread here ({before}): nothing to limit")
        entered, leave = threading.Event(), threading.Event()

        def hold() -> None:
            with one_blas_thread():
                entered.set()
                leave.wait(10)

        with one_blas_thread():
            assert set(_blas_threads()) == {1}
            other = threading.Thread(target=hold)
            other.start()
            assert entered.wait(10)
            leave.set()
            other.join(10)
            # a limiter of its own on the other thread would have restored the count it read at entry (1 here, or
            # 2 where the library keeps a thread's setting apart): the limit holds until this thread leaves
            assert set(_blas_threads()) == {1}
            with one_blas_thread():  # nested in one thread
                assert set(_blas_threads()) == {1}
            assert set(_blas_threads()) == {1}
        assert _blas_threads() == before


@pytest.mark.parametrize("first_out", ["first in", "second in"])
def test_the_first_holder_sets_the_limit_and_the_last_restores_it(monkeypatch, first_out):
    """Against a recording stand-in for threadpoolctl: however two threads' holds overlap, the limit is set once
    (by the first in) and restored once (by the last out); a limiter per holder would set and restore twice, and
    the one leaving first would restore the count under the other."""
    from fiqa.core import blas

    calls: list[str] = []

    class Limiter:
        def restore_original_limits(self) -> None:
            calls.append(f"restore on {threading.current_thread().name}")

    class Controller:
        def limit(self, *, limits: int, user_api: str) -> Limiter:
            assert (limits, user_api) == (1, "blas")
            calls.append(f"limit on {threading.current_thread().name}")
            return Limiter()

    monkeypatch.setattr(blas, "ThreadpoolController", Controller)
    monkeypatch.setattr(blas, "_HOLDERS", blas._Holders())
    steps = {name: threading.Event() for name in ("entered", "leave", "left")}

    def hold() -> None:
        with one_blas_thread():
            steps["entered"].set()
            steps["leave"].wait(10)
        steps["left"].set()

    other = threading.Thread(target=hold, name="other")
    with one_blas_thread():
        other.start()
        assert steps["entered"].wait(10)
        if first_out == "second in":  # the other thread leaves while this one holds; else this one leaves first
            steps["leave"].set()
            assert steps["left"].wait(10)
    steps["leave"].set()
    other.join(10)
    last = "other" if first_out == "first in" else threading.current_thread().name
    assert calls == [f"limit on {threading.current_thread().name}", f"restore on {last}"]
