"""One progress switch for the whole library.

Every bar fiqa draws is a :class:`tqdm` from this module, which consults the switch: with bars off, no bar is drawn,
whatever the stage passes as ``disable=`` (a stage still hides a bar it finds pointless, e.g. ``disable=n_blocks <
4``, and a ``progress=False`` argument still hides its own). The switch starts on unless the environment variable
``TQDM_DISABLE`` is set (to anything but an empty string, 0, false, no or off); the ``fiqa`` command sets it once,
from ``-q`` / ``--no-progress``.

    >>> from fiqa.core.progress import progress_bars, progress_enabled
    >>> with progress_bars(False):
    ...     progress_enabled()
    False
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from tqdm.auto import tqdm as _tqdm

from fiqa.core.text import one_line

__all__ = ["allowed_by_environment", "progress_bars", "progress_enabled", "set_progress_bars", "tqdm"]

_FALSE_WORDS = {"", "0", "false", "no", "off"}


def allowed_by_environment() -> bool:
    """False when ``TQDM_DISABLE`` is set to anything but an empty string, 0, false, no or off."""
    value = os.environ.get("TQDM_DISABLE")
    return value is None or value.strip().lower() in _FALSE_WORDS


_enabled: bool | None = None
"""The switch: None until set, and then the environment decides."""


def progress_enabled() -> bool:
    """Whether fiqa draws progress bars now: the last :func:`set_progress_bars` / :func:`progress_bars`, else not
    when ``TQDM_DISABLE`` is set."""
    return allowed_by_environment() if _enabled is None else _enabled


def set_progress_bars(enabled: bool | None) -> None:
    """Turn every fiqa progress bar on or off for this process (``None``: back to the environment's default)."""
    global _enabled
    _enabled = None if enabled is None else bool(enabled)


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Progress bars on or off inside the block; the previous setting is restored when it ends."""
    global _enabled
    previous = _enabled
    _enabled = bool(enabled)
    try:
        yield
    finally:
        _enabled = previous


class tqdm(_tqdm):
    """``tqdm.auto.tqdm`` that draws nothing while the switch is off (:func:`progress_enabled`), its description on
    one line (:func:`fiqa.core.text.one_line`: a method or file name in it cannot move the cursor or break the bar)."""

    def __init__(self, *args: Any, disable: bool | None = False, **kwargs: Any) -> None:
        if isinstance(kwargs.get("desc"), str):
            kwargs["desc"] = one_line(kwargs["desc"])
        super().__init__(*args, disable=True if not progress_enabled() else disable, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool | None = True) -> None:
        super().set_description(None if desc is None else one_line(desc), refresh)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        super().set_postfix_str(one_line(str(s)), refresh)
