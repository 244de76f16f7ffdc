"""Patient portal pages: activation, the patient's own results, charts, report and
access history; staff pages stay closed to a patient account."""

from __future__ import annotations

import html

from django.test import Client

from coffre.identity.access import create_patient
from coffre.portal import activation
from coffre.portal.models import PatientAccount
from tests.conftest import STAFF_PASSWORD, make_nir, patient_row, second_factor_done
from tests.lab_helpers import order_for, published


def _activate(client: Client, code: str, **overrides: str):
    form = {"code": code, "birth_date": "14/03/1985", "username": "claire.m85",
            "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD, **overrides}
    return client.post("/portail/activation/", form, follow=True)


def test_activation_logs_the_patient_in_on_their_results(client, staff, patient):
    order = published(staff, patient.id, K="4.4", GLY="6.1")
    response = _activate(client, activation.issue_code(staff.secretary, patient.id))
    assert response.redirect_chain[-1][0] == "/portail/"
    page = response.content.decode()
    assert order.number in page and "Qui a consulté mon dossier" in page
    detail = client.get(f"/portail/demandes/{order.id}/").content.decode()
    assert "4,4" in detail and "Potassium" in detail
    report = client.get(f"/portail/demandes/{order.id}/compte-rendu.pdf")
    assert report["Content-Type"] == "application/pdf" and report.content.startswith(b"%PDF")
    chart = client.get("/portail/resultats/14749-6/").content.decode()
    assert "<svg" in chart and "6,1" in chart
    history = client.get("/portail/acces/").content.decode()
    assert staff.biologist.person in history


def test_a_wrong_birth_date_is_refused_with_a_french_message(client, staff, patient):
    response = _activate(client, activation.issue_code(staff.secretary, patient.id),
                         birth_date="15/03/1985")
    assert "Code ou date de naissance non reconnus" in response.content.decode()
    assert not PatientAccount.objects.exists()


def test_too_many_attempts_from_one_address_get_a_french_429_page(client, staff, patient,
                                                                  settings):
    settings.COFFRE_ACTIVATION_ADDRESS_ATTEMPTS = 2
    code = activation.issue_code(staff.secretary, patient.id)
    for _ in range(2):
        assert _activate(client, code, birth_date="15/03/1985").status_code == 200
    stopped = _activate(client, code)
    assert stopped.status_code == 429
    assert "Trop d'essais depuis cette connexion" in html.unescape(stopped.content.decode())
    assert not PatientAccount.objects.exists()
    # Behind the reverse proxy, the address counted is the one the proxy appended.
    settings.COFFRE_TRUSTED_PROXIES = 1
    forged = {"HTTP_X_FORWARDED_FOR": "127.0.0.1, 198.51.100.4"}
    other = Client().post("/portail/activation/", {
        "code": code, "birth_date": "14/03/1985", "username": "claire.m85",
        "password": STAFF_PASSWORD, "password_again": STAFF_PASSWORD}, **forged)
    assert other.status_code == 302 and PatientAccount.objects.exists()


def test_a_patient_cannot_open_another_patients_order(client, staff, patient):
    other = create_patient(staff.secretary, patient_row(
        nir=make_nir("M", 1970, 5), sex="M", birth_name="Durand", used_name="",
        first_names="Marc", birth_date="1970-05-02"))
    theirs = published(staff, other.id, K="5.1")
    _activate(client, activation.issue_code(staff.secretary, patient.id))
    assert client.get(f"/portail/demandes/{theirs.id}/").status_code == 404
    assert client.get(f"/portail/demandes/{theirs.id}/compte-rendu.pdf").status_code == 404


def test_staff_pages_are_closed_to_a_patient_and_the_portal_to_staff(client, staff, patient):
    _activate(client, activation.issue_code(staff.secretary, patient.id))
    assert client.get("/patients/").status_code == 403
    assert client.get("/validation/").status_code == 403
    from django.contrib.auth import get_user_model

    staff_client = Client()
    staff_client.force_login(get_user_model().objects.get(username=staff.biologist.person))
    second_factor_done(staff_client)
    assert staff_client.get("/portail/").status_code == 403


def test_the_receipt_is_printed_by_the_desk(client, staff, patient):
    from django.contrib.auth import get_user_model

    order = order_for(staff.secretary, patient.id, "K")
    client.force_login(get_user_model().objects.get(username=staff.secretary.person))
    second_factor_done(client)
    response = client.post(f"/demandes/{order.id}/recu.pdf")
    assert response["Content-Type"] == "application/pdf"
    assert response["Cache-Control"].startswith("no-store")
    assert client.get(f"/demandes/{order.id}/recu.pdf").status_code == 405
