"""The FHIR API over HTTP: reads, searches, creates (round trips), the transaction,
errors as OperationOutcome, isolation between labs and the audit trail. Every body is
validated against the fhir.resources R4B models."""

from __future__ import annotations

import base64
import copy
import json

import pytest
from fhir.resources.R4B import get_fhir_model_class

from coffre.audit.models import AccessEvent
from coffre.fhir.openapi import PATIENT_EXAMPLE, SERVICE_REQUEST_EXAMPLE, TRANSACTION_EXAMPLE
from coffre.fhir.resources import INS_NIR_SYSTEM, LOINC, UCUM
from coffre.identity.models import Patient
from coffre.labwork.models import Order, Result
from tests.api_helpers import api_token, bearer
from tests.conftest import patient_row
from tests.lab_helpers import enter, order_for, published, receive_all

FHIR = "application/fhir+json"
pytestmark = pytest.mark.django_db


def body_of(response) -> dict:
    """The JSON body, checked to be FHIR JSON and valid against its R4B model."""
    assert response["Content-Type"].startswith(FHIR), response["Content-Type"]
    body = json.loads(response.content)
    get_fhir_model_class(body["resourceType"]).model_validate(body)
    return body


def issue(response) -> str:
    body = body_of(response)
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


@pytest.fixture
def token(lab_a):
    return api_token(lab_a)


@pytest.fixture
def api(client, token):
    """GET / POST against /fhir/ with lab A's token."""
    class Api:
        def get(self, path: str, **params):
            return client.get(f"/fhir/{path}", params, **bearer(token))

        def post(self, path: str, body, content_type: str = FHIR):
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            return client.post(f"/fhir/{path}", data, content_type=content_type,
                               **bearer(token))
    return Api()


def counts() -> tuple[int, int, int]:
    return Patient.unscoped.count(), Order.unscoped.count(), Result.unscoped.count()


# --- metadata and reads -----------------------------------------------------------------

def test_metadata_needs_no_token_and_names_the_token_url(client):
    statement = body_of(client.get("/fhir/metadata"))
    assert statement["fhirVersion"] == "4.0.1"
    security = statement["rest"][0]["security"]
    assert security["extension"][0]["extension"][0]["valueUri"].endswith("/fhir/auth/token")
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert types == {"Patient", "Practitioner", "Organization", "ServiceRequest", "Specimen",
                     "Observation", "DiagnosticReport"}


def test_other_methods_get_an_outcome(client, api, patient):
    for path in ("metadata", "openapi.json", f"Patient/{patient.id}", "Observation", ""):
        response = (client.post(f"/fhir/{path}", "{}", content_type=FHIR) if path != ""
                    else client.get("/fhir/"))
        assert response.status_code == 405, path
        assert "accepts" in issue(response) and response["Allow"]


def test_reads_without_a_token_are_refused(client, patient):
    response = client.get(f"/fhir/Patient/{patient.id}")
    assert response.status_code == 401 and "token" in issue(response)


def test_patient_read_carries_ins_names_status_and_contact(api, patient):
    resource = body_of(api.get(f"Patient/{patient.id}"))
    row = patient_row()
    assert resource["identifier"] == [{"system": INS_NIR_SYSTEM, "value": row["nir"]}]
    assert [n["use"] for n in resource["name"]] == ["official", "usual"]
    assert resource["name"][0]["family"] == "Lefèvre"
    assert resource["name"][1]["given"] == ["Claire", "Anne"]
    status = resource["extension"][0]["extension"][0]["valueCoding"]["code"]
    assert status == "PROV" and resource["birthDate"] == "1985-03-14"
    assert {t["system"] for t in resource["telecom"]} == {"phone", "email"}
    assert resource["address"][0]["postalCode"] == "75011"


def test_results_and_report_read_and_search(api, staff, patient):
    order = published(staff, patient.id, K="6.1", CREA="80")
    pending = order_for(staff.secretary, patient.id, "NA")
    receive_all(staff.secretary, pending)
    enter(staff.technician, pending, NA="140")  # entered, not validated: no value leaves
    found = body_of(api.get("Observation", patient=str(patient.id)))
    assert found["type"] == "searchset" and found["total"] == 4  # K, CREA, eGFR, NA
    by_code = {e["resource"]["code"]["coding"][0]["code"]: e["resource"]
               for e in found["entry"]}
    potassium = by_code["2823-3"]
    assert potassium["status"] == "final"
    assert potassium["valueQuantity"] == {"value": 6.1, "unit": "mmol/L", "system": UCUM,
                                          "code": "mmol/L"}
    assert potassium["interpretation"][0]["coding"][0]["code"] == "H"
    assert potassium["referenceRange"][0]["text"]
    sodium = by_code["2951-2"]
    assert sodium["status"] == "registered" and "valueQuantity" not in sodium
    one = body_of(api.get(f"Observation/{potassium['id']}"))
    assert one["valueQuantity"]["value"] == 6.1
    coded = body_of(api.get("Observation", subject=f"Patient/{patient.id}",
                            code=f"{LOINC}|2823-3", status="final"))
    assert coded["total"] == 1
    report = body_of(api.get(f"DiagnosticReport/{order.id}"))
    assert report["status"] == "final" and len(report["result"]) == 3
    form = report["presentedForm"][0]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]).startswith(b"%PDF")
    partial = body_of(api.get("DiagnosticReport", patient=str(patient.id),
                              status="registered"))
    assert [e["resource"]["id"] for e in partial["entry"]] == [str(pending.id)]


def test_report_status_follows_partial_results_and_the_rectificatif(api, staff, patient):
    from coffre.labwork import workflow
    from tests.lab_helpers import result

    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.4", NA="140")
    potassium = result(order, "K")
    workflow.validate_technically(staff.technician, [potassium.id])
    workflow.validate_biologically(staff.biologist, [potassium.id])
    workflow.publish(staff.biologist, order)
    assert body_of(api.get(f"DiagnosticReport/{order.id}"))["status"] == "partial"
    sodium = result(order, "NA")
    workflow.validate_technically(staff.technician, [sodium.id])
    workflow.validate_biologically(staff.biologist, [sodium.id])
    workflow.publish(staff.biologist, order)
    assert body_of(api.get(f"DiagnosticReport/{order.id}"))["status"] == "final"
    new = workflow.invalidate(staff.biologist, potassium.id, "4.8", "Erreur de saisie")
    workflow.validate_biologically(staff.other_biologist, [new.id])
    workflow.publish(staff.other_biologist, order)
    report = body_of(api.get(f"DiagnosticReport/{order.id}"))
    assert report["status"] == "amended"
    assert {"reference": f"Observation/{new.id}"} in report["result"]
    corrected = body_of(api.get(f"Observation/{new.id}"))
    assert corrected["status"] == "amended" and corrected["valueQuantity"]["value"] == 4.8
    old = body_of(api.get(f"Observation/{potassium.id}"))
    assert old["status"] == "entered-in-error" and "valueQuantity" not in old
    amended = body_of(api.get("Observation", patient=str(patient.id), status="amended"))
    assert [e["resource"]["id"] for e in amended["entry"]] == [str(new.id)]


def test_date_search_with_prefixes(api, staff, patient):
    published(staff, patient.id, K="4.4")
    today = body_of(api.get("Observation", patient=str(patient.id), date="ge2020-01-01"))
    assert today["total"] == 1
    before = body_of(api.get("Observation", patient=str(patient.id), date="lt2020-01-01"))
    assert before["total"] == 0
    both = api.get(f"Observation?patient={patient.id}&date=ge2020&date=le2999-12")
    assert body_of(both)["total"] == 1


def test_orders_specimens_practitioner_and_organization(api, staff, patient, lab_a):
    order = order_for(staff.secretary, patient.id, "NFS", "K")
    request = body_of(api.get(f"ServiceRequest/{order.id}"))
    assert request["requester"]["reference"] == "Practitioner/10003456786"
    assert request["status"] == "active" and request["intent"] == "order"
    specimens = body_of(api.get("Specimen", patient=str(patient.id)))
    assert specimens["total"] == 2  # EDTA and serum
    barcode = specimens["entry"][0]["resource"]["accessionIdentifier"]["value"]
    assert barcode.startswith(order.number)
    listed = body_of(api.get("ServiceRequest", patient=str(patient.id)))
    assert listed["entry"][0]["resource"]["id"] == str(order.id)
    doctor = body_of(api.get("Practitioner/10003456786"))
    assert doctor["identifier"][0]["value"] == "810003456786"
    lab = body_of(api.get(f"Organization/{lab_a.finess}"))
    assert lab["identifier"][0]["value"] == lab_a.finess


def test_paging_has_a_total_and_a_next_link(api, staff, patient):
    published(staff, patient.id, K="4.4", NA="140", CL="100")
    first = body_of(api.get("Observation", patient=str(patient.id), _count="2"))
    assert first["total"] == 3 and len(first["entry"]) == 2
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    rest = body_of(api.get(following.split("/fhir/", 1)[1]))
    assert len(rest["entry"]) == 1 and all(link["relation"] != "next"
                                           for link in rest["link"])
    capped = body_of(api.get("Observation", patient=str(patient.id), _count="5000"))
    assert len(capped["entry"]) == 3
    for odd in ("²", "-1", "2.5"):  # a digit int() refuses (found by the fuzz run)
        refused = api.get("Observation", patient=str(patient.id), _count=odd)
        assert refused.status_code == 400, odd


def test_patient_searches(api, patient):
    row = patient_row()
    for params in ({"identifier": f"{INS_NIR_SYSTEM}|{row['nir']}"},
                   {"family": "Martin", "birthdate": "1985-03-14"},
                   {"name": "LEFEVRE", "birthdate": "1985-03-14"},
                   {"telecom": "phone|06 12 34 56 78"}, {"email": row["email"]}):
        found = body_of(api.get("Patient", **params))
        assert [e["resource"]["id"] for e in found["entry"]] == [str(patient.id)], params
    assert body_of(api.get("Patient", family="Martin", birthdate="1990-01-01"))["total"] == 0


# --- isolation and audit ----------------------------------------------------------------

def test_another_labs_ids_are_not_found(client, lab_b, staff, patient):
    order = published(staff, patient.id, K="4.4")
    observation = order.results.first()
    token_b = api_token(lab_b)
    for path in (f"Patient/{patient.id}", f"ServiceRequest/{order.id}",
                 f"DiagnosticReport/{order.id}", f"Observation/{observation.id}",
                 f"Specimen/{order.specimens.first().id}", "Practitioner/10003456786",
                 "Organization/750000010"):
        response = client.get(f"/fhir/{path}", **bearer(token_b))
        assert response.status_code == 404, path
        assert "no " in issue(response)
    empty = client.get(f"/fhir/Observation?patient={patient.id}", **bearer(token_b))
    assert body_of(empty)["total"] == 0


def test_reads_are_audited_on_the_api_channel(api, staff, patient):
    published(staff, patient.id, K="4.4")
    for path in (f"Patient/{patient.id}", f"Observation?patient={patient.id}"):
        mark = AccessEvent.objects.order_by("-id").values_list("id", flat=True).first()
        api.get(path)
        event = AccessEvent.objects.filter(patient_id=patient.id, action="read",
                                           id__gt=mark).latest("id")
        assert event.channel == "api" and event.person.startswith("api:"), path
        assert event.role == "api_client"


# --- create and round trips -------------------------------------------------------------

def test_patient_round_trip(api):
    created = api.post("Patient", PATIENT_EXAMPLE)
    assert created.status_code == 201, created.content
    resource = body_of(created)
    assert created["Location"].endswith(f"/fhir/Patient/{resource['id']}")
    back = body_of(api.get(f"Patient/{resource['id']}"))
    for field in ("identifier", "gender", "birthDate"):
        assert back[field] == PATIENT_EXAMPLE[field]
    assert [(n["use"], n["family"], n["given"]) for n in back["name"]] == [
        (n["use"], n["family"], n["given"]) for n in PATIENT_EXAMPLE["name"]]
    assert back["telecom"][1] == PATIENT_EXAMPLE["telecom"][1]
    assert back["telecom"][0]["value"].replace(" ", "").endswith("612345678")
    assert back["address"][0]["city"] == "Paris"
    event = AccessEvent.objects.filter(action="create").latest("id")
    assert event.channel == "api" and str(event.patient_id) == resource["id"]


def test_service_request_round_trip(api, patient):
    body = copy.deepcopy(SERVICE_REQUEST_EXAMPLE)
    body["subject"]["reference"] = f"Patient/{patient.id}"
    created = api.post("ServiceRequest", body)
    assert created.status_code == 201, created.content
    back = body_of(api.get(f"ServiceRequest/{body_of(created)['id']}"))
    codes = {c["code"] for c in back["code"]["coding"]}
    assert "2823-3" in codes and "718-7" in codes  # potassium and the NFS's haemoglobin
    assert back["subject"]["reference"] == f"Patient/{patient.id}"
    assert back["requester"]["reference"] == "Practitioner/10003456786"
    assert back["note"] == [{"text": "Bilan annuel"}]


def test_transaction_creates_a_patient_with_an_order(api):
    response = api.post("", TRANSACTION_EXAMPLE)
    assert response.status_code == 200, response.content
    result = body_of(response)
    assert result["type"] == "transaction-response"
    patient, order = (e["resource"] for e in result["entry"])
    assert all(e["response"]["status"] == "201 Created" for e in result["entry"])
    assert order["subject"]["reference"] == f"Patient/{patient['id']}"
    person = body_of(api.get(f"Patient/{patient['id']}"))
    assert person["identifier"] == PATIENT_EXAMPLE["identifier"]
    assert person["birthDate"] == PATIENT_EXAMPLE["birthDate"]
    assert person["name"][0]["family"] == "Lefèvre"
    back = body_of(api.get("ServiceRequest", patient=patient["id"]))
    assert back["total"] == 1
    assert {c["code"] for c in back["entry"][0]["resource"]["code"]["coding"]} == {
        c["code"] for c in order["code"]["coding"]}


def test_a_read_only_token_creates_nothing(client, lab_a, patient):
    token = api_token(lab_a, "system/*.read")
    before = counts()
    for path, body in (("Patient", PATIENT_EXAMPLE), ("", TRANSACTION_EXAMPLE)):
        response = client.post(f"/fhir/{path}", json.dumps(body), content_type=FHIR,
                               **bearer(token))
        assert response.status_code == 403 and "write" in issue(response)
    assert counts() == before


def test_a_failing_transaction_writes_nothing(api):
    bad = copy.deepcopy(TRANSACTION_EXAMPLE)
    bad["entry"][1]["resource"]["code"]["coding"] = [{"system": LOINC, "code": "0000-0"}]
    before = counts()
    response = api.post("", bad)
    assert response.status_code == 422 and "ServiceRequest" in issue(response)
    assert counts() == before


# --- errors -----------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "body", "content_type", "status", "words"), [
    ("Patient", "{not json", FHIR, 400, "not valid JSON"),
    ("Patient", json.dumps({"resourceType": "Observation"}), FHIR, 400, "takes a Patient"),
    ("Patient", json.dumps(PATIENT_EXAMPLE), "text/plain", 415, "application/fhir+json"),
    ("Patient", json.dumps({**PATIENT_EXAMPLE, "birthDate": "14/03/1985"}), FHIR, 400,
     "birthDate"),
    ("Patient", json.dumps({**PATIENT_EXAMPLE, "identifier": [
        {"system": INS_NIR_SYSTEM, "value": "285037505612307"}]}), FHIR, 422,
     "Patient.identifier"),
    ("Patient", "[]", FHIR, 400, "JSON object"),
    ("Patient", json.dumps({**PATIENT_EXAMPLE, "Dupont": 1}), FHIR, 400, "unknown element"),
    ("Patient", json.dumps({**PATIENT_EXAMPLE, "gender": "x"}), FHIR, 422, "Patient.gender"),
    ("", json.dumps({"resourceType": "Bundle", "type": "batch"}), FHIR, 400, "transaction"),
])
def test_bad_bodies_get_an_outcome_and_change_nothing(api, path, body, content_type, status,
                                                      words):
    before = counts()
    response = api.post(path, body, content_type)
    assert response.status_code == status, response.content
    message = issue(response)
    assert words in message
    assert not {"285037505612307", "14/03/1985", "Dupont", "Lefèvre"} & set(
        message.replace(":", " ").replace(",", " ").split())
    assert counts() == before


def test_an_oversized_body_is_refused_before_parsing(api):
    before = counts()
    huge = json.dumps({**PATIENT_EXAMPLE, "text": {"status": "generated",
                                                   "div": "x" * (1024 * 1024)}})
    response = api.post("Patient", huge)
    assert response.status_code == 413 and "larger" in issue(response)
    assert counts() == before


def test_unknown_types_ids_and_parameters(api, patient):
    assert api.get("Medication/1").status_code == 404
    assert "unknown resource type" in issue(api.get("Medication"))
    assert api.get("Patient/not-an-id").status_code == 404
    response = api.get("Observation", patient=str(patient.id), colour="blue")
    assert response.status_code == 400 and "'colour'" in issue(response)
    assert "blue" not in issue(response)
    assert "patient" in issue(api.get("Observation", code="2823-3"))
    assert api.get("Patient", birthdate="1985-03-14").status_code == 400
    for date in ("yesterday", "0001", "lt0001-01-01", "ge9999-12-31", "2024-13"):
        response = api.get("Observation", patient=str(patient.id), date=date)
        assert response.status_code == 400 and "date" in issue(response), date
