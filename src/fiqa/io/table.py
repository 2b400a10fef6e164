"""The one on-disk table format: Parquet, with a JSON sidecar (``<file>.json``) holding the metadata; quality
tables can also be exported as CSV or JSON lines (:func:`write_quality`, the format from the file's extension).

Writes are atomic (:mod:`fiqa.core.atomic`), so an interrupted run never leaves half a table.
A text column holding a string that is not valid Unicode (a file name that is not valid UTF-8 comes from the
operating system with surrogate escapes, PEP 383) is stored as bytes (``utf-8`` with ``surrogateescape``) and
marked in its field metadata; :func:`read_table` gives back the same strings, so such a file can still be read.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fiqa.core.atomic import atomic_path, read_json, write_json
from fiqa.core.errors import InvalidParameterError, StoreError
from fiqa.core.meta import TableMeta
from fiqa.core.outputs import check_not_in_inputs
from fiqa.core.provenance import file_sha256
from fiqa.core.types import ESCAPED_TEXT, QualityTable, arrow_table


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


TABLE_DIGEST = "table_sha256"
"""Sidecar key holding the SHA-256 of the Parquet file it describes (removed from the metadata on reading)."""
TABLE_FORMATS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
"""File extension -> format of :func:`write_quality`; ``"-"`` (standard output) is CSV."""
STDOUT = "-"


def check_output(path: str | Path, inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Refuse an output path that would destroy something: one of ``inputs`` (the same file, or a file inside an
    input folder), a file inside a finished embedding store, or an existing file that is not a fiqa table.

    Raises
    ------
    StoreError
        Naming the path and what it would overwrite.
    """
    path = check_not_in_inputs(path, inputs)
    target = path.resolve()
    folder = target.parent
    if (folder / "meta.json").is_file() and (folder / "vectors.npy").is_file():
        raise StoreError(f"{path}: is inside the embedding store {folder}; write tables beside a store, not into it")
    if target.exists() and not (target.is_file() and sidecar_path(target).is_file()):
        raise StoreError(f"{path}: exists and is not a fiqa table (no {sidecar_path(path).name} beside it); "
                         f"refusing to replace it")
    return path


def write_table(path: str | Path, columns: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                inputs: Sequence[str | os.PathLike | None] = ()) -> Path:
    """Write equal-length 1-D columns as Parquet plus a JSON sidecar, both atomically; refuses a path that
    :func:`check_output` refuses: equal to or inside one of ``inputs`` (what the table was made from, e.g. its
    store; None skipped), inside a store, or over a file that is not a fiqa table."""
    path = check_output(path, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = arrow_table(columns)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
        # the sidecar names the table it belongs to: a kill between the two renames is detected on reading
        write_json(sidecar_path(path), {**meta, TABLE_DIGEST: file_sha256(tmp)})
    return path


def read_table(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a table written by :func:`write_table`: ``(columns, meta)``; strings come back as object arrays."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: table file does not exist")
    try:  # one file, read as it is (pq.read_table goes through pyarrow.dataset, which imports pandas)
        with pq.ParquetFile(path) as parquet:
            table = parquet.read()
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreError(f"{path}: not a readable Parquet table ({exc})") from None
    columns = {}
    for field in table.schema:
        name, column = field.name, table.column(field.name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
        elif pa.types.is_binary(column.type) and (field.metadata or {}).get(b"fiqa_encoding") == ESCAPED_TEXT[
                b"fiqa_encoding"]:
            columns[name] = np.asarray([v.decode("utf-8", "surrogateescape") for v in column.to_pylist()],
                                       dtype=object)
        else:
            columns[name] = _column_to_numpy(column)
    meta = read_json(sidecar_path(path)) if sidecar_path(path).exists() else {}
    expected = meta.pop(TABLE_DIGEST, None)
    if expected is not None and expected != file_sha256(path):
        raise StoreError(f"{path}: the table and its sidecar {sidecar_path(path).name} do not belong together (an "
                         f"interrupted write, or one of them replaced by hand); write the table again")
    return columns, meta


def _column_to_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as a numpy array: numbers without nulls copied straight from their buffers (pyarrow's ``to_numpy``
    imports pandas, about as long again as numpy and pyarrow together), anything else through ``to_numpy``."""
    kind = column.type
    if column.null_count or not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
        return column.to_numpy()
    code = "f" if pa.types.is_floating(kind) else "i" if pa.types.is_signed_integer(kind) else "u"
    dtype = np.dtype(f"{code}{kind.bit_width // 8}")
    parts = [np.frombuffer(chunk.buffers()[1], dtype, len(chunk), chunk.offset * dtype.itemsize)
             for chunk in column.chunks if len(chunk)]
    return np.concatenate(parts) if parts else np.empty(0, dtype)


_CORE = ("sample_id", "score", "status", "reason")


def save_quality(table: QualityTable, path: str | Path) -> Path:
    """Save a :class:`QualityTable` (labels or model scores) as Parquet with its sidecar
    (:meth:`fiqa.core.meta.TableMeta.to_json`); refused (``StoreError``, before writing) at or inside the store the
    table was computed on (``table.meta.store``), as every output of fiqa is (:func:`check_output`)."""
    return write_table(path, table.all_columns(), table.meta.to_json(), inputs=[table.meta.store])


def table_format(path: str | os.PathLike) -> str:
    """``"parquet"``, ``"csv"`` or ``"jsonl"`` from the extension of ``path`` (``"-"``: CSV on standard output).

    Raises
    ------
    InvalidParameterError
        For any other extension, naming the ones accepted.
    """
    if str(path) == STDOUT:
        return "csv"
    found = TABLE_FORMATS.get(Path(path).suffix.lower())
    if found is None:
        raise InvalidParameterError("write_quality", "path", f"a file name ending in {', '.join(TABLE_FORMATS)} "
                                    f"(or '{STDOUT}' for CSV on standard output)", str(path))
    return found


def _cell(value: Any) -> Any:
    """A JSON value: numpy scalars as Python ones, NaN and infinities as None."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_quality_text(table: QualityTable, stream: IO[str], fmt: str) -> None:
    """Write ``table`` as CSV (header row; NaN as an empty cell) or JSON lines (one object per row; NaN as null)
    to a text stream, columns as :meth:`QualityTable.all_columns`."""
    columns = table.all_columns()
    names = list(columns)
    rows = zip(*(np.asarray(values).tolist() for values in columns.values()))
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            writer.writerow(["" if v is None else v for v in map(_cell, row)])
    elif fmt == "jsonl":
        for row in rows:
            stream.write(json.dumps(dict(zip(names, map(_cell, row))), ensure_ascii=False) + "\n")
    else:
        raise InvalidParameterError("write_quality_text", "fmt", "'csv' or 'jsonl'", fmt)


def write_quality(table: QualityTable, path: str | os.PathLike, stdout: IO[str] | None = None) -> Path | None:
    """Write ``table`` in the format of ``path``'s extension (:func:`table_format`): Parquet (:func:`save_quality`),
    CSV or JSON lines, each atomically with the same JSON sidecar; ``"-"`` writes CSV to ``stdout`` (default
    ``sys.stdout``) and returns None. A file at or inside the store the table was computed on is refused
    (:func:`save_quality`).

    File names that are not valid UTF-8 are written back as their original bytes (``surrogateescape``).
    """
    fmt = table_format(path)
    if str(path) == STDOUT:
        if stdout is None:
            import sys

            stdout = sys.stdout
        buffer = getattr(stdout, "buffer", None)
        if buffer is None:  # a plain text stream (io.StringIO): strings go in as they are
            write_quality_text(table, stdout, fmt)
            return None
        stdout.flush()  # bytes, like the files: a file name that is not valid UTF-8 comes out as its own bytes
        wrapper = io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape", newline="")
        try:
            write_quality_text(table, wrapper, fmt)
            wrapper.flush()
        finally:
            wrapper.detach()  # leave the standard output open
        return None
    if fmt == "parquet":
        return save_quality(table, Path(path))
    target = check_output(Path(path), [table.meta.store])  # never into its store
    target.parent.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    write_quality_text(table, text, fmt)
    with atomic_path(target) as tmp:
        tmp.write_bytes(text.getvalue().encode("utf-8", "surrogateescape"))
        write_json(sidecar_path(target), {**table.meta.to_json(), TABLE_DIGEST: file_sha256(tmp)})
    return target


def load_quality(path: str | Path) -> QualityTable:
    """Load a :class:`QualityTable` (labels or scores) with its provenance.

    Refused, with a one-line :class:`StoreError` naming the file: a table without its JSON sidecar (it records the
    store the table was made from; without it a join by ``sample_id`` could silently pair the wrong images), a
    sidecar that :meth:`fiqa.core.meta.TableMeta.from_json` refuses (a field of the wrong type), a missing column,
    and what :func:`check_quality_rows` refuses.
    """
    if Path(path).is_file() and not sidecar_path(path).is_file():
        raise StoreError(f"{path}: has no sidecar {sidecar_path(path).name} (the record of which store and method "
                         f"made it); a table without it cannot be joined to a store safely: copy the sidecar with it, "
                         f"or make the table again")
    columns, meta = read_table(path)
    missing = [c for c in _CORE if c not in columns]
    if missing:
        raise StoreError(f"{path}: not a quality table, missing column(s) {', '.join(missing)}")
    extra = {k: v for k, v in columns.items() if k not in _CORE}
    typed = TableMeta.from_json({"method": Path(path).stem, **meta}, sidecar_path(path))
    table = QualityTable(columns["sample_id"].astype(np.int64), columns["score"].astype(np.float64),
                         columns["status"], columns["reason"], extra, typed)
    check_quality_rows(table, str(path))
    return table


def check_quality_rows(table: QualityTable, what: str) -> None:
    """Refuse a quality table whose rows cannot be joined by ``sample_id``: a sample id given twice, or a score
    that is NaN or infinite on a row marked ``ok``.

    Raises
    ------
    StoreError
        Naming the table (``what``) and the first offending sample id.
    """
    ids = np.asarray(table.sample_id)
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        first = int(unique[np.argmax(counts > 1)])
        raise StoreError(f"{what}: sample_id {first} appears {int(counts.max())} times ({int((counts > 1).sum())} "
                         f"duplicated id(s)); a quality table holds one row per sample")
    ok = np.asarray(table.status).astype(str) == "ok"
    bad = ok & ~np.isfinite(np.asarray(table.score, dtype=np.float64))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise StoreError(f"{what}: sample_id {int(ids[row])} has status ok but score {float(table.score[row])} "
                         f"({int(bad.sum())} such row(s)); a non-finite score needs another status")
