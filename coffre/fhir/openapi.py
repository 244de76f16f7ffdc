"""The OpenAPI 3 description of the FHIR API (GET /fhir/openapi.json), built from the
same tables as the URLs and the views (coffre.fhir.routes), so it cannot drift; a test
checks every URL pattern and search parameter against it, both ways."""

from __future__ import annotations

import json

from coffre.fhir.create import CREATORS
from coffre.fhir.resources import INS_NIR_SYSTEM, LOINC
from coffre.fhir.routes import (
    FHIR_VERSION,
    ID_DOC,
    MAX_BODY,
    READ_TYPES,
    content_note,
    search_params,
)
from coffre.fhir.service import SEARCHERS

FHIR_JSON = "application/fhir+json"
OUTCOME = {"$ref": "#/components/responses/OperationOutcome"}
ERRORS = {code: OUTCOME for code in ("400", "401", "403", "404", "429")}
WRITE_ERRORS = {**ERRORS, **{code: OUTCOME for code in ("413", "415", "422")}}

# Example bodies (synthetic people): the documentation's and the fuzz test's seeds.
PATIENT_EXAMPLE = {
    "resourceType": "Patient",
    "identifier": [{"system": INS_NIR_SYSTEM, "value": "285037505612306"}],
    "name": [{"use": "official", "family": "Lefèvre", "given": ["Claire", "Anne"]},
             {"use": "usual", "family": "Martin", "given": ["Claire", "Anne"]}],
    "gender": "female", "birthDate": "1985-03-14",
    "telecom": [{"system": "phone", "value": "06 12 34 56 78"},
                {"system": "email", "value": "claire.martin@example.fr"}],
    "address": [{"line": ["12 rue des Lilas"], "postalCode": "75011", "city": "Paris"}],
}
SERVICE_REQUEST_EXAMPLE = {
    "resourceType": "ServiceRequest", "status": "active", "intent": "order",
    "subject": {"reference": "Patient/00000000-0000-4000-8000-000000000000"},
    "code": {"coding": [{"system": LOINC, "code": "2823-3"},
                        {"system": "urn:coffre:test", "code": "NFS"}]},
    "requester": {"reference": "Practitioner/10003456786", "display": "Paul Bernard"},
    "priority": "routine", "note": [{"text": "Bilan annuel"}],
}
TRANSACTION_EXAMPLE = {
    "resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8f6a3c1e-0d1b-4a4e-9d57-2f1c6f0b9a11",
         "resource": PATIENT_EXAMPLE, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**SERVICE_REQUEST_EXAMPLE, "subject": {
            "reference": "urn:uuid:8f6a3c1e-0d1b-4a4e-9d57-2f1c6f0b9a11"}},
         "request": {"method": "POST", "url": "ServiceRequest"}}]}
EXAMPLES = {"Patient": PATIENT_EXAMPLE, "ServiceRequest": SERVICE_REQUEST_EXAMPLE,
            "Bundle": TRANSACTION_EXAMPLE}


def _resource_schema(resource_type: str) -> dict:
    note = content_note(resource_type)
    return {"type": "object", "required": ["resourceType"],
            "properties": {"resourceType": {"type": "string", "enum": [resource_type]}},
            "description": f"A FHIR R4 {resource_type} (http://hl7.org/fhir/R4/"
                           f"{resource_type.lower()}.html)" + (f"; {note}" if note else "")}


def _scope_text(resource_type: str) -> str:
    note = content_note(resource_type)
    return f"read {resource_type}" + (f" ({note})" if note else "")


def _content(schema: dict, example: dict | None = None) -> dict:
    media: dict = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {FHIR_JSON: media}


def _ok(resource_type: str, status: str = "200", text: str = "") -> dict:
    return {status: {"description": text or resource_type,
                     "content": _content({"$ref": f"#/components/schemas/{resource_type}"})}}


def _search(resource_type: str) -> dict:
    parameters = [{"name": p.name, "in": "query", "required": False,
                   "description": f"{p.type}: {p.doc}",
                   "schema": {"type": "integer", "minimum": 0} if p.type == "number"
                   else {"type": "string"}}
                  for p in search_params(resource_type)]
    return {"operationId": f"search{resource_type}", "tags": [resource_type],
            "summary": f"Search {resource_type} (a searchset Bundle, paged)",
            **({"description": f"Scopes apply to the content: {content_note(resource_type)}"}
               if content_note(resource_type) else {}),
            "parameters": parameters, "security": [{"bearer": []}],
            "responses": {**_ok("Bundle"), **ERRORS}}


def _create(resource_type: str) -> dict:
    return {"operationId": f"create{resource_type}", "tags": [resource_type],
            "summary": f"Create a {resource_type} (201 with Location)",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "description": f"at most {MAX_BODY} bytes",
                            "content": _content({"$ref": f"#/components/schemas/"
                                                         f"{resource_type}"},
                                                EXAMPLES[resource_type])},
            "responses": {**_ok(resource_type, "201", "created"), **WRITE_ERRORS}}


def _read(resource_type: str) -> dict:
    return {"get": {
        "operationId": f"read{resource_type}", "tags": [resource_type],
        "summary": f"Read a {resource_type}",
        **({"description": f"Scopes apply to the content: {content_note(resource_type)}"}
           if content_note(resource_type) else {}),
        "parameters": [{"name": "id", "in": "path", "required": True,
                        "description": ID_DOC[resource_type], "schema": {"type": "string"}}],
        "security": [{"bearer": []}], "responses": {**_ok(resource_type), **ERRORS}}}


def paths() -> dict[str, dict]:
    """Path -> operations, for the URL patterns of coffre.fhir.urls (tested both ways)."""
    found: dict[str, dict] = {
        "/fhir/metadata": {"get": {
            "operationId": "capabilities", "summary": "The CapabilityStatement (no token)",
            "security": [], "responses": _ok("CapabilityStatement")}},
        "/fhir/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This description (no token)",
            "security": [], "responses": {"200": {"description": "OpenAPI 3 JSON"}}}},
        "/fhir/": {"post": {
            "operationId": "transaction", "summary": "A transaction Bundle: Patient and "
            "ServiceRequest entries (POST), all or nothing", "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": _content(
                {"$ref": "#/components/schemas/Bundle"}, TRANSACTION_EXAMPLE)},
            "responses": {**_ok("Bundle", "200", "transaction-response"),
                          **WRITE_ERRORS}}},
    }
    for resource_type in READ_TYPES:
        operations = {}
        if resource_type in SEARCHERS:
            operations["get"] = _search(resource_type)
        if resource_type in CREATORS:
            operations["post"] = _create(resource_type)
        if operations:
            found[f"/fhir/{resource_type}"] = operations
        found[f"/fhir/{resource_type}/{{id}}"] = _read(resource_type)
    return found


def document(base: str = "/fhir/") -> dict:
    types = sorted({*READ_TYPES, "Bundle", "CapabilityStatement", "OperationOutcome"})
    server = base[: -len("/fhir/")] if base.endswith("/fhir/") else base
    return {
        "openapi": "3.0.3",
        "info": {"title": "Coffre FHIR API", "version": FHIR_VERSION,
                 "description": f"FHIR R4 ({FHIR_VERSION}) JSON API of a Coffre "
                                "installation; see docs/fhir-api.md."},
        "servers": [{"url": server or "/"}],
        "paths": paths(),
        "components": {
            "schemas": {t: _resource_schema(t) for t in types},
            "responses": {"OperationOutcome": {
                "description": "An error, as a FHIR OperationOutcome (no submitted value)",
                "content": _content({"$ref": "#/components/schemas/OperationOutcome"})}},
            "securitySchemes": {"bearer": {
                "type": "oauth2", "description": "Client credentials; system/ scopes",
                "flows": {"clientCredentials": {
                    "tokenUrl": f"{server}/fhir/auth/token",
                    "scopes": {"system/*.read": "read everything of the lab",
                               "system/*.write": "create patients and orders",
                               **{f"system/{t}.read": _scope_text(t) for t in READ_TYPES},
                               **{f"system/{t}.write": f"create {t}" for t in CREATORS}}}}}},
        },
    }


def document_json(base: str) -> str:
    return json.dumps(document(base), ensure_ascii=False, indent=1)
