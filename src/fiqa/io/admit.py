"""The image-admission gate: what every image reader in fiqa goes through before a decoder sees a byte.

1. **Only regular files, read with a byte limit** (:func:`read_file`): the path is opened without blocking (a FIFO
   cannot hang the run), the *opened* file is checked with ``fstat`` (a symlink to ``/dev/zero``, a device or a
   folder is refused, whatever the name says), its size is compared with ``max_bytes`` before reading, and the read
   itself stops at ``max_bytes + 1`` bytes (a file that grows while it is read is refused too).
2. **The format from the content, against an allow-list** (:func:`identify_format`): magic bytes, never the file
   name. Accepted: JPEG, PNG, BMP (Windows and OS/2), WebP, TIFF/BigTIFF, PNM (PBM/PGM/PPM) and GIF. Formats whose
   decoders OpenCV may carry but whose memory use fiqa does not bound (AVIF, HEIF/HEIC, JPEG 2000, OpenEXR, Radiance
   HDR, PFM, Sun raster, PAM) are refused with their name in the reason.
3. **Dimensions before pixels**: :func:`fiqa.io.image.header_size` reads them the way the decoder does (TIFF: the
   first of duplicated tags, as libtiff; BMP: the OS/2 core header too) for a fast refusal, and the decoding worker
   runs OpenCV with ``OPENCV_IO_MAX_IMAGE_PIXELS`` set to the limit, so the decoder's *own* header parse refuses
   what is too large before it allocates (:mod:`fiqa.io.decoder`).
4. **Decoding in a worker whose memory and time are bounded** (:mod:`fiqa.io.decoder`): a subprocess with an
   address-space limit, killed (and so freed) after a timeout.
"""
from __future__ import annotations

import errno
import os
import stat

from fiqa.core.types import Status

#: Default byte limit of one encoded image: far above any photograph fiqa is made for (a 40-megapixel JPEG is
#: about 20 MB), small enough that reading it can never threaten the host.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024

ALLOWED_FORMATS = ("jpeg", "png", "bmp", "webp", "tiff", "pnm", "gif")
"""Formats the gate admits (identified from the content)."""

_ISO_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC",
               b"heim": "HEIC", b"heis": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"jp2 ": "JPEG 2000",
               b"jpx ": "JPEG 2000", b"jpm ": "JPEG 2000", b"mjp2": "JPEG 2000"}


class AdmissionError(Exception):
    """Raised by the gate: ``status`` (a :class:`Status`) and a one-line ``reason``; :mod:`fiqa.io.image` turns it
    into an ``ImageReadError`` naming the location."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def identify_format(data: bytes) -> str:
    """The format of encoded image bytes, from their first bytes: one of :data:`ALLOWED_FORMATS`.

    Raises
    ------
    AdmissionError
        ``NOT_AN_IMAGE``: an empty file, a known format that is not accepted (named in the reason), or bytes of no
        known image format.
    """
    if not data:
        raise AdmissionError(Status.NOT_AN_IMAGE, "empty file")
    head = data[:32]
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:2] == b"BM":
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6") and head[2:3].isspace():
        return "pnm"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    refused = _refused_format(head)
    if refused is not None:
        raise AdmissionError(Status.NOT_AN_IMAGE, f"{refused} images are not accepted (accepted: "
                                                  f"{', '.join(f.upper() for f in ALLOWED_FORMATS)})")
    raise AdmissionError(Status.NOT_AN_IMAGE, "not a decodable image")


def _refused_format(head: bytes) -> str | None:
    """The name of a recognised image format that the gate refuses, or None."""
    if head[4:8] == b"ftyp":
        return _ISO_BRANDS.get(head[8:12], f"ISO media ({head[8:12].decode('ascii', 'replace').strip()})")
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if head[:2] == b"#?":  # "#?RADIANCE", "#?RGBE"
        return "Radiance HDR"
    if head[:4] == b"v/1\x01":
        return "OpenEXR"
    if head[:2] in (b"PF", b"Pf") and head[2:3].isspace():
        return "PFM"
    if head[:2] == b"P7":
        return "PAM"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "Sun raster"
    return None


def read_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES, *, within: str | None = None) -> bytes:
    """The bytes of the regular file at ``path``, at most ``max_bytes`` of them.

    The file is opened without blocking and checked on the open descriptor (no race between the check and the
    read): a FIFO, socket, device, folder, or a symlink to one of them is refused before a byte is read; so is a
    file whose size exceeds ``max_bytes``. The read is bounded as well.

    ``within`` (a resolved folder, e.g. a list file's, :attr:`fiqa.core.types.SampleTable.confined_to`): the
    *opened* file must lie inside it. Its real path is taken from the descriptor (``/proc/self/fd/N``; elsewhere
    the path resolved again and required to be the same file as the descriptor's), so a symbolic link swapped
    between the source's check and this read cannot lead the read out of the folder.

    Raises
    ------
    AdmissionError
        ``UNREADABLE`` (missing, permission, not a regular file, outside ``within``, I/O error) or ``TOO_LARGE``
        (over ``max_bytes``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise AdmissionError(Status.UNREADABLE, "file does not exist") from None
    except IsADirectoryError:
        raise AdmissionError(Status.UNREADABLE, "is a directory, not an image file") from None
    except PermissionError:
        raise AdmissionError(Status.UNREADABLE, "permission denied") from None
    except ValueError:  # a NUL byte in the path
        raise AdmissionError(Status.UNREADABLE, "the path holds a NUL byte") from None
    except OSError as exc:
        reason = "a symlink loop" if exc.errno == errno.ELOOP else f"cannot read file ({exc.strerror or exc})"
        raise AdmissionError(Status.UNREADABLE, reason) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise AdmissionError(Status.UNREADABLE, "is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            raise AdmissionError(Status.UNREADABLE, f"not a regular file ({_kind(info.st_mode)}); only image files "
                                                    f"are read")
        if within is not None:
            _check_within(fd, info, path, within)
        if info.st_size > max_bytes:
            raise AdmissionError(Status.TOO_LARGE, f"{info.st_size} bytes exceeds max_bytes={max_bytes}")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(max_bytes + 1 - size, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise AdmissionError(Status.TOO_LARGE, f"more than max_bytes={max_bytes} bytes (the file grew while "
                                                   f"it was read)")
        return b"".join(chunks)
    except OSError as exc:
        raise AdmissionError(Status.UNREADABLE, f"cannot read file ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def is_inside(target: str, root: str) -> bool:
    """Whether the resolved path ``target`` is the resolved folder ``root`` or lies below it."""
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _check_within(fd: int, info: os.stat_result, path: str, root: str) -> None:
    """Refuse the file open on ``fd`` (``info``: its ``fstat``) unless its real path lies inside ``root``."""
    target = opened_path(fd, info, path)
    if target is None:
        raise AdmissionError(Status.UNREADABLE, f"changed while it was opened (no longer the file {path!r} resolves "
                                                f"to): refused, it must stay inside {root!r}")
    if not is_inside(target, root):
        raise AdmissionError(Status.UNREADABLE, f"resolves to {target!r} when read, outside the list file's folder "
                                                f"{root!r}: refused (allow_outside=True, fiqa embed --allow-outside, "
                                                f"reads it)")


def opened_path(fd: int, info: os.stat_result, path: str) -> str | None:
    """The real path of the file open on ``fd``: the kernel's own record (``/proc/self/fd/N``) where there is one;
    elsewhere ``path`` resolved now, when that is the very file open on ``fd`` (same device and inode), else None
    (it changed between the open and this check)."""
    target = _kernel_path(fd)
    if target is not None:
        return target
    try:
        target = os.path.realpath(path)
        now = os.stat(target)
    except (OSError, ValueError):
        return None
    return target if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino) else None


def _kernel_path(fd: int) -> str | None:
    """The path the kernel records for the file open on ``fd`` (Linux: ``/proc/self/fd/N``); None where there is
    none, or the file was deleted since."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return target if os.path.isabs(target) and not target.endswith(" (deleted)") else None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character "
                       "device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"
