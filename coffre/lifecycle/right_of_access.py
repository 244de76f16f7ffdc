"""The patient's right of access (GDPR art. 15): everything the lab holds on them, as a
FHIR R4 Bundle (JSON) and the PDF reports, in one zip built in memory.

Published results only (what the patient may see on the portal). The resources follow
FHIR R4 and the French INS identifier system; they are plain dictionaries here — the
FHIR API issue brings model validation. Reading is logged as an export of the patient.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile

from django.utils import timezone

from coffre.audit import log
from coffre.identity.access import access_patient
from coffre.identity.registry import PatientRecord
from coffre.lab import catalogue
from coffre.lab.access import ResultView, access_order, patient_orders
from coffre.lab.models import ResultState
from coffre.lab.reports import report_pdf
from coffre.labs.tenancy import Actor

INS_NIR_SYSTEM = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
GENDER = {"M": "male", "F": "female"}


def patient_resource(patient: PatientRecord) -> dict:
    names = [{"use": "official", "family": patient.birth_name,
              "given": (patient.first_names or "").split()}]
    if patient.used_name and patient.used_name != patient.birth_name:
        names.append({"use": "usual", "family": patient.used_name,
                      "given": (patient.first_names or "").split()})
    resource: dict = {"resourceType": "Patient", "id": str(patient.id), "name": names,
                      "gender": GENDER.get(patient.sex or "", "unknown")}
    if patient.nir:
        resource["identifier"] = [{"system": INS_NIR_SYSTEM, "value": patient.nir}]
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date
    telecom = [{"system": "phone", "value": patient.phone}] if patient.phone else []
    telecom += [{"system": "email", "value": patient.email}] if patient.email else []
    if telecom:
        resource["telecom"] = telecom
    if patient.address or patient.city:
        resource["address"] = [{"line": [patient.address] if patient.address else [],
                                "postalCode": patient.postal_code or "",
                                "city": patient.city or "", "country": "FR"}]
    return resource


def observation_resource(view: ResultView, patient_id: uuid.UUID) -> dict:
    number = catalogue.numeric(view.value)
    resource: dict = {
        "resourceType": "Observation", "id": str(view.id),
        "status": "amended" if view.corrected else "final",
        "code": {"coding": [{"system": LOINC, "code": view.test.loinc,
                             "display": view.test.label}], "text": view.test.label},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    taken = view.result.specimen.collected_at or view.result.order.created_at
    resource["effectiveDateTime"] = taken.isoformat()
    if number is not None and not view.value.startswith(("<", ">")):
        resource["valueQuantity"] = {"value": number, "unit": view.test.unit}
    else:
        resource["valueString"] = view.display_value
    if view.reference:
        resource["referenceRange"] = [{"text": view.reference}]
    if view.flag:
        resource["interpretation"] = [{"coding": [{"system": INTERPRETATION,
                                                   "code": view.flag}]}]
    if view.comment:
        resource["note"] = [{"text": view.comment}]
    return resource


def right_of_access(actor: Actor, patient_id: uuid.UUID) -> tuple[str, bytes]:
    """(file name, zip bytes): bundle.json and one PDF report per order with published
    results. The caller has checked the actor may act for this patient."""
    patient = access_patient(actor, patient_id)
    entries = [{"resource": patient_resource(patient)}]
    files: dict[str, bytes] = {}
    for order in patient_orders(actor, patient.id):
        if not any(r.state == ResultState.PUBLISHED for r in order.results.all()):
            continue
        view = access_order(actor, order.id, published_only=True)
        name, pdf = report_pdf(actor, order.id, published_only=True)
        files[name] = pdf
        observations = [observation_resource(v, patient.id) for v in view.results]
        entries += [{"resource": o} for o in observations]
        entries.append({"resource": {
            "resourceType": "DiagnosticReport", "id": str(order.id),
            "status": "partial" if view.pending else (
                "amended" if order.report_count > 1 else "final"),
            "code": {"text": f"Compte rendu {order.number}"},
            "subject": {"reference": f"Patient/{patient.id}"},
            "issued": order.created_at.isoformat(),
            "result": [{"reference": f"Observation/{o['id']}"} for o in observations],
            "presentedForm": [{"contentType": "application/pdf", "url": name,
                               "title": f"Compte rendu {order.number}"}]}})
    bundle = {"resourceType": "Bundle", "type": "collection",
              "timestamp": timezone.now().isoformat(), "entry": entries}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bundle.json", json.dumps(bundle, ensure_ascii=False, indent=1))
        for name, content in files.items():
            archive.writestr(name, content)
    log.record(actor, "export", [patient.id], kind="right_of_access")
    return f"mes-donnees-{timezone.localdate():%Y%m%d}.zip", buffer.getvalue()
