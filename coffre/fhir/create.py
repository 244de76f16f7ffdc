"""Create: a Patient, a ServiceRequest, or both in a transaction Bundle.

The FHIR body is checked against the R4B model, then turned into the registry's and the
order desk's own inputs, so the same rules apply as on the web pages (NIR key and its
match with sex and birth date, phone, RPPS, catalogue codes...). All or nothing: a
transaction runs in one database transaction and any failure leaves nothing written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

from django.db import transaction

from coffre.fhir import resources as fr
from coffre.fhir.outcome import FhirError
from coffre.fhir.routes import MAX_BODY
from coffre.identity.access import InvalidPatient, PatientNotFound, create_patient
from coffre.labwork.access import access_order
from coffre.labwork.orders import InvalidOrder, OrderRequest, create_order
from coffre.refusals import english
from coffre.tenancy.actors import LabActor

MAX_ENTRIES = 100
JSON_TYPES = ("application/fhir+json", "application/json")
# Registry columns as FHIR paths, for error messages.
PATIENT_PATHS = {
    "nir": "Patient.identifier (INS-NIR)", "birth_name": "Patient.name (official)",
    "used_name": "Patient.name (usual)", "first_names": "Patient.name.given",
    "sex": "Patient.gender", "birth_date": "Patient.birthDate",
    "address": "Patient.address.line", "postal_code": "Patient.address.postalCode",
    "city": "Patient.address.city", "phone": "Patient.telecom (phone)",
    "email": "Patient.telecom (email)",
    "identity_status": "Patient.extension (identity reliability)",
}
SEX = {"male": "M", "female": "F"}
URGENT = {"urgent", "asap", "stat"}


def unprocessable(message: str) -> FhirError:
    return FhirError(422, "processing", message)


# --- the body ---------------------------------------------------------------------------

def parse_body(content_type: str, length: str | None, read: Callable[[int], bytes],
               expected: str) -> dict:
    """The JSON resource of a request, refused before parsing when too large, of the
    wrong media type, malformed or of another resource type."""
    media = content_type.split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise FhirError(415, "not-supported", "send the resource as application/fhir+json")
    try:
        declared = int(length or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        raise FhirError(413, "too-costly", f"the body is larger than {MAX_BODY} bytes")
    raw = read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise FhirError(413, "too-costly", f"the body is larger than {MAX_BODY} bytes")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise FhirError(400, "structure", "the body is not valid JSON (UTF-8)") from None
    if not isinstance(body, dict):
        raise FhirError(400, "structure", "the body must be a JSON object (a FHIR resource)")
    if body.get("resourceType") != expected:
        raise FhirError(400, "invalid", f"this endpoint takes a {expected} resource")
    check_model(body)
    return body


def check_model(resource: dict) -> None:
    try:
        found = fr.problems(resource)
    except RecursionError:
        found = ["the resource is nested too deeply"]
    if found:
        raise FhirError(400, "structure", "the resource is not valid FHIR: " + "; ".join(found))


# --- Patient ----------------------------------------------------------------------------

def _names(resource: dict) -> dict[str, str]:
    names = resource.get("name") or []
    official = next((n for n in names if n.get("use") in ("official", None)), None)
    usual = next((n for n in names if n.get("use") in ("usual", "maiden")), None)
    first = official or usual or {}
    return {"birth_name": (official or {}).get("family", ""),
            "used_name": (usual or {}).get("family", ""),
            "first_names": " ".join(first.get("given") or [])}


def _identity_status(resource: dict) -> str:
    for extension in resource.get("extension") or []:
        if extension.get("url") != fr.RELIABILITY_URL:
            continue
        for part in extension.get("extension") or []:
            if part.get("url") == "identityStatus":
                return (part.get("valueCoding") or {}).get("code", "")
    return ""


def patient_values(resource: dict) -> dict[str, str]:
    """The registry's raw values from a FHIR Patient (validated by the model already)."""
    nirs = [i.get("value", "") for i in resource.get("identifier") or []
            if i.get("system") == fr.INS_NIR_SYSTEM]
    if len(nirs) > 1:
        raise unprocessable("Patient.identifier: at most one INS-NIR")
    if len(nirs) != len(resource.get("identifier") or []):
        raise unprocessable(f"Patient.identifier: only the INS-NIR ({fr.INS_NIR_SYSTEM}) "
                            "is accepted")
    telecom = resource.get("telecom") or []
    address = (resource.get("address") or [{}])[0]
    raw = {"nir": nirs[0] if nirs else "", **_names(resource),
           "sex": SEX.get(resource.get("gender", ""), ""),
           "birth_date": resource.get("birthDate", ""),
           "phone": next((t.get("value", "") for t in telecom if t.get("system") == "phone"),
                         ""),
           "email": next((t.get("value", "") for t in telecom if t.get("system") == "email"),
                         ""),
           "address": " ".join(address.get("line") or []),
           "postal_code": address.get("postalCode", ""), "city": address.get("city", ""),
           "identity_status": _identity_status(resource)}
    return raw


def create_patient_resource(actor: LabActor, resource: dict) -> dict:
    try:
        record = create_patient(actor, patient_values(resource))
    except InvalidPatient as exc:
        raise unprocessable("; ".join(f"{PATIENT_PATHS.get(e.column, e.column)}: {e.reason}"
                                      for e in exc.errors)) from None
    return fr.validate(fr.patient_resource(record))


# --- ServiceRequest ---------------------------------------------------------------------

def _patient_id(reference: str, local: dict[str, str]) -> uuid.UUID:
    reference = local.get(reference, reference)
    kind, _, text = reference.rpartition("/")
    try:
        if kind.rpartition("/")[2] != "Patient":
            raise ValueError
        return uuid.UUID(text)
    except ValueError:
        raise unprocessable("ServiceRequest.subject must reference a Patient of this "
                            "server (Patient/<id>)") from None


def _requester(resource: dict) -> tuple[str, str]:
    requester = resource.get("requester") or {}
    display = requester.get("display", "")
    kind, _, rpps = (requester.get("reference") or "").rpartition("/")
    if kind.rpartition("/")[2] == "Practitioner":
        return rpps, display
    identifier = requester.get("identifier") or {}
    value = identifier.get("value", "")
    if identifier.get("system") == fr.IDNATPS_SYSTEM and value.startswith("8"):
        return value[1:], display
    if identifier.get("system") in (fr.RPPS_SYSTEM, None):
        return value, display
    if requester:
        raise unprocessable("ServiceRequest.requester: give Practitioner/<RPPS> or an RPPS "
                            "identifier")
    return "", display


def order_request(resource: dict, local: dict[str, str] | None = None) -> OrderRequest:
    subject = (resource.get("subject") or {}).get("reference", "")
    codes = []
    for coding in (resource.get("code") or {}).get("coding") or []:
        if coding.get("system") not in (fr.LOINC, fr.LOCAL_TESTS, None):
            raise unprocessable("ServiceRequest.code: codings must be LOINC "
                                "(http://loinc.org) or the lab's codes (urn:coffre:test)")
        if coding.get("code"):
            codes.append(coding["code"])
    rpps, name = _requester(resource)
    return OrderRequest(
        patient_id=_patient_id(subject, local or {}), tests=tuple(codes),
        prescriber_rpps=rpps, prescriber_name=name,
        clinical_info="\n".join(n.get("text", "") for n in resource.get("note") or []),
        urgent=resource.get("priority") in URGENT)


def create_service_request(actor: LabActor, resource: dict,
                           local: dict[str, str] | None = None) -> dict:
    if resource.get("intent") not in ("order", "original-order"):
        raise unprocessable("ServiceRequest.intent must be order")
    request = order_request(resource, local)
    try:
        order = create_order(actor, request)
    except InvalidOrder as exc:
        raise unprocessable(f"ServiceRequest: {english(exc)}") from None
    except PatientNotFound:
        raise unprocessable("ServiceRequest.subject: no such Patient") from None
    return fr.validate(fr.service_request_resource(access_order(actor, order.id)))


CREATORS = {"Patient": create_patient_resource, "ServiceRequest": create_service_request}


def create(actor: LabActor, resource_type: str, resource: dict) -> dict:
    with transaction.atomic():
        return CREATORS[resource_type](actor, resource)


# --- transaction ------------------------------------------------------------------------

def transaction_types(body: dict) -> list[str]:
    """The resource types a transaction writes (for the scope check), after checking
    its shape: POST entries of Patient and ServiceRequest only."""
    if body.get("type") != "transaction":
        raise FhirError(400, "invalid", "POST /fhir/ takes a Bundle of type transaction")
    entries = body.get("entry") or []
    if not entries or len(entries) > MAX_ENTRIES:
        raise FhirError(400, "invalid", f"a transaction holds 1 to {MAX_ENTRIES} entries")
    types = []
    for entry in entries:
        kind = (entry.get("resource") or {}).get("resourceType")
        request = entry.get("request") or {}
        if (request.get("method") != "POST" or kind not in CREATORS
                or request.get("url") != kind):
            raise FhirError(400, "not-supported", "transaction entries must be POST of a "
                            "Patient or a ServiceRequest (request.url = the type)")
        types.append(kind)
    return types


def run_transaction(actor: LabActor, body: dict, base: str) -> dict:
    """Patients first (their urn:uuid fullUrls become Patient/<id>), then the orders;
    one database transaction. Entries answer in the request's order."""
    entries = body["entry"]
    local: dict[str, str] = {}
    created: dict[int, dict] = {}
    with transaction.atomic():
        for position, entry in enumerate(entries):
            if entry["resource"]["resourceType"] == "Patient":
                created[position] = create_patient_resource(actor, entry["resource"])
                if entry.get("fullUrl"):
                    local[entry["fullUrl"]] = f"Patient/{created[position]['id']}"
        for position, entry in enumerate(entries):
            if entry["resource"]["resourceType"] == "ServiceRequest":
                created[position] = create_service_request(actor, entry["resource"], local)
    return fr.validate({"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"fullUrl": f"{base}{r['resourceType']}/{r['id']}", "resource": r,
         "response": {"status": "201 Created", "location": f"{r['resourceType']}/{r['id']}"}}
        for r in (created[i] for i in range(len(entries)))]})
