"""FHIR errors as OperationOutcome: a clear message naming the problem, never a value.

Every error the API returns goes through ``outcome`` so its shape is decided once.
"""

from __future__ import annotations

import json

from django.http import HttpResponse

FHIR_JSON = "application/fhir+json"


class FhirError(Exception):
    """A request the API refuses; the message is shown to the client as is.

    ``code`` is a FHIR IssueType (invalid, not-found, forbidden, login, throttled,
    too-costly, not-supported, structure, processing, exception...).
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def fhir_response(resource: dict, status: int = 200,
                  headers: dict[str, str] | None = None) -> HttpResponse:
    response = HttpResponse(json.dumps(resource, ensure_ascii=False, separators=(",", ":")),
                            status=status, content_type=FHIR_JSON)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def outcome(status: int, code: str, message: str,
            headers: dict[str, str] | None = None) -> HttpResponse:
    severity = "error" if status >= 400 else "information"
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": message}]}
    return fhir_response(body, status, headers)


def from_error(error: FhirError) -> HttpResponse:
    return outcome(error.status, error.code, error.message)
