"""The patient's right of access (GDPR art. 15): everything the lab holds on them, as a
FHIR R4 Bundle (JSON) and the PDF reports, in one zip built in memory.

Published results only (what the patient may see on the portal). The resources follow
FHIR R4 and the French INS identifier system, built by the API's mappers
(coffre.fhir.resources). Reading is logged as an export of the patient.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile

from django.utils import timezone

from coffre.audit import log
from coffre.fhir.resources import (  # noqa: F401  (INS_NIR_SYSTEM: re-exported)
    INS_NIR_SYSTEM,
    diagnostic_report_resource,
    observation_resource,
    patient_resource,
)
from coffre.identity.access import access_patient
from coffre.labwork.access import access_order, patient_orders
from coffre.labwork.models import ResultState
from coffre.labwork.reports import report_pdf
from coffre.tenancy.actors import LabActor


def right_of_access(actor: LabActor, patient_id: uuid.UUID) -> tuple[str, bytes]:
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
        observations = [observation_resource(v, patient.id, ucum=False)
                        for v in view.results]
        entries += [{"resource": o} for o in observations]
        entries.append({"resource": diagnostic_report_resource(
            view, [o["id"] for o in observations], (name, pdf), embed_pdf=False)})
    bundle = {"resourceType": "Bundle", "type": "collection",
              "timestamp": timezone.now().isoformat(), "entry": entries}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bundle.json", json.dumps(bundle, ensure_ascii=False, indent=1))
        for name, content in files.items():
            archive.writestr(name, content)
    log.record(actor, "export", [patient.id], kind="right_of_access")
    return f"mes-donnees-{timezone.localdate():%Y%m%d}.zip", buffer.getvalue()
