"""Every data source on generated fixtures produces the expected SampleTable; read_image reads every location."""
from __future__ import annotations

import os
import struct

import cv2
import numpy as np
import pytest

from fiqa.core.errors import DataSourceError, InvalidParameterError
from fiqa.core.types import Status
from fiqa.io import ImageReadError, open_source, read_image
from fiqa.io.recordio import (
    RECORDIO_MAGIC,
    RecordIOReader,
    RecordIOWriter,
    pack_record,
    unpack_record,
    write_recordio,
)


def png(value: int, size: int = 32) -> bytes:
    return cv2.imencode(".png", np.full((size, size, 3), value, np.uint8))[1].tobytes()


def jpeg(value: int, size: int = 32) -> bytes:
    return cv2.imencode(".jpg", np.full((size, size, 3), value, np.uint8))[1].tobytes()


def make_folder(root, layout: dict[str, list[str]]) -> None:
    for identity, names in layout.items():
        (root / identity).mkdir(parents=True)
        for i, name in enumerate(names):
            (root / identity / name).write_bytes(png(10 * i))


def test_folder_source_sorted_with_identities(tmp_path):
    make_folder(tmp_path, {"bob": ["2.png", "10.png"], "alice": ["b.jpg", "a.PNG"], "Émile": ["x.png"]})
    (tmp_path / "bob" / "notes.txt").write_text("not an image")
    (tmp_path / "stray.png").write_bytes(png(1))
    (tmp_path / "empty_person").mkdir()
    source = open_source(tmp_path)
    assert source.kind == "folder" and source.samples.source == "folder"
    names = [os.path.relpath(p, tmp_path) for p in source.samples.location]
    assert names == ["alice/a.PNG", "alice/b.jpg", "bob/10.png", "bob/2.png", "Émile/x.png"]
    assert source.samples.identity.tolist() == ["alice", "alice", "bob", "bob", "Émile"]
    assert source.samples.sample_id.tolist() == [0, 1, 2, 3, 4]
    assert all(os.path.isabs(p) for p in source.samples.location)
    assert source.describe()["n_identities"] == 3
    assert read_image(source.samples.location[4]).shape == (32, 32, 3)


def test_folder_without_images_is_a_clear_error(tmp_path):
    (tmp_path / "person").mkdir()
    (tmp_path / "person" / "readme.txt").write_text("x")
    with pytest.raises(DataSourceError, match="no images found in identity sub-folders"):
        open_source(tmp_path, kind="folder")
    with pytest.raises(DataSourceError, match="folder holds no images"):
        open_source(tmp_path / "person", kind="images")


def test_list_source_csv_with_header_and_relative_paths(tmp_path):
    make_folder(tmp_path / "imgs", {"p1": ["a.png"], "p2": ["b.png"]})
    lists = tmp_path / "lists"
    lists.mkdir()
    absolute = tmp_path / "imgs" / "p2" / "b.png"
    (lists / "train.csv").write_text(f"path,identity\n../imgs/p1/a.png,p1\n\n{absolute},p2\n", encoding="utf-8")
    source = open_source(lists / "train.csv")
    assert source.kind == "list"
    assert source.samples.location.tolist() == [str(tmp_path / "imgs" / "p1" / "a.png"), str(absolute)]
    assert source.samples.identity.tolist() == ["p1", "p2"]
    assert read_image(source.samples.location[0]).shape == (32, 32, 3)


def test_list_source_tsv_without_identity(tmp_path):
    (tmp_path / "score.tsv").write_text("a.png\nsub dir/b.png\n", encoding="utf-8")
    source = open_source(tmp_path / "score.tsv")
    assert source.samples.location.tolist() == [str(tmp_path / "a.png"), str(tmp_path / "sub dir" / "b.png")]
    assert source.samples.identity.tolist() == ["", ""]


@pytest.mark.parametrize("text, message", [
    ("a.png,p1\nb.png\n", r"line 2: expected 2 field\(s\)"),
    ("a.png,p1,extra\n", r"line 1: expected 2 field"),
    ("path,identity\n", "has no rows"),
    (",p1\n", "line 1: empty path"),
])
def test_malformed_list_files(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataSourceError, match=message):
        open_source(tmp_path / "bad.csv")


def test_list_file_with_unknown_extension(tmp_path):
    (tmp_path / "list.dat").write_text("a.png\n")
    with pytest.raises(DataSourceError, match="unknown list file extension '.dat'"):
        open_source(tmp_path / "list.dat")


def test_recordio_round_trip(tmp_path):
    payloads = [jpeg(v) for v in (0, 40, 80, 120, 160)]
    write_recordio(tmp_path / "train.rec", payloads, [5, 5, 9, 9, 9])
    source = open_source(tmp_path)  # the folder holding train.rec
    assert source.kind == "recordio"
    assert source.samples.identity.tolist() == ["5", "5", "9", "9", "9"]
    assert source.samples.location.tolist() == [f"{tmp_path / 'train.rec'}#{k}" for k in range(1, 6)]
    assert source.details["header_images"] == [1, 6] and source.details["header_identities"] == [6, 8]
    for location, value in zip(source.samples.location, (0, 40, 80, 120, 160)):
        assert abs(float(read_image(location).mean()) - value) < 2
    # The identity records follow the insightface layout: key 6 + j holds identity j's [first, end) image keys.
    reader = RecordIOReader(tmp_path / "train.rec")
    assert unpack_record(reader.read(6))[0].tolist() == [1, 3]
    assert unpack_record(reader.read(7))[0].tolist() == [3, 6]


def test_recordio_binary_layout_matches_mxnet(tmp_path):
    """Hand-check the bytes: magic, length word, IRHeader ('IfQQ'), payload, padding to 4 bytes."""
    with RecordIOWriter(tmp_path / "x.rec") as writer:
        writer.write(0, pack_record(3.0, b"abcde", record_id=11))
    data = (tmp_path / "x.rec").read_bytes()
    assert struct.unpack("<II", data[:8]) == (0xCED7230A, 24 + 5)
    assert struct.unpack("<IfQQ", data[8:32]) == (0, 3.0, 11, 0)
    assert data[32:37] == b"abcde" and data[37:] == b"\0\0\0" and len(data) == 40
    assert (tmp_path / "x.idx").read_text() == "0\t0\n"


def test_recordio_payload_containing_the_magic_is_split_and_rejoined(tmp_path):
    magic = struct.pack("<I", RECORDIO_MAGIC)
    payload = b"AAAA" + magic + b"BBBB" + magic + b"CC"  # magic at 4-byte-aligned offsets of the content
    content = pack_record(1.0, payload)
    with RecordIOWriter(tmp_path / "s.rec") as writer:
        writer.write(0, content)
        writer.write(1, pack_record(2.0, b"tail"))
    data = (tmp_path / "s.rec").read_bytes()
    assert data.count(magic) == 4  # three parts of record 0 (cflag 1, 2, 3) and record 1
    assert [struct.unpack_from("<I", data, 4)[0] >> 29] == [1]
    reader = RecordIOReader(tmp_path / "s.rec")
    assert reader.read(0) == content
    assert unpack_record(reader.read(1)) [1] == b"tail"
    assert reader.read_labels(0).tolist() == [1.0]


def test_recordio_without_header_ranges_lists_every_record(tmp_path):
    with RecordIOWriter(tmp_path / "plain.rec") as writer:
        for key, value in enumerate((10, 20, 30)):
            writer.write(key, pack_record(float(key % 2), jpeg(value)))
    source = open_source(tmp_path / "plain.rec")
    assert source.samples.identity.tolist() == ["0", "1", "0"]
    assert source.samples.location.tolist()[0].endswith("plain.rec#0")


def test_recordio_errors(tmp_path):
    write_recordio(tmp_path / "train.rec", [jpeg(1), jpeg(2)], [0, 1])
    with pytest.raises(ImageReadError, match="record 99 is not in the index") as info:
        read_image(f"{tmp_path / 'train.rec'}#99")
    assert info.value.status is Status.UNREADABLE
    (tmp_path / "train.idx").unlink()
    with pytest.raises(DataSourceError, match="train.idx: RecordIO index is missing"):
        open_source(tmp_path / "train.rec", kind="recordio")
    (tmp_path / "bad.rec").write_bytes(b"\0" * 64)
    (tmp_path / "bad.idx").write_text("0\t0\n")
    with pytest.raises(DataSourceError, match=r"bad.rec: no RecordIO magic number at byte 0 \(record 0\)"):
        open_source(tmp_path / "bad.rec")


def test_recordio_with_non_contiguous_identities_is_refused(tmp_path):
    with pytest.raises(InvalidParameterError, match="grouped"):
        write_recordio(tmp_path / "train.rec", [jpeg(1)] * 3, [0, 1, 0])


def test_images_source_file_folder_and_glob(tmp_path):
    make_folder(tmp_path, {"a": ["1.png", "2.png"], "b": ["3.png"]})
    (tmp_path / "a" / "skip.txt").write_text("x")
    one = open_source(tmp_path / "a" / "1.png")
    assert one.kind == "images" and one.samples.location.tolist() == [str(tmp_path / "a" / "1.png")]
    assert one.samples.identity.tolist() == [""]
    folder = open_source(tmp_path, kind="images")  # recursive, sorted, no identities
    assert [os.path.relpath(p, tmp_path) for p in folder.samples.location] == ["a/1.png", "a/2.png", "b/3.png"]
    globbed = open_source(str(tmp_path / "*" / "[12].png"))
    assert globbed.kind == "images" and len(globbed.samples) == 2
    with pytest.raises(DataSourceError, match="glob pattern matches no image files"):
        open_source(str(tmp_path / "*.gif"))


def test_flat_folder_is_detected_as_images(tmp_path):
    (tmp_path / "x.png").write_bytes(png(5))
    assert open_source(tmp_path).kind == "images"


def test_open_source_errors(tmp_path):
    with pytest.raises(DataSourceError, match="no such file or folder"):
        open_source(tmp_path / "missing")
    with pytest.raises(InvalidParameterError, match="'kind' parameter of open_source must be one of"):
        open_source(tmp_path, kind="lmdb")


@pytest.mark.parametrize("kind", ["folder", "images"])
def test_symlink_loops_keep_their_row_and_are_recorded_unreadable(lfw_dir, tmp_path, kind):
    # hostile cases E24/E25/S05: a link loop gave a traceback (folder) or vanished (images)
    from fiqa.embed.extract import embed_source

    photos = sorted(lfw_dir.glob("A*/*_0001.jpg"))[:2]
    for person, photo in zip(("A", "B"), photos):
        (tmp_path / "data" / person).mkdir(parents=True)
        (tmp_path / "data" / person / "good.jpg").write_bytes(photo.read_bytes())
    os.symlink("loop2.jpg", tmp_path / "data" / "A" / "loop1.jpg")
    os.symlink("loop1.jpg", tmp_path / "data" / "A" / "loop2.jpg")
    source = open_source(tmp_path / "data", kind=kind)
    names = sorted(os.path.basename(p) for p in source.samples.location)
    assert names == ["good.jpg", "good.jpg", "loop1.jpg", "loop2.jpg"]
    store = embed_source(source, tmp_path / f"store-{kind}", progress=False)
    status = dict(zip((os.path.basename(p) for p in store.samples.location), store.status))
    assert status["loop1.jpg"] == status["loop2.jpg"] == "unreadable"
    assert int(store.ok.sum()) == 2


def test_a_folder_that_cannot_be_listed_is_a_clear_error(tmp_path, monkeypatch):
    # hostile cases E31-E34/S10/S11 (as root permissions cannot be dropped here, the listing fails by hand)
    from fiqa.io import sources

    (tmp_path / "data" / "A").mkdir(parents=True)
    (tmp_path / "data" / "A" / "x.jpg").write_bytes(b"jpeg")
    real_scandir = os.scandir

    def refusing(path):
        if os.fspath(path).endswith(os.sep + "A"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(sources.os, "scandir", refusing)
    for kind in ("folder", "images"):
        with pytest.raises(DataSourceError, match="A: cannot list this folder \\(Permission denied\\)"):
            open_source(tmp_path / "data", kind=kind)
