"""Robust decoding: every bad-input case gets its status; odd-but-valid images decode to (H, W, 3) uint8 BGR."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest

from fiqa.core.errors import InvalidParameterError
from fiqa.core.types import Status
from fiqa.io import ImageReadError, read_image
from fiqa.io.image import decode_image, header_size


def gradient(height: int = 60, width: int = 80) -> np.ndarray:
    """A BGR image with distinct rows, columns and channels, so a rotation or channel swap is detectable."""
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x * 3 % 256, y * 4 % 256, np.full_like(x, 200)]).astype(np.uint8)


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    return cv2.imencode(ext, image)[1].tobytes()


def exif_orientation_segment(orientation: int) -> bytes:
    """A JPEG APP1 segment holding a little-endian TIFF with one IFD entry: Orientation (0x0112)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1,
                                                                                  orientation, 0)
    payload = b"Exif\x00\x00" + tiff + struct.pack("<I", 0)
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def expect_failure(path, status: Status, text: str, **limits) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **limits)
    assert info.value.status is status
    assert text in info.value.reason
    assert str(path) in str(info.value)
    return info.value


def test_png_round_trip_is_exact(tmp_path):
    image = gradient()
    (tmp_path / "a.png").write_bytes(encode(image))
    decoded = read_image(tmp_path / "a.png")
    assert decoded.dtype == np.uint8 and decoded.shape == (60, 80, 3)
    np.testing.assert_array_equal(decoded, image)


def test_non_ascii_path(tmp_path):
    path = tmp_path / "Zoë_Ångström" / "照片 1.png"
    path.parent.mkdir()
    path.write_bytes(encode(gradient()))
    np.testing.assert_array_equal(read_image(str(path)), gradient())


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = gradient()[:, :, 0]
    (tmp_path / "g.png").write_bytes(encode(gray))
    decoded = read_image(tmp_path / "g.png")
    assert decoded.shape == (60, 80, 3)
    for channel in range(3):
        np.testing.assert_array_equal(decoded[:, :, channel], gray)


def test_alpha_channel_is_dropped(tmp_path):
    image = gradient()
    (tmp_path / "a.png").write_bytes(encode(np.dstack([image, np.full(image.shape[:2], 10, np.uint8)])))
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), image)


def test_sixteen_bit_is_scaled_to_eight(tmp_path):
    image = gradient()
    (tmp_path / "w.png").write_bytes(encode(image.astype(np.uint16) * 257))  # 257 * v >> 8 == v
    decoded = read_image(tmp_path / "w.png")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, image)


def test_cmyk_jpeg_is_converted_to_bgr(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    image = gradient()
    buffer = io.BytesIO()
    pil.fromarray(image[:, :, ::-1]).convert("CMYK").save(buffer, "JPEG", quality=98)
    (tmp_path / "c.jpg").write_bytes(buffer.getvalue())
    decoded = read_image(tmp_path / "c.jpg")
    assert decoded.shape == (60, 80, 3)
    assert np.abs(decoded.astype(int) - image).mean() < 4  # JPEG loss only, channels in BGR order


@pytest.mark.parametrize("orientation, transform", [
    (1, lambda a: a),
    (3, lambda a: a[::-1, ::-1]),                 # rotated 180
    (6, lambda a: np.rot90(a, k=-1)),             # display = rotate 90 clockwise
    (8, lambda a: np.rot90(a, k=1)),              # display = rotate 90 counter-clockwise
])
def test_exif_orientation_is_applied(tmp_path, orientation, transform):
    image = gradient()
    jpeg = encode(image, ".jpg")
    (tmp_path / "e.jpg").write_bytes(jpeg[:2] + exif_orientation_segment(orientation) + jpeg[2:])
    decoded = read_image(tmp_path / "e.jpg").astype(int)
    expected = transform(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)).astype(int)
    assert decoded.shape == expected.shape
    assert np.abs(decoded - expected).max() <= 2


def test_missing_file_and_directory_are_unreadable(tmp_path):
    expect_failure(tmp_path / "nope.jpg", Status.UNREADABLE, "does not exist")
    expect_failure(tmp_path, Status.UNREADABLE, "directory")
    (tmp_path / "file.png").write_bytes(encode(gradient()))
    expect_failure(tmp_path / "file.png" / "inside.png", Status.UNREADABLE, "cannot read file (Not a directory)")


@pytest.mark.parametrize("content, text", [
    (b"", "empty file"),
    (b"just some text, not an image\n" * 10, "not a decodable image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIH", "truncated or corrupt image header"),
])
def test_non_images(tmp_path, content, text):
    (tmp_path / "x.jpg").write_bytes(content)
    expect_failure(tmp_path / "x.jpg", Status.NOT_AN_IMAGE, text)


@pytest.mark.parametrize("ext", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files(tmp_path, ext, keep):
    data = encode(np.random.default_rng(1).integers(0, 256, (120, 120, 3), dtype=np.uint8), ext)
    (tmp_path / f"t{ext}").write_bytes(data[:int(len(data) * keep)])
    expect_failure(tmp_path / f"t{ext}", Status.NOT_AN_IMAGE, "")


def test_jpeg_without_end_marker_is_truncated(tmp_path):
    (tmp_path / "t.jpg").write_bytes(encode(gradient(), ".jpg")[:-2])
    expect_failure(tmp_path / "t.jpg", Status.NOT_AN_IMAGE, "no end-of-image marker")


def test_tiny_image(tmp_path):
    (tmp_path / "tiny.png").write_bytes(encode(gradient(10, 40)))
    expect_failure(tmp_path / "tiny.png", Status.TOO_SMALL, "40x10 is smaller than min_side=16")
    assert read_image(tmp_path / "tiny.png", min_side=10).shape == (10, 40, 3)


def test_pixel_limit_is_a_parameter(tmp_path):
    (tmp_path / "a.jpg").write_bytes(encode(gradient(), ".jpg"))
    expect_failure(tmp_path / "a.jpg", Status.TOO_LARGE, "80x60 = 4800 pixels exceeds max_pixels=4799",
                   max_pixels=4799)
    assert read_image(tmp_path / "a.jpg", max_pixels=4800).shape == (60, 80, 3)


def _png_claiming(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR (with a correct CRC) claims a huge size: a decompression bomb's header."""
    data = bytearray(encode(gradient(20, 20)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(gradient(20, 20), ".jpg"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("make", [_png_claiming, _jpeg_claiming])
def test_decompression_bomb_is_refused_from_the_header(tmp_path, make):
    (tmp_path / "bomb").write_bytes(make(60000, 60000))
    assert header_size(make(60000, 60000)) == (60000, 60000)
    expect_failure(tmp_path / "bomb", Status.TOO_LARGE, "60000x60000 = 3600000000 pixels exceeds")


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
def test_header_size_matches_decoded_size(ext):
    image = gradient(37, 53)
    assert header_size(encode(image, ext)) == (37, 53)


def test_invalid_limits():
    with pytest.raises(InvalidParameterError, match="'max_pixels' parameter of read_image must be an int >= 1"):
        read_image("x.jpg", max_pixels=0)
    with pytest.raises(InvalidParameterError, match="'min_side' parameter of read_image"):
        read_image("x.jpg", min_side=True)


@pytest.mark.parametrize("extension", [".tiff", ".ppm", ".pgm"])
def test_header_size_of_tiff_and_pnm_equals_the_decoded_size(extension):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(extension, image if extension != ".pgm" else image[..., 0])
    assert ok
    assert header_size(encoded.tobytes()) == (37, 53)


@pytest.mark.parametrize("order", ["<", ">"])
def test_a_tiff_bomb_is_refused_from_its_header_before_decoding(order):
    # hostile case E18: a small file declaring 30000 x 30000 pixels; only its header is read
    magic = b"II*\x00" if order == "<" else b"MM\x00*"
    entries = [(256, 4, 30000), (257, 4, 30000), (258, 3, 8), (259, 3, 1), (262, 3, 1), (277, 3, 1)]
    ifd = struct.pack(order + "H", len(entries)) + b"".join(
        struct.pack(order + "HHI", tag, kind, 1) + (struct.pack(order + "HH", value, 0) if kind == 3 else
                                                     struct.pack(order + "I", value)) for tag, kind, value in entries)
    data = magic + struct.pack(order + "I", 8) + ifd + struct.pack(order + "I", 0)
    assert header_size(data) == (30000, 30000)
    with pytest.raises(ImageReadError) as caught:
        decode_image(data, "bomb.tif")
    assert caught.value.status == Status.TOO_LARGE and "30000x30000" in str(caught.value)


def test_a_bigtiff_header_is_read():
    order = "<"
    entries = [(256, 16, 70000), (257, 16, 20000)]
    ifd = struct.pack(order + "Q", len(entries)) + b"".join(
        struct.pack(order + "HHQQ", tag, kind, 1, value) for tag, kind, value in entries)
    data = b"II+\x00" + struct.pack(order + "HHQ", 8, 0, 16) + ifd
    assert header_size(data) == (20000, 70000)
