"""Builds every hostile input at run time from LFW-dev copies into a scratch folder (nothing is kept in the
repository, nothing is copied from ``../shared`` into it).

Each ``make_*`` function writes one fixture set below ``root`` and returns its folder; they are deterministic (fixed
file choices, seeded random bytes), so a re-run sees the same inputs. The file names follow
``../shared/hostile-cases.md``.
"""
from __future__ import annotations

import io
import os
import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

#: LFW-dev people the specific cases use (all have >= 8 photos).
PEOPLE = ("Al_Gore", "Celine_Dion", "Yao_Ming")
#: The face every re-encoding is made from (cosines in E03, E07-E12 are against it).
REFERENCE = ("Al_Gore", "Al_Gore_0001.jpg")


def photo(lfw: Path, person: str, number: int) -> Path:
    """``<lfw>/<person>/<person>_<number:04d>.jpg``."""
    return lfw / person / f"{person}_{number:04d}.jpg"


def good_people(lfw: Path, n_people: int = 6, min_images: int = 6) -> list[str]:
    """The first ``n_people`` people (by name) with at least ``min_images`` photos."""
    found = []
    for person in sorted(p.name for p in lfw.iterdir() if p.is_dir()):
        if len(list((lfw / person).glob("*.jpg"))) >= min_images:
            found.append(person)
            if len(found) == n_people:
                break
    return found


def make_good(lfw: Path, root: Path, n_people: int = 6, per_person: int = 4) -> Path:
    """``root/good``: ``n_people`` identities x ``per_person`` photos (the store, labels and model come from it)."""
    folder = root / "good"
    for person in good_people(lfw, n_people):
        (folder / person).mkdir(parents=True)
        for number in range(1, per_person + 1):
            shutil.copy(photo(lfw, person, number), folder / person)
    return folder


def make_subset(lfw: Path, root: Path, name: str, layout: dict[str, int]) -> Path:
    """``root/<name>``: ``{person: n_photos}`` copied from LFW-dev."""
    folder = root / name
    for person, count in layout.items():
        (folder / person).mkdir(parents=True)
        for number in range(1, count + 1):
            shutil.copy(photo(lfw, person, number), folder / person)
    return folder


# ---------------------------------------------------------------------------------------------------------- encoders

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_bomb(side: int) -> bytes:
    """A tiny PNG whose IHDR declares ``side`` x ``side`` 8-bit RGB pixels (its one IDAT holds one row)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 4))
            + _png_chunk(b"IEND", b""))


def png_zlib_bomb(side: int) -> bytes:
    """A real PNG bomb: ``side`` x ``side`` 8-bit gray zeros in one valid zlib stream (~1000:1, 875 KB for 30000).

    The stream is built from one compressed block of rows repeated (each block ends in a full flush, so the
    deflate output of every block is the same bytes), then the Adler-32 of all the rows: seconds less than
    deflating 900 MB."""
    rows_per_block = 100
    block = b"\0" * ((side + 1) * rows_per_block)  # (filter byte, pixels) per row
    compressor = zlib.compressobj(9)
    head = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    n_blocks, rest = divmod(side, rows_per_block)
    tail = compressor.compress(b"\0" * ((side + 1) * rest)) + compressor.flush() if rest else compressor.flush()
    checksum = 1
    for _ in range(n_blocks):
        checksum = zlib.adler32(block, checksum)
    if rest:
        checksum = zlib.adler32(b"\0" * ((side + 1) * rest), checksum)
    stream = head + body * (n_blocks - 1) + tail[:-4] + struct.pack(">I", checksum)
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", stream)
            + _png_chunk(b"IEND", b""))


def tiff_deflate_zeros(width: int, height: int, rows_per_strip: int = 1000) -> bytes:
    """A valid little-endian 8-bit gray TIFF of zeros with deflate-compressed strips (a decompression bomb for large
    sizes: 30000 x 30000 is ~1 MB on disk, 900 MB decoded). Every strip holds the same compressed bytes."""
    n_strips = -(-height // rows_per_strip)
    full = zlib.compress(b"\0" * (width * rows_per_strip), 9)
    last_rows = height - (n_strips - 1) * rows_per_strip
    last = full if last_rows == rows_per_strip else zlib.compress(b"\0" * (width * last_rows), 9)
    strips = [full] * (n_strips - 1) + [last]
    n_tags = 9
    ifd_offset = 8
    ifd_size = 2 + 12 * n_tags + 4
    offsets_at = ifd_offset + ifd_size
    counts_at = offsets_at + 4 * n_strips
    data_at = counts_at + 4 * n_strips
    offsets, position = [], data_at
    for strip in strips:
        offsets.append(position)
        position += len(strip)

    def tag(number: int, kind: int, count: int, value: int) -> bytes:
        return struct.pack("<HHII", number, kind, count, value)

    short, long_ = 3, 4
    entries = [tag(256, long_, 1, width), tag(257, long_, 1, height), tag(258, short, 1, 8),
               tag(259, short, 1, 8),  # Adobe deflate
               tag(262, short, 1, 1),  # BlackIsZero
               tag(273, long_, n_strips, offsets_at if n_strips > 1 else offsets[0]),
               tag(277, short, 1, 1), tag(278, long_, 1, rows_per_strip),
               tag(279, long_, n_strips, counts_at if n_strips > 1 else len(strips[0]))]
    header = b"II*\x00" + struct.pack("<I", ifd_offset)
    ifd = struct.pack("<H", n_tags) + b"".join(entries) + struct.pack("<I", 0)
    tables = struct.pack(f"<{n_strips}I", *offsets) + struct.pack(f"<{n_strips}I", *(len(s) for s in strips))
    return header + ifd + tables + b"".join(strips)


def _jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def _scan_start(jpeg: bytes) -> int:
    """Offset of the first byte of entropy-coded data (after the SOS segment)."""
    sos = jpeg.index(b"\xff\xda")
    (length,) = struct.unpack(">H", jpeg[sos + 2:sos + 4])
    return sos + 2 + length


def corrupt_scan(jpeg: bytes, random_state: int) -> bytes:
    """Garbage over the middle 60 % of the scan data; the header and the end-of-image marker stay intact."""
    data = bytearray(jpeg)
    start, end = _scan_start(jpeg), len(jpeg) - 2
    lo, hi = start + (end - start) // 5, start + 4 * (end - start) // 5
    garbage = np.random.default_rng(random_state).integers(0, 255, hi - lo, dtype=np.uint8)  # never 0xFF: no markers
    data[lo:hi] = garbage.tobytes()
    return bytes(data)


def flip_scan_bytes(jpeg: bytes, n_bytes: int, random_state: int) -> bytes:
    """``n_bytes`` scan bytes (not 0xFF, not next to one) with their lowest bit flipped: a mild, undetectable
    corruption."""
    data = bytearray(jpeg)
    start, end = _scan_start(jpeg), len(jpeg) - 2
    rng = np.random.default_rng(random_state)
    done = 0
    while done < n_bytes:
        position = int(rng.integers(start + 200, end - 200))
        if 0xFF in data[position - 1:position + 2] or (data[position] ^ 0x01) == 0xFF:
            continue
        data[position] ^= 0x01
        done += 1
    return bytes(data)


def zero_sof(jpeg: bytes) -> bytes:
    """The frame header (SOF0) overwritten with zeros, marker included."""
    data = bytearray(jpeg)
    sof = jpeg.index(b"\xff\xc0")
    (length,) = struct.unpack(">H", jpeg[sof + 2:sof + 4])
    data[sof:sof + 2 + length] = bytes(2 + length)
    return bytes(data)


def jpeg_declaring(jpeg: bytes, height: int, width: int) -> bytes:
    """The same JPEG with a frame header that declares another size."""
    data = bytearray(jpeg)
    sof = jpeg.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def exif_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG of ``image`` (BGR) carrying an EXIF orientation tag (Pillow)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(image[..., ::-1]).save(buffer, "JPEG", quality=95, exif=exif.tobytes())
    return buffer.getvalue()


def cmyk_jpeg(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[..., ::-1]).convert("CMYK").save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------- fixture sets

#: Expected status of every file of ``Bad_Inputs`` (``None``: ``ok``); ``E01`` may decode to garbage without a face.
BAD_FILES = ("01_corrupt_scan.jpg", "01b_corrupt_header.jpg", "02_truncated.jpg", "03_text.jpg", "04_empty.jpg",
             "05_alpha.png", "06_16bit.png", "06b_16bit_gray.png", "07_gray.jpg", "08_cmyk.jpg",
             "09_exif_rot6.jpg", "09b_rot_noexif.jpg", "10_tiny20.jpg", "11_bomb_30000.png",
             "11b_bomb_real_30000.png", "12_noise.png", "13_five_faces.jpg", "14_jpeg_header_65000.jpg",
             "15_big_8000.tif")


def make_bad(lfw: Path, root: Path) -> Path:
    """``root/bad``: two good identities (2 photos each), ``Bad_Inputs/`` (the 19 files of :data:`BAD_FILES`) and
    ``Variants/`` (``00_original.jpg``, the reference face, and ``16_mild_corrupt.jpg``, 3 scan bytes flipped)."""
    folder = root / "bad"
    for person in ("Celine_Dion", "Yao_Ming"):
        (folder / person).mkdir(parents=True)
        for number in (1, 2):
            shutil.copy(photo(lfw, person, number), folder / person)
    original_bytes = (lfw / REFERENCE[0] / REFERENCE[1]).read_bytes()
    original = cv2.imdecode(np.frombuffer(original_bytes, np.uint8), cv2.IMREAD_COLOR)
    variants = folder / "Variants"
    variants.mkdir()
    (variants / "00_original.jpg").write_bytes(original_bytes)
    (variants / "16_mild_corrupt.jpg").write_bytes(flip_scan_bytes(original_bytes, 3, random_state=16))

    bad = folder / "Bad_Inputs"
    bad.mkdir()
    files: dict[str, bytes] = {
        "01_corrupt_scan.jpg": corrupt_scan(original_bytes, random_state=1),
        "01b_corrupt_header.jpg": zero_sof(original_bytes),
        "02_truncated.jpg": original_bytes[:len(original_bytes) // 2],
        "03_text.jpg": b"This is a text file, not a JPEG.\n" * 20,
        "04_empty.jpg": b"",
        "09_exif_rot6.jpg": exif_orientation(np.ascontiguousarray(np.rot90(original, k=1)), 6),
        "09b_rot_noexif.jpg": _jpeg(np.ascontiguousarray(np.rot90(original, k=1))),
        "07_gray.jpg": _jpeg(cv2.cvtColor(original, cv2.COLOR_BGR2GRAY)),
        "08_cmyk.jpg": cmyk_jpeg(original),
        "10_tiny20.jpg": _jpeg(cv2.resize(original, (20, 20), interpolation=cv2.INTER_AREA)),
        "11_bomb_30000.png": png_header_bomb(30000),
        "11b_bomb_real_30000.png": png_zlib_bomb(30000),
        "14_jpeg_header_65000.jpg": jpeg_declaring(_jpeg(original), 65000, 65000),
        "15_big_8000.tif": tiff_deflate_zeros(8000, 8000),
    }
    for name, data in files.items():
        (bad / name).write_bytes(data)
    alpha = cv2.cvtColor(original, cv2.COLOR_BGR2BGRA)
    alpha[:, :alpha.shape[1] // 2, 3] = 0
    cv2.imwrite(str(bad / "05_alpha.png"), alpha)
    cv2.imwrite(str(bad / "06_16bit.png"), original.astype(np.uint16) * 257)
    cv2.imwrite(str(bad / "06b_16bit_gray.png"), cv2.cvtColor(original, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    cv2.imwrite(str(bad / "12_noise.png"), np.random.default_rng(12).integers(0, 256, (250, 250, 3), np.uint8))
    tiles = [cv2.imread(str(photo(lfw, person, number))) for person, number in
             (("Al_Gore", 2), ("Celine_Dion", 3), ("Yao_Ming", 3), ("Al_Gore", 3), ("Celine_Dion", 4))]
    (bad / "13_five_faces.jpg").write_bytes(_jpeg(np.hstack(tiles)))
    assert sorted(p.name for p in bad.iterdir()) == sorted(BAD_FILES)
    return folder


def make_tiff_bomb(root: Path) -> Path:
    """``root/tiffbomb/x/bomb_30000.tif``: a ~1 MB deflate TIFF of 30000 x 30000 (900 MB once decoded)."""
    path = root / "tiffbomb" / "x" / "bomb_30000.tif"
    path.parent.mkdir(parents=True)
    path.write_bytes(tiff_deflate_zeros(30000, 30000))
    return path


#: Names of E21/E22 (non-ASCII, spaces, emoji, a leading dash, a newline).
NAME_CASES = {"José Müller": ["ph oto é.jpg", "second é.jpg"], "王 小明": ["émoji 😀.jpg", "二.jpg"],
              "with space": ["-leading-dash.jpg", "日本語 ファイル.JPG"]}


def make_names(lfw: Path, root: Path) -> Path:
    """``root/names``: identity folders and files named with non-ASCII letters, spaces, emoji, a leading ``-``."""
    folder = root / "names"
    sources = iter(photo(lfw, person, number) for person in PEOPLE for number in (4, 5))
    for identity, names in NAME_CASES.items():
        (folder / identity).mkdir(parents=True)
        for name in names:
            shutil.copy(next(sources), folder / identity / name)
    return folder


def make_newline_name(lfw: Path, root: Path) -> Path:
    """``root/names3``: ``A/new\\nline.jpg`` beside ``A/plain.jpg`` and two photos of ``B``."""
    folder = root / "names3"
    (folder / "A").mkdir(parents=True)
    (folder / "B").mkdir()
    shutil.copy(photo(lfw, "Yao_Ming", 1), folder / "A" / "new\nline.jpg")
    shutil.copy(photo(lfw, "Yao_Ming", 2), folder / "A" / "plain.jpg")
    for number in (1, 2):
        shutil.copy(photo(lfw, "Celine_Dion", number), folder / "B")
    return folder


BAD_UTF8_NAME = b"bad\xff\xfename.jpg"


def make_non_utf8_name(lfw: Path, root: Path) -> Path:
    """``root/names2``: ``A/bad\\xff\\xfename.jpg`` (not valid UTF-8) beside a plain name, and ``B`` with 2 photos."""
    folder = root / "names2"
    (folder / "A").mkdir(parents=True)
    (folder / "B").mkdir()
    shutil.copy(photo(lfw, "Yao_Ming", 1), os.fsdecode(os.fsencode(folder / "A") + b"/" + BAD_UTF8_NAME))
    shutil.copy(photo(lfw, "Yao_Ming", 2), folder / "A")
    for number in (1, 2):
        shutil.copy(photo(lfw, "Celine_Dion", number), folder / "B")
    return folder


def make_symlink_loops(lfw: Path, root: Path) -> Path:
    """``root/symA``: ``A`` with 2 photos and ``loop1.jpg -> loop2.jpg -> loop1.jpg``; ``B`` with 2 photos."""
    folder = make_two_people(lfw, root, "symA")
    os.symlink("loop2.jpg", folder / "A" / "loop1.jpg")
    os.symlink("loop1.jpg", folder / "A" / "loop2.jpg")
    return folder


def make_dir_loops(lfw: Path, root: Path) -> Path:
    """``root/symB``: ``A`` and ``B`` with 2 photos each, ``B/dirloop -> ..`` and ``C_dirloop -> ../symB``."""
    folder = make_two_people(lfw, root, "symB")
    os.symlink("..", folder / "B" / "dirloop")
    os.symlink("../symB", folder / "C_dirloop")
    return folder


def make_two_people(lfw: Path, root: Path, name: str) -> Path:
    """``root/<name>``: ``A`` (2 photos of Yao Ming) and ``B`` (2 of Celine Dion)."""
    folder = root / name
    (folder / "A").mkdir(parents=True)
    (folder / "B").mkdir()
    for number in (1, 2):
        shutil.copy(photo(lfw, "Yao_Ming", number), folder / "A")
        shutil.copy(photo(lfw, "Celine_Dion", number), folder / "B")
    return folder


def make_permissions(lfw: Path, root: Path) -> dict[str, Path]:
    """``root/perm``: ``root0`` (the source root itself mode 000), ``sub0`` (identity folder ``B`` mode 000) and
    ``file0`` (``B/Celine_Dion_0001.jpg`` mode 000). Call :func:`restore_permissions` to make them deletable."""
    base = root / "perm"
    made = {name: make_two_people(lfw, base, name) for name in ("root0", "sub0", "file0")}
    os.chmod(made["file0"] / "B" / "Celine_Dion_0001.jpg", 0)
    os.chmod(made["sub0"] / "B", 0)
    os.chmod(made["root0"], 0)
    return made


def restore_permissions(made: dict[str, Path]) -> None:
    os.chmod(made["root0"], 0o755)
    os.chmod(made["sub0"] / "B", 0o755)
    os.chmod(made["file0"] / "B" / "Celine_Dion_0001.jpg", 0o644)


def make_txt_only(root: Path) -> Path:
    """``root/txt_only``: identity folders holding only a ``.txt`` file."""
    folder = root / "txt_only"
    for identity in ("A", "B"):
        (folder / identity).mkdir(parents=True)
        (folder / identity / "notes.txt").write_text("not an image\n", encoding="utf-8")
    return folder


#: Identity folder names of the X cases and the file name every folder holds (with a number).
XSS_FOLDERS = ('"><img src=x onerror=alert(1)>', "<svg onload=alert(11)>", "<script>alert(12)<",
               "O'Brien & <b>bold<b>")
XSS_FILE = "<img src=x onerror=alert(2)> {}.jpg"
#: Identities of the list source (a folder name cannot hold ``/``).
XSS_LIST_IDENTITIES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


def make_xss_folder(lfw: Path, root: Path) -> Path:
    """``root/xss_folder``: four identity folders named with HTML payloads, 3 photos each."""
    folder = root / "xss_folder"
    people = ("Al_Gore", "Celine_Dion", "Yao_Ming", good_people(lfw, 1)[0])
    for name, person in zip(XSS_FOLDERS, people):
        (folder / name).mkdir(parents=True)
        for number in range(3):
            shutil.copy(photo(lfw, person, number + 1), folder / name / XSS_FILE.format(number))
    return folder


def make_xss_list(lfw: Path, root: Path) -> Path:
    """``root/xss/list.csv``: 3 photos each of two people (copied beside it), listed under the identities
    :data:`XSS_LIST_IDENTITIES`."""
    import csv

    folder = root / "xss"
    folder.mkdir(parents=True)
    with open(folder / "list.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "identity"])
        for identity, person in zip(XSS_LIST_IDENTITIES, ("Yao_Ming", "Celine_Dion")):
            for number in (5, 6, 7):
                shutil.copy(photo(lfw, person, number), folder)
                writer.writerow([photo(lfw, person, number).name, identity])
    return folder / "list.csv"
