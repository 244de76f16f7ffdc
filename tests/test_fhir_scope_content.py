"""Scopes apply to what an answer contains, not only to its type: a token that may not
read Patient gets no patient identity inside another type (the compte rendu PDF shows
the NIR, the names and the birth date), and the PDF, which also shows the results and
the prescriber, comes only with Patient.read, Observation.read and ServiceRequest.read."""

from __future__ import annotations

import base64
import io
import json

import pytest
from fhir.resources.R4B import get_fhir_model_class
from pypdf import PdfReader

from coffre.audit.models import AccessEvent
from coffre.fhir.routes import READ_TYPES
from tests.api_helpers import api_token, bearer
from tests.conftest import patient_row
from tests.lab_helpers import PRESCRIBER_RPPS, published

pytestmark = pytest.mark.django_db
PDF_SCOPES = "system/DiagnosticReport.read system/Patient.read system/Observation.read " \
             "system/ServiceRequest.read"


def identity_values() -> list[str]:
    row = patient_row()
    return [row["nir"], row["birth_name"], row["used_name"], "Claire", row["birth_date"],
            "14/03/1985", row["email"], "0612345678", "+33612345678", row["address"]]


def fhir_get(client, token: str, path: str) -> dict:
    response = client.get(f"/fhir/{path}", **bearer(token))
    assert response.status_code == 200, response.content
    body = json.loads(response.content)
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def shown(body: dict) -> str:
    """The answer as text, the text of embedded PDFs included."""
    text = json.dumps(body, ensure_ascii=False)
    for form in _forms(body):
        pages = PdfReader(io.BytesIO(base64.b64decode(form["data"]))).pages
        text += "\n".join(page.extract_text() for page in pages)
    return text


def _forms(node) -> list[dict]:
    if isinstance(node, dict):
        found = [node] if "data" in node and "contentType" in node else []
        return found + [f for value in node.values() for f in _forms(value)]
    if isinstance(node, list):
        return [f for value in node for f in _forms(value)]
    return []


@pytest.fixture
def order(staff, patient):
    return published(staff, patient.id, K="4.4", NA="140")


def test_a_report_token_without_patient_read_gets_no_pdf(client, lab_a, patient, order):
    """The attack: DiagnosticReport.read alone, to get the NIR, names and birth date
    that Patient.read would have refused."""
    token = api_token(lab_a, "system/DiagnosticReport.read")
    assert client.get(f"/fhir/Patient/{patient.id}", **bearer(token)).status_code == 403
    start = AccessEvent.objects.order_by("-id").values_list("id", flat=True).first()
    for body in (fhir_get(client, token, f"DiagnosticReport/{order.id}"),
                 fhir_get(client, token, f"DiagnosticReport?patient={patient.id}")):
        assert "presentedForm" not in json.dumps(body)
        assert not [v for v in identity_values() if v in shown(body)]
    report = fhir_get(client, token, f"DiagnosticReport/{order.id}")
    assert report["subject"] == {"reference": f"Patient/{patient.id}"}
    assert len(report["result"]) == 2 and report["status"] == "final"
    # Not built, so not printed either.
    assert not AccessEvent.objects.filter(id__gt=start, action="print").exists()


@pytest.mark.parametrize("missing", ["Patient", "Observation", "ServiceRequest"])
def test_the_pdf_needs_every_type_it_shows(client, lab_a, order, missing):
    token = api_token(lab_a, PDF_SCOPES.replace(f" system/{missing}.read", ""))
    assert "presentedForm" not in fhir_get(client, token, f"DiagnosticReport/{order.id}")


def test_with_every_scope_it_shows_the_pdf_is_embedded(client, lab_a, order):
    for scopes in (PDF_SCOPES, "system/*.read"):
        report = fhir_get(client, api_token(lab_a, scopes), f"DiagnosticReport/{order.id}")
        pdf = base64.b64decode(report["presentedForm"][0]["data"])
        assert pdf.startswith(b"%PDF")
        assert patient_row()["nir"] in shown(report)  # what the other tests look for


def test_no_type_read_with_its_own_scope_carries_the_patients_identity(client, lab_a,
                                                                       patient, order):
    paths = {"Observation": [f"Observation/{order.results.first().id}",
                             f"Observation?patient={patient.id}"],
             "DiagnosticReport": [f"DiagnosticReport/{order.id}",
                                  f"DiagnosticReport?patient={patient.id}"],
             "ServiceRequest": [f"ServiceRequest/{order.id}",
                                f"ServiceRequest?patient={patient.id}"],
             "Specimen": [f"Specimen/{order.specimens.first().id}",
                          f"Specimen?patient={patient.id}"],
             "Practitioner": [f"Practitioner/{PRESCRIBER_RPPS}"],
             "Organization": [f"Organization/{lab_a.finess}"]}
    assert set(paths) == set(READ_TYPES) - {"Patient"}
    for resource_type, wanted in paths.items():
        token = api_token(lab_a, f"system/{resource_type}.read")
        for path in wanted:
            body = fhir_get(client, token, path)
            text = shown(body)
            assert not [v for v in identity_values() if v in text], path
            assert '"contained"' not in text and "presentedForm" not in text, path
            for reference in _patient_references(body):
                assert set(reference) == {"reference"}, path  # no display


def _patient_references(node) -> list[dict]:
    if isinstance(node, dict):
        own = ([node] if str(node.get("reference", "")).startswith("Patient/") else [])
        return own + [r for value in node.values() for r in _patient_references(value)]
    if isinstance(node, list):
        return [r for value in node for r in _patient_references(value)]
    return []


def test_the_openapi_description_states_the_rule(client):
    document = json.loads(client.get("/fhir/openapi.json").content)
    read = document["paths"]["/fhir/DiagnosticReport/{id}"]["get"]["description"]
    scope = document["components"]["securitySchemes"]["bearer"]["flows"][
        "clientCredentials"]["scopes"]["system/DiagnosticReport.read"]
    for text in (read, scope):
        assert "presentedForm" in text and "system/Patient.read" in text
