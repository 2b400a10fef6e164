"""Names in human-readable output: control characters escaped, so that a file or folder name cannot fake a field,
a line or a terminal escape sequence (issue 25).

Standard library only: the ``fiqa`` command (:mod:`fiqa.commands._common`), its log formatter and the progress
bars' descriptions (:mod:`fiqa.core.progress`) all escape through these two functions.

    >>> one_line("store\\tx\\nError: fake")
    'store\\\\tx\\\\nError: fake'
    >>> printable("a\\\\b\\x1b[31m")
    'a\\\\\\\\b\\\\x1b[31m'
"""
from __future__ import annotations

__all__ = ["one_line", "printable"]

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def printable(name: str) -> str:
    """``name`` for one field of human-readable, tab-separated output: a backslash and every control character
    (TAB, newline, carriage return, escape sequences, DEL, C1 controls, the Unicode line and paragraph separators)
    written as a backslash escape (``\\t``, ``\\n``, ``\\x1b``), so that a file name cannot fake a field or a
    line. Machine-readable output (``-o x.csv``, ``-o -``) quotes such names as CSV does instead."""
    return "".join(_escaped(char) for char in name)


def one_line(text: str) -> str:
    """``text`` (an error, a warning, a summary or log message that names files) as one line of human-readable
    output: every control character escaped as :func:`printable` escapes it, backslashes left as they are (the
    text is not a field), so that a file name inside it cannot end the line, fake the next one or move the cursor.
    Applying it twice changes nothing more."""
    return "".join(char if char == "\\" else _escaped(char) for char in text)


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _ESCAPES:
        return _ESCAPES[char]
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if code in (0x2028, 0x2029, 0x85):
        return f"\\u{code:04x}"
    return char
