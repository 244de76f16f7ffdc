"""All-or-nothing import of patients, from the registry CSV or any row source.

Two passes over the rows: the first validates everything (values, duplicates within
the source and against the lab) and collects every error; the second seals and
inserts in one transaction. Nothing is written unless the whole source is valid
(or ``skip_invalid`` is asked for, and then only the valid rows are written).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from coffre.audit import detection, log
from coffre.bulk import bulk_insert
from coffre.identity.models import Patient
from coffre.identity.registry import (
    CSV_COLUMNS,
    OPTIONAL_COLUMNS,
    clean_values,
    open_columns,
    sealed_row,
)
from coffre.keyring import indexes
from coffre.progress import Advance
from coffre.tenancy.actors import LabActor
from coffre.vault import ScratchDigest

BATCH = 1000
LOG_BATCH = 10_000
Rows = Iterable[tuple[int, dict[str, str]]]
# (lab id, canonical values, index key generation) -> a row to insert
Encrypt = Callable[[int, dict[str, str], indexes.Generation], dict]


class ImportFileError(ValueError):
    """The file as a whole cannot be read (encoding, header); nothing was imported."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


@dataclass
class ImportReport:
    rows_read: int = 0
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return bool(self.errors) and self.imported == 0


def check_header(header: list[str] | None) -> None:
    if not header:
        raise ImportFileError("the file is empty: expected a header row")
    names = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c not in names]
    unknown = [c for c in names if c not in CSV_COLUMNS and c not in OPTIONAL_COLUMNS]
    if len(missing) > len(CSV_COLUMNS) // 2:
        # Probably a data row, not a header: never echo its cells (patient values).
        raise ImportFileError("the first line is not the header row: expected the column "
                              "names " + ",".join(CSV_COLUMNS))
    problems = []
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    if unknown:
        problems.append(f"{len(unknown)} unknown columns at positions "
                        + ", ".join(str(names.index(c) + 1) for c in unknown))
    if len(set(names)) != len(names):
        problems.append("a column appears twice")
    if problems:
        raise ImportFileError("bad header row (" + "; ".join(problems) + ")")


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a registry CSV with their line numbers (the header is line 1)."""
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            check_header(header)
            names = [h.strip() for h in header or []]
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    yield reader.line_num, {"__shape__": f"has {len(row)} fields, "
                                                         f"expected {len(names)}"}
                    continue
                yield reader.line_num, dict(zip(names, row, strict=True))
        except UnicodeDecodeError:
            raise ImportFileError(
                f"the file is not valid UTF-8 (near line {reader.line_num + 1})") from None
        except csv.Error as exc:
            raise ImportFileError(f"line {reader.line_num}: malformed CSV ({exc})") from None


def lab_nir_digests(lab_id: int, digest: ScratchDigest) -> set[bytes]:
    """Keyed digests (under a key of this import only) of every NIR of the lab, each
    decrypted once: with per-lab blind indexes truncated for the lab's whole tuple of
    indexes, an index lookup per imported NIR would decrypt a good part of the lab every
    time. Digests, not NIRs, are kept."""
    rows = (Patient.unscoped.filter(lab_id=lab_id, data_key__isnull=False)
            .values_list("id", "lab_id", "data_key", "nir"))
    found = set()
    for pid, lab, wrapped, blob in rows.iterator(chunk_size=2000):
        nir = open_columns(pid, lab, wrapped, {"nir": blob})["nir"]
        if nir:
            found.add(digest(nir))
    return found


def validate_rows(lab_id: int, rows: Rows, advance: Advance | None = None,
                  phone_memo: dict[str, str] | None = None) -> tuple[int, list[RowError]]:
    """First pass: every error of the source, and the number of rows read."""
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    pending: dict[str, int] = {}
    digest = ScratchDigest()
    existing = lab_nir_digests(lab_id, digest)
    count = 0

    def flush() -> None:
        for nir, nir_line in pending.items():
            if digest(nir) in existing:
                errors.append(RowError(nir_line, "nir",
                                       "a patient with this NIR already exists in this lab"))
        pending.clear()

    for line, raw in rows:
        count += 1
        if "__shape__" in raw:
            errors.append(RowError(line, "*", raw["__shape__"]))
            continue
        values, problems = clean_values(raw, phone_memo)
        errors.extend(RowError(line, p.column, p.reason) for p in problems)
        nir = values.get("nir")
        if nir and not problems:
            if nir in seen:
                errors.append(RowError(line, "nir", f"same NIR as line {seen[nir]}"))
            else:
                seen[nir] = pending[nir] = line
        if len(pending) >= BATCH:
            flush()
        if advance:
            advance(1)
    flush()
    return count, sorted(errors, key=lambda e: e.line)


def import_rows(actor: LabActor, rows: Callable[[], Rows], *, skip_invalid: bool = False,
                advance_check: Advance | None = None, advance_write: Advance | None = None,
                encrypt: Encrypt = sealed_row) -> ImportReport:
    """Validate all rows, then write them in one transaction (see module docstring).

    ``rows`` is called once per pass, so a file is read twice rather than held in memory.
    ``encrypt`` exists for the benchmark's plaintext baseline only.
    """
    detection.ensure_not_locked(actor)  # the duplicate check reads the lab's NIRs
    phone_memo: dict[str, str] = {}
    count, errors = validate_rows(actor.lab_id, rows(), advance_check, phone_memo)
    report = ImportReport(rows_read=count, errors=errors)
    if errors and not skip_invalid:
        return report
    bad_lines = {e.line for e in errors}
    created: list = []
    with transaction.atomic():
        generation = indexes.current(actor.lab_id)  # the lab's index key, read once
        batch: list[dict] = []
        for line, raw in rows():
            if line in bad_lines:
                continue
            values, problems = clean_values(raw, phone_memo)
            if problems:  # the source changed between the passes: write nothing
                raise ImportFileError(f"line {line} changed during the import")
            batch.append(encrypt(actor.lab_id, values, generation))
            if len(batch) >= BATCH:
                report.imported += _write(batch, created, advance_write)
        report.imported += _write(batch, created, advance_write)
        # Logged last, in the same transaction: the chain head stays locked (and every
        # read of every lab waiting) for the end of the import only.
        for start in range(0, len(created), LOG_BATCH):
            log.record(actor, "create", created[start:start + LOG_BATCH])
    return report


def _write(batch: list[dict], created: list, advance: Advance | None) -> int:
    bulk_insert(Patient, batch)
    created.extend(row["id"] for row in batch)
    written = len(batch)
    batch.clear()
    if advance:
        advance(written)
    return written


def dict_rows(dicts: Iterable[dict[str, str]], first_line: int = 2) -> Rows:
    """Number generated rows as if they were lines of a CSV file."""
    return ((first_line + i, row) for i, row in enumerate(dicts))
