"""Robust image decoding: every failure becomes an :class:`ImageReadError` with a :class:`~fiqa.core.types.Status`.

All images come back as ``(H, W, 3) uint8`` BGR arrays, whatever they were on disk:

- grayscale is replicated to three channels, an alpha channel is dropped, 16-bit samples are scaled to 8 bits,
  CMYK JPEGs are converted to BGR (all by OpenCV's ``IMREAD_COLOR``);
- the EXIF orientation of a JPEG is applied (OpenCV does so unless ``IMREAD_IGNORE_ORIENTATION`` is given);
- files are read as bytes and decoded in memory, so non-ASCII paths work on every platform;
- every image passes the admission gate (:mod:`fiqa.io.admit`): regular files only, read with a byte limit, the
  format identified from the content against an allow-list (JPEG, PNG, BMP, WebP, TIFF, PNM, GIF), the pixel count
  read from the header *before* decoding, and decoding in a worker process whose memory and time are bounded and
  whose OpenCV refuses, from its own header parse, more than ``max_pixels`` (:mod:`fiqa.io.decoder`).
"""
from __future__ import annotations

import os
import struct

import numpy as np

from fiqa.core.errors import DataSourceError, FIQAError
from fiqa.core.params import Interval, validate
from fiqa.core.types import Status
from fiqa.io import recordio
from fiqa.io.admit import DEFAULT_MAX_BYTES, AdmissionError, identify_format, is_inside, read_file
from fiqa.io.decoder import DEFAULT_DECODE_TIMEOUT, decode_bytes

#: Default decompression-bomb guard: images with more pixels are refused (TOO_LARGE).
DEFAULT_MAX_PIXELS = 40_000_000
#: Default minimum of ``min(height, width)``: smaller images cannot hold a recognisable face (TOO_SMALL).
DEFAULT_MIN_SIDE = 16

RECORD_SEPARATOR = "#"


class ImageReadError(FIQAError):
    """One image could not be read or used.

    Attributes
    ----------
    location : str
        The location given to :func:`read_image`.
    status : Status
        Why (``UNREADABLE``, ``NOT_AN_IMAGE``, ``TOO_LARGE``, ``TOO_SMALL``).
    reason : str
        A short human-readable explanation, recorded in sample tables.
    """

    def __init__(self, location: str, status: Status, reason: str) -> None:
        super().__init__(f"{location}: {reason}")
        self.location, self.status, self.reason = str(location), Status(status), reason


def check_limits(max_pixels: int, min_side: int, owner: str = "read_image") -> None:
    """Validate the size limits shared by :func:`read_image` and the extraction."""
    positive = [Interval(int, 1, None, closed="left")]
    validate(owner, {"max_pixels": max_pixels, "min_side": min_side}, {"max_pixels": positive, "min_side": positive})


def read_image(location: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               min_side: int = DEFAULT_MIN_SIDE, within: str | None = None) -> np.ndarray:
    """Read and decode the image at ``location``.

    Parameters
    ----------
    location : str or path
        A file path, or ``"<path/to/train.rec>#<record key>"`` for a RecordIO record (as sources produce).
    max_pixels : int, default 40_000_000
        Decompression-bomb guard: larger images raise ``TOO_LARGE`` (checked from the header before decoding).
    min_side : int, default 16
        Images whose shorter side is below this raise ``TOO_SMALL``.
    within : str, optional
        A resolved folder the file read must lie inside, checked on the opened file (a list source's
        :attr:`~fiqa.core.types.SampleTable.confined_to`; :func:`fiqa.io.admit.read_file`): ``UNREADABLE`` when
        it resolves elsewhere at read time.

    Returns
    -------
    ndarray of shape (H, W, 3), uint8
        The image in BGR channel order, EXIF orientation applied.

    Raises
    ------
    ImageReadError
        With ``.status`` and ``.reason``; the message names the location.
    """
    check_limits(max_pixels, min_side)
    location = os.fspath(location)
    return decode_image(read_bytes(location, within=within), location, max_pixels=max_pixels, min_side=min_side)


def read_bytes(location: str, max_bytes: int = DEFAULT_MAX_BYTES, *, within: str | None = None) -> bytes:
    """The encoded bytes at ``location`` (a file, or a RecordIO record); ``ImageReadError`` when unreadable, not a
    regular file, longer than ``max_bytes`` (checked before reading, :func:`fiqa.io.admit.read_file`), or, with
    ``within``, when the opened file lies outside that resolved folder."""
    rec_path, key = split_record_location(location)
    if rec_path is not None:
        if within is not None and not is_inside(os.path.realpath(rec_path), within):
            raise ImageReadError(location, Status.UNREADABLE, f"resolves to {os.path.realpath(rec_path)!r} when "
                                                              f"read, outside the list file's folder {within!r}")
        payload = read_record_payload(rec_path, key, location)
        if len(payload) > max_bytes:
            raise ImageReadError(location, Status.TOO_LARGE, f"{len(payload)} bytes exceeds max_bytes={max_bytes}")
        return payload
    try:  # the gate: a regular file (no FIFO, device, /dev/zero behind a symlink), at most max_bytes of it
        return read_file(location, max_bytes, within=within)
    except AdmissionError as exc:
        raise ImageReadError(location, exc.status, exc.reason) from None


def split_record_location(location: str) -> tuple[str | None, int]:
    """``("<path>.rec", key)`` for a RecordIO location, ``(None, -1)`` for a plain file path."""
    head, sep, tail = location.rpartition(RECORD_SEPARATOR)
    if sep and head.endswith(".rec") and tail.isdigit() and not os.path.isfile(location):
        return head, int(tail)
    return None, -1


def decode_image(data: bytes, location: str, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 min_side: int = DEFAULT_MIN_SIDE, timeout: float = DEFAULT_DECODE_TIMEOUT) -> np.ndarray:
    """Decode encoded image bytes to ``(H, W, 3) uint8`` BGR; ``location`` only names the image in errors.

    The bytes pass the admission gate: the format from the content against the allow-list, the size from the
    header, then decoding in a bounded worker that is killed after ``timeout`` seconds (:mod:`fiqa.io.decoder`).
    """
    try:
        identify_format(data)
    except AdmissionError as exc:
        raise ImageReadError(location, exc.status, exc.reason) from None
    size = header_size(data, location)
    if size is not None:
        _check_size(size, location, max_pixels, min_side)
    try:
        image = decode_bytes(data, max_pixels, timeout)
    except AdmissionError as exc:
        raise ImageReadError(location, exc.status, exc.reason) from None
    if image is None:
        what = "corrupt or truncated image data" if size is not None else "not a decodable image"
        raise ImageReadError(location, Status.NOT_AN_IMAGE, what)
    _check_size(image.shape[:2], location, max_pixels, min_side)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:  # IMREAD_COLOR guarantees this
        raise ImageReadError(location, Status.NOT_AN_IMAGE, f"decoded to unsupported array {image.dtype} "
                                                            f"{image.shape}")
    return image


def _check_size(size: tuple[int, int], location: str, max_pixels: int, min_side: int) -> None:
    height, width = int(size[0]), int(size[1])
    if height * width > max_pixels:
        raise ImageReadError(location, Status.TOO_LARGE,
                             f"{width}x{height} = {height * width} pixels exceeds max_pixels={max_pixels}")
    if min(height, width) < min_side:
        raise ImageReadError(location, Status.TOO_SMALL,
                             f"{width}x{height} is smaller than min_side={min_side} pixels")


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes, location: str = "<bytes>") -> tuple[int, int] | None:
    """``(height, width)`` read from the header of a JPEG, PNG, GIF, BMP, WebP, TIFF or PNM; None for others.

    Raises ``ImageReadError(NOT_AN_IMAGE)`` when a recognised header is malformed, or when a JPEG lacks its
    end-of-image marker (a truncated file, which some libjpeg builds would decode with a grey bottom).
    """
    try:
        if data[:2] == b"\xff\xd8":
            return _jpeg_size(data, location)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            if len(data) >= 16 and data[12:16] != b"IHDR":
                raise ImageReadError(location, Status.NOT_AN_IMAGE, "corrupt PNG (IHDR is not the first chunk)")
            width, height = struct.unpack(">II", data[16:24])
            return height, width
        if data[:6] in (b"GIF87a", b"GIF89a"):
            width, height = struct.unpack("<HH", data[6:10])
            return height, width
        if data[:2] == b"BM" and len(data) >= 26:
            if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: unsigned 16-bit sides
                width, height = struct.unpack("<HH", data[18:22])
                return height, width
            width, height = struct.unpack("<ii", data[18:26])
            return abs(height), abs(width)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_size(data)
        if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_size(data, location)
        if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2 and data[2:3].isspace():
            return _pnm_size(data, location)
    except (struct.error, ValueError):
        raise ImageReadError(location, Status.NOT_AN_IMAGE, "truncated or corrupt image header") from None
    return None


def _jpeg_size(data: bytes, location: str) -> tuple[int, int]:
    pos, size, n = 2, None, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise ImageReadError(location, Status.NOT_AN_IMAGE, f"corrupt JPEG header (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5:pos + 9])
            size = (height, width)
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            if size is None:
                raise ImageReadError(location, Status.NOT_AN_IMAGE, "corrupt JPEG (no frame header)")
            if data.rfind(b"\xff\xd9") < pos:
                raise ImageReadError(location, Status.NOT_AN_IMAGE, "truncated JPEG (no end-of-image marker)")
            return size
        pos += 2 + length
    raise ImageReadError(location, Status.NOT_AN_IMAGE, "truncated JPEG (header ends before the image data)")


def _tiff_size(data: bytes, location: str) -> tuple[int, int]:
    """Width (tag 256) and length (tag 257) of a TIFF's or BigTIFF's first image file directory."""
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    if big:
        offset = struct.unpack(order + "Q", data[8:16])[0]
        count = struct.unpack(order + "Q", data[offset:offset + 8])[0]
        start, entry_size, value_at = offset + 8, 20, 12
    else:
        offset = struct.unpack(order + "I", data[4:8])[0]
        count = struct.unpack(order + "H", data[offset:offset + 2])[0]
        start, entry_size, value_at = offset + 2, 12, 8
    found: dict[int, int] = {}
    for index in range(min(int(count), 4096)):
        entry = data[start + index * entry_size:start + (index + 1) * entry_size]
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag in (256, 257):
            formats = {3: "H", 4: "I", 16: "Q"}
            if kind not in formats:
                raise ImageReadError(location, Status.NOT_AN_IMAGE, f"corrupt TIFF (tag {tag} of type {kind})")
            # libtiff ignores every repetition of a tag after its first entry: so does this reader
            found.setdefault(tag, struct.unpack(order + formats[kind],
                                                entry[value_at:value_at + struct.calcsize(formats[kind])])[0])
    if 256 not in found or 257 not in found:
        raise ImageReadError(location, Status.NOT_AN_IMAGE, "corrupt TIFF (no image width and length)")
    return found[257], found[256]


def _pnm_size(data: bytes, location: str) -> tuple[int, int]:
    """Width and height of a PBM/PGM/PPM header (ASCII numbers after the magic, comments skipped)."""
    numbers: list[int] = []
    for line in data[2:4096].split(b"\n"):
        for word in line.split(b"#")[0].split():
            numbers.append(int(word))  # ValueError: not a number
            if len(numbers) == 2:
                return numbers[1], numbers[0]
    raise ImageReadError(location, Status.NOT_AN_IMAGE, "truncated PNM header")


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return height & 0x3FFF, width & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return height, width
    return None


def read_record_payload(rec_path: str, key: int, location: str) -> bytes:
    """The image payload of record ``key`` in ``rec_path`` (used by ``fiqa.io.read_image``)."""
    try:
        content = recordio.cached_reader(rec_path).read(key)
        return recordio.unpack_record(content)[1]
    except KeyError:
        raise ImageReadError(location, Status.UNREADABLE, f"record {key} is not in the index") from None
    except DataSourceError as exc:
        raise ImageReadError(location, Status.UNREADABLE, str(exc)) from None
    except (OSError, struct.error, ValueError) as exc:
        raise ImageReadError(location, Status.UNREADABLE, f"cannot read record {key} ({exc})") from None
