"""Crash safety under ``kill -9``: embed, label, train, the ONNX export inside train, and evaluate, each killed at
seeded random moments and then run again to completion.

For every command an uninterrupted reference run is made first. Then, ``--kills`` times: the output is cleared, the
command is started and ``kill -9``-ed (its whole process group) at a moment drawn uniformly from (0, T), T the
median wall time of its whole runs so far (a run that ends before its moment is not counted, its time joins T's
median, and a new moment is drawn); right after
the kill every file under its final name in the output is parsed (Parquet, JSON, NumPy, npz, ONNX, checkpoint,
CSV, PNG, HTML); then the same command runs again to completion and its result is compared with the reference,
byte for byte for arrays, tables, models and plots, and for JSON and HTML apart from the command line and the
creation time. A re-run "resumed" when the killed run had left work it could reuse (extraction chunks, a training
checkpoint, feature-cache rows), else it "restarted clean".

The export row starts every run from a copy of the reference model folder that holds only the finished training
checkpoint, so the whole run is the export. The train row trains on a store embedded with ``--no-features`` whose
feature cache (in the store folder) is removed before every run, so kills also land while the cache fills.

Prints a Markdown table and writes it to ``benchmarks/results/kill.md``. Takes ~15 minutes on 2 busy cores.

Run: ``.venv/bin/python benchmarks/bench_kill.py [--kills 20] [--seed 0] [--lfw ../shared/data/lfw-dev]``
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from _common import Report, machine_header, results_path

ROOT = Path(__file__).resolve().parents[1]
FIQA = [sys.executable, "-c", "import sys; sys.argv[0] = 'fiqa'; from fiqa.cli import main; main()"]
VOLATILE = ("created_utc", "argv")
"""Keys of provenance blocks that name the time and the command line, not the result."""
EMBED = ("--batch-size", "4", "--chunk-size", "4")
TRAIN = ("--epochs", "3", "--patience", "100", "--batch-size", "4")


# ------------------------------------------------------------------------------------------------------- running

def run(args: list[str], log: Path) -> float:
    """Run ``fiqa ARGS`` to completion; its wall seconds. Fails loudly on a non-zero exit."""
    start = time.perf_counter()
    with open(log, "wb") as handle:
        completed = subprocess.run([*FIQA, *args], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if completed.returncode != 0:
        raise SystemExit(f"fiqa {' '.join(args)} failed (exit {completed.returncode}):\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


def run_and_kill(args: list[str], after: float, log: Path) -> float | None:
    """Start ``fiqa ARGS`` and ``kill -9`` its process group ``after`` seconds later: None, or the seconds the run
    took when it ended first."""
    start = time.monotonic()
    with open(log, "wb") as handle:
        child = subprocess.Popen([*FIQA, *args], stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    while time.monotonic() < start + after:
        if child.poll() is not None:
            return time.monotonic() - start
        time.sleep(0.002)
    if child.poll() is not None:
        return time.monotonic() - start
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    return None


# --------------------------------------------------------------------------------------------------- inspecting

def broken_files(folder: Path) -> list[str]:
    """Files under their final name (not ``.tmp``) below ``folder`` that do not parse completely."""
    import cv2
    import onnx
    import pyarrow.parquet as pq
    import torch

    bad = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".tmp" not in p.name):
        try:
            suffix = path.suffix
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    for key in data.files:
                        data[key]
            elif suffix == ".npy":
                np.load(path, allow_pickle=False)
            elif suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
            elif suffix == ".parquet":
                pq.read_table(path)
            elif suffix == ".onnx":
                onnx.checker.check_model(onnx.load(path))
            elif suffix == ".pt":
                torch.load(path, map_location="cpu", weights_only=True)
            elif suffix == ".csv":
                with open(path, newline="", encoding="utf-8") as handle:
                    rows = list(csv.reader(handle))
                if not rows:
                    raise ValueError("empty CSV")
            elif suffix == ".png":
                if cv2.imread(str(path)) is None:
                    raise ValueError("PNG does not decode")
            elif suffix == ".html" and "</html>" not in path.read_text(encoding="utf-8"):
                raise ValueError("HTML without its end")
        except Exception as exc:  # any failure to parse is what is counted
            bad.append(f"{path.relative_to(folder)}: {type(exc).__name__}: {str(exc)[:100]}")
    return bad


def temporaries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if ".tmp" in p.name) if folder.exists() else []


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


_HTML_VOLATILE = re.compile(r'"(?:created_utc|argv)":\s*(?:"[^"]*"|\[[^\]]*\])')


def content(path: Path) -> object:
    """What a file holds, apart from provenance times and command lines."""
    if path.suffix == ".json":
        return _strip(json.loads(path.read_text(encoding="utf-8")))
    if path.suffix == ".html":
        return _HTML_VOLATILE.sub("", path.read_text(encoding="utf-8").replace("&quot;", '"'))
    return path.read_bytes()


def differences(reference: Path, other: Path, names: list[str]) -> list[str]:
    """The files of ``names`` (relative paths) whose content differs between two outputs."""
    return [name for name in names
            if not (other / name).exists() or content(reference / name) != content(other / name)]


# ------------------------------------------------------------------------------------------------------ commands

@dataclass
class Command:
    """One row: how to reset the output, the command, what to compare, and what counts as reusable work."""

    name: str
    args: list[str]
    outputs: list[Path]
    compare: tuple[Path, Path, list[str]]  # reference folder, output folder, files to compare
    reset: Callable[[], None]
    resumable: Callable[[], bool]
    reference_seconds: float = 0.0
    kills: int = 0
    resumed_identical: int = 0
    restarted_identical: int = 0
    differing: int = 0
    corrupt: list[str] = field(default_factory=list)
    left_temporaries: int = 0
    rerun_seconds: list[float] = field(default_factory=list)
    states: list[str] = field(default_factory=list)


def _clear(*paths: Path) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _listing(folder: Path) -> list[str]:
    """Every file below ``folder`` (relative paths), temporary files aside."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and ".tmp" not in p.name)


def prepare(work: Path, lfw: Path, log: Path) -> dict[str, Command]:
    """Make the input and the reference outputs; describe the five commands."""
    people = [p for p in sorted(lfw.iterdir()) if p.is_dir() and len(list(p.glob("*.jpg"))) >= 6][:6]
    source = work / "input"
    for person in people:
        (source / person.name).mkdir(parents=True)
        for image in sorted(person.glob("*.jpg"))[:4]:
            shutil.copy(image, source / person.name)
    ref = work / "reference"
    commands: dict[str, Command] = {}

    store, out_store = ref / "store", work / "store"
    partial = Path(f"{out_store}.partial")
    seconds = run(["embed", str(source), "--out", str(store), *EMBED], log)
    commands["embed"] = Command(
        "embed", ["embed", str(source), "--out", str(out_store), *EMBED], [out_store, partial],
        (store, out_store, _listing(store)), lambda: _clear(out_store, partial, Path(f"{out_store}.lock")),
        lambda: any(partial.glob("chunk-*.npz")) or (out_store / "meta.json").exists(), seconds)

    labels, out_labels = ref / "labels" / "sdd.parquet", work / "labels" / "sdd.parquet"
    (ref / "labels").mkdir()
    (work / "labels").mkdir()
    label = Command("label", ["label", str(store), "-m", "sdd", "--out", str(out_labels)], [work / "labels"],
                    (ref / "labels", work / "labels", ["sdd.parquet", "sdd.parquet.json"]),
                    lambda: [_clear(p) for p in (work / "labels").iterdir()], lambda: False)
    label.reference_seconds = run(["label", str(store), "-m", "sdd", "--out", str(labels)], log)
    commands["label"] = label

    # train: a store embedded without feature columns, so that training fills a feature cache (inside the store),
    # which is removed before every run
    train_store = work / "train_store"
    run(["embed", str(source), "--out", str(train_store), *EMBED, "--no-features"], log)
    model, out_model = ref / "model", work / "model"
    train_args = ["train", str(train_store), str(labels), "--out", str(out_model), *TRAIN]
    train = Command("train", train_args, [out_model, train_store / "features"],
                    (model, out_model, ["model.onnx", "head.onnx", "history.json", "split.json", "metrics.json"]),
                    lambda: _clear(out_model, train_store / "features"),
                    lambda: (out_model / "checkpoint.pt").exists() or (train_store / "features").is_dir())
    _clear(train_store / "features")
    train.reference_seconds = run(["train", str(train_store), str(labels), "--out", str(model), *TRAIN], log)
    commands["train"] = train

    # export: the finished checkpoint only; the run resumes after the last epoch and exports
    checkpoint_only = work / "checkpoint_only"
    checkpoint_only.mkdir()
    shutil.copy(model / "checkpoint.pt", checkpoint_only)
    out_export = work / "export"

    def reset_export() -> None:
        _clear(out_export)
        shutil.copytree(checkpoint_only, out_export)

    export = Command("export (in train)", ["train", str(train_store), str(labels), "--out", str(out_export), *TRAIN],
                     [out_export], (model, out_export, ["model.onnx", "head.onnx", "history.json"]), reset_export,
                     lambda: True)  # the checkpoint is always there
    reset_export()
    export.reference_seconds = run(export.args, log)
    if differences(model, out_export, ["model.onnx", "head.onnx"]):
        raise SystemExit("an export resumed from the final checkpoint differs from the uninterrupted training's")
    commands["export"] = export

    report, out_report = ref / "report", work / "report"
    evaluate_args = ["--scores", str(labels), "--n-bootstrap", "100"]
    seconds = run(["evaluate", str(store), *evaluate_args, "--out", str(report)], log)
    commands["evaluate"] = Command("evaluate", ["evaluate", str(store), *evaluate_args, "--out", str(out_report)],
                                   [out_report], (report, out_report, _listing(report)), lambda: _clear(out_report),
                                   lambda: False, seconds)
    return commands


def kill_loop(command: Command, kills: int, rng: np.random.Generator, log: Path, say: Callable[[str], None]) -> None:
    reference, output, names = command.compare
    durations = [command.reference_seconds]  # of whole uninterrupted runs: the kill moments follow the load
    attempts = 0
    while command.kills < kills and attempts < 5 * kills:
        attempts += 1
        command.reset()
        moment = float(rng.uniform(0.0, np.median(durations)))
        finished = run_and_kill(command.args, moment, log)
        if finished is not None:  # it ended before its moment: draw again, from the durations seen
            durations.append(finished)
            continue
        command.kills += 1
        for folder in command.outputs:
            if folder.exists():
                command.corrupt += [f"{folder.name}/{b}" for b in broken_files(folder)]
        resumed = command.resumable()
        command.rerun_seconds.append(run(command.args, log))
        differ = differences(reference, output, names)
        if differ:
            command.differing += 1
            say(f"  {command.name}: kill at {moment:.2f} s, re-run differs in {differ}")
        elif resumed:
            command.resumed_identical += 1
        else:
            command.restarted_identical += 1
        command.left_temporaries += sum(len(temporaries(folder)) for folder in command.outputs)
        command.states.append(f"{moment:.2f}s:{'R' if resumed else 'C'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="kills per command (>= 20 for the committed report)")
    parser.add_argument("--random-state", "--seed", type=int, default=0)
    parser.add_argument("--lfw", type=Path, default=Path(os.environ.get("FIQA_LFW") or
                                                         ROOT.parent / "shared" / "data" / "lfw-dev"))
    args = parser.parse_args()
    if not args.lfw.is_dir():
        raise SystemExit(f"LFW-dev not found at {args.lfw} (pass --lfw or set FIQA_LFW)")
    report = Report()
    report("# Crash safety under kill -9 (`benchmarks/bench_kill.py`)")
    report()
    report(" ".join(machine_header()))
    report()
    started = time.perf_counter()
    rng = np.random.default_rng(args.random_state)
    with tempfile.TemporaryDirectory(prefix="fiqa-kill-") as scratch:
        work = Path(scratch)
        log = work / "run.log"
        commands = prepare(work, args.lfw, log)
        report(f"Input: 6 LFW-dev people x 4 photos (24 images). Settings: embed {' '.join(EMBED)}; label -m sdd; "
               f"train {' '.join(TRAIN)} (head); evaluate --n-bootstrap 100. Kill moments: seed {args.random_state}, "
               f"uniform in (0, median wall time of the command's whole runs).")
        report()
        for command in commands.values():
            kill_loop(command, args.kills, rng, log, report)
    report("| command | reference s | kills | resumed, identical | restarted clean, identical | re-run differs | "
           "corrupt files found | temporary files left | median re-run s |")
    report("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in commands.values():
        report(f"| {c.name} | {c.reference_seconds:.1f} | {c.kills} | {c.resumed_identical} | {c.restarted_identical} "
               f"| {c.differing} | {len(c.corrupt)} | {c.left_temporaries} | {np.median(c.rerun_seconds):.1f} |")
    report()
    report("Identical: every compared file equal to the uninterrupted run's, byte for byte (arrays, Parquet, ONNX, "
           "CSV, PNG), JSON and HTML apart from `created_utc` and `argv`. Corrupt: a file under its final name that "
           "did not parse right after a kill (must be 0). Temporary files left: `.<name>.tmp<pid>` files of killed "
           "runs still there after the re-run finished (summed over the kills).")
    for c in commands.values():
        if c.corrupt:
            report(f"- {c.name} corrupt: {'; '.join(c.corrupt[:5])}")
    report()
    report(f"Total {time.perf_counter() - started:.0f} s.")
    report.write(results_path("kill.md"))
    if any(c.corrupt or c.differing for c in commands.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
