"""FHIR Bulk Data NDJSON (one resource per line) for the registry: Patient lines read
for an import from a former LIS, and written for an export.

Both directions go through the FHIR API's own mapping: ``create.patient_values`` (a
Patient to registry values, after ``create.check_model``) and
``resources.patient_elements`` (registry values to Patient elements). The import's rows
are the registry importer's (coffre.identity.importer), so the same all-or-nothing
validation applies; this module sits in coffre.fhir because fhir depends on identity,
never the other way round.

Errors name the line and the problem (a FHIR path, an error kind), never a value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from coffre.fhir import resources as fr
from coffre.fhir.create import check_model, patient_values
from coffre.fhir.outcome import FhirError
from coffre.identity.importer import ImportFileError

# Registry columns an NDJSON export may carry: those a FHIR Patient has elements for.
EXPORT_COLUMNS = tuple(c for c in fr.PATIENT_COLUMNS if c != "identity_status")


def patient_row(text: str) -> dict[str, str]:
    """The registry row of one NDJSON line, or {"__shape__": problem} (the importer
    reports it against the line, as it does a CSV row of the wrong shape)."""
    try:
        resource = json.loads(text)
    except (ValueError, RecursionError):
        return {"__shape__": "not valid JSON"}
    if not isinstance(resource, dict):
        return {"__shape__": "not a JSON object (expected a FHIR Patient resource)"}
    if resource.get("resourceType") != "Patient":
        return {"__shape__": "not a Patient resource (one Patient per line)"}
    try:
        check_model(resource)
        return patient_values(resource)
    except FhirError as exc:
        return {"__shape__": exc.message}


def ndjson_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a FHIR NDJSON file of Patients with their line numbers (from 1), read a
    line at a time; blank lines are skipped."""
    try:
        handle = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImportFileError(f"cannot open {path}: {exc.strerror}") from None
    number = 0
    with handle:
        try:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, patient_row(line)
        except UnicodeDecodeError:
            raise ImportFileError(
                f"the file is not valid UTF-8 (near line {number + 1})") from None
    if number == 0:
        raise ImportFileError("the file is empty: expected one Patient resource per line")


def patient_line(values: dict[str, str]) -> bytes:
    """One NDJSON line: a Patient of the given registry values and of those only (no
    id: an export carries what was asked for, not the registry's identifiers)."""
    resource = {"resourceType": "Patient",
                **fr.patient_elements({k: v for k, v in values.items() if v})}
    return (json.dumps(resource, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
