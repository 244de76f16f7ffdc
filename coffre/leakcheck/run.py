"""``coffre leakcheck``: decrypt every patient in memory and look for their values in
clear in every file under COFFRE_HOME (database, WAL, logs, backups, exports).

Only values that identify a person are looked for: values shared by many patients
(sex, blood group, postal code, insurer, the referring doctor) would match everywhere
and prove nothing. Short names are also looked for glued to the first names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from coffre.identity.models import Patient
from coffre.identity.registry import open_patient
from coffre.leakcheck.scan import Needle, format_report, scan

SEARCHED_FIELDS = ("nir", "birth_name", "used_name", "first_names", "address", "city",
                   "phone", "email", "notes", "treatments")
Bars = Callable[[str, int | None], Callable[[int], None]]


def patient_needles(advance: Callable[[int], None] | None = None) -> Iterator[Needle]:
    patients = Patient.unscoped.filter(data_key__isnull=False).iterator(chunk_size=2000)
    for patient in patients:
        record = open_patient(patient, SEARCHED_FIELDS)
        owner = str(patient.id)
        for name in SEARCHED_FIELDS:
            value = record.values[name]
            if value:
                yield Needle(owner, name, value)
        for surname in {record.birth_name, record.used_name} - {""}:
            yield Needle(owner, "name", f"{surname} {record.first_names}")
            yield Needle(owner, "name", f"{record.first_names} {surname}")
        if advance:
            advance(1)


def run_leakcheck(home: Path, add: Bars) -> tuple[list[str], bool]:
    """The report lines, and whether the check passed: no hit, and every file read."""
    total = Patient.unscoped.filter(data_key__isnull=False).count()
    needles = patient_needles(add("decrypting patients", total))
    scanning = add("scanning files", None)
    report = scan(home, needles, progress=lambda _name, done, _size: scanning(done))
    return format_report(report), not report.hits and not report.errors
