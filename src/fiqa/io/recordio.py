"""insightface / MXNet RecordIO (``train.rec`` + ``train.idx``), read and written without MXNet.

Record 0's header holds the identity ranges (``label = [first identity record, end]``); image records carry the
identity as their label and a JPEG payload. Readers are cached per file and re-opened when the file changes.
"""
from __future__ import annotations

import os
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fiqa.core.errors import DataSourceError, InvalidParameterError

# A record: uint32 magic, uint32 (cflag << 29 | length), payload, zero padding to 4 bytes. A payload containing the
# magic at a 4-byte-aligned offset is split there into parts (cflag 1 = first, 2 = middle, 3 = last) and the magic
# itself is dropped; readers re-insert it. An image payload starts with the IRHeader (uint32 flag, float32 label,
# uint64 id, uint64 id2); flag > 0 means ``flag`` float32 labels follow and replace ``label``.

RECORDIO_MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", RECORDIO_MAGIC)
_IR_HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1


def pack_record(labels: float | Iterable[float], payload: bytes, record_id: int = 0) -> bytes:
    """An image record's content: IRHeader (+ label array when several labels) then the payload bytes."""
    if isinstance(labels, (int, float, np.integer, np.floating)):
        return _IR_HEADER.pack(0, float(labels), record_id, 0) + payload
    labels = np.asarray(list(labels), dtype="<f4")
    return _IR_HEADER.pack(len(labels), 0.0, record_id, 0) + labels.tobytes() + payload


def unpack_record(content: bytes) -> tuple[np.ndarray, bytes]:
    """``(labels, payload)`` of a record's content; ``labels`` is float32 of shape (max(flag, 1),)."""
    if len(content) < _IR_HEADER.size:
        raise ValueError(f"a record of {len(content)} bytes is shorter than its {_IR_HEADER.size}-byte header")
    flag, label, _, _ = _IR_HEADER.unpack_from(content)
    offset = _IR_HEADER.size
    if flag > 0:
        if len(content) < offset + 4 * flag:
            raise ValueError(f"the record announces {flag} labels but holds {(len(content) - offset) // 4}")
        labels = np.frombuffer(content, dtype="<f4", count=flag, offset=offset).astype(np.float32)
        return labels, content[offset + 4 * flag:]
    return np.array([label], dtype=np.float32), content[offset:]


class RecordIOWriter:
    """Writes ``.rec`` + ``.idx`` in MXNet's ``MXIndexedRecordIO`` format (used by tests to build fixtures).

    Parameters
    ----------
    rec_path : str or path
        The ``.rec`` file; the index goes beside it with the ``.idx`` suffix.
    """

    def __init__(self, rec_path: str | os.PathLike) -> None:
        self.rec_path = Path(rec_path)
        # held open across write() calls and closed by close() / the context manager
        self._rec = open(self.rec_path, "wb")  # noqa: SIM115
        self._idx = open(self.rec_path.with_suffix(".idx"), "w", encoding="ascii")  # noqa: SIM115

    def write(self, key: int, content: bytes) -> None:
        """Append one record under integer ``key``."""
        self._idx.write(f"{int(key)}\t{self._rec.tell()}\n")
        parts, start = [], 0
        for pos in range(0, len(content) - 3, 4):
            if content[pos:pos + 4] == _MAGIC_BYTES:
                parts.append(content[start:pos])
                start = pos + 4
        parts.append(content[start:])
        for number, part in enumerate(parts):
            cflag = 0 if len(parts) == 1 else 1 if number == 0 else 3 if number == len(parts) - 1 else 2
            self._rec.write(_MAGIC_BYTES + struct.pack("<I", (cflag << 29) | len(part)) + part)
            self._rec.write(b"\0" * (-len(part) % 4))

    def close(self) -> None:
        self._rec.close()
        self._idx.close()

    def __enter__(self) -> RecordIOWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def write_recordio(rec_path: str | os.PathLike, payloads: list[bytes], identities: list[int]) -> Path:
    """Write an insightface-layout RecordIO data set: record 0 header, images ``1..N``, identity records.

    Parameters
    ----------
    payloads : list of bytes
        Encoded images (JPEG), grouped by identity (all images of one identity adjacent).
    identities : list of int
        The integer identity label of each payload.
    """
    if len(payloads) != len(identities):
        raise InvalidParameterError("write_recordio", "identities", f"a list of {len(payloads)} labels",
                                    f"{len(identities)} labels")
    n = len(payloads)
    ranges: list[tuple[int, int, int]] = []  # (identity, first key, end key)
    for key, identity in enumerate(identities, start=1):
        if ranges and ranges[-1][0] == identity:
            ranges[-1] = (identity, ranges[-1][1], key + 1)
        elif any(r[0] == identity for r in ranges):
            raise InvalidParameterError("write_recordio", "identities", "grouped (each identity contiguous)",
                                        identities)
        else:
            ranges.append((identity, key, key + 1))
    with RecordIOWriter(rec_path) as writer:
        writer.write(0, pack_record([n + 1, n + 1 + len(ranges)], b""))
        for key, (payload, identity) in enumerate(zip(payloads, identities), start=1):
            writer.write(key, pack_record(float(identity), payload, record_id=key))
        for offset, (_, first, end) in enumerate(ranges):
            writer.write(n + 1 + offset, pack_record([first, end], b""))
    return Path(rec_path)


class RecordIOReader:
    """Random access to the records of an indexed ``.rec`` file; thread-safe (positional reads).

    Parameters
    ----------
    rec_path : str or path
        The ``.rec`` file; ``<name>.idx`` must lie beside it.
    """

    def __init__(self, rec_path: str | os.PathLike) -> None:
        self.rec_path = Path(os.path.abspath(os.fspath(rec_path)))
        idx_path = self.rec_path.with_suffix(".idx")
        if not self.rec_path.is_file():
            raise DataSourceError(f"{self.rec_path}: RecordIO file does not exist")
        if not idx_path.is_file():
            raise DataSourceError(f"{idx_path}: RecordIO index is missing (expected beside {self.rec_path.name})")
        self.offsets: dict[int, int] = {}
        size = self.rec_path.stat().st_size
        with open(idx_path, encoding="ascii", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit():
                    raise DataSourceError(f"{idx_path}, line {number}: expected '<key>\\t<offset>', got {line!r}")
                if int(fields[1]) >= size:
                    raise DataSourceError(f"{idx_path}, line {number}: offset {fields[1]} is past the end of "
                                          f"{self.rec_path.name} ({size} bytes)")
                self.offsets[int(fields[0])] = int(fields[1])
        self.signature = _signature(self.rec_path)
        self.size = self.rec_path.stat().st_size
        self._fd = os.open(self.rec_path, os.O_RDONLY | getattr(os, "O_BINARY", 0))

    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read(self, key: int) -> bytes:
        """The content of record ``key`` (parts re-joined); ``KeyError`` for an unknown key,
        ``DataSourceError`` for a corrupt record."""
        offset = self.offsets[key]
        parts = []
        while True:
            head = os.pread(self._fd, 8, offset)
            if len(head) < 8:
                raise DataSourceError(f"{self.rec_path}: record {key} is truncated (file ends at byte {self.size})")
            magic, lrecord = struct.unpack("<II", head)
            if magic != RECORDIO_MAGIC:
                raise DataSourceError(f"{self.rec_path}: no RecordIO magic number at byte {offset} (record {key})")
            cflag, length = lrecord >> 29, lrecord & _LENGTH_MASK
            data = os.pread(self._fd, length, offset + 8)
            if len(data) < length:
                raise DataSourceError(f"{self.rec_path}: record {key} is truncated (file ends at byte {self.size})")
            parts.append(data)
            offset += 8 + length + (-length % 4)
            if cflag in (0, 3):
                return _MAGIC_BYTES.join(parts)

    def read_labels(self, key: int) -> np.ndarray:
        """The labels of image record ``key`` (float32, shape (max(flag, 1),)), reading only its header."""
        offset = self.offsets[key]
        head = os.pread(self._fd, 8 + _IR_HEADER.size, offset)
        if len(head) < 8 + _IR_HEADER.size or struct.unpack_from("<I", head)[0] != RECORDIO_MAGIC:
            raise DataSourceError(f"{self.rec_path}: record {key} at byte {offset} has no valid RecordIO header")
        cflag, length = struct.unpack_from("<I", head, 4)[0] >> 29, struct.unpack_from("<I", head, 4)[0] & _LENGTH_MASK
        flag = _IR_HEADER.unpack_from(head, 8)[0]
        try:
            if cflag != 0 or length < _IR_HEADER.size + 4 * flag:  # rare: split record, or labels not in first part
                return unpack_record(self.read(key))[0]
            content = head[8:] + os.pread(self._fd, 4 * flag, offset + 8 + _IR_HEADER.size)
            return unpack_record(content)[0]
        except ValueError as exc:
            raise DataSourceError(f"{self.rec_path}: record {key}: {exc}") from None

    def close(self) -> None:
        os.close(self._fd)


_readers: dict[str, RecordIOReader] = {}
_readers_lock = threading.Lock()


def cached_reader(rec_path: str) -> RecordIOReader:
    """A cached reader, re-opened when the ``.rec`` or ``.idx`` file changed since it was opened."""
    key = os.path.abspath(rec_path)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is None or reader.signature != _signature(reader.rec_path):
            if reader is not None:
                del _readers[key]  # before re-opening, which may fail: never closed twice
                reader.close()
            reader = _readers[key] = RecordIOReader(key)
        return reader


def _signature(rec_path: Path) -> tuple:
    def stat(path: Path) -> tuple[int, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    return stat(rec_path), stat(rec_path.with_suffix(".idx"))
