"""Data sources: every kind produces the same :class:`~fiqa.core.types.SampleTable`.

Kinds
-----
``folder``
    One sub-folder per identity holding its images (LFW, CASIA-WebFace layout).
``list``
    A CSV (``,``) or TSV (tab; ``.tsv``/``.txt``/``.lst``) list file of ``path[,identity]`` rows; relative paths
    are resolved against the list file's folder. A first row ``path,identity`` is a header. An entry that resolves
    (symbolic links followed) outside the list file's folder keeps its row but is refused: every reader records it
    as ``unreadable`` with the reason, without opening it, unless ``allow_outside=True`` (``fiqa embed
    --allow-outside``).
``recordio``
    insightface RecordIO (``train.rec`` + ``train.idx``), read without MXNet. Record 0's header holds the
    identity ranges (``label = [first identity record, end]``); image records carry the identity as their label
    and a JPEG payload.
``images``
    Loose images to score, without identity: one file, a folder (searched recursively) or a glob pattern.

Sample order is deterministic (sorted names, or file order for lists and RecordIO), and locations are
absolute, so ``fiqa.io.read_image(location)`` works from any working directory.
"""
from __future__ import annotations

import csv
import glob
import logging
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fiqa.core.errors import DataSourceError, InvalidParameterError
from fiqa.core.types import SampleTable
from fiqa.io.admit import is_inside
from fiqa.io.image import RECORD_SEPARATOR
from fiqa.io.recordio import cached_reader, unpack_record

logger = logging.getLogger(__name__)

#: File name extensions (lower case) that folder, images and glob sources treat as images.
#: AVIF, HEIC/HEIF and JPEG 2000 are listed so that a folder scan gives them a row: the admission gate refuses them
#: with a reason (:mod:`fiqa.io.admit`) instead of their being skipped without a word.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jp2", ".pgm",
                              ".ppm", ".pnm", ".avif", ".heic", ".heif"})
KINDS = ("folder", "list", "recordio", "images")
_LIST_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".lst": "\t"}
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class DataSource:
    """A data source, opened.

    Attributes
    ----------
    kind : str
        One of ``KINDS``.
    spec : str
        What was opened: the absolute path, or the glob pattern.
    samples : SampleTable
        One row per image.
    details : mapping
        Kind-specific facts recorded in store metadata (e.g. the RecordIO header ranges).
    """

    kind: str
    spec: str
    samples: SampleTable
    details: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """JSON-able description for metadata."""
        names = {str(name) for name in self.samples.identity} - {""}
        return {"kind": self.kind, "spec": self.spec, "n_samples": len(self.samples),
                "n_identities": len(names), **dict(self.details)}


def open_source(spec: str | os.PathLike | DataSource, *, kind: str | None = None,
                allow_outside: bool = False) -> DataSource:
    """Open a data source.

    Parameters
    ----------
    spec : str, path or DataSource
        A folder, a list file, a ``train.rec`` (or the folder holding it), an image file, or a glob pattern.
        A ``DataSource`` is returned unchanged.
    kind : {"folder", "list", "recordio", "images"}, optional
        Forces the kind. When None it is detected: a glob pattern or an image file is ``images``; a ``.rec``
        file or a folder holding ``train.rec`` is ``recordio``; any other file is a ``list``; a folder with
        sub-folders of images is ``folder``, a folder of images only is ``images``.
    allow_outside : bool, default False
        List files only: read entries that resolve outside the list file's folder too (by default they are refused,
        each with its reason, see :func:`list_source`). Other kinds of source ignore it.

    Raises
    ------
    DataSourceError
        Naming the path and the problem (missing, empty, malformed list row, bad RecordIO header, ...).
    """
    if isinstance(spec, DataSource):
        return spec
    if kind is not None and kind not in KINDS:
        raise InvalidParameterError("open_source", "kind", f"one of {KINDS} or None", kind)
    if not isinstance(allow_outside, bool):
        raise InvalidParameterError("open_source", "allow_outside", "a bool", allow_outside)
    text = os.fspath(spec)
    if kind is None:
        kind = _detect_kind(text)
    opener: dict[str, Callable[[str], DataSource]] = {
        "folder": folder_source, "list": lambda text: list_source(text, allow_outside=allow_outside),
        "recordio": recordio_source, "images": images_source}
    source = opener[kind](text)
    logger.info("opened %s source %s: %d samples", source.kind, source.spec, len(source.samples))
    return source


def _detect_kind(text: str) -> str:
    path = Path(text)
    if not path.exists():
        if _GLOB_CHARS & set(text):
            return "images"
        raise DataSourceError(f"{text}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() == ".rec":
            return "recordio"
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return "images"
        return "list"
    try:
        if (path / "train.rec").is_file():
            return "recordio"
    except OSError:
        pass  # an unreadable folder: _scan below says so

    has_subfolders = any(_is_dir(entry) for entry in _scan(path))
    return "folder" if has_subfolders else "images"


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan(folder: str | Path) -> list[os.DirEntry]:
    """The entries of a folder sorted by name; a folder that cannot be listed is a clear error, never a traceback
    and never silently empty."""
    try:
        with os.scandir(os.fspath(folder)) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as exc:
        raise DataSourceError(f"{os.fspath(folder)}: cannot list this folder ({exc.strerror or exc}); its images "
                              f"would be missing") from None


def _is_dir(entry: os.DirEntry, *, follow: bool = True) -> bool:
    try:
        return entry.is_dir(follow_symlinks=follow)
    except OSError:  # a symbolic-link loop: not a folder
        return False


def _image_entries(entries: list[os.DirEntry]) -> list[os.DirEntry]:
    """Entries named like images that are not folders: regular files, and also broken links and link loops, which
    keep their row (reading them records why they fail) instead of vanishing."""
    return [entry for entry in entries if _is_image_name(entry.name) and not _is_dir(entry)]


def _images_below(folder: Path) -> list[str]:
    """Every image-named entry below ``folder`` (symbolic links to folders are not followed: no loops)."""
    found, pending = [], [folder]
    while pending:
        entries = _scan(pending.pop())
        found += [os.path.abspath(entry.path) for entry in _image_entries(entries)]
        pending += [Path(entry.path) for entry in entries if _is_dir(entry, follow=False)]
    return sorted(found)


def _table(locations: list[str], identities: list[str], source: str,
           refused: list[str] | None = None, confined_to: str | None = None) -> SampleTable:
    return SampleTable(np.arange(len(locations), dtype=np.int64), np.asarray(locations, dtype=object),
                       np.asarray(identities, dtype=object), source,
                       np.asarray(refused, dtype=object) if refused is not None and any(refused) else None,
                       confined_to)


def _existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise DataSourceError(f"{text}: no such folder")
    if not path.is_dir():
        raise DataSourceError(f"{text}: is not a folder")
    return Path(os.path.abspath(path))


def folder_source(root: str | os.PathLike) -> DataSource:
    """One sub-folder per identity (sorted by name), its image files sorted by name.

    Files that are not images by extension are skipped with a logged warning, as are files lying directly in
    ``root``. Identity folders without images contribute nothing (logged). No image at all is an error.
    """
    root = _existing_dir(os.fspath(root))
    locations: list[str] = []
    identities: list[str] = []
    skipped, empty = 0, []
    for child in _scan(root):
        if not _is_dir(child):
            skipped += 1
            continue
        entries = [entry for entry in _scan(child.path) if not _is_dir(entry)]
        images = [entry.name for entry in _image_entries(entries)]
        skipped += len(entries) - len(images)
        if not images:
            empty.append(child.name)
        locations.extend(os.path.join(child.path, name) for name in images)
        identities.extend([child.name] * len(images))
    if skipped:
        logger.warning("%s: skipped %d file(s) that are not images in identity folders", root, skipped)
    if empty:
        logger.warning("%s: %d identity folder(s) hold no images (first: %s)", root, len(empty), empty[0])
    if not locations:
        raise DataSourceError(f"{root}: no images found in identity sub-folders (expected root/<identity>/<image>"
                              f" with extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return DataSource("folder", str(root), _table(locations, identities, "folder"))


def list_source(path: str | os.PathLike, *, delimiter: str | None = None,
                allow_outside: bool = False) -> DataSource:
    """A list file of ``path[,identity]`` rows.

    Parameters
    ----------
    path : str or path
        The list file. Relative image paths are resolved against its folder.
    delimiter : str, optional
        Field separator; by default ``,`` for ``.csv`` and a tab for ``.tsv``, ``.txt`` and ``.lst``.
    allow_outside : bool, default False
        Read entries that resolve outside the list file's folder too. By default such an entry (an absolute path
        elsewhere, ``../`` climbing out, or a symbolic link inside the folder pointing out of it) keeps its row and
        is refused: ``samples.refused`` holds the reason, and every reader records the row as ``unreadable`` with
        it, without opening the file (a list file handed over by someone else cannot make fiqa read the machine's
        other files). The count is logged as a warning and recorded in ``details["n_outside"]``. The check is made
        again on each opened file when it is read (``samples.confined_to``, :func:`fiqa.io.admit.read_file`): a
        symbolic link swapped after the list was opened is refused too.
    """
    path = Path(os.path.abspath(os.fspath(path)))
    if not path.is_file():
        raise DataSourceError(f"{path}: list file does not exist")
    if delimiter is None:
        delimiter = _LIST_EXTENSIONS.get(path.suffix.lower())
        if delimiter is None:
            raise DataSourceError(f"{path}: unknown list file extension {path.suffix!r}; use .csv (comma) or .tsv "
                                  f"(tab), or pass a delimiter")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = [(number, row) for number, row in enumerate(csv.reader(handle, delimiter=delimiter), start=1)
                    if row and any(cell.strip() for cell in row)]
    except UnicodeDecodeError as exc:
        raise DataSourceError(f"{path}: list file is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise DataSourceError(f"{path}: not a readable list file ({exc})") from None
    if rows and rows[0][1][0].strip().lower() in {"path", "location", "file", "image"}:
        rows = rows[1:]
    if not rows:
        raise DataSourceError(f"{path}: list file has no rows")
    base = path.parent
    root = os.path.realpath(base)
    locations, identities, refused = [], [], []
    width = len(rows[0][1])
    for number, row in rows:
        if len(row) != width or width > 2:
            raise DataSourceError(f"{path}, line {number}: expected {min(width, 2)} field(s) "
                                  f"(path{', identity' if width == 2 else ''}) separated by {delimiter!r}, "
                                  f"got {len(row)}")
        location = row[0].strip()
        if not location:
            raise DataSourceError(f"{path}, line {number}: empty path")
        locations.append(location if os.path.isabs(location) else os.path.normpath(base / location))
        identities.append(row[1].strip() if width == 2 else "")
        refused.append("" if allow_outside else outside_reason(location, locations[-1], root))
    n_outside = sum(1 for reason in refused if reason)
    if n_outside:
        first = next(reason for reason in refused if reason)
        logger.warning("%s: %d entr%s outside the list file's folder refused (first: %s)", path, n_outside,
                       "y" if n_outside == 1 else "ies", first)
    details = {"allow_outside": True} if allow_outside else {"n_outside": n_outside} if n_outside else {}
    return DataSource("list", str(path), _table(locations, identities, "list", refused,
                                                None if allow_outside else root), details)


def outside_reason(entry: str, location: str, root: str) -> str:
    """Why the list entry ``entry`` (at ``location``) is refused: it resolves, symbolic links followed, outside the
    folder ``root`` (already resolved); ``""`` when it is inside (or cannot be resolved: reading it says why)."""
    try:
        target = os.path.realpath(location)
    except (ValueError, OSError):  # a NUL byte: the reader refuses it with its own reason
        return ""
    if is_inside(target, root):
        return ""
    return (f"list entry {entry!r} resolves to {target!r}, outside the list file's folder {root!r}: refused "
            f"(allow_outside=True, fiqa embed --allow-outside, reads it)")


def images_source(spec: str | os.PathLike) -> DataSource:
    """Loose images without identity: one image file, a folder (recursive, sorted) or a glob pattern."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        locations = [os.path.abspath(path)]
    elif path.is_dir():
        locations = _images_below(path)
        if not locations:
            raise DataSourceError(f"{text}: folder holds no images (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
    elif _GLOB_CHARS & set(text):
        locations = sorted(os.path.abspath(p) for p in glob.glob(text, recursive=True)
                           if os.path.isfile(p) and _is_image_name(p))
        if not locations:
            raise DataSourceError(f"{text}: glob pattern matches no image files")
        return DataSource("images", text, _table(locations, [""] * len(locations), "images"))
    else:
        raise DataSourceError(f"{text}: no such file or folder")
    return DataSource("images", str(Path(os.path.abspath(path))), _table(locations, [""] * len(locations), "images"))


def recordio_source(spec: str | os.PathLike) -> DataSource:
    """An insightface RecordIO data set: ``train.rec`` (or the folder holding it) with ``train.idx`` beside it.

    When record 0's header has ``flag > 0`` its labels ``[a, b]`` mean: image records are keys ``1..a-1``,
    identity records are ``a..b-1``. Otherwise every indexed record is an image. The identity of an image is its
    first label, written as an integer string.
    """
    path = Path(os.fspath(spec))
    rec_path = path / "train.rec" if path.is_dir() else path
    reader = cached_reader(str(rec_path))
    try:
        header0 = unpack_record(reader.read(0))[0] if 0 in reader.offsets else None
    except (struct.error, ValueError) as exc:
        raise DataSourceError(f"{reader.rec_path}: record 0 is not a RecordIO header ({exc})") from None
    details: dict[str, Any] = {"rec_path": str(reader.rec_path)}
    if header0 is not None and len(header0) >= 2 and header0[0] >= 1:
        if not (np.isfinite(header0[:2]).all() and header0[0] <= len(reader.offsets) + 1):
            raise DataSourceError(f"{reader.rec_path}: header record 0 announces images 1..{header0[0]:g} but the "
                                  f"index holds {len(reader.offsets)} records")
        first_identity, end_identity = int(header0[0]), int(header0[1])
        keys = list(range(1, first_identity))
        missing = [k for k in keys if k not in reader.offsets]
        if missing:
            raise DataSourceError(f"{reader.rec_path}: header record 0 announces images 1..{first_identity - 1} but "
                                  f"{len(missing)} are missing from the index (first: {missing[0]})")
        details.update(header_images=[1, first_identity], header_identities=[first_identity, end_identity])
    else:
        keys = reader.keys()
    if not keys:
        raise DataSourceError(f"{reader.rec_path}: RecordIO file holds no image records")
    labels = np.array([reader.read_labels(key)[0] for key in keys], dtype=np.float64)
    if not np.isfinite(labels).all():
        bad = keys[int(np.flatnonzero(~np.isfinite(labels))[0])]
        raise DataSourceError(f"{reader.rec_path}: record {bad} has identity label {labels[keys.index(bad)]}")
    identities = [str(int(label)) for label in labels]
    locations = [f"{reader.rec_path}{RECORD_SEPARATOR}{key}" for key in keys]
    return DataSource("recordio", str(reader.rec_path), _table(locations, identities, "recordio"), details)
