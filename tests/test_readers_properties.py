"""Property-based tests of the data-source readers (hypothesis): RecordIO files (``fiqa.io.recordio``) and list
files, whatever their bytes, open as a source or fail with a DataSourceError naming the file; every row of a
source that opens reads as an image or an ImageReadError status. Never another exception, and bounded memory.

The inputs are real files (``write_recordio`` of small JPEGs, one record split around the RecordIO magic) cut,
mutated or replaced by random bytes, and list files of random rows (odd field counts, quotes, tabs, carriage
returns, NULs, byte-order marks, long fields) in several encodings.
"""
from __future__ import annotations

import itertools
import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fiqa.core.errors import DataSourceError
from fiqa.io import recordio
from fiqa.io.image import ImageReadError, read_image
from fiqa.io.recordio import RECORDIO_MAGIC, RecordIOReader, write_recordio
from fiqa.io.sources import open_source

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STATUSES = {"not_an_image", "too_large", "too_small", "unreadable"}

_RNG = np.random.default_rng(0)
_JPEGS = [cv2.imencode(".jpg", cv2.resize(_RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8), (40, 48)))[1].tobytes()
          for _ in range(5)]
_MAGIC = struct.pack("<I", RECORDIO_MAGIC)
PAYLOADS = [*_JPEGS, b"\0" * 8 + _MAGIC + b"tail" + _MAGIC + b"end"]  # the last record is split in three parts
IDENTITIES = [0, 0, 1, 1, 2, 2]


def _reference() -> tuple[bytes, bytes]:
    """The ``.rec`` and ``.idx`` bytes of a real data set: 6 records of 3 identities."""
    with tempfile.TemporaryDirectory() as folder:
        rec = write_recordio(Path(folder) / "train.rec", PAYLOADS, IDENTITIES)
        return rec.read_bytes(), rec.with_suffix(".idx").read_bytes()


REC, IDX = _reference()
RECORD_1 = int(IDX.split(b"\n")[1].split(b"\t")[1])
"""Byte offset of image record 1; its IRHeader flag (label count) is at ``RECORD_1 + 8``."""
FLAG_OF_RECORD_1 = [(RECORD_1 + 9, 0xFF)]  # 65280 labels announced in a record of ~1.4 KB: a mutation example
_MUTATIONS = st.lists(st.tuples(st.integers(0, len(REC) - 1), st.integers(0, 255)), min_size=1, max_size=8)


class _Scratch:
    """A fresh folder per example (a RecordIO reader is cached per path)."""

    def __init__(self, base: Path) -> None:
        self.base, self._numbers = base, itertools.count()
        self.rec, self.idx = REC, IDX

    def folder(self) -> Path:
        path = self.base / f"example{next(self._numbers)}"
        path.mkdir()
        return path

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return "scratch"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> _Scratch:
    return _Scratch(tmp_path_factory.mktemp("readers"))


def _mutated(data: bytes, mutations: list[tuple[int, int]]) -> bytes:
    mutated = bytearray(data)
    for position, value in mutations:
        mutated[position % len(mutated)] = value
    return bytes(mutated)


def _forget(rec_path: Path) -> None:
    """Close the cached reader of a finished example (cleanup only: the folder is never read again)."""
    reader = recordio._readers.pop(os.path.abspath(rec_path), None)
    if reader is not None:
        reader.close()


def _rows_read_or_give_a_status(locations) -> None:
    for location in locations:
        try:
            image = read_image(location)
        except ImageReadError as exc:
            assert exc.status.value in STATUSES
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _opens_or_is_refused(folder: Path, rec: bytes, idx: bytes) -> None:
    rec_path = folder / "train.rec"
    rec_path.write_bytes(rec)
    rec_path.with_suffix(".idx").write_bytes(idx)
    try:
        try:
            source = open_source(rec_path)
        except DataSourceError as exc:
            assert str(folder) in str(exc)  # names the file
            return
        assert source.kind == "recordio"
        _rows_read_or_give_a_status(source.samples.location)
    finally:
        _forget(rec_path)


def test_the_reference_data_set_reads_back(scratch):
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    target = folder()
    (target / "train.rec").write_bytes(rec)
    (target / "train.idx").write_bytes(idx)
    source = open_source(target / "train.rec")
    assert source.samples.identity.tolist() == [str(i) for i in IDENTITIES]
    reader = RecordIOReader(target / "train.rec")
    try:
        assert [recordio.unpack_record(reader.read(key))[1] for key in range(1, 7)] == PAYLOADS
    finally:
        reader.close()
        _forget(target / "train.rec")


@SETTINGS
@given(data=st.binary(max_size=600))
def test_random_bytes_as_a_recordio_file(scratch, data):
    folder, idx = scratch.folder, scratch.idx
    _opens_or_is_refused(folder(), data, idx)


@SETTINGS
@given(data=st.data())
def test_truncated_recordio_files(scratch, data):
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    _opens_or_is_refused(folder(), rec[:data.draw(st.integers(0, len(rec)))], idx)


# record 0 (the header): magic, length, IRHeader (flag, label, id, id2), then its two float32 labels at 32..40;
# (offset, bytes written there) in the reference train.rec
HEADER_FLAG_TOO_BIG = (8, struct.pack("<I", 1000))  # 1000 labels announced in a record holding 2
FIRST_IDENTITY_HUGE = (32, struct.pack("<f", 3e38))  # "images are keys 1..3e38"
IDENTITY_NAN = (RECORD_1 + 12, struct.pack("<f", float("nan")))  # image 1's identity label is NaN


@SETTINGS
@given(mutations=_MUTATIONS)
@example(mutations=FLAG_OF_RECORD_1)
def test_mutated_recordio_files(scratch, mutations):
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    _opens_or_is_refused(folder(), _mutated(rec, mutations), idx)


@pytest.mark.parametrize("edit", [HEADER_FLAG_TOO_BIG, FIRST_IDENTITY_HUGE, IDENTITY_NAN],
                         ids=["flag", "first_identity", "nan_identity"])
def test_header_edits_give_a_data_source_error(scratch, edit):
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    offset, value = edit
    _opens_or_is_refused(folder(), rec[:offset] + value + rec[offset + len(value):], idx)


def test_a_header_announcing_millions_of_images_is_refused_in_bounded_memory(scratch):
    """Record 0 says images are keys 1..2e6 while the index holds 9 records: refused without building the lists."""
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    edited = rec[:32] + struct.pack("<f", 2e6) + rec[36:]
    tracemalloc.start()
    try:
        _opens_or_is_refused(folder(), edited, idx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MB traced for a 7 KB file"


_INDEX_PIECES = st.sampled_from(["0", "1", "7", "\t", "\n", " ", "x", "-1", "99999999999999999999999", "\r\n",
                                 "\x00", "é"])


@SETTINGS
@given(data=st.data())
@example(data=None)
def test_mutated_index_files(scratch, data):
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    if data is None:  # image 1 at an offset beyond any file (and beyond a C long)
        lines = idx.split(b"\n")
        index = b"\n".join([lines[0], b"1\t99999999999999999999999", *lines[2:]])
    else:
        how = data.draw(st.sampled_from(["cut", "mutate", "replace"]))
        if how == "cut":
            index = idx[:data.draw(st.integers(0, len(idx)))]
        elif how == "mutate":
            index = _mutated(idx, data.draw(st.lists(st.tuples(st.integers(0, len(idx) - 1),
                                                               st.sampled_from(b"0123456789\t\n x")), max_size=4)))
        else:
            index = "".join(data.draw(st.lists(_INDEX_PIECES, max_size=40))).encode("utf-8")
    _opens_or_is_refused(folder(), rec, index)


@SETTINGS
@given(mutations=_MUTATIONS)
@example(mutations=FLAG_OF_RECORD_1)
def test_the_reader_reads_a_record_or_raises_a_data_source_error(scratch, mutations):
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    target = folder()
    (target / "train.rec").write_bytes(_mutated(rec, mutations))
    (target / "train.idx").write_bytes(idx)
    reader = RecordIOReader(target / "train.rec")
    try:
        for key in sorted(reader.offsets):
            for read in (reader.read, reader.read_labels):
                try:
                    read(key)
                except DataSourceError as exc:
                    assert str(target) in str(exc)
    finally:
        reader.close()


def test_a_recordio_file_replaced_by_a_bad_one_and_then_a_good_one_reads_again(scratch):
    """The cached reader is dropped when re-opening fails: it is not closed a second time later (which raised
    EBADF, or closed whatever file had been given the same descriptor number)."""
    folder, rec, idx = scratch.folder, scratch.rec, scratch.idx
    target = folder()
    rec_path = target / "train.rec"
    rec_path.write_bytes(rec)
    rec_path.with_suffix(".idx").write_bytes(idx)
    try:
        assert len(open_source(rec_path).samples) == 6
        rec_path.with_suffix(".idx").write_text("not an index\n", encoding="ascii")
        with pytest.raises(DataSourceError, match="expected '<key>"):
            open_source(rec_path)
        rec_path.with_suffix(".idx").write_bytes(idx + b"\n")
        assert len(open_source(rec_path).samples) == 6
    finally:
        _forget(rec_path)


# ------------------------------------------------------------------------------------------------------ list files

_LIST_PIECES = st.sampled_from(["a.jpg", "face.jpg", "sub/face.jpg", "../face.jpg", "/abs/x.png", "path", "identity",
                                "Jane Doe", ",", "\t", '"', '""', "\n", "\r", "\r\n", " ", "\x00", "\ufeff", "é",
                                "😀", "#", "\\", "x" * 140_000])
_ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"])
_EXTENSIONS = st.sampled_from([".csv", ".tsv", ".txt", ".lst"])


def _list_opens_or_is_refused(folder: Path, name: str, data: bytes) -> None:
    cv2.imwrite(str(folder / "face.jpg"), cv2.resize(_RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8), (40, 48)))
    path = folder / name
    path.write_bytes(data)
    try:
        source = open_source(path, kind="list")
    except DataSourceError as exc:
        assert str(path) in str(exc)
        return
    assert len(source.samples) >= 1
    _rows_read_or_give_a_status(source.samples.location)


@SETTINGS
@given(pieces=st.lists(_LIST_PIECES, max_size=40), encoding=_ENCODINGS, extension=_EXTENSIONS)
@example(pieces=["path,identity\n", "a", "\x00", "b.jpg,x\n", "face.jpg,y\n"], encoding="utf-8", extension=".csv")
@example(pieces=["x" * 140_000, "\n"], encoding="utf-8", extension=".txt")
def test_list_files_of_random_rows(scratch, pieces, encoding, extension):
    folder = scratch.folder
    try:
        data = "".join(pieces).encode(encoding)
    except UnicodeEncodeError:
        return
    _list_opens_or_is_refused(folder(), f"list{extension}", data)


@SETTINGS
@given(rows=st.lists(st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=12), min_size=0, max_size=4),
                     max_size=8),
       delimiter=st.sampled_from([",", "\t"]), quoting=st.booleans())
@example(rows=[["a\x00b.jpg", "x"], ["face.jpg", "y"]], delimiter=",", quoting=False)
def test_list_files_with_odd_rows(scratch, rows, delimiter, quoting):
    folder = scratch.folder
    extension = ".csv" if delimiter == "," else ".tsv"
    quote = (lambda cell: '"' + cell.replace('"', '""') + '"') if quoting else (lambda cell: cell)
    text = "".join(delimiter.join(quote(cell) for cell in row) + "\n" for row in rows)
    _list_opens_or_is_refused(folder(), f"rows{extension}", text.encode("utf-8", "surrogatepass"))


def test_a_utf8_byte_order_mark_before_the_header_is_not_a_row(tmp_path):
    """A list saved as "CSV UTF-8" by a spreadsheet starts with a byte-order mark; its header is still a header."""
    (tmp_path / "bom.csv").write_bytes("path,identity\na.jpg,Jane\n".encode("utf-8-sig"))
    source = open_source(tmp_path / "bom.csv", kind="list")
    assert source.samples.location.tolist() == [str(tmp_path / "a.jpg")]
    assert source.samples.identity.tolist() == ["Jane"]


@pytest.mark.parametrize("name, data, message", [
    ("latin1.csv", "path,identity\nfaç.jpg,José\n".encode("latin-1"), "not UTF-8"),
    ("empty.csv", b"", "no rows"),
    ("header_only.csv", b"path,identity\n", "no rows"),
    ("three.csv", b"a.jpg,x,y\n", "line 1"),
    ("ragged.tsv", b"a.jpg\tx\nb.jpg\n", "line 2"),
    ("blank_path.csv", b"a.jpg,x\n ,y\n", "line 2: empty path"),
])
def test_malformed_list_files_are_refused_naming_the_line(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataSourceError, match=message):
        open_source(tmp_path / name, kind="list")
