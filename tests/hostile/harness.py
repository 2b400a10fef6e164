"""How the hostile cases run ``fiqa``: in-process through click's test runner (fast: imports and model sessions are
shared), or as a real process when the process itself matters (kill -9, concurrency, peak memory, dropped
capabilities). Both give a :class:`Run` that says whether a traceback escaped.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

FIQA = [sys.executable, "-c", "import sys; sys.argv[0] = 'fiqa'; from fiqa.cli import main; main()"]
"""The ``fiqa`` command of the interpreter running the tests (the same installation, whatever is on PATH)."""

TRACEBACK = "Traceback (most recent call last)"

EMBED_GOOD = ("--batch-size", "4", "--chunk-size", "4")
"""Settings of the good store (24 images: 6 chunks), shared by the kill and concurrency cases."""
TRAIN = ("--epochs", "3", "--patience", "100", "--batch-size", "4")
"""Settings of the small model (tiny epochs)."""


@dataclass
class Run:
    """One ``fiqa`` command: exit status, output (stdout and stderr together) and the traceback if one escaped."""

    args: list[str]
    code: int
    output: str
    traceback: str | None = None
    seconds: float = 0.0
    peak_rss_bytes: int | None = None

    def __str__(self) -> str:
        shown = self.output if len(self.output) < 3000 else self.output[:1500] + "\n...\n" + self.output[-1500:]
        return (f"$ fiqa {shlex.join(self.args)}\nexit {self.code}\n{shown}"
                + (f"\n{self.traceback}" if self.traceback else ""))


def cli(*args: object, deadline: float = 600.0) -> Run:
    """Run ``fiqa ARGS`` in this process (click's CliRunner) in a watchdog thread: a hang fails the case after
    ``deadline`` seconds instead of stalling the suite."""
    from click.testing import CliRunner

    from fiqa.cli import main

    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
    box: dict[str, object] = {}

    def invoke() -> None:
        try:
            box["result"] = CliRunner().invoke(main, argv, catch_exceptions=True)
        except BaseException as exc:  # the runner itself failed
            box["error"] = exc

    start = time.perf_counter()
    thread = threading.Thread(target=invoke, daemon=True, name="fiqa-cli")
    thread.start()
    thread.join(deadline)
    seconds = time.perf_counter() - start
    if thread.is_alive():
        return Run(argv, -1, f"still running after {deadline:.0f} s (a hang)", "hang", seconds)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    result = box["result"]
    escaped = None
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        escaped = "".join(traceback.format_exception(*result.exc_info))
    return Run(argv, result.exit_code, result.output, escaped, seconds)


_PEAK_RSS = ("import resource, subprocess, sys\n"
             "code = subprocess.call(sys.argv[2:])\n"
             "with open(sys.argv[1], 'w') as out:\n"
             "    out.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
             "sys.exit(code)\n")
"""A small parent that runs a command and writes its peak RSS (KiB). Measured from a fresh interpreter because a
child forked from this (large) test process would report this process's pages: Linux keeps the high-water mark
of resident memory across ``exec``."""


def process(*args: object, timeout: float = 600.0, cwd: Path | None = None, env: dict | None = None,
            measure_rss: bool = False) -> Run:
    """Run ``fiqa ARGS`` as a child process; with ``measure_rss`` its peak resident set size is measured too."""
    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
    command = [*FIQA, *argv]
    if measure_rss:
        handle, rss_file = tempfile.mkstemp(prefix="fiqa-rss-")
        os.close(handle)
        command = [sys.executable, "-c", _PEAK_RSS, rss_file, *command]
    start = time.perf_counter()
    with open(os.devnull, "rb") as stdin:
        child = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd,
                                 env=env, start_new_session=True)
    output = _drain(child, timeout)
    if output is None:
        return Run(argv, -1, f"still running after {timeout:.0f} s (killed)", "hang", time.perf_counter() - start)
    child.wait()
    peak = None
    if measure_rss:
        peak = int(Path(rss_file).read_text() or 0) * 1024
        os.unlink(rss_file)
    text = output.decode("utf-8", "replace")
    return Run(argv, child.returncode, text, _traceback_in(text), time.perf_counter() - start, peak)


def _drain(child: subprocess.Popen, timeout: float) -> bytes | None:
    """All of the child's output; None (the child's process group killed) after ``timeout``."""
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(child.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        return None
    return b"".join(chunks)


def _traceback_in(text: str) -> str | None:
    return text[text.index(TRACEBACK):] if TRACEBACK in text else None


def start(*args: object, log: Path, cwd: Path | None = None) -> subprocess.Popen:
    """Start ``fiqa ARGS`` in the background (its own process group), output to ``log``."""
    argv = [os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args]
    with open(log, "wb") as handle, open(os.devnull, "rb") as stdin:
        return subprocess.Popen([*FIQA, *argv], stdin=stdin, stdout=handle, stderr=subprocess.STDOUT, cwd=cwd,
                                start_new_session=True)


def kill_when(child: subprocess.Popen, condition: Callable[[], bool], *, timeout: float = 300.0,
              poll: float = 0.005) -> bool:
    """``kill -9`` the child as soon as ``condition()`` holds; False when the child ended first (or timed out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return True
        if child.poll() is not None:
            return False
        time.sleep(poll)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return False


def temporaries(folder: Path) -> list[Path]:
    """Files left by atomic writes that did not finish (``.<name>.tmp<pid>``), anywhere below ``folder``."""
    return sorted(p for p in Path(folder).rglob("*") if ".tmp" in p.name)


# ------------------------------------------------------------------------------------- without DAC capabilities

def unprivileged_prefix() -> list[str] | None:
    """A command prefix that runs without ``CAP_DAC_OVERRIDE`` / ``CAP_DAC_READ_SEARCH`` (so that permission bits
    apply): nothing for a normal user, ``capsh --drop=...`` for root; None when root cannot drop them here."""
    if os.geteuid() != 0:
        return []
    capsh = shutil.which("capsh")
    if capsh:
        return [capsh, "--drop=cap_dac_override,cap_dac_read_search", "--", "-c"]
    return None


def batch_unprivileged(commands: Sequence[Sequence[object]], scratch: Path) -> list[dict]:
    """Run several ``fiqa`` commands in one child process without DAC capabilities (one interpreter start for all).

    Returns, per command, ``{"code", "output", "traceback"}`` as :func:`cli` would see them.
    """
    prefix = unprivileged_prefix()
    assert prefix is not None, "root without capsh: cannot drop CAP_DAC_OVERRIDE to test permission bits"
    requests = scratch / "batch-in.json"
    answers = scratch / "batch-out.json"
    requests.write_text(json.dumps([[os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in command]
                                    for command in commands]), encoding="utf-8")
    script = [sys.executable, str(Path(__file__).with_name("_batch.py")), str(requests), str(answers)]
    argv = [*prefix, shlex.join(script)] if prefix else script
    completed = subprocess.run(argv, capture_output=True, timeout=600, env=os.environ.copy())
    assert completed.returncode == 0, completed.stderr.decode("utf-8", "replace")[-3000:]
    return json.loads(answers.read_text(encoding="utf-8"))


# -------------------------------------------------------------------------------------------------- assertions

def assert_clean_error(run: Run, *needles: str) -> None:
    """A failed command that said why in one message: non-zero exit, no traceback, an ``Error:`` line (click
    usage errors too), and every needle in the output."""
    assert run.traceback is None, f"a traceback escaped:\n{run}"
    assert run.code not in (0, -1), f"expected a clear failure:\n{run}"
    assert "Error" in run.output, f"no error message:\n{run}"
    for needle in needles:
        assert needle in run.output, f"{needle!r} is not in the message:\n{run}"


def assert_ok(run: Run) -> None:
    assert run.traceback is None, f"a traceback escaped:\n{run}"
    assert run.code == 0, f"expected success:\n{run}"


_PROGRESS = re.compile(r"[^\s:]+:\s+\d+%\|[^\]]*\]")
"""A tqdm progress bar (``embed:  40%|####  | 4/10 [00:01<00:02, 3.2img/s]``)."""


def summary(run: Run) -> str:
    """The output without progress bars, on one line (for the report)."""
    text = _PROGRESS.sub("", run.output)
    return " / ".join(line.strip() for line in re.split(r"[\r\n]+", text) if line.strip())


def error_line(run: Run) -> str:
    """The ``Error: ...`` line of a run's output (for the report)."""
    lines = [line for line in _PROGRESS.sub("", run.output).splitlines() if "Error" in line]
    return lines[-1].strip() if lines else run.output.strip().splitlines()[-1] if run.output.strip() else ""
