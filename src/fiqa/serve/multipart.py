"""A ``multipart/form-data`` body (already read, so bounded by the body limit) split into its parts, in memory."""
from __future__ import annotations

from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header


class FormError(ValueError):
    """The body is not a well-formed multipart form; the message says why."""


class TooManyParts(FormError):
    """More parts than the service takes in one form."""


@dataclass(frozen=True)
class Part:
    """One part of a form.

    Attributes
    ----------
    name : str
        The part's field name (``Content-Disposition: form-data; name=...``).
    filename : str or None
        The file name the client gave, only echoed back (nothing is ever read from or written to it).
    data : bytes
    """

    name: str
    filename: str | None
    data: bytes


def split_form(body: bytes, content_type: str, max_parts: int) -> list[Part]:
    """The parts of a ``multipart/form-data`` body, in order.

    Raises
    ------
    FormError
        No boundary, malformed or unterminated body, a part without ``Content-Disposition: form-data; name=...``,
        no parts at all. ``TooManyParts`` (a FormError) when there are more than ``max_parts``.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise FormError("the multipart Content-Type has no boundary")
    parts: list[Part] = []
    headers: dict[bytes, bytes] = {}
    field, value, data = bytearray(), bytearray(), bytearray()
    ended = False

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        field.extend(chunk[start:end])

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        value.extend(chunk[start:end])

    def on_header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear()
        value.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        if len(parts) >= max_parts:
            raise TooManyParts(f"the form has more than max_parts={max_parts} parts")
        kind, params = parse_options_header(headers.get(b"content-disposition", b""))
        if kind != b"form-data" or b"name" not in params:
            raise FormError(f"part {len(parts) + 1} has no 'Content-Disposition: form-data; name=...' header")
        filename = params.get(b"filename")
        parts.append(Part(params[b"name"].decode("utf-8", "replace"),
                          None if filename is None else filename.decode("utf-8", "replace"), bytes(data)))

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_part_data": on_part_data, "on_part_end": on_part_end, "on_end": on_end})
    try:
        parser.write(body)
        parser.finalize()
    except FormParserError as exc:
        raise FormError(f"malformed multipart body ({exc})") from None
    if not ended:
        raise FormError("malformed multipart body (it ends before the closing boundary)")
    if not parts:
        raise FormError("the form has no parts")
    return parts
