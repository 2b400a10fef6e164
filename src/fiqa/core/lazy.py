"""Names a package hands on without importing the module that defines them until first use, so that importing the
package stays light (``import fiqa`` loads no PyTorch, onnxruntime or OpenCV).

>>> __getattr__, __dir__ = lazy_exports(__name__, {"read_image": "fiqa.io.image"})  # doctest: +SKIP

The one way a fiqa package exports lazily (PEP 562 module ``__getattr__`` and ``__dir__``).
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of a package that hands on names defined elsewhere.

    Parameters
    ----------
    package : str
        The package's ``__name__`` (named in the error for an unknown attribute).
    exports : mapping of str to str
        Exported name -> the fiqa module that holds it under the same name, imported on first access.

    Returns
    -------
    __getattr__ : callable
        Resolves an exported name (at each access, so a test's monkeypatch of the module that holds it is seen);
        any other name raises ``AttributeError`` as a module does.
    __dir__ : callable
        The package's ``__all__`` and the exported names, sorted.

    Raises
    ------
    ValueError
        When a module named in ``exports`` is not a fiqa module: only fiqa's own modules are imported by name.
    """
    exports = dict(exports)
    outside = sorted({module for module in exports.values() if module != "fiqa" and not module.startswith("fiqa.")})
    if outside:
        raise ValueError(f"{package}: lazy exports come from fiqa modules only, not from {', '.join(outside)}")

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*getattr(sys.modules[package], "__all__", ()), *exports})

    return __getattr__, __dir__
