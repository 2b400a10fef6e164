"""Compare two fiqa output folders (two demo runs, say, of two commits with the same arguments): every Parquet
table's columns by value (NaN equal to NaN), every binary file by its bytes, every CSV by its text, every JSON with
the keys that name a time, path, version or digest left out. Prints what differs and what only one folder has.

    .venv/bin/python scripts/compare_runs.py runs/demo-before runs/demo-after
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

VOLATILE = ("seconds", "time", "created", "utc", "version", "sha", "fingerprint", "path", "root", "key", "store",
            "source", "argv", "model", "training")
"""A JSON key holding one of these words records where or when a file was made, not what it holds."""


def _stable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if not any(word in k.lower() for word in VOLATILE)}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


def _same_table(first: Path, second: Path) -> list[str]:
    a, b = pq.read_table(first), pq.read_table(second)
    differing = [name for name in b.column_names if name not in a.column_names]
    for name in a.column_names:
        if any(word in name.lower() for word in ("seconds", "time")):
            continue
        if name not in b.column_names:
            differing.append(name)
            continue
        x, y = (t.column(name).to_numpy(zero_copy_only=False) for t in (a, b))
        equal = (x.shape == y.shape and (np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f"
                                         else bool(np.all(x == y))))
        if not equal:
            differing.append(name)
    return differing


def compare(first: Path, second: Path) -> tuple[list[str], list[str], list[str], int]:
    """(what differs, what only ``first`` has, what only ``second`` has, how many files are the same)."""
    differ, same = [], 0
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    only_first = [str(f) for f in files if not (second / f).is_file()]
    only_second = sorted(str(p.relative_to(second)) for p in second.rglob("*")
                         if p.is_file() and not (first / p.relative_to(second)).is_file())
    for f in (f for f in files if (second / f).is_file()):
        a, b = first / f, second / f
        if f.suffix == ".parquet":
            columns = _same_table(a, b)
            problem = f"columns differ: {columns}" if columns else ""
        elif f.suffix == ".json":
            problem = "" if _stable(json.loads(a.read_text())) == _stable(json.loads(b.read_text())) else \
                "differs beyond times, paths, versions and digests"
        elif f.suffix in (".csv", ".md", ".txt"):
            problem = "" if a.read_text() == b.read_text() else "text differs"
        else:
            problem = "" if a.read_bytes() == b.read_bytes() else "bytes differ"
        if problem:
            differ.append(f"{f}: {problem}")
        else:
            same += 1
    return differ, only_first, only_second, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    differ, only_first, only_second, same = compare(args.first, args.second)
    print(f"{same} files the same, {len(differ)} differ")
    for line in differ:
        print(f"  {line}")
    print(f"only in {args.first}: {only_first}")
    print(f"only in {args.second}: {only_second}")


if __name__ == "__main__":
    main()
