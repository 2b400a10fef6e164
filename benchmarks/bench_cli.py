"""Start-up time of the ``fiqa`` command: ``fiqa --help`` (and ``fiqa score --help``) wall time, before and after the
CLI stopped importing every stage's heavy modules at start-up, side by side in one run.

"before" is commit 9703387, exported read-only with ``git archive 9703387 | tar -x -C /tmp/fiqa-before`` (done here
when that folder is missing) and run with ``PYTHONPATH=/tmp/fiqa-before/src``; "after" is this tree (its ``src``).
Both run in this interpreter (the project venv) as ``python -c "from fiqa.cli import main; main()" --help``, which is
what the ``fiqa`` console script does. Runs are interleaved round-robin (before, after, before, ...) so machine load
affects both alike; medians of ``--repeats`` runs each, after one untimed run each. Also lists which heavy modules
each start-up imports. Target: ``fiqa --help`` <= 1.5 s.

Prints a Markdown table and writes ``benchmarks/results/cli.md``.

Run: ``.venv/bin/python benchmarks/bench_cli.py [--repeats 15] [--before /tmp/fiqa-before]``
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from _common import emit, machine_header, results_path, seconds

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "9703387"
TARGET_S = 1.5
HEAVY = ("torch", "onnxruntime", "onnx", "cv2", "pyarrow", "scipy", "sklearn", "matplotlib", "tqdm", "numpy")
RUN = "import sys; from fiqa.cli import main; sys.argv[0] = 'fiqa'; main()"


def export_before(folder: Path) -> None:
    """``git archive BEFORE_COMMIT | tar -x -C folder`` (read-only use of the repository)."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_COMMIT], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)


def environment(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src), "TQDM_DISABLE": "1"}


def run(src: Path, args: list[str]) -> None:
    subprocess.run([sys.executable, "-c", RUN, *args], env=environment(src), check=True, stdout=subprocess.DEVNULL)


def probe(src: Path) -> tuple[str, list[str]]:
    """Where ``fiqa`` was imported from, and which of :data:`HEAVY` ``fiqa --help`` imported."""
    code = ("import sys, fiqa; from fiqa.cli import main; main(['--help'], standalone_mode=False); "
            f"print(fiqa.__file__); print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], env=environment(src), check=True, capture_output=True,
                         text=True).stdout.strip().splitlines()
    return out[-2], [m for m in out[-1].split(",") if m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--before", type=Path, default=Path("/tmp/fiqa-before"))
    args = parser.parse_args()
    header = machine_header()
    if not (args.before / "src" / "fiqa" / "cli.py").is_file():
        export_before(args.before)
    trees = {"before (9703387)": args.before / "src", "after (this tree)": ROOT / "src"}
    commands = {"fiqa --help": ["--help"], "fiqa score --help": ["score", "--help"]}
    imported = {}
    for name, src in trees.items():
        location, heavy = probe(src)
        if not Path(location).resolve().is_relative_to(src.resolve()):
            raise SystemExit(f"{name}: fiqa was imported from {location}, not from {src}")
        imported[name] = heavy
    times: dict[tuple[str, str], list[float]] = {(t, c): [] for t in trees for c in commands}
    for src in trees.values():  # untimed: byte-compile and warm the file cache
        run(src, ["--help"])
    for _ in range(args.repeats):
        for command, argv in commands.items():
            for name, src in trees.items():
                times[name, command].append(seconds(lambda: run(src, argv)))
    median = {key: float(np.median(values)) for key, values in times.items()}
    low = {key: float(np.min(values)) for key, values in times.items()}

    before, after = trees
    lines = ["# CLI start-up: `fiqa --help` before and after", "", *header, "",
             f"{args.repeats} interleaved runs per cell after one untimed run each, in this venv "
             f"(`{Path(sys.executable).name} -c \"from fiqa.cli import main; main()\" ARGS`, the console script's "
             f"entry point), `TQDM_DISABLE=1`; before = commit {BEFORE_COMMIT} (`git archive`), after = this tree. "
             f"Median (min) wall seconds, process start to exit.", "",
             f"| command | {before} | {after} | after / before |", "|---|---:|---:|---:|"]
    for command in commands:
        b, a = median[before, command], median[after, command]
        lines.append(f"| `{command}` | {b:.3f} ({low[before, command]:.3f}) | {a:.3f} ({low[after, command]:.3f}) "
                     f"| {a / b:.2f} |")
    lines += ["", "Heavy modules imported by `fiqa --help`:", ""]
    lines += [f"- {name}: {', '.join(imported[name]) or 'none'}" for name in trees]
    verdict = "met" if median[after, "fiqa --help"] <= TARGET_S else "NOT met"
    lines += ["", f"Target `fiqa --help` <= {TARGET_S} s: {verdict} ({median[after, 'fiqa --help']:.3f} s)."]
    emit("\n".join(lines), results_path("cli.md"))


if __name__ == "__main__":
    main()
