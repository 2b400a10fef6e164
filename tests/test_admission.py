"""The image-admission gate (issue 25, items 1, 2 and 7): regular files only, a byte limit before reading, the format
from the content against an allow-list, the size from the decoder's own header parse, decoding in a bounded worker
killed after a timeout. Every fixture is made here, small (a few KB on disk)."""
from __future__ import annotations

import os
import resource
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiqa.core.types import Status
from fiqa.io import decoder
from fiqa.io.admit import ALLOWED_FORMATS, identify_format
from fiqa.io.image import ImageReadError, decode_image, header_size, read_image

FACE = cv2.resize(np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8), (48, 40),
                  interpolation=cv2.INTER_CUBIC)
GB = 1 << 30


def tiff(width: int, height: int, *, dup: tuple[int, int] | None = None, deflate: bool = False,
         pixels: bytes | None = None) -> bytes:
    """A little-endian grayscale TIFF with one strip (``pixels``, default zeros, at most 64 KiB of them); ``dup=(w,
    h)`` repeats the width and length tags after the first pair (libtiff keeps the first of each)."""
    strip = pixels if pixels is not None else bytes(min(width * height, 1 << 16))
    if deflate:
        strip = zlib.compress(strip, 9)
    entries = [(256, 4, 1, width), (257, 4, 1, height)]
    if dup is not None:
        entries += [(256, 4, 1, dup[0]), (257, 4, 1, dup[1])]
    ifd_size = 2 + 12 * (len(entries) + 7) + 4
    strip_at = 8 + ifd_size
    entries += [(258, 3, 1, 8), (259, 3, 1, 8 if deflate else 1), (262, 3, 1, 1), (273, 4, 1, strip_at),
                (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, len(strip))]
    body = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + b"\0" * 4
    return b"II*\x00" + struct.pack("<I", 8) + body + strip


def os2_bmp(image: np.ndarray) -> bytes:
    """A 24-bit OS/2 BMP (BITMAPCOREHEADER, 16-bit sides)."""
    height, width = image.shape[:2]
    row = (width * 3 + 3) // 4 * 4
    rows = b"".join(image[y].tobytes().ljust(row, b"\0") for y in range(height - 1, -1, -1))
    offset = 14 + 12
    return (b"BM" + struct.pack("<IHHI", offset + len(rows), 0, 0, offset) + struct.pack("<IHHHH", 12, width, height,
                                                                                           1, 24) + rows)


def expect(location, status: Status, text: str, **limits) -> None:
    with pytest.raises(ImageReadError) as info:
        if isinstance(location, bytes):
            decode_image(location, "<bytes>", **limits)
        else:
            read_image(location, **limits)
    assert info.value.status is status, info.value.reason
    assert text in info.value.reason


# --- item 1: bombs that passed the header check ---------------------------------------------------------------


def test_tiff_with_duplicated_size_tags_is_read_as_libtiff_reads_it():
    data = tiff(30000, 30000, dup=(100, 100))
    assert header_size(data) == (30000, 30000)  # the first entry, as libtiff (v0.1 read the last: 100x100)
    expect(data, Status.TOO_LARGE, "30000x30000")


def test_the_decoders_own_header_parse_refuses_what_a_header_reader_misses(monkeypatch):
    """Even if fiqa's header reader disagreed with the decoder, the decoding worker's OpenCV refuses from its own
    parse before allocating."""
    monkeypatch.setattr("fiqa.io.image.header_size", lambda data, location="": None)
    started = time.monotonic()
    expect(tiff(30000, 30000, dup=(100, 100)), Status.TOO_LARGE, "max_pixels")
    assert time.monotonic() - started < 20


@pytest.mark.parametrize(("ext", "name", "what"), [(".avif", "face.jpg", "AVIF"), (".jp2", "face.jp2", "JPEG 2000"),
                                                   (".hdr", "face.png", "Radiance HDR")])
def test_formats_outside_the_allow_list_are_refused_whatever_the_name(tmp_path, ext, name, what):
    image = FACE.astype(np.float32) / 255 if ext == ".hdr" else FACE
    path = tmp_path / name
    path.write_bytes(cv2.imencode(ext, image)[1].tobytes())
    expect(path, Status.NOT_AN_IMAGE, f"{what} images are not accepted")


def test_lying_extensions_do_not_matter(tmp_path):
    path = tmp_path / "face.tif"
    path.write_bytes(cv2.imencode(".png", FACE)[1].tobytes())
    assert read_image(path, min_side=1).shape == FACE.shape


# --- item 2: inputs read without limit --------------------------------------------------------------------------


def test_symlink_to_dev_zero_is_refused_before_reading(tmp_path):
    link = tmp_path / "zero.jpg"
    link.symlink_to("/dev/zero")
    expect(link, Status.UNREADABLE, "not a regular file (a character device)")


def test_sparse_file_over_the_byte_limit_is_refused_from_its_size(tmp_path):
    path = tmp_path / "sparse.jpg"
    with path.open("wb") as handle:
        handle.write(cv2.imencode(".jpg", FACE)[1].tobytes())
        handle.truncate(3 * GB)  # 3 GiB, a few KB on disk
    expect(path, Status.TOO_LARGE, f"{3 * GB} bytes exceeds max_bytes")


def test_fifo_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    started = time.monotonic()
    expect(fifo, Status.UNREADABLE, "a FIFO")
    assert time.monotonic() - started < 5


# --- item 7: OS/2 BMP -------------------------------------------------------------------------------------------


def test_os2_bmp_is_accepted_with_its_real_size():
    data = os2_bmp(FACE)
    assert header_size(data) == FACE.shape[:2]  # v0.1: 16384250x1572865 (read as a Windows header)
    assert np.array_equal(decode_image(data, "os2.bmp", min_side=1), FACE)


# --- the worker: timeout and memory -----------------------------------------------------------------------------


def test_a_decode_past_its_timeout_is_stopped_and_the_next_one_works():
    data = cv2.imencode(".png", FACE)[1].tobytes()
    expect(data, Status.NOT_AN_IMAGE, "took longer than", timeout=1e-6, min_side=1)
    assert decode_image(data, "<bytes>", min_side=1).shape == FACE.shape


@pytest.mark.skipif(not decoder.isolated(), reason="decoding runs in worker processes only on POSIX")
def test_decoding_workers_hold_an_address_space_limit():
    decode_image(cv2.imencode(".png", FACE)[1].tobytes(), "<bytes>", min_side=1, max_pixels=123_456)
    workers = decoder._POOL.idle[123_456]
    pid = workers[0].process.pid
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    soft = int(line.split()[3])
    assert soft < 1 * GB, line  # imports + the budget of 123456 pixels (256 MiB + 12 B/pixel)


def test_bomb_cases_stay_under_one_gigabyte(tmp_path):
    """The bomb fixtures through ``fiqa score`` in a child process: peak RSS of the largest process (the command or
    a decoding worker, ``getrusage(RUSAGE_CHILDREN)``) <= 1 GB; each image gets its status."""
    folder = tmp_path / "bombs"
    folder.mkdir()
    (folder / "dup_tags.tif").write_bytes(tiff(30000, 30000, dup=(100, 100)))
    (folder / "avif.jpg").write_bytes(cv2.imencode(".avif", FACE)[1].tobytes())
    (folder / "hdr.png").write_bytes(cv2.imencode(".hdr", FACE.astype(np.float32))[1].tobytes())
    (folder / "big.jp2").write_bytes(cv2.imencode(".jp2", FACE)[1].tobytes())
    (folder / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.jpg")
    with (folder / "sparse.jpg").open("wb") as handle:
        handle.truncate(3 * GB)
    script = ("import resource, subprocess, sys; "
              "r = subprocess.run([sys.executable, '-c', 'import sys; from fiqa.cli import main; sys.exit(main())', "
              "'score', sys.argv[1]], capture_output=True, text=True, timeout=600); "
              "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(r.stdout)")
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=660)
    first, *lines = done.stdout.splitlines()
    code, peak_kb = map(int, first.split())
    statuses = {Path(line.split("\t")[0]).name: line.split("\t")[2] for line in lines if "\t" in line}
    assert statuses == {"dup_tags.tif": "too_large", "avif.jpg": "not_an_image", "hdr.png": "not_an_image",
                        "big.jp2": "not_an_image", "zero.jpg": "unreadable", "pipe.jpg": "unreadable",
                        "sparse.jpg": "too_large"}, done.stdout + done.stderr
    assert code == 1  # nothing could be scored
    assert peak_kb * 1024 <= GB, f"peak RSS {peak_kb / 1024:.0f} MB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


# --- the property: whatever the header says, never more pixels than the budget -----------------------------------

_BUDGET = 4000
_SIZES = st.tuples(st.integers(1, 120), st.integers(1, 120))


def _encoded(fmt: str, size: tuple[int, int]) -> bytes:
    image = cv2.resize(FACE, size, interpolation=cv2.INTER_NEAREST)
    if fmt == "tiff_dup":
        return b""
    if fmt == "os2":
        return os2_bmp(image)
    ext = {"jpeg": ".jpg", "png": ".png", "bmp": ".bmp", "webp": ".webp", "tiff": ".tiff", "pnm": ".ppm",
           "gif": ".gif"}[fmt]
    return cv2.imencode(ext, image)[1].tobytes()


def _poke_size(data: bytes, fmt: str, width: int, height: int) -> bytes:
    """Rewrite the declared size where each format keeps it (the decoder may or may not believe it)."""
    out = bytearray(data)
    if fmt == "png":
        out[16:24] = struct.pack(">II", width, height)
    elif fmt == "bmp":
        out[18:26] = struct.pack("<ii", width, height)
    elif fmt == "jpeg":
        at = out.find(b"\xff\xc0")
        if at > 0:
            out[at + 5:at + 9] = struct.pack(">HH", height & 0xFFFF, width & 0xFFFF)
    elif fmt == "gif":
        out[6:10] = struct.pack("<HH", width & 0xFFFF, height & 0xFFFF)
    return bytes(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from([*ALLOWED_FORMATS, "os2", "tiff_dup"]), size=_SIZES,
       declared=st.tuples(st.integers(1, 70000), st.integers(1, 70000)), poke=st.booleans(),
       name=st.sampled_from(["x.jpg", "x.png", "x.tif", "x.bmp", "x.webp", "x"]))
def test_random_valid_images_with_header_tricks_never_exceed_the_pixel_budget(tmp_path_factory, fmt, size, declared,
                                                                               poke, name):
    if fmt == "tiff_dup":  # the declared size first, the real one repeated after it (and the reverse)
        first, second = (declared, size) if poke else (size, declared)
        data = tiff(*first, dup=second)
    else:
        data = _encoded(fmt, size)
        if poke:
            data = _poke_size(data, fmt, *declared)
    assert identify_format(data) in ALLOWED_FORMATS
    path = tmp_path_factory.mktemp("prop") / name  # the extension lies as often as not
    path.write_bytes(data)
    try:
        image = read_image(path, max_pixels=_BUDGET, min_side=1)
    except ImageReadError as exc:
        assert exc.status in {Status.TOO_LARGE, Status.NOT_AN_IMAGE}, exc.reason
        return
    assert image.shape[0] * image.shape[1] <= _BUDGET
