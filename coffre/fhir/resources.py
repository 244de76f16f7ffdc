"""FHIR R4 resources from the registry and the lab workflow: plain functions, one per
resource type, each taking what the access layer returned (already opened and logged).

One mapper for every caller: the API (coffre.fhir.views) and the patient's copy
(coffre.lifecycle.right_of_access). Identifiers follow the French profiles (FR Core):
INS-NIR, RPPS / idNatPs, FINESS. ``validate`` checks a resource against the
``fhir.resources`` R4B models (docs/fhir-api.md says why R4B stands in for R4).
"""

from __future__ import annotations

import base64
import uuid

from fhir.resources.R4B import get_fhir_model_class

from coffre.identity.registry import PatientRecord
from coffre.labwork import catalogue
from coffre.labwork.access import OrderView, ResultView
from coffre.labwork.models import Order, ResultState, Specimen
from coffre.tenancy.models import Lab

S = ResultState

INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
# idNatPs (FR Core practitioner slice): "8" + RPPS under the ASIP national OID.
IDNATPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
IDNATST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # idNatSt: "1" + FINESS
FR_V2_0203 = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
RELIABILITY_URL = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-identity-reliability"
IDENTITY_STATUS_SYSTEM = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-identity-status"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
LOCAL_TESTS = "urn:coffre:test"  # the catalogue's local codes and panels
LOCAL_SPECIMENS = "urn:coffre:specimen-type"
LAB_REPORT = {"system": LOINC, "code": "11502-2", "display": "Laboratory report"}
GENDER = {"M": "male", "F": "female"}
IDENTITY_STATUS = {"PROV": "Identité provisoire", "RECUP": "Identité récupérée",
                   "VALI": "Identité validée", "QUAL": "Identité qualifiée"}
# The catalogue's French units as UCUM codes (the printed unit stays the French one).
UCUM_CODES = {
    "%": "%", "/mL": "/mL", "G/L": "10*9/L", "T/L": "10*12/L", "UI/L": "[IU]/L", "fL": "fL",
    "g/L": "g/L", "g/dL": "g/dL", "g/g": "g/g", "mL/min/1,73 m²": "mL/min/{1.73_m2}",
    "mUI/L": "m[IU]/L", "mg/L": "mg/L", "mm": "mm", "mmol/L": "mmol/L", "ng/L": "ng/L",
    "ng/mL": "ng/mL", "pg": "pg", "pmol/L": "pmol/L", "µg/L": "ug/L",
    "µg/L FEU": "ug/L{FEU}", "µmol/L": "umol/L",
}
INTERPRETATION_DISPLAY = {"L": "Low", "H": "High", "LL": "Critical low",
                          "HH": "Critical high"}
REPORTED = frozenset({S.BIO_VALIDATED, S.PUBLISHED})


def ref(resource_type: str, resource_id: object) -> dict:
    return {"reference": f"{resource_type}/{resource_id}"}


def _iso(moment) -> str | None:
    return moment.isoformat() if moment else None


# --- identity ---------------------------------------------------------------------------

# Registry columns a FHIR Patient carries (patient_elements maps them; the others, such
# as the blood group or the notes, have no place in a Patient resource).
PATIENT_COLUMNS = ("nir", "birth_name", "used_name", "first_names", "sex", "birth_date",
                   "address", "postal_code", "city", "phone", "email", "identity_status")


def patient_resource(patient: PatientRecord) -> dict:
    """Patient with the INS-NIR, the names (birth name official, used name usual) and
    the identity status as the registry holds it (FR Core reliability extension): a
    receiver treats the INS as qualified only when the status says QUAL."""
    values = {name: getattr(patient, name) for name in PATIENT_COLUMNS
              if name != "identity_status"}
    elements = patient_elements({**values, "identity_status": patient.identity_status})
    elements.setdefault("gender", "unknown")
    return {"resourceType": "Patient", "id": str(patient.id), **elements}


def patient_elements(values: dict[str, str | None]) -> dict:
    """The Patient elements of the registry columns present in ``values``, and of those
    only (an export's minimisation): the one mapping of registry values to a Patient."""
    resource: dict = {}
    given = (values.get("first_names") or "").split()
    birth_name, used_name = values.get("birth_name"), values.get("used_name")
    names = []
    if birth_name or given:
        names.append({"use": "official", **({"family": birth_name} if birth_name else {}),
                      **({"given": given} if given else {})})
    if used_name and used_name != birth_name:
        names.append({"use": "usual", "family": used_name, **({"given": given} if given
                                                              else {})})
    if names:
        resource["name"] = names
    if "sex" in values:
        resource["gender"] = GENDER.get(values["sex"] or "", "unknown")
    status = values.get("identity_status")
    if status in IDENTITY_STATUS:
        resource["extension"] = [{"url": RELIABILITY_URL, "extension": [{
            "url": "identityStatus",
            "valueCoding": {"system": IDENTITY_STATUS_SYSTEM, "code": status,
                            "display": IDENTITY_STATUS[status]}}]}]
    if values.get("nir"):
        resource["identifier"] = [{"system": INS_NIR_SYSTEM, "value": values["nir"]}]
    if values.get("birth_date"):
        resource["birthDate"] = values["birth_date"]
    telecom = [{"system": kind, "value": values[kind]} for kind in ("phone", "email")
               if values.get(kind)]
    if telecom:
        resource["telecom"] = telecom
    if values.get("address") or values.get("city") or values.get("postal_code"):
        address: dict = {"country": "FR"}
        if values.get("address"):
            address["line"] = [values["address"]]
        if values.get("postal_code"):
            address["postalCode"] = values["postal_code"]
        if values.get("city"):
            address["city"] = values["city"]
        resource["address"] = [address]
    return resource


def practitioner_resource(rpps: str, name: str = "") -> dict:
    """A prescriber: the RPPS number (id and identifiers; the name when an order gives
    it). FR Core's idNatPs is "8" followed by the RPPS."""
    resource: dict = {"resourceType": "Practitioner", "id": rpps, "identifier": [
        {"system": IDNATPS_SYSTEM, "value": f"8{rpps}",
         "type": {"coding": [{"system": FR_V2_0203, "code": "IDNPS"}]}},
        {"system": RPPS_SYSTEM, "value": rpps,
         "type": {"coding": [{"system": FR_V2_0203, "code": "RPPS"}]}}]}
    if name:
        resource["name"] = [{"text": name}]
    return resource


def organization_resource(lab: Lab) -> dict:
    return {"resourceType": "Organization", "id": lab.finess, "active": True,
            "name": lab.name,
            "identifier": [
                {"system": FINESS_SYSTEM, "value": lab.finess,
                 "type": {"coding": [{"system": FR_V2_0203, "code": "FINEG"}]}},
                {"system": IDNATST_SYSTEM, "value": f"1{lab.finess}",
                 "type": {"coding": [{"system": FR_V2_0203, "code": "IDNST"}]}}],
            **({"address": [{"text": lab.address, "country": "FR"}]} if lab.address else {})}


# --- orders and specimens ---------------------------------------------------------------

def _test_coding(loinc: str) -> dict:
    test = catalogue.test(loinc)
    return {"system": LOINC, "code": test.loinc, "display": test.label}


def service_request_resource(view: OrderView) -> dict:
    """One ServiceRequest per order; its tests are the codings of ``code`` (LOINC)."""
    order = view.order
    loincs = list(dict.fromkeys(v.test.loinc for v in view.results))
    active = view.pending or not view.results
    resource: dict = {
        "resourceType": "ServiceRequest", "id": str(order.id),
        "identifier": [{"system": f"urn:coffre:lab:{order.lab_id}:order",
                        "value": order.number}],
        "status": "active" if active else "completed", "intent": "order",
        "priority": "stat" if order.urgent else "routine",
        "code": {"coding": [_test_coding(c) for c in loincs],
                 "text": ", ".join(catalogue.test(c).code for c in loincs) or "—"},
        "subject": ref("Patient", order.patient_id),
        "authoredOn": order.created_at.isoformat(),
        "performer": [ref("Organization", _finess(order.lab_id))],
        "specimen": [ref("Specimen", s.id) for s in view.specimens]}
    if view.prescriber_rpps:
        resource["requester"] = {**ref("Practitioner", view.prescriber_rpps),
                                 "display": view.prescriber_name or view.prescriber_rpps}
    if view.clinical_info:
        resource["note"] = [{"text": view.clinical_info}]
    if not resource["specimen"]:
        del resource["specimen"]
    return resource


_FINESS: dict[int, str] = {}


def _finess(lab_id: int) -> str:
    if lab_id not in _FINESS:
        _FINESS[lab_id] = Lab.objects.filter(pk=lab_id).values_list("finess", flat=True).get()
    return _FINESS[lab_id]


SPECIMEN_STATUS = {"rejected": "unsatisfactory"}


def specimen_resource(specimen: Specimen, order: Order) -> dict:
    resource: dict = {
        "resourceType": "Specimen", "id": str(specimen.id),
        "accessionIdentifier": {"value": specimen.barcode},
        "status": SPECIMEN_STATUS.get(specimen.state, "available"),
        "type": {"coding": [{"system": LOCAL_SPECIMENS, "code": specimen.specimen_type}],
                 "text": catalogue.SPECIMEN_TYPES.get(specimen.specimen_type,
                                                      specimen.specimen_type)},
        "subject": ref("Patient", order.patient_id),
        "request": [ref("ServiceRequest", order.id)]}
    if specimen.received_at:
        resource["receivedTime"] = specimen.received_at.isoformat()
    if specimen.collected_at:
        resource["collection"] = {"collectedDateTime": specimen.collected_at.isoformat()}
    return resource


# --- results -----------------------------------------------------------------------------

def observation_status(view: ResultView) -> str:
    state = view.state
    if state in REPORTED:
        return "amended" if view.corrected else "final"
    if state in {S.CANCELLED, S.REJECTED}:
        return "cancelled"
    if state == S.INVALIDATED:
        return "entered-in-error"  # replaced by a corrected version (a new id)
    return "registered"  # not biologically validated: no value leaves the lab


def _quantity(view: ResultView, number: float, ucum: bool) -> dict:
    quantity: dict = {"value": number, "unit": view.test.unit}
    if ucum and view.test.unit in UCUM_CODES:
        quantity.update(system=UCUM, code=UCUM_CODES[view.test.unit])
    return quantity


def observation_resource(view: ResultView, patient_id: uuid.UUID, *,
                         ucum: bool = True) -> dict:
    """A result, LOINC-coded; the value (UCUM quantity or text), the patient's reference
    range and the flag as interpretation, once biologically validated."""
    resource: dict = {
        "resourceType": "Observation", "id": str(view.id),
        "status": observation_status(view),
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
        "code": {"coding": [_test_coding(view.test.loinc)], "text": view.test.label},
        "subject": ref("Patient", patient_id),
        "basedOn": [ref("ServiceRequest", view.result.order_id)],
        "specimen": ref("Specimen", view.result.specimen_id)}
    if not ucum:  # the patient's copy predates these links; kept as it was
        del resource["category"], resource["basedOn"], resource["specimen"]
    taken = view.result.specimen.collected_at or view.result.order.created_at
    resource["effectiveDateTime"] = taken.isoformat()
    reported = view.state in REPORTED
    if view.value and reported:
        number = catalogue.numeric(view.value)
        if number is not None and not view.value.startswith(("<", ">")):
            resource["valueQuantity"] = _quantity(view, number, ucum)
        else:
            resource["valueString"] = view.display_value
        if view.reference:
            resource["referenceRange"] = [{"text": view.reference}]
    if view.flag and reported:
        resource["interpretation"] = [{"coding": [{
            "system": INTERPRETATION, "code": view.flag,
            **({"display": INTERPRETATION_DISPLAY[view.flag]}
               if ucum and view.flag in INTERPRETATION_DISPLAY else {})}]}]
    if view.comment and reported:
        resource["note"] = [{"text": view.comment}]
    return resource


def report_status(states: frozenset[str] | set[str], report_count: int,
                  corrected: bool) -> str:
    """partial while tests are pending, amended for a "rectificatif" (a corrected
    result in a report released again, as coffre.labwork.reports decides), else final;
    registered while nothing is reported yet."""
    if not states & REPORTED:
        return "registered" if states - {S.CANCELLED, S.REJECTED} else "cancelled"
    pending = any(s not in {S.BIO_VALIDATED, S.PUBLISHED, S.CANCELLED, S.REJECTED}
                  for s in states)
    if pending:
        return "partial"
    return "amended" if corrected and report_count > 1 else "final"


def diagnostic_report_resource(view: OrderView, observation_ids: list[str],
                               pdf: tuple[str, bytes] | None, *,
                               embed_pdf: bool = True) -> dict:
    """The compte rendu of an order: its reported results and the PDF, embedded as
    base64 (the API) or named as a file next to the bundle (the patient's copy)."""
    order = view.order
    states = {v.state for v in view.results}
    if view.pending:
        states.add(S.IN_ANALYSIS)
    title = f"Compte rendu {order.number}"
    resource: dict = {
        "resourceType": "DiagnosticReport", "id": str(order.id),
        "basedOn": [ref("ServiceRequest", order.id)],
        "status": report_status(states, order.report_count, any(
            v.corrected for v in view.results if v.state in REPORTED)),
        "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB"}]}],
        "code": {"coding": [LAB_REPORT], "text": title},
        "subject": ref("Patient", order.patient_id),
        "effectiveDateTime": order.created_at.isoformat(),
        "issued": order.created_at.isoformat(),
        "performer": [ref("Organization", _finess(order.lab_id))],
        "result": [ref("Observation", oid) for oid in observation_ids]}
    if not embed_pdf:
        del resource["basedOn"], resource["category"], resource["performer"]
        resource["code"] = {"text": title}
        del resource["effectiveDateTime"]
    if pdf is not None:
        name, content = pdf
        form: dict = {"contentType": "application/pdf", "title": title}
        if embed_pdf:
            form["data"] = base64.b64encode(content).decode("ascii")
        else:
            form["url"] = name
        resource["presentedForm"] = [form]
    if not resource["result"]:
        del resource["result"]
    return resource


# --- validation ---------------------------------------------------------------------------

class InvalidResource(ValueError):
    """A resource fails the FHIR model; the message names the paths, never a value."""


def problems(resource: dict) -> list[str]:
    """The FHIR paths that fail validation (empty when valid). pydantic's messages carry
    the submitted values: only the paths and error kinds are kept."""
    from pydantic import ValidationError

    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(kind, str):
        return ["resourceType: is required"]
    try:
        model = get_fhir_model_class(kind)
    except (KeyError, ValueError):
        return ["resourceType: not a FHIR R4 resource type"]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [_problem(kind, err) for err in exc.errors()][:10]
    except (ValueError, TypeError):
        return [f"{kind}: malformed resource"]
    return []


def _problem(kind: str, error: dict) -> str:
    """"path: error kind"; an unknown element's name is client text, so it is left out."""
    loc = list(error["loc"])
    if error["type"] == "extra_forbidden":
        loc, what = loc[:-1], "unknown element"
    else:
        what = error["type"]
    return f"{'.'.join(str(p) for p in [kind, *loc])}: {what}"


def validate(resource: dict) -> dict:
    """The resource itself when the R4B model accepts it; InvalidResource otherwise."""
    found = problems(resource)
    if found:
        raise InvalidResource("; ".join(found))
    return resource
