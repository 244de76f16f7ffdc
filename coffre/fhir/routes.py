"""The API's one description: resource types, interactions and search parameters.

The views dispatch on these tables, the CapabilityStatement and the OpenAPI description
are built from them, and a test checks the URL patterns against them: one source, so
the documents cannot drift from what is served.
"""

from __future__ import annotations

from dataclasses import dataclass

FHIR_VERSION = "4.0.1"
MAX_BODY = 1024 * 1024  # bytes; larger bodies are refused before parsing (413)
DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_OFFSET = 100_000


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # FHIR search parameter type: token, string, date, reference, number
    doc: str


PATIENT_REF = "a Patient reference: Patient/<id> or <id>"
# Every type but Patient is searched within one patient.
BY_PATIENT = (Param("patient", "reference", PATIENT_REF + " (required, or subject)"),
              Param("subject", "reference", "same as patient"))
SEARCH: dict[str, tuple[Param, ...]] = {
    "Patient": (
        Param("identifier", "token", "INS-NIR: urn:oid:1.2.250.1.213.1.4.8|<NIR> or <NIR>"),
        Param("family", "string", "birth or used name (exact, accents ignored); needs "
                                  "birthdate"),
        Param("name", "string", "same as family"),
        Param("birthdate", "date", "YYYY-MM-DD (with family or name)"),
        Param("telecom", "token", "phone|<number>, email|<address> or the value alone"),
        Param("phone", "token", "a phone number"),
        Param("email", "token", "an email address"),
    ),
    "Observation": (
        *BY_PATIENT,
        Param("code", "token", "http://loinc.org|<code>, <LOINC> or a local test code; "
                               "comma-separated for several"),
        Param("date", "date", "collection time, with eq/ge/gt/le/lt prefixes; repeatable"),
        Param("status", "token", "registered, final, amended, cancelled (comma-separated)"),
    ),
    "DiagnosticReport": (
        *BY_PATIENT,
        Param("code", "token", "http://loinc.org|11502-2 (any report) or the LOINC code "
                               "of a test the report holds"),
        Param("date", "date", "order date, with eq/ge/gt/le/lt prefixes; repeatable"),
        Param("status", "token", "registered, partial, final, amended, cancelled"),
    ),
    "ServiceRequest": (
        *BY_PATIENT,
    ),
    "Specimen": (
        *BY_PATIENT,
    ),
}
COMMON = (
    Param("_count", "number", f"page size (default {DEFAULT_COUNT}, at most {MAX_COUNT}; "
                              "0 for the total alone)"),
    Param("_offset", "number", "index of the first match of the page (the next link "
                               "carries it)"),
    Param("_summary", "token", "count: the total alone, no entries (as _count=0)"),
)
READ_TYPES = ("Patient", "Practitioner", "Organization", "ServiceRequest", "Specimen",
              "Observation", "DiagnosticReport")
CREATE_TYPES = ("Patient", "ServiceRequest")
# Scopes apply to what an answer contains, not only to its type: an element that shows
# the content of other types is given only to a token that may read them too, and left
# out otherwise (docs/fhir-api.md, "Scopes and content"). The compte rendu PDF shows the
# patient's identity (NIR, names, birth date, sex), the results and the prescriber.
# Nothing else carries another type's content: references name ids only (no display of
# a Patient, no contained resource).
CONTENT_SCOPES: dict[tuple[str, str], frozenset[str]] = {
    ("DiagnosticReport", "presentedForm"): frozenset({"Patient", "Observation",
                                                      "ServiceRequest"}),
}


def content_allowed(resource_type: str, element: str, readable: frozenset[str]) -> bool:
    """Whether a token that may read the ``readable`` types gets this element."""
    return CONTENT_SCOPES.get((resource_type, element), frozenset()) <= readable


def content_note(resource_type: str) -> str:
    """What a token needs beyond ``<Type>.read`` for each element of CONTENT_SCOPES."""
    return "; ".join(f"{element} only with {', '.join(f'system/{t}.read' for t in sorted(needs))}"
                     for (kind, element), needs in CONTENT_SCOPES.items()
                     if kind == resource_type)
ID_DOC = {
    "Patient": "the patient's id (UUID)",
    "Practitioner": "the RPPS number (11 digits) of a prescriber of the lab's orders",
    "Organization": "the lab's FINESS number (9 characters)",
    "ServiceRequest": "the order's id (UUID)",
    "Specimen": "the specimen's id (UUID)",
    "Observation": "the result's id (UUID)",
    "DiagnosticReport": "the order's id (UUID): one report per order",
}


def search_params(resource_type: str) -> tuple[Param, ...]:
    return SEARCH.get(resource_type, ()) + COMMON
