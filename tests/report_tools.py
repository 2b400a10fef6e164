"""Reading a written report back as data, so report tests compare the page's numbers with the tables and JSON it was
built from instead of looking for fixed phrases."""
from __future__ import annotations

import base64
import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np


class Table(list):
    """A parsed table: its rows of cell texts (header rows included); ``is_data[i]``: row ``i`` holds a ``<td>``."""

    def __init__(self) -> None:
        super().__init__()
        self.is_data: list[bool] = []


class _Tables(HTMLParser):
    """Every ``<table>`` of a page as rows of cell texts (nested tags' text joined, entities decoded), header rows
    included, and every ``<dt>``/``<dd>`` pair."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[Table] = []
        self.facts: dict[str, str] = {}
        self._cell: list[str] | None = None
        self._term: list[str] | None = None
        self._definition: list[str] | None = None
        self._last_term = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(Table())
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
            self.tables[-1].is_data.append(False)
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "td":
                self.tables[-1].is_data[-1] = True
        elif tag == "dt":
            self._term = []
        elif tag == "dd":
            self._definition = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "dt" and self._term is not None:
            self._last_term, self._term = "".join(self._term).strip(), None
        elif tag == "dd" and self._definition is not None:
            self.facts[self._last_term] = "".join(self._definition).strip()
            self._definition = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._term, self._definition):
            if part is not None:
                part.append(data)


def read_page(page: str) -> _Tables:
    """The page's tables (``.tables``: list of tables, each a list of rows of cell texts) and its facts list
    (``.facts``: ``<dt>`` text -> ``<dd>`` text)."""
    parser = _Tables()
    parser.feed(page)
    parser.close()
    return parser


def body_rows(table: Table) -> list[list[str]]:
    """The rows of a parsed table that hold data cells (``<td>``; header rows hold only ``<th>``)."""
    return [row for row, is_data in zip(table, table.is_data) if is_data]


def header_rows(table: Table) -> list[list[str]]:
    """The rows of a parsed table that hold only ``<th>`` cells."""
    return [row for row, is_data in zip(table, table.is_data) if not is_data]


def fmt(value: float | int | str) -> str:
    """A number as the report writes it (3 significant digits, counts with thousands separators; NaN ``n/a``)."""
    if isinstance(value, str):
        value = float(value)
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    return "n/a" if np.isnan(value) else f"{value:.3g}"


def with_interval(value: float | str, low: float | str, high: float | str) -> str:
    """``value [low, high]`` as the report writes a number with its interval (the value alone without one)."""
    if np.isnan(float(low)) or np.isnan(float(high)):
        return fmt(value)
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def embeds_file(page: str, path: Path) -> bool:
    """Whether the page carries the bytes of ``path`` (a written plot) as a base64 data URI."""
    return f"base64,{base64.b64encode(path.read_bytes()).decode('ascii')}\"" in page


def recognisers_note(page: str) -> tuple[list[str], str]:
    """The page's note on the recognisers (``<p class=recognisers>``): the names it sets in bold (the recognisers,
    in the order the note names them) and its text (tags removed, entities decoded)."""
    match = re.search(r"<p class=recognisers>(.*?)</p>", page, re.S)
    assert match, "the page has no note on the recognisers"
    bold = [html.unescape(name) for name in re.findall(r"<b>(.*?)</b>", match.group(1))]
    return bold, html.unescape(re.sub(r"<[^>]+>", "", match.group(1)))
