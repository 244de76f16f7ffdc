"""A result's clear columns are bound to its sealed value (coffre.labwork.sealing): an
intruder with write access to the database who relabels a result (haemoglobin 13.2
shown as CRP 13.2 mg/L), moves it to another order, specimen or patient, or edits its
state or validation stamps makes every read of it fail loudly, naming the row and never
a value, and the data-protection officer is alerted. Each test edits the row with raw
SQL, as such an intruder would."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from coffre.audit.models import Alert
from coffre.identity.access import create_patient
from coffre.labwork import access, analyser, catalogue, reports, workflow
from coffre.labwork.models import Result, ResultState
from coffre.labwork.sealing import TamperedRow, tag_untagged_results
from coffre.lifecycle import reencrypt
from coffre.portal import activation, prescriber, services
from coffre.portal.models import PatientAccount
from coffre.tenancy.actors import cli_actor
from tests.api_helpers import api_token, bearer
from tests.conftest import make_nir, own_password, patient_row, second_factor_done
from tests.lab_helpers import (
    PRESCRIBER_RPPS,
    enter,
    order_for,
    published,
    receive_all,
    result,
)

S = ResultState
CRP = catalogue.test("CRP").loinc
VALUES = ("13.2", "13,2")
pytestmark = pytest.mark.django_db


def db(value: object) -> object:
    """A value as the database stores it (UUIDs are hex text on SQLite)."""
    if isinstance(value, uuid.UUID):
        return Result._meta.pk.get_db_prep_value(value, connection)
    return value


def edit(row_id: uuid.UUID, **columns: object) -> None:
    """UPDATE lab_result directly, outside Coffre."""
    assignments = ", ".join(f"{column} = %s" for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE lab_result SET {assignments} WHERE id = %s",  # noqa: S608
                       [*(db(v) for v in columns.values()), db(row_id)])


@pytest.fixture
def order(staff, patient):
    """A published haemoglobin of 13.2 g/dL, prescribed by PRESCRIBER_RPPS."""
    return published(staff, patient.id, HB="13.2")


@pytest.fixture
def doctor(db):
    account, _password = prescriber.add_prescriber(PRESCRIBER_RPPS, "dr.bernard")
    own_password(account.user)  # past the first login's change of the handed password
    return account


@pytest.fixture
def portal_account(staff, patient) -> PatientAccount:
    activation.activate(activation.Activation(
        activation.issue_code(staff.secretary, patient.id), "14/03/1985", "claire.m85",
        "correct horse battery staple 42"))
    return PatientAccount.objects.get(patient_id=patient.id)


def read_paths(staff, doctor, account, row: Result) -> dict:
    """Every way a result's value is read, for the row as it now is in the database."""
    row = Result.unscoped.get(pk=row.pk)
    lab_actor = cli_actor(row.lab_id)
    return {
        "order page": lambda: access.access_order(staff.biologist, row.order_id),
        "report PDF": lambda: reports.report_pdf(staff.biologist, row.order_id),
        "FHIR Observation read": lambda: access.result_view(staff.biologist, row.id),
        "FHIR Observation search": lambda: access.patient_results(
            staff.biologist, row.patient_id, access.ResultFilter()),
        "patient portal": lambda: services.patient_order(account, row.order_id),
        "patient portal report": lambda: services.patient_report(account, row.order_id),
        "prescriber portal": lambda: prescriber.prescribed_order(doctor, row.order_id),
        "prescriber report": lambda: prescriber.prescribed_report(doctor, row.order_id),
        "HL7 export": lambda: analyser.export_oru(lab_actor, row.order_id),
        "chart": lambda: access.result_series(staff.biologist, row.patient_id, row.loinc),
    }


def assert_refused(read, row_id: uuid.UUID) -> None:
    with pytest.raises(TamperedRow) as refused:
        read()
    message = str(refused.value)
    assert str(row_id) in message and "integrity" in message
    assert not any(value in message for value in VALUES)


def test_an_untouched_result_reads_on_every_path(staff, order, doctor, portal_account):
    for name, read in read_paths(staff, doctor, portal_account, result(order, "HB")).items():
        assert read(), name


def _other_order(staff, patient):
    return published(staff, patient.id, HB="12.9", K="4.1")


EDITS = {
    "relabelled CRP": lambda staff, patient, row: {"loinc": CRP},
    "moved to another order": lambda staff, patient, row: {
        "order_id": _other_order(staff, patient).id},
    "moved to another specimen": lambda staff, patient, row: {
        "specimen_id": result(_other_order(staff, patient), "K").specimen_id},
    "given to another patient": lambda staff, patient, row: {
        "patient_id": create_patient(staff.secretary, patient_row(
            nir=make_nir("M", 1970, 5), sex="M", birth_name="Durand", used_name="",
            first_names="Marc", birth_date="1970-05-02")).id},
    "marked as a correction": lambda staff, patient, row: {"version": 2},
    "source changed": lambda staff, patient, row: {"source": "analyser"},
    "validated by someone else": lambda staff, patient, row: {
        "bio_validated_by_id": get_user_model().objects.get(
            username=staff.other_biologist.person).id},
    "validation time moved": lambda staff, patient, row: {
        "bio_validated_at": row.bio_validated_at - dt.timedelta(days=3)},
    "technical validation erased": lambda staff, patient, row: {
        "tech_validated_at": None, "tech_validated_by_id": None},
    "tag removed": lambda staff, patient, row: {"mac": b""},
}


@pytest.mark.parametrize("case", list(EDITS))
def test_an_edited_result_fails_loudly_on_every_read_path(staff, patient, order, doctor,
                                                          portal_account, caplog, case):
    row = result(order, "HB")
    edit(row.id, **EDITS[case](staff, patient, row))
    with caplog.at_level(logging.ERROR, logger="coffre.labwork"):
        for name, read in read_paths(staff, doctor, portal_account, row).items():
            try:
                assert_refused(read, row.id)
            except (AssertionError, pytest.fail.Exception):
                raise AssertionError(f"{name} did not refuse the edited row") from None
    logged = [r.getMessage() for r in caplog.records if "integrity" in r.getMessage()]
    assert logged and all(str(row.id) in line for line in logged)
    assert not any(value in line for line in logged for value in VALUES)


def test_a_later_orders_previous_value_comes_from_an_intact_row_only(staff, patient, order):
    later = published(staff, patient.id, HB="14.0")
    assert access.access_order(staff.biologist, later.id).results[0].previous.value == "13.2"
    edit(result(order, "HB").id, bio_validated_at=timezone.now())
    assert_refused(lambda: access.access_order(staff.biologist, later.id),
                   result(order, "HB").id)


def test_a_result_pushed_to_published_without_validation_is_never_shown(
        staff, patient, portal_account):
    order = order_for(staff.secretary, patient.id, "HB")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, HB="13.2")
    row = result(order, "HB")
    edit(row.id, state=S.PUBLISHED, published_at=timezone.now())
    assert_refused(lambda: services.patient_order(portal_account, order.id), row.id)
    assert_refused(lambda: access.access_order(staff.biologist, order.id), row.id)
    assert_refused(lambda: access.result_view(staff.biologist, row.id), row.id)


def test_a_result_hidden_as_invalidated_fails_the_order_page(staff, order):
    row = result(order, "HB")
    edit(row.id, state=S.INVALIDATED)
    assert_refused(lambda: access.access_order(staff.biologist, order.id), row.id)


def test_skipping_technical_validation_in_the_database_stops_the_biologist(staff, patient):
    order = order_for(staff.secretary, patient.id, "HB", "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, HB="13.2", K="4.1")
    hb, k = result(order, "HB"), result(order, "K")
    workflow.validate_technically(staff.technician, [k.id])
    edit(hb.id, state=S.TECH_VALIDATED)
    assert_refused(lambda: access.validation_queue(staff.biologist), hb.id)
    assert_refused(lambda: workflow.validate_biologically(staff.biologist, [hb.id, k.id]),
                   hb.id)
    assert result(order, "K").state == S.TECH_VALIDATED  # nothing changed


def test_a_relabelled_registered_test_stops_the_reception(staff, patient):
    order = order_for(staff.secretary, patient.id, "HB")
    row = result(order, "HB")
    edit(row.id, loinc=CRP)
    (specimen,) = order.specimens.all()
    assert_refused(lambda: workflow.receive(staff.secretary, specimen.barcode), row.id)
    assert Result.unscoped.get(pk=row.pk).state == S.REGISTERED


def test_the_staff_page_answers_500_and_alerts_the_officer(staff, order):
    from tests.test_web_lab import client_for

    row = result(order, "HB")
    edit(row.id, loinc=CRP)
    client = client_for(staff.biologist)
    client.raise_request_exception = False
    for url in (f"/demandes/{order.id}/", f"/demandes/{order.id}/compte-rendu.pdf"):
        response = client.get(url)
        assert response.status_code == 500
        assert not any(value.encode() in response.content for value in VALUES)
    alerts = list(Alert.objects.filter(kind="tampering"))
    assert len(alerts) == 2 and alerts[0].lab_id == order.lab_id
    assert str(row.id) in alerts[0].summary and alerts[0].person == staff.biologist.person


def test_the_fhir_api_answers_500_and_alerts(client, lab_a, staff, order):
    row = result(order, "HB")
    edit(row.id, loinc=CRP)
    client.raise_request_exception = False
    token = api_token(lab_a)
    for path in (f"Observation/{row.id}", f"DiagnosticReport/{order.id}"):
        response = client.get(f"/fhir/{path}", **bearer(token))
        assert response.status_code == 500
        assert not any(value.encode() in response.content for value in VALUES)
    assert Alert.objects.filter(kind="tampering", lab_id=lab_a.id).count() == 2


def test_the_portals_answer_500(staff, order, doctor):
    row = result(order, "HB")
    edit(row.id, loinc=CRP)
    client = Client(raise_request_exception=False)
    client.force_login(doctor.user)
    second_factor_done(client)
    assert client.get(f"/prescripteur/demandes/{order.id}/").status_code == 500
    assert Alert.objects.filter(kind="tampering", person="dr.bernard").exists()


def test_an_analyser_message_on_an_edited_result_is_refused_and_alerted(staff, patient):
    order = order_for(staff.secretary, patient.id, "HB")
    receive_all(staff.secretary, order)
    row = result(order, "HB")
    edit(row.id, version=3)
    (specimen,) = order.specimens.all()
    message = (f"MSH|^~\\&|SYSMEX|LABO|COFFRE|750000010|20240312083000||ORU^R01|M1|P|2.5\r"
               f"OBR|1||{specimen.barcode}|CBC\rOBX|1|NM|718-7^Hb^LN||13.2|g/dL\r")
    outcome = analyser.import_message(order.lab_id, message)
    assert outcome.code == "AE" and "integrity" in outcome.text
    assert "13.2" not in outcome.ack and str(row.id) not in outcome.ack
    assert Result.unscoped.get(pk=row.pk).entered_at is None
    assert Alert.objects.filter(kind="tampering", person__startswith="analyser:").exists()


def test_reencryption_retags_and_never_launders_an_edited_row(staff, patient, order,
                                                              lab_a):
    report = reencrypt.reencrypt(lab_a.id)
    assert report.finished
    assert access.access_order(staff.biologist, order.id).results[0].value == "13.2"
    row = result(order, "HB")
    edit(row.id, loinc=CRP)
    with pytest.raises(TamperedRow):
        reencrypt.reencrypt(lab_a.id)
    edit(row.id, loinc=row.loinc)  # put back as it was: it reads again
    assert access.access_order(staff.biologist, order.id).results[0].value == "13.2"


def test_rows_written_before_tags_existed_are_tagged_by_the_migration(staff, order):
    row = result(order, "HB")
    edit(row.id, mac=b"")
    assert_refused(lambda: access.access_order(staff.biologist, order.id), row.id)
    assert tag_untagged_results() == 1
    assert access.access_order(staff.biologist, order.id).results[0].value == "13.2"
