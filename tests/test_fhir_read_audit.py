"""Every FHIR answer that tells something about a patient is an audited read, counted by
the mass-reading detection: a page of results, a read by id, but also a bare count
(``_count=0``, ``_summary=count``, ``Bundle.total``) and an empty answer to a search
about one patient ("patient X has no test Y" is information)."""

from __future__ import annotations

import json

import pytest

from coffre.audit import detection
from coffre.audit.log import READ_ACTIONS
from coffre.audit.models import AccessEvent, AccountLock
from coffre.identity.access import create_patient
from tests.api_helpers import api_token, bearer
from tests.conftest import make_nir, patient_row
from tests.lab_helpers import published

pytestmark = pytest.mark.django_db
SCOPED_TYPES = ("Observation", "DiagnosticReport", "ServiceRequest", "Specimen")


@pytest.fixture
def token(lab_a):
    return api_token(lab_a)


def get(client, token: str, path: str, **params):
    response = client.get(f"/fhir/{path}", params, **bearer(token))
    return response, json.loads(response.content)


def mark() -> int:
    return AccessEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def reads_since(start: int) -> list[AccessEvent]:
    return list(AccessEvent.objects.filter(id__gt=start, action__in=READ_ACTIONS)
                .order_by("id"))


@pytest.mark.parametrize("resource_type", SCOPED_TYPES)
def test_a_count_without_entries_is_an_audited_read_of_the_patient(client, token, staff,
                                                                   patient, resource_type):
    published(staff, patient.id, K="4.4")
    for params in ({"_count": "0"}, {"_summary": "count"}):
        start = mark()
        response, found = get(client, token, resource_type, patient=str(patient.id),
                               **params)
        assert response.status_code == 200, found
        assert found["total"] >= 1 and not found.get("entry"), params
        events = reads_since(start)
        assert {(e.patient_id, e.outcome, e.channel) for e in events} == {
            (patient.id, "ok", "api")}, params


@pytest.mark.parametrize("resource_type", SCOPED_TYPES)
def test_an_empty_search_about_a_patient_is_an_audited_read_of_that_patient(
        client, token, patient, resource_type):
    start = mark()
    response, found = get(client, token, resource_type, patient=str(patient.id))
    assert response.status_code == 200 and found["total"] == 0
    assert [(e.patient_id, e.outcome) for e in reads_since(start)] == [(patient.id, "ok")]


@pytest.mark.parametrize("params", [
    {"code": "http://loinc.org|2951-2"}, {"status": "cancelled"}, {"date": "lt2000-01-01"},
])
def test_no_such_test_status_or_date_is_an_audited_read(client, token, staff, patient,
                                                        params):
    published(staff, patient.id, K="4.4")
    for resource_type in ("Observation", "DiagnosticReport"):
        start = mark()
        _, found = get(client, token, resource_type, patient=str(patient.id), **params)
        assert found["total"] == 0, (resource_type, params)
        assert [(e.patient_id, e.outcome) for e in reads_since(start)] == [
            (patient.id, "ok")], (resource_type, params)


def test_a_patient_count_names_every_match(client, token, patient):
    from coffre.fhir.resources import INS_NIR_SYSTEM

    start = mark()
    _, found = get(client, token, "Patient", identifier=f"{INS_NIR_SYSTEM}|"
                   f"{patient_row()['nir']}", _summary="count")
    assert found["total"] == 1 and not found.get("entry")
    assert [(e.action, e.patient_id) for e in reads_since(start)] == [("search", patient.id)]


def test_a_search_about_another_labs_patient_is_logged_as_not_found(client, lab_b, staff,
                                                                     patient):
    published(staff, patient.id, K="4.4")
    start = mark()
    response, found = get(client, api_token(lab_b), "Observation", patient=str(patient.id))
    assert response.status_code == 200 and found["total"] == 0
    assert [(e.patient_id, e.outcome) for e in reads_since(start)] == [
        (patient.id, "not_found")]


def test_a_count_only_search_has_no_next_link_to_follow_forever(client, token, staff,
                                                                patient):
    published(staff, patient.id, K="4.4", NA="140")
    _, found = get(client, token, "Observation", patient=str(patient.id), _count="0")
    assert found["total"] == 2
    assert [link["relation"] for link in found["link"]] == ["self"]


def test_summary_takes_count_only(client, token, patient):
    response, found = get(client, token, "Observation", patient=str(patient.id),
                          _summary="true")
    assert response.status_code == 400 and "_summary" in found["issue"][0]["diagnostics"]


def test_the_observation_read_names_exactly_its_patient(client, token, staff, patient):
    from coffre.identity.access import access_patient

    other = create_patient(staff.secretary, patient_row(
        nir=make_nir("M", 1970, 6), sex="M", birth_date="1970-06-02",
        birth_name="Durand", used_name="", first_names="Paul",
        email="paul@example.org", phone="0698765432"))
    mine = published(staff, patient.id, K="4.4").results.first()
    published(staff, other.id, K="5.0")
    access_patient(staff.secretary, other.id)  # the other patient is read elsewhere too
    start = mark()
    response, found = get(client, token, f"Observation/{mine.id}")
    assert response.status_code == 200 and found["id"] == str(mine.id)
    assert [(e.action, e.patient_id, e.kind, e.outcome, e.channel)
            for e in reads_since(start)] == [("read", patient.id, "results", "ok", "api")]


@pytest.fixture
def many_patients(lab_a):
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.identity.models import Patient
    from coffre.identity.synthetic import generate_patients
    from coffre.tenancy.actors import Actor

    importer = Actor("importer", lab_a.id, "import", "cli")
    import_rows(importer, lambda: dict_rows(generate_patients(170, seed=5)))
    return list(Patient.unscoped.filter(lab=lab_a).values_list("id", flat=True))


@pytest.mark.parametrize("resource_type", ("Observation", "ServiceRequest"))
def test_a_client_counting_patients_one_by_one_is_locked(client, lab_a, many_patients,
                                                        resource_type):
    """The attack: ask "does patient X have a result?" for every patient, with
    _count=0 so that no page is ever opened."""
    token = api_token(lab_a)
    codes = []
    for patient_id in many_patients:
        response, _ = get(client, token, resource_type, patient=str(patient_id), _count="0")
        codes.append(response.status_code)
        if codes[-1] != 200:
            break
    assert codes[-1] == 403
    assert len(codes) == detection.DEFAULTS["hard_per_10_minutes"]
    assert AccountLock.objects.filter(person__startswith="api:",
                                      unlocked_at__isnull=True).exists()
