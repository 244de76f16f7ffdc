"""Limits hold per API client and per person. A new token does not reset its client's
rate limit; the clients one person registered in a lab share one rate limit, one token
quota and one mass-reading budget (ten clients are not ten budgets); and that person
cannot lift the lock of a client they registered."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model

from coffre.apiclients import services
from coffre.audit import detection
from coffre.audit.models import AccountLock
from coffre.tenancy.actors import Actor
from tests.api_helpers import api_client, api_token, bearer
from tests.conftest import member, second_factor_done

pytestmark = pytest.mark.django_db


def manager(lab, username: str) -> Actor:
    member(username, lab, "lab_manager")
    return Actor(username, lab.id, "lab_manager", "web")


def token_of(registered, secret: str) -> str:
    return services.issue_token(services.authenticate_client(registered.client_id, secret)
                                ).access_token


def call(client, token: str, lab) -> int:
    return client.get(f"/fhir/Organization/{lab.finess}", **bearer(token)).status_code


def read(client, token: str, patient_id) -> int:
    return client.get(f"/fhir/Patient/{patient_id}", **bearer(token)).status_code


def test_a_new_token_does_not_reset_the_rate_limit(client, lab_a, monkeypatch):
    monkeypatch.setenv("COFFRE_API_RATE_PER_MINUTE", "3")
    registered, secret = api_client(lab_a)
    first = token_of(registered, secret)
    assert [call(client, first, lab_a) for _ in range(4)] == [200, 200, 200, 429]
    assert call(client, token_of(registered, secret), lab_a) == 429


def test_the_clients_of_one_person_share_one_rate_limit(client, lab_a, monkeypatch):
    monkeypatch.setenv("COFFRE_API_RATE_PER_MINUTE", "3")
    manon = manager(lab_a, "manon")
    tokens = [api_token(lab_a, by=manon) for _ in range(3)]
    assert [call(client, token, lab_a) for token in tokens] == [200, 200, 200]
    assert call(client, api_token(lab_a, by=manon), lab_a) == 429
    assert call(client, api_token(lab_a, by=manager(lab_a, "sophie")), lab_a) == 200


def test_the_clients_of_one_person_share_one_token_quota(client, lab_a, monkeypatch):
    monkeypatch.setenv("COFFRE_API_TOKENS_PER_MINUTE", "2")
    manon = manager(lab_a, "manon")
    codes = []
    for _ in range(3):
        registered, secret = api_client(lab_a, by=manon)
        pair = base64.b64encode(f"{registered.client_id}:{secret}".encode()).decode()
        codes.append(client.post("/fhir/auth/token", urlencode({
            "grant_type": "client_credentials"}),
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION=f"Basic {pair}").status_code)
    assert codes == [200, 200, 429]


@pytest.fixture
def many_patients(lab_a):
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.identity.models import Patient
    from coffre.identity.synthetic import generate_patients

    importer = Actor("importer", lab_a.id, "import", "cli")
    import_rows(importer, lambda: dict_rows(generate_patients(170, seed=5)))
    return list(Patient.unscoped.filter(lab=lab_a).values_list("id", flat=True))


def test_ten_clients_of_one_person_share_one_reading_budget(client, lab_a, many_patients):
    """The attack: a manager registers ten clients and reads 17 patients with each, 170
    in all, under the hard threshold of any one client."""
    manon = manager(lab_a, "manon")
    tokens = [api_token(lab_a, by=manon) for _ in range(10)]
    codes = []
    for index, patient_id in enumerate(many_patients):
        codes.append(read(client, tokens[index % 10], patient_id))
        if codes[-1] != 200:
            break
    hard = detection.DEFAULTS["hard_per_10_minutes"]
    assert codes[-1] == 403 and len(codes) == hard
    name = f"api-by:manon@{lab_a.finess}"
    lock = AccountLock.objects.get(unlocked_at__isnull=True)
    assert (lock.person, lock.answerable) == (name, "manon")
    # Every client of the person stops, a new one too; another person's do not.
    assert {read(client, token, many_patients[0]) for token in tokens} == {403}
    assert read(client, api_token(lab_a, by=manon), many_patients[0]) == 403
    sophie = manager(lab_a, "sophie")
    assert read(client, api_token(lab_a, by=sophie), many_patients[0]) == 200
    client.force_login(get_user_model().objects.get(username="sophie"))
    second_factor_done(client)
    page = client.get("/laboratoire/clients-api/").content.decode()
    assert page.count(f'action="/alertes/verrous/{lock.id}/deverrouiller/"') == 11
    client.logout()
    with pytest.raises(detection.SelfUnlock):
        detection.unlock(name, by=manon, lab_id=lab_a.id)
    assert detection.unlock(name, by=sophie, lab_id=lab_a.id) == 1
    detection.clear_caches()
    assert read(client, tokens[0], many_patients[0]) == 200


def test_the_person_who_registered_a_client_cannot_unlock_it(client, lab_a, many_patients):
    manon = manager(lab_a, "manon")
    token = api_token(lab_a, by=manon)
    codes = []
    for patient_id in many_patients:
        codes.append(read(client, token, patient_id))
        if codes[-1] != 200:
            break
    assert codes[-1] == 403
    lock_id = AccountLock.objects.values_list("id", flat=True).get(
        person__startswith="api:", unlocked_at__isnull=True)
    client.force_login(get_user_model().objects.get(username=manon.person))
    second_factor_done(client)
    response = client.post(f"/alertes/verrous/{lock_id}/deverrouiller/")
    assert response.status_code == 403
    lock = AccountLock.objects.get(pk=lock_id, unlocked_at__isnull=True)
    assert lock.answerable == "manon"
    client.logout()
    client.force_login(member("sophie", lab_a, "lab_manager"))
    second_factor_done(client)
    assert client.post(f"/alertes/verrous/{lock.id}/deverrouiller/").status_code == 302
    assert not AccountLock.objects.filter(unlocked_at__isnull=True).exists()
