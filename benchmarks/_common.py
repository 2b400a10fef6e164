"""What every benchmark script shares: timing, the machine header of its report, and writing the report.

The scripts run as ``python benchmarks/<script>.py`` from the repository root, so this folder is ``sys.path[0]``
and they import this module as ``from _common import ...``; the studies (``python -m studies.<script>``) import it as
``benchmarks._common``.

Reports go to ``benchmarks/results/<name>`` (see :func:`results_path`); set the environment variable
``FIQA_BENCH_RESULTS`` to a folder to send them there instead (e.g. for a quick small-size check that must not
replace the committed results).
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fiqa.core.errors import InvalidParameterError
from fiqa.core.provenance import versions

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def seconds(function: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of ``function()`` (``time.perf_counter``)."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def median_seconds(function: Callable[[], object], repeats: int, *, warmup: int = 0) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``function()``, after ``warmup`` untimed calls.

    Parameters
    ----------
    function : callable
        Called with no arguments; its result is discarded.
    repeats : int
        Number of timed calls, >= 1.
    warmup : int, default=0
        Number of untimed calls made first (session creation, first-run allocation, caches).

    Returns
    -------
    float
        The median of the ``repeats`` timings, in seconds.
    """
    if repeats < 1:
        raise InvalidParameterError("median_seconds", "repeats", "an int >= 1", repeats)
    for _ in range(warmup):
        function()
    return float(np.median([seconds(function) for _ in range(repeats)]))


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, as ``"1.2 / 0.9 / 0.7"``."""
    return " / ".join(f"{value:.1f}" for value in os.getloadavg())


def machine_header() -> list[str]:
    """Markdown lines that say where a benchmark ran, for the top of its report.

    Returns
    -------
    list of str
        One paragraph (no blank lines): architecture, logical CPU count and OS; Python and the package versions of
        :func:`fiqa.core.provenance.versions`; the load average when called (other jobs on shared cores slow every row,
        so ratios measured side by side in one run are the reliable part).
    """
    found = versions()
    packages = ", ".join(f"{name} {version}" for name, version in found.items() if name != "python")
    return [
        f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; "
        f"{platform.python_implementation()} {found['python']}.",
        f"Versions: {packages}.",
        f"Load average (1 / 5 / 15 min) at start: {load_average()}.",
    ]


def results_path(name: str, folder: Path = RESULTS_DIR) -> Path:
    """Where the report file ``name`` goes: ``$FIQA_BENCH_RESULTS/name`` if that is set, else ``folder``
    (``benchmarks/results``; the studies pass ``studies/results``)."""
    return Path(os.environ.get("FIQA_BENCH_RESULTS") or folder) / name


def emit(text: str, path: Path, *, echo: bool = True) -> None:
    """Print a report (unless ``echo`` is false, for reports printed while they were built) and write it to ``path``.

    The file is written atomically (a temporary file in the same folder, then ``os.replace``), so an interrupted run
    never leaves a half-written report; missing folders are created. A final newline is added if missing.
    """
    text = text if text.endswith("\n") else text + "\n"
    if echo:
        print(text, end="", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would carry over to the report
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    print(f"wrote {path}", flush=True)


class Report:
    """A Markdown report built line by line and printed as it grows (for long runs that report step by step).

    Call it with a line (default: a blank line) to print and keep that line; :meth:`write` saves all kept lines.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path: Path) -> None:
        """Write the kept lines to ``path`` with :func:`emit` (without printing them again)."""
        emit("\n".join(self.lines) + "\n", path, echo=False)
