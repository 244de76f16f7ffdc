"""The staff pages: login, search (POST only), patient page, tenancy on every page."""

import pytest
from django.http import HttpRequest

from coffre.accounts.models import Role
from coffre.identity.access import create_patient
from tests.conftest import STAFF_PASSWORD, make_nir, member, patient_row, second_factor_done

PASSWORD = STAFF_PASSWORD


@pytest.fixture
def staff_a(lab_a):
    return member("alice", lab_a, Role.SECRETARY)


@pytest.fixture
def client_a(client, staff_a):
    # django-axes needs a request to authenticate (its documented test recipe).
    assert client.login(request=HttpRequest(), username="alice", password=PASSWORD)
    second_factor_done(client)
    return client


def test_the_patient_pages_need_a_login(client, actor_a):
    patient = create_patient(actor_a, patient_row())
    for url in ("/patients/", f"/patients/{patient.id}/"):
        response = client.get(url)
        assert response.status_code == 302 and "/connexion/" in response["Location"]


def test_the_pages_speak_french_by_default(client_a):
    page = client_a.get("/patients/").content.decode()
    assert "Rechercher un patient" in page and 'lang="fr"' in page


def test_a_search_finds_a_patient_of_the_lab_and_opens_the_record(client_a, actor_a):
    patient = create_patient(actor_a, patient_row())
    page = client_a.post("/patients/", {"name": "lefevre", "birth_date": "1985-03-14"})
    assert f"/patients/{patient.id}/" in page.content.decode()
    record = client_a.get(f"/patients/{patient.id}/").content.decode()
    assert "LEFÈVRE" in record and "06 12 34 56 78" in record


def test_a_search_never_puts_the_criteria_in_a_url(client_a, actor_a):
    create_patient(actor_a, patient_row())
    response = client_a.get("/patients/", {"nir": make_nir("F", 1985, 3)})
    assert "Lefèvre" not in response.content.decode()  # GET does not search
    assert response.status_code == 200


def test_a_patient_of_another_lab_is_a_plain_404(client_a, actor_b):
    theirs = create_patient(actor_b, patient_row())
    response = client_a.get(f"/patients/{theirs.id}/")
    assert response.status_code == 404
    assert "Lefèvre" not in response.content.decode()
    assert "LEFÈVRE" not in response.content.decode()
    found = client_a.post("/patients/", {"email": "claire.lefevre@example.fr"})
    assert f"/patients/{theirs.id}/" not in found.content.decode()


def test_a_bad_search_says_what_is_wrong_without_echoing_the_value(client_a):
    page = client_a.post("/patients/", {"nir": "285037505612399"}).content.decode()
    assert "NIR" in page and "285037505612399" not in page.split("<form")[0]


def test_the_record_page_carries_no_patient_value_in_its_url(client_a, actor_a):
    patient = create_patient(actor_a, patient_row())
    page = client_a.post("/patients/", {"phone": "0612345678"}).content.decode()
    assert f'href="/patients/{patient.id}/"' in page


@pytest.mark.parametrize(("criteria", "message"), [
    ({"nir": "285037505612399"}, "NIR : la clé de contrôle"),
    ({"nir": "2850375056"}, "NIR : il faut 15 caractères"),
    ({"nir": "385037505612306"}, "NIR invalide"),
    ({"name": "lefevre"}, "La recherche par nom demande aussi la date de naissance."),
    ({"phone": "12"}, "Numéro de téléphone invalide."),
    ({"email": "claire.example.fr"}, "Adresse de courriel invalide."),
    ({"nir": "", "name": "", "email": ""}, "Indiquez un NIR, un nom et une date de naissance"),
])
def test_a_bad_search_is_explained_in_french(client_a, criteria, message):
    page = client_a.post("/patients/", criteria).content.decode()
    assert message in page.replace("&#x27;", "'")


def test_the_pages_are_available_in_english(client_a):
    page = client_a.get("/patients/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Find a patient" in page and 'lang="en"' in page
    assert "Rechercher un patient" not in page


def test_a_patient_record_is_never_cached_by_the_browser(client_a, actor_a):
    patient = create_patient(actor_a, patient_row())
    response = client_a.get(f"/patients/{patient.id}/")
    assert "no-store" in response["Cache-Control"]
