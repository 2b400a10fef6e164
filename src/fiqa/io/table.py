"""The one on-disk table format: Parquet, with a JSON sidecar (``<file>.json``) holding the metadata.

Writes are atomic (:mod:`fiqa.core.atomic`), so an interrupted run never leaves half a table.
A text column holding a string that is not valid Unicode (a file name that is not valid UTF-8 comes from the
operating system with surrogate escapes, PEP 383) is stored as bytes (``utf-8`` with ``surrogateescape``) and
marked in its field metadata; :func:`read_table` gives back the same strings, so such a file can still be read.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fiqa.core.atomic import atomic_path, read_json, write_json
from fiqa.core.errors import StoreError
from fiqa.core.provenance import file_sha256
from fiqa.core.types import QualityTable


def sidecar_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".json")


_ESCAPED = {b"fiqa_encoding": b"utf-8/surrogateescape"}
TABLE_DIGEST = "table_sha256"
"""Sidecar key holding the SHA-256 of the Parquet file it describes (removed from the metadata on reading)."""


def _text_array(values: np.ndarray) -> tuple[pa.Array, dict[bytes, bytes] | None]:
    """A string column, or a binary one marked :data:`_ESCAPED` when some string is not valid Unicode."""
    strings = values.astype(str).tolist()
    try:
        return pa.array(strings, type=pa.string()), None
    except (UnicodeEncodeError, pa.ArrowInvalid):
        return pa.array([v.encode("utf-8", "surrogateescape") for v in strings], type=pa.binary()), _ESCAPED


def check_output(path: str | Path, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Refuse an output path that would destroy something: one of ``inputs`` (the same file, or a file inside an
    input folder), a file inside a finished embedding store, or an existing file that is not a fiqa table.

    Raises
    ------
    StoreError
        Naming the path and what it would overwrite.
    """
    path = Path(path)
    target = path.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if target == source or source in target.parents:
            raise StoreError(f"{path}: the output would overwrite the input {given}; choose another --out")
    folder = target.parent
    if (folder / "meta.json").is_file() and (folder / "vectors.npy").is_file():
        raise StoreError(f"{path}: is inside the embedding store {folder}; write tables beside a store, not into it")
    if target.exists() and not (target.is_file() and sidecar_path(target).is_file()):
        raise StoreError(f"{path}: exists and is not a fiqa table (no {sidecar_path(path).name} beside it); "
                         f"refusing to replace it")
    return path


def write_table(path: str | Path, columns: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write equal-length 1-D columns as Parquet plus a JSON sidecar, both atomically; refuses a path that
    :func:`check_output` refuses."""
    path = check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields, arrays = [], []
    for name, values in columns.items():
        values = np.asarray(values)
        array, field_meta = _text_array(values) if values.dtype == object else (pa.array(values), None)
        fields.append(pa.field(name, array.type, metadata=field_meta))
        arrays.append(array)
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
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
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise StoreError(f"{path}: not a readable Parquet table ({exc})") from None
    columns = {}
    for field in table.schema:
        name, column = field.name, table.column(field.name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
        elif pa.types.is_binary(column.type) and (field.metadata or {}).get(b"fiqa_encoding") == _ESCAPED[
                b"fiqa_encoding"]:
            columns[name] = np.asarray([v.decode("utf-8", "surrogateescape") for v in column.to_pylist()],
                                       dtype=object)
        else:
            columns[name] = column.to_numpy()
    meta = read_json(sidecar_path(path)) if sidecar_path(path).exists() else {}
    expected = meta.pop(TABLE_DIGEST, None)
    if expected is not None and expected != file_sha256(path):
        raise StoreError(f"{path}: the table and its sidecar {sidecar_path(path).name} do not belong together (an "
                         f"interrupted write, or one of them replaced by hand); write the table again")
    return columns, meta


_CORE = ("sample_id", "score", "status", "reason")


def save_quality(table: QualityTable, path: str | Path) -> Path:
    """Save a :class:`QualityTable` (labels or model scores)."""
    columns = {"sample_id": table.sample_id, "score": table.score, "status": table.status, "reason": table.reason}
    columns.update(table.columns)
    return write_table(path, columns, table.meta)


def load_quality(path: str | Path) -> QualityTable:
    """Load a :class:`QualityTable`; fails naming the file if a required column is missing."""
    columns, meta = read_table(path)
    missing = [c for c in _CORE if c not in columns]
    if missing:
        raise StoreError(f"{path}: not a quality table, missing column(s) {', '.join(missing)}")
    extra = {k: v for k, v in columns.items() if k not in _CORE}
    meta.setdefault("method", Path(path).stem)
    return QualityTable(columns["sample_id"].astype(np.int64), columns["score"].astype(np.float64),
                        columns["status"], columns["reason"], extra, meta)
