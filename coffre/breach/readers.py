"""Open a leaked file as it is found in the wild and stream its rows as lists of strings.

Formats are recognised by content, not by the file's name: XLSX (a zip), JSON (an array
of objects, or an object holding one), NDJSON, a SQL dump's INSERT statements, else
delimited text (CSV, TSV, semicolons, pipes) in UTF-8 (with or without BOM) or
CP1252/Latin-1. Nothing holds the whole file in memory: rows are read one at a time
(a SQL dump one statement at a time).

A leaked file is hostile input, so what could exhaust the process is bounded before it
is parsed: JSON nesting (Python's decoder recurses: measured on the text first),
columns per row, and for XLSX the zip members' declared sizes, the shared-strings
count (openpyxl keeps that table whole in memory) and XML through defusedxml.

Errors name the file and the problem, never a value read from it. Past a bound, the
error also carries a ``code`` and ``params`` so that a page can say it in its language.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from coffre.spreadsheet import restore

SAMPLE_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024
MAX_STATEMENT = 64 * 1024 * 1024  # a SQL INSERT longer than this is not a dump we read
DELIMITERS = ",;\t|"
csv.field_size_limit(1024 * 1024)  # an unterminated quote must stop early, not eat RAM
MAX_COLUMNS = 2_000  # a leaked table has tens; a row this wide is an attack or not a table
MAX_JSON_DEPTH = 64  # FHIR resources nest about 6 deep; Python's decoder recurses
# XLSX, by the sizes the zip's directory declares (zipfile never inflates a member past
# its declared size: a lying entry fails its CRC check). Sheets are streamed; the shared
# strings are held whole by openpyxl: their count and size bound its memory (about
# 60 bytes a string plus the text: 4 M strings, 256 MiB at most).
MAX_XLSX_MEMBERS = 10_000
MAX_XLSX_MEMBER_BYTES = 1024**3
MAX_XLSX_BYTES = 4 * 1024**3
MAX_SHARED_STRINGS_BYTES = 256 * 1024**2
MAX_SHARED_STRINGS = 4_000_000


class BreachScanError(ValueError):
    """A file that cannot be read; the message names the file and the problem only.

    Past one of the bounds above, ``code`` names the bound and ``params`` its figures
    (file, limit, ...), for coffre.breach.views to say in French; the message is the
    English the command line prints."""

    def __init__(self, message: str, code: str = "", **params: object) -> None:
        super().__init__(message)
        self.code, self.params = code, params


def too_many_columns(name: str, where: str, count: int) -> BreachScanError:
    return BreachScanError(f"{name}: {where}: more than {MAX_COLUMNS:,} columns "
                           f"({count:,}): not a table this scan reads", "columns",
                           file=name, limit=MAX_COLUMNS)


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
                if len(self.header) >= MAX_COLUMNS:
                    raise too_many_columns(self.name, "JSON keys", len(self.header) + 1)
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
            if len(row) > MAX_COLUMNS:
                raise too_many_columns(path.name, f"line {reader.line_num:,}", len(row))
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
    import openpyxl

    if not openpyxl.DEFUSEDXML:  # fail closed: never parse a hostile workbook's XML raw
        raise BreachScanError(f"{path.name}: XLSX files are not read on this installation "
                              "(defusedxml is missing or OPENPYXL_DEFUSEDXML is off)")
    from defusedxml import DefusedXmlException

    _check_xlsx_archive(path)
    # A damaged workbook fails deep inside openpyxl, zipfile, zlib or the XML parser,
    # with any of their exception types: all mean the same to the person scanning.
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        if _caused_by(exc, DefusedXmlException):  # openpyxl re-raises it as ValueError
            raise _unsafe_xml(path.name) from None
        raise BreachScanError(f"{path.name}: not a readable XLSX workbook (damaged or "
                              "truncated)") from None
    try:
        for sheet in book.worksheets:
            table = Table(f"{path.name}[{sheet.title}]", first_row_maybe_header=True)
            # The declared dimension is the file's word: trusted, a single cell at
            # XFD1048576 would pad a million rows to 16,384 columns.
            sheet.reset_dimensions()
            try:
                for number, values in enumerate(sheet.iter_rows(values_only=True), 1):
                    cells = [cell_text(v) for v in _bounded(values, path.name, number)]
                    while cells and not cells[-1]:
                        cells.pop()
                    if cells:
                        yield table, cells
            except BreachScanError:
                raise
            except Exception as exc:
                if _caused_by(exc, DefusedXmlException):
                    raise _unsafe_xml(path.name) from None
                raise BreachScanError(f"{path.name}: sheet {sheet.title!r} cannot be read "
                                      f"({type(exc).__name__}: damaged or truncated)") from None
    finally:
        book.close()


def _bounded(values: tuple, name: str, number: int) -> tuple:
    """The row's first MAX_COLUMNS cells; refused if a value lies beyond (counted in C:
    a row of 16,384 mostly empty cells must not cost 16,384 Python steps)."""
    if len(values) <= MAX_COLUMNS:
        return values
    kept = values[:MAX_COLUMNS]
    if len(values) - values.count(None) > len(kept) - kept.count(None):
        raise too_many_columns(name, f"row {number:,}", len(values))
    return kept


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _unsafe_xml(name: str) -> BreachScanError:
    return BreachScanError(f"{name}: the workbook's XML declares entities or a DTD "
                           "(refused: entity expansion can exhaust memory)", "xlsx_xml",
                           file=name)


_SHARED_STRING = re.compile(rb"<(?:[\w.-]+:)?si[\s/>]")


def _check_xlsx_archive(path: Path) -> None:
    """The zip's declared sizes and the shared strings' count, before openpyxl opens it
    (a zip bomb, or a table of millions of strings that openpyxl would hold whole)."""
    from defusedxml import DefusedXmlException

    name = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if len(members) > MAX_XLSX_MEMBERS:
                raise BreachScanError(
                    f"{name}: {len(members):,} files in the XLSX archive (at most "
                    f"{MAX_XLSX_MEMBERS:,})", "xlsx_members", file=name,
                    count=len(members), limit=MAX_XLSX_MEMBERS)
            for member in members:
                if member.file_size > MAX_XLSX_MEMBER_BYTES:
                    raise _too_large(name, member.file_size, MAX_XLSX_MEMBER_BYTES)
            total = sum(member.file_size for member in members)
            if total > MAX_XLSX_BYTES:
                raise _too_large(name, total, MAX_XLSX_BYTES)
            strings = _shared_strings_part(archive)
            if strings is not None:
                _check_shared_strings(archive, strings, name)
    except BreachScanError:
        raise
    except Exception as exc:
        if _caused_by(exc, DefusedXmlException):
            raise _unsafe_xml(name) from None
        raise BreachScanError(f"{name}: not a readable XLSX workbook (damaged or "
                              "truncated)") from None


def _too_large(name: str, size: int, limit: int) -> BreachScanError:
    return BreachScanError(
        f"{name}: the XLSX archive unpacks to {size:,} bytes (at most {limit:,}): a "
        "compression bomb or too large a workbook", "xlsx_size", file=name,
        size_mb=size // 1024**2, limit_mb=limit // 1024**2)


def _shared_strings_part(archive: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The shared-strings part, found as openpyxl finds it (the package manifest)."""
    from openpyxl.packaging.manifest import Manifest
    from openpyxl.xml.constants import ARC_CONTENT_TYPES, SHARED_STRINGS
    from openpyxl.xml.functions import fromstring

    manifest = Manifest.from_tree(fromstring(archive.read(ARC_CONTENT_TYPES)))
    part = manifest.find(SHARED_STRINGS)
    return archive.getinfo(part.PartName[1:]) if part is not None else None


def _check_shared_strings(archive: zipfile.ZipFile, part: zipfile.ZipInfo,
                          name: str) -> None:
    if part.file_size > MAX_SHARED_STRINGS_BYTES:
        raise _too_many_strings(name, f"{part.file_size:,} bytes")
    count, tail = 0, b""
    with archive.open(part) as source:
        while chunk := source.read(CHUNK_BYTES):
            data = tail + chunk
            # Up to the last "<": a tag cut by the chunk's end is counted with the next.
            cut = max(0, data.rfind(b"<"))
            count += len(_SHARED_STRING.findall(data, 0, cut))
            tail = data[cut:]
            if count > MAX_SHARED_STRINGS:
                raise _too_many_strings(name, f"more than {MAX_SHARED_STRINGS:,} strings")
    count += len(_SHARED_STRING.findall(tail))
    if count > MAX_SHARED_STRINGS:
        raise _too_many_strings(name, f"{count:,} strings")


def _too_many_strings(name: str, found: str) -> BreachScanError:
    return BreachScanError(
        f"{name}: the workbook's shared-strings table is too large ({found}; at most "
        f"{MAX_SHARED_STRINGS:,} strings, {MAX_SHARED_STRINGS_BYTES // 1024**2} MiB)",
        "xlsx_strings", file=name, limit=MAX_SHARED_STRINGS,
        limit_mb=MAX_SHARED_STRINGS_BYTES // 1024**2)


# --- JSON and NDJSON ----------------------------------------------------------------------

# A JSON string, possibly cut short by the end of a buffer (then up to that end).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"[\[{][\]}]")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str) -> bool:
    """Whether JSON text (whole, or a buffer starting between two values) nests arrays
    and objects deeper than MAX_JSON_DEPTH, found without parsing it: Python's decoder
    recurses, and a deep enough document ends in RecursionError. Each step runs at C
    speed; the exact count (strings removed first) only when the quick bounds fail."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return False  # cannot nest deeper than it has openings
    if _depth_bound(_NOT_BRACKET.sub("", text)) <= MAX_JSON_DEPTH:
        return False  # brackets inside strings count here: only ever too many
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH


def _depth_bound(brackets: str) -> int:
    """An upper bound of the deepest nesting: each pass removes the innermost adjacent
    pairs (one level); what is left are unmatched closings then openings, and only the
    openings add depth."""
    for passes in range(MAX_JSON_DEPTH + 1):
        peeled = _PAIR.sub("", brackets)
        if peeled == brackets:
            return passes + peeled.count("[") + peeled.count("{")
        brackets = peeled
    return MAX_JSON_DEPTH + 1


def _too_deep_error(name: str, where: str = "") -> BreachScanError:
    return BreachScanError(f"{name}: {where}JSON nested deeper than {MAX_JSON_DEPTH} levels",
                           "json_depth", file=name, limit=MAX_JSON_DEPTH)


def _ndjson_line(line: str) -> bool:
    if _too_deep(line):
        return True  # NDJSON by its first character; _ndjson_rows names the line
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
            if _too_deep(line):
                raise _too_deep_error(path.name, f"line {number:,}: ")
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
        # pos only stops between tokens, so the buffer starts outside any string; a value
        # longer than a chunk is measured again from its start with each new chunk.
        if _too_deep(self.buf):
            raise _too_deep_error(self.name)
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
