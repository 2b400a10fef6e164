"""The one way a study writes its Markdown result: the file (its folder made) and the same lines printed."""
from __future__ import annotations

from pathlib import Path


def write_report(out: Path, lines: list[str]) -> None:
    """Write ``lines`` to ``out`` (UTF-8, one trailing newline), creating its folder, and print them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
