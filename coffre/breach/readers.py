"""Open a leaked file as it is found in the wild and stream its rows as lists of strings.

Formats are recognised by content, not by the file's name: XLSX (a zip), JSON (an array
of objects, or an object holding one), NDJSON, a SQL dump's INSERT statements, else
delimited text (CSV, TSV, semicolons, pipes) in UTF-8 (with or without BOM) or
CP1252/Latin-1. Nothing holds the whole file in memory: rows are read one at a time
(a SQL dump one statement at a time).

Errors name the file and the problem, never a value read from it.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from coffre.spreadsheet import restore

SAMPLE_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
MAX_STATEMENT = 64 * 1024 * 1024  # a SQL INSERT longer than this is not a dump we read
DELIMITERS = ",;\t|"
csv.field_size_limit(1024 * 1024)  # an unterminated quote must stop early, not eat RAM


class BreachScanError(ValueError):
    """A file that cannot be read; the message names the file and the problem only."""


@dataclass
class Table:
    """One table of a file: a CSV, an XLSX sheet, a SQL table, a JSON array.

    ``header`` is the column names when the format gives them (JSON keys, a SQL column
    list); for CSV and XLSX it is None and the first row may or may not be a header
    (``coffre.breach.columns`` decides). JSON keys met later are appended, so a row is
    aligned with the header as it was when the row was read.
    """

    name: str
    header: list[str] | None = None
    first_row_maybe_header: bool = False
    _keys: dict[str, int] = field(default_factory=dict, repr=False)

    def aligned(self, obj: dict) -> list[str]:
        if self.header is None:
            self.header = []
        cells = [""] * len(self.header)
        for key, value in _leaves(obj):
            pos = self._keys.get(key)
            if pos is None:
                pos = self._keys[key] = len(self.header)
                self.header.append(key)
                cells.append("")
            cells[pos] = cell_text(value)
        return cells


# Structure, not data, in a FHIR resource (one per line of a Bulk Data NDJSON export):
# left out so that constant codes do not pass for a column of names.
_FHIR_STRUCTURE = frozenset({"resourceType", "meta", "extension", "use", "system", "url",
                             "country"})


def _leaves(obj: dict) -> Iterator[tuple[str, object]]:
    """An object's cells, nested objects flattened to their leaves so that content-based
    recognition sees them: {"name": [{"use": "official", "family": ...}]} gives the cell
    "name.official.family" (a list element is named by its use or system when it has
    one, else by its position); a list of plain values is one space-separated cell."""
    skip = _FHIR_STRUCTURE if isinstance(obj.get("resourceType"), str) else frozenset()

    def walk(key: str, value: object, depth: int) -> Iterator[tuple[str, object]]:
        if isinstance(value, dict) and depth < 8:
            for name, item in value.items():
                if str(name) not in skip:
                    yield from walk(f"{key}.{name}" if key else str(name), item, depth + 1)
        elif isinstance(value, list) and depth < 8 and any(
                isinstance(v, (dict, list)) for v in value):
            for position, item in enumerate(value):
                tag = item.get("use") or item.get("system") if isinstance(item, dict) else None
                yield from walk(f"{key}.{tag if isinstance(tag, str) else position}", item,
                                depth + 1)
        elif isinstance(value, list):
            yield key, " ".join(text for v in value if (text := cell_text(v)))
        else:
            yield key, value

    yield from walk("", obj, 0)


@dataclass
class Opened:
    format: str                              # csv, xlsx, json, ndjson, sql
    rows: Iterator[tuple[Table, list[str]]]  # streamed; raises BreachScanError


def cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def open_file(path: Path) -> Opened:
    """Recognise the file's format and return its rows (lazily)."""
    name = path.name
    try:
        with path.open("rb") as handle:
            head = handle.read(SAMPLE_BYTES)
    except OSError as exc:
        raise BreachScanError(f"{name}: cannot be read ({exc.strerror})") from None
    if not head:
        raise BreachScanError(f"{name}: the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return Opened("xlsx", _xlsx_rows(path))
    if b"\x00" in head:
        raise BreachScanError(f"{name}: not a CSV, XLSX, JSON or SQL dump (binary content)")
    encoding = _encoding(path)
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if _control_share(text) > 0.01:
        raise BreachScanError(f"{name}: not a CSV, XLSX, JSON or SQL dump (binary content)")
    start = text.lstrip()[:1]
    if start == "[":
        return Opened("json", _json_rows(path, encoding))
    if start == "{":
        first = text.lstrip().split("\n", 1)[0]
        if _ndjson_line(first):
            return Opened("ndjson", _ndjson_rows(path, encoding))
        return Opened("json", _json_rows(path, encoding))
    if re.search(r"(?im)^\s*INSERT\s+INTO\s", text):
        return Opened("sql", _sql_rows(path, encoding))
    return Opened("csv", _csv_rows(path, encoding, text))


def _control_share(text: str) -> float:
    bad = sum(1 for c in text if ord(c) < 32 and c not in "\r\n\t\f")
    return bad / max(1, len(text))


def _encoding(path: Path) -> str:
    """UTF-8 when the whole file decodes strictly (streamed), else CP1252, else Latin-1
    (which decodes any byte)."""
    for encoding in ("utf-8-sig", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK_BYTES):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
            return encoding
        except UnicodeDecodeError:
            continue
    return "latin-1"


def _text_handle(path: Path, encoding: str) -> io.TextIOWrapper:
    return path.open("r", encoding=encoding, newline="")


# --- delimited text ----------------------------------------------------------------------

def _dialect(sample: str) -> type[csv.Dialect] | csv.Dialect:
    lines = sample.splitlines()[:50]
    cut = "\n".join(lines[:-1] if len(lines) > 1 else lines)
    try:
        return csv.Sniffer().sniff(cut, delimiters=DELIMITERS)
    except csv.Error:
        pass

    class Fallback(csv.excel):  # the delimiter splitting the first lines most evenly
        delimiter = max(DELIMITERS, key=lambda d: min((line.count(d) for line in lines
                                                       if line.strip()), default=0))
    return Fallback


def _csv_rows(path: Path, encoding: str, sample: str) -> Iterator[tuple[Table, list[str]]]:
    dialect = _dialect(sample)
    table = Table(path.name, first_row_maybe_header=True)
    with _text_handle(path, encoding) as handle:
        reader = csv.reader(handle, dialect, strict=True)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise BreachScanError(f"{path.name}: line {reader.line_num:,}: "
                                      f"{_csv_problem(exc)}") from None
            if row and any(cell.strip() for cell in row):
                # An apostrophe put before a formula-like cell (coffre.spreadsheet, as
                # Coffre's exports do) is not part of the value.
                yield table, [restore(cell.strip()) for cell in row]


def _csv_problem(exc: csv.Error) -> str:
    text = str(exc)
    if "field larger" in text or "end of data" in text or "EOF" in text:
        return "unterminated quote"
    if "expected after" in text:
        return "misplaced quote"
    return "malformed CSV"


# --- XLSX ---------------------------------------------------------------------------------

def _xlsx_rows(path: Path) -> Iterator[tuple[Table, list[str]]]:
    from openpyxl import load_workbook

    # A damaged workbook fails deep inside openpyxl, zipfile, zlib or the XML parser,
    # with any of their exception types: all mean the same to the person scanning.
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception:
        raise BreachScanError(f"{path.name}: not a readable XLSX workbook (damaged or "
                              "truncated)") from None
    try:
        for sheet in book.worksheets:
            table = Table(f"{path.name}[{sheet.title}]", first_row_maybe_header=True)
            try:
                for values in sheet.iter_rows(values_only=True):
                    cells = [cell_text(v) for v in values]
                    while cells and not cells[-1]:
                        cells.pop()
                    if cells:
                        yield table, cells
            except Exception as exc:
                raise BreachScanError(f"{path.name}: sheet {sheet.title!r} cannot be read "
                                      f"({type(exc).__name__}: damaged or truncated)") from None
    finally:
        book.close()


# --- JSON and NDJSON ----------------------------------------------------------------------

def _ndjson_line(line: str) -> bool:
    try:
        value = json.loads(line)
    except ValueError:
        return False
    if isinstance(value, dict) and value.get("resourceType") not in (None, "Bundle"):
        return True  # FHIR Bulk Data: one resource per line, nested by nature
    return isinstance(value, dict) and not any(
        isinstance(v, list) and v and isinstance(v[0], dict) for v in value.values())


def _ndjson_rows(path: Path, encoding: str) -> Iterator[tuple[Table, list[str]]]:
    table = Table(path.name)
    with path.open("r", encoding=encoding) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                raise BreachScanError(f"{path.name}: line {number:,}: not valid JSON") from None
            if not isinstance(obj, dict):
                raise BreachScanError(f"{path.name}: line {number:,}: not a JSON object")
            yield table, table.aligned(obj)


class _JsonStream:
    """A streaming reader of one JSON document: values are decoded one at a time from a
    sliding buffer, so an array of 500,000 objects is never held whole."""

    def __init__(self, handle: io.TextIOBase, name: str) -> None:
        self.handle, self.name, self.buf, self.pos = handle, name, "", 0
        self.decoder = json.JSONDecoder()

    def _fill(self) -> bool:
        chunk = self.handle.read(CHUNK_BYTES)
        if not chunk:
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n\ufeff":
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise BreachScanError(f"{self.name}: malformed JSON (expected {char!r})")
        self.pos += 1

    def value(self) -> object:
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except ValueError:
                if len(self.buf) - self.pos > MAX_STATEMENT or not self._fill():
                    raise BreachScanError(f"{self.name}: malformed or truncated JSON") from None
                continue
            if end == len(self.buf) and self._fill():  # a number may go on in the next chunk
                continue
            self.pos = end
            return value

    def array(self) -> Iterator[object]:
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            char = self.peek()
            self.pos += 1
            if char == "]":
                return
            if char != ",":
                raise BreachScanError(f"{self.name}: malformed or truncated JSON array")


def _json_rows(path: Path, encoding: str) -> Iterator[tuple[Table, list[str]]]:
    with path.open("r", encoding=encoding) as handle:
        stream = _JsonStream(handle, path.name)
        if stream.peek() == "[":
            yield from _json_objects(Table(path.name), stream.array(), path.name)
            return
        stream.expect("{")
        found = False
        while stream.peek() not in ("}", ""):
            key = stream.value()
            stream.expect(":")
            if stream.peek() == "[":
                found = True
                yield from _json_objects(Table(f"{path.name}[{key}]"), stream.array(),
                                         path.name)
            else:
                stream.value()  # metadata next to the rows: skipped
            if stream.peek() == ",":
                stream.pos += 1
        stream.expect("}")
        if not found:
            raise BreachScanError(f"{path.name}: the JSON object holds no array of rows")


def _json_objects(table: Table, items: Iterator[object], name: str
                  ) -> Iterator[tuple[Table, list[str]]]:
    for item in items:
        if isinstance(item, dict):
            yield table, table.aligned(item)
        elif isinstance(item, list):
            yield table, [cell_text(v) for v in item]
        else:
            raise BreachScanError(f"{name}: a JSON array element is not an object")


# --- SQL dumps ----------------------------------------------------------------------------

_INSERT = re.compile(
    r"INSERT\s+(?:IGNORE\s+)?INTO\s+((?:[`\"\[]?[\w$]+[`\"\]]?\.)?[`\"\[]?[\w$]+[`\"\]]?)"
    r"\s*(\(((?:`[^`]*`|\"[^\"]*\"|[^()`\"])*)\))?\s*VALUES\s*", re.IGNORECASE)
# One token of a VALUES list: a quoted string (MySQL backslash escapes or SQL doubled
# quotes, PostgreSQL E'' prefix), a bare word or number, or punctuation.
_TOKEN = re.compile(r"\s*(?:[Ee]?'((?:[^'\\]|\\.|'')*)'|([^\s,()';]+)|([(),;]))", re.DOTALL)
_COLUMN = re.compile(r"`[^`]*`|\"[^\"]*\"|[^,]+")
_MYSQL_ESCAPES = {"0": "\0", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "b": "\b"}


def _unquote(text: str) -> str:
    text = text.replace("''", "'")
    if "\\" not in text:
        return text
    return re.sub(r"\\(.)", lambda m: _MYSQL_ESCAPES.get(m.group(1), m.group(1)), text)


def _sql_rows(path: Path, encoding: str) -> Iterator[tuple[Table, list[str]]]:
    tables: dict[str, Table] = {}
    for line_no, statement in _statements(path, encoding):
        match = _INSERT.search(statement)
        if not match:
            continue
        name = re.sub(r"[`\"\[\]]", "", match.group(1))
        table = tables.get(name)
        if table is None:
            columns = match.group(3)
            header = ([c.strip().strip('`"[]') for c in _COLUMN.findall(columns)]
                      if columns else None)
            table = tables[name] = Table(f"{path.name}[{name}]", header=header)
        for row in _values(statement, match.end(), path.name, line_no):
            yield table, row


def _statements(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """INSERT statements (with the line they start on); other statements are skipped."""
    with path.open("r", encoding=encoding) as handle:
        parts: list[str] = []
        size, start = 0, 0
        for number, line in enumerate(handle, 1):
            if not parts:
                if not re.match(r"\s*INSERT\s", line, re.IGNORECASE):
                    continue
                start = number
            parts.append(line)
            size += len(line)
            if size > MAX_STATEMENT:
                raise BreachScanError(f"{path.name}: line {start:,}: INSERT statement never "
                                      "ends (unterminated quote?)")
            if line.rstrip().endswith(";") and _closed("".join(parts)):
                yield start, "".join(parts)
                parts, size = [], 0
        if parts:
            raise BreachScanError(f"{path.name}: line {start:,}: unterminated quote or "
                                  "truncated INSERT statement")


def _closed(statement: str) -> bool:
    """Whether every quote of the statement is closed (escapes and '' counted)."""
    quoted = False
    i, n = 0, len(statement)
    while i < n:
        j = statement.find("'", i) if not quoted else -1
        if not quoted:
            if j < 0:
                return True
            quoted, i = True, j + 1
            continue
        k = statement.find("'", i)
        b = statement.find("\\", i)
        if k < 0:
            return False
        if 0 <= b < k:
            i = b + 2
            continue
        if k + 1 < n and statement[k + 1] == "'":
            i = k + 2
            continue
        quoted, i = False, k + 1
    return not quoted


def _values(statement: str, pos: int, name: str, line_no: int) -> Iterator[list[str]]:
    row: list[str] | None = None
    for match in _TOKEN.finditer(statement, pos):
        quoted, bare, punct = match.groups()
        if punct == "(":
            row = []
        elif punct == ")":
            if row is None:
                raise BreachScanError(f"{name}: line {line_no:,}: malformed VALUES list")
            yield row
            row = None
        elif punct == ";":
            break
        elif punct is None and row is not None:
            if quoted is not None:
                row.append(_unquote(quoted))
            else:
                row.append("" if bare.upper() == "NULL" else bare)
    if row is not None:
        raise BreachScanError(f"{name}: line {line_no:,}: truncated VALUES list")
