"""API clients: client-credentials tokens, scopes, rate limit, lab scope and locks."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from urllib.parse import urlencode

import pytest
from django.core.cache import cache
from django.db import connection
from django.urls import include, path
from django.utils import timezone

from coffre.apiclients import services
from coffre.apiclients.models import AccessToken, ApiClient
from coffre.apiclients.scopes import ScopeError, parse
from coffre.audit.models import AccessEvent, AccountLock
from coffre.fhir.api import fhir_endpoint
from coffre.fhir.outcome import fhir_response, outcome
from coffre.identity.access import PatientNotFound, access_patient, create_patient
from coffre.tenancy.actors import Actor, cli_actor
from tests.api_helpers import api_client, api_token, bearer
from tests.conftest import patient_row

TOKEN_URL = "/fhir/auth/token"


# --- probe views: the access layer without h2's resources -------------------------------

@fhir_endpoint("Patient", "read")
def probe_patient(request, patient_id):
    try:
        record = access_patient(request.actor, patient_id)
    except PatientNotFound:
        return outcome(404, "not-found", "no such Patient")
    return fhir_response({"resourceType": "Patient", "id": str(record.id)})


@fhir_endpoint("*", "read")
def probe_whoami(request):
    actor = request.actor
    return fhir_response({"person": actor.person, "lab": actor.lab_id, "role": actor.role,
                          "channel": actor.channel, "address": actor.address,
                          "client": request.api.client_id})


@fhir_endpoint("ServiceRequest", "write")
def probe_write(request):
    return fhir_response({"resourceType": "OperationOutcome", "issue": []}, 201)


urlpatterns = [
    path("probe/Patient/<str:patient_id>", probe_patient),
    path("probe/whoami", probe_whoami),
    path("probe/write", probe_write),
    path("", include("coffre.urls")),
]
pytestmark = pytest.mark.urls("tests.test_api_clients")


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {pair}"}


def post_form(client, form: dict[str, str], **headers: str):
    return client.post(TOKEN_URL, urlencode(form),
                       content_type="application/x-www-form-urlencoded", **headers)


def ask_token(client, client_id: str, secret: str, **form: str):
    return post_form(client, {"grant_type": "client_credentials", **form},
                     **basic(client_id, secret))


# --- the token endpoint -----------------------------------------------------------------

def test_a_client_gets_a_bearer_token_with_http_basic(client, lab_a):
    registered, secret = api_client(lab_a, "system/Observation.read system/Patient.read")
    response = ask_token(client, registered.client_id, secret)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60
    assert body["scope"] == "system/Observation.read system/Patient.read"
    assert "no-store" in response["Cache-Control"]
    who = client.get("/probe/whoami", **bearer(body["access_token"]), REMOTE_ADDR="10.1.2.3")
    assert who.status_code == 200
    assert who.json() == {"person": f"api:{registered.client_id}", "lab": lab_a.id,
                          "role": "api_client", "channel": "api", "address": "10.1.2.3",
                          "client": registered.client_id}
    issued = AccessEvent.objects.get(action="api_token")
    assert (issued.person, issued.lab_id, issued.channel) == (
        f"api:{registered.client_id}", lab_a.id, "api")


def test_form_fields_authenticate_the_client_too(client, lab_a):
    registered, secret = api_client(lab_a)
    response = post_form(client, {"grant_type": "client_credentials",
                                  "client_id": registered.client_id, "client_secret": secret})
    assert response.status_code == 200
    assert client.get("/probe/whoami", **bearer(response.json()["access_token"])
                      ).status_code == 200


def test_a_wrong_secret_an_unknown_client_and_a_revoked_one_get_invalid_client(client,
                                                                                 lab_a):
    registered, secret = api_client(lab_a)
    wrong = ask_token(client, registered.client_id, secret + "x")
    unknown = ask_token(client, "cfc_0000000000000000", secret)
    services.revoke_client(registered, cli_actor(lab_a.id))
    revoked = ask_token(client, registered.client_id, secret)
    for response in (wrong, unknown, revoked):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
        assert response["WWW-Authenticate"].startswith("Basic")
        assert secret not in response.content.decode()


def test_failed_client_authentications_lock_the_client_like_logins(client, lab_a, settings):
    registered, secret = api_client(lab_a)
    for _ in range(settings.COFFRE_LOGIN_ACCOUNT_FAILURES):
        assert ask_token(client, registered.client_id, "guess").status_code == 401
    locked = ask_token(client, registered.client_id, secret)
    assert locked.status_code == 429
    assert locked.json()["error"] == "invalid_client"
    assert int(locked["Retry-After"]) > 0
    assert not AccessToken.objects.exists()


def test_an_unknown_client_and_a_wrong_secret_get_the_same_answer(client, lab_a):
    registered, secret = api_client(lab_a)
    wrong = ask_token(client, registered.client_id, "cfs_" + "x" * 43)
    unknown = ask_token(client, "cfc_0123456789abcdef", secret)
    assert wrong.content == unknown.content


def test_malformed_token_requests_get_invalid_request(client, lab_a):
    registered, secret = api_client(lab_a)
    form = {"grant_type": "client_credentials"}
    as_json = client.post(TOKEN_URL, json.dumps(form), content_type="application/json",
                          **basic(registered.client_id, secret))
    twice = post_form(client, {**form, "client_id": registered.client_id,
                               "client_secret": secret}, **basic(registered.client_id, secret))
    bad_basic = post_form(client, form, HTTP_AUTHORIZATION="Basic !!!")
    huge = post_form(client, {**form, "scope": "system/*.read " * 400},
                     **basic(registered.client_id, secret))
    for response in (as_json, twice, bad_basic, huge):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
    assert not AccessToken.objects.exists()


def test_only_the_client_credentials_grant_is_supported(client, lab_a):
    registered, secret = api_client(lab_a)
    response = ask_token(client, registered.client_id, secret, grant_type="password")
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"
    assert client.get(TOKEN_URL).status_code == 405


def test_a_token_can_be_narrowed_but_not_widened(client, lab_a):
    registered, secret = api_client(lab_a, "system/*.read")
    narrowed = ask_token(client, registered.client_id, secret, scope="system/Observation.read")
    assert narrowed.json()["scope"] == "system/Observation.read"
    token = narrowed.json()["access_token"]
    refused = client.get(f"/probe/Patient/{uuid.uuid4()}", **bearer(token))
    assert refused.status_code == 403
    assert "system/Patient.read" in refused.json()["issue"][0]["diagnostics"]
    wider = ask_token(client, registered.client_id, secret, scope="system/Patient.write")
    assert wider.status_code == 400
    assert wider.json()["error"] == "invalid_scope"
    patient_scope = ask_token(client, registered.client_id, secret, scope="patient/*.read")
    assert patient_scope.json()["error"] == "invalid_scope"
    assert "launch context" in patient_scope.json()["error_description"]


def test_a_write_needs_a_write_scope(client, lab_a):
    assert client.post("/probe/write", **bearer(api_token(lab_a, "system/*.read"))
                       ).status_code == 403
    assert client.post("/probe/write", **bearer(api_token(lab_a, "system/ServiceRequest.*"))
                       ).status_code == 201


# --- the bearer token -------------------------------------------------------------------

def test_no_token_or_a_bad_one_gets_401_with_a_bearer_challenge(client, lab_a):
    token = api_token(lab_a)
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Basic {token}"},
                    bearer(token + "x"), bearer("")):
        response = client.get("/probe/whoami", **headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
        assert token not in response.content.decode()


def test_an_expired_token_is_refused_and_purged(client, lab_a):
    token = api_token(lab_a)
    AccessToken.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))
    response = client.get("/probe/whoami", **bearer(token))
    assert response.status_code == 401
    assert "expired" in response.json()["issue"][0]["diagnostics"]
    assert services.purge_expired() == 1
    assert not AccessToken.objects.exists()


def test_the_token_lifetime_is_configurable(client, lab_a, monkeypatch):
    monkeypatch.setenv("COFFRE_API_TOKEN_MINUTES", "5")
    registered, secret = api_client(lab_a)
    assert ask_token(client, registered.client_id, secret).json()["expires_in"] == 300
    row = AccessToken.objects.get()
    assert dt.timedelta(minutes=4) < row.expires_at - timezone.now() <= dt.timedelta(minutes=5)


def test_revoking_a_client_stops_its_tokens_at_once(client, lab_a):
    token = api_token(lab_a)
    assert client.get("/probe/whoami", **bearer(token)).status_code == 200
    services.revoke_client(ApiClient.objects.get(), cli_actor(lab_a.id))
    assert client.get("/probe/whoami", **bearer(token)).status_code == 401


def test_a_client_is_found_by_its_id_or_row_number_and_a_strange_one_is_not(lab_a):
    registered, _ = api_client(lab_a)
    assert services.client_of_lab(lab_a.id, registered.client_id) == registered
    assert services.client_of_lab(lab_a.id, str(registered.pk)) == registered
    for strange in ("²", "١", "no-such-client"):  # "²".isdigit() is True, int("²") fails
        with pytest.raises(services.ApiClientError, match="no API client"):
            services.client_of_lab(lab_a.id, strange)


def test_rotating_the_secret_stops_the_old_secret_and_its_tokens(client, lab_a):
    registered, old_secret = api_client(lab_a)
    old_token = ask_token(client, registered.client_id, old_secret).json()["access_token"]
    new_secret = services.rotate_secret(registered, cli_actor(lab_a.id))
    assert client.get("/probe/whoami", **bearer(old_token)).status_code == 401
    assert ask_token(client, registered.client_id, old_secret).status_code == 401
    assert ask_token(client, registered.client_id, new_secret).status_code == 200


def test_the_rate_limit_answers_429_with_retry_after(client, lab_a, monkeypatch):
    monkeypatch.setenv("COFFRE_API_RATE_PER_MINUTE", "3")
    token = api_token(lab_a)
    codes = [client.get("/probe/whoami", **bearer(token)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    throttled = client.get("/probe/whoami", **bearer(token))
    assert throttled.json()["issue"][0]["code"] == "throttled"
    assert 0 < int(throttled["Retry-After"]) <= 61
    another_persons = api_token(lab_a, by=Actor("sophie", lab_a.id, "lab_manager", "web"))
    assert client.get("/probe/whoami", **bearer(another_persons)).status_code == 200


def test_fetching_new_tokens_is_limited_too(client, lab_a, monkeypatch):
    monkeypatch.setenv("COFFRE_API_TOKENS_PER_MINUTE", "2")
    registered, secret = api_client(lab_a)
    codes = [ask_token(client, registered.client_id, secret).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_secrets_and_tokens_are_stored_as_digests_only(client, lab_a):
    registered, secret = api_client(lab_a)
    token = ask_token(client, registered.client_id, secret).json()["access_token"]
    dumped = json.dumps([list(ApiClient.objects.values()), list(AccessToken.objects.values())],
                        default=str)
    assert secret not in dumped and token not in dumped
    assert services.digest(secret) in dumped and services.digest(token) in dumped


# --- scopes -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ("patient/*.read", "launch context"), ("user/Observation.read", "launch context"),
    ("system/Medication.read", "unknown resource type"), ("system/*.delete", "access"),
    ("Observation.read", "not of the form"), ("", "no scope"),
])
def test_bad_scopes_are_refused_with_the_reason(text, problem):
    with pytest.raises(ScopeError, match=problem):
        parse(text)


def test_registration_refuses_bad_scopes_and_writes_nothing(lab_a):
    with pytest.raises(ScopeError):
        api_client(lab_a, "system/*.read patient/*.read")
    assert not ApiClient.objects.exists()


# --- lab scope, audit, detection ---------------------------------------------------------

def test_a_client_reads_its_lab_only_and_each_read_is_logged(client, lab_a, lab_b,
                                                            actor_a, actor_b):
    mine = create_patient(actor_a, patient_row())
    theirs = create_patient(actor_b, patient_row())
    token = api_token(lab_a)
    assert client.get(f"/probe/Patient/{mine.id}", **bearer(token)).status_code == 200
    other = client.get(f"/probe/Patient/{theirs.id}", **bearer(token))
    assert other.status_code == 404
    assert str(theirs.id) not in other.content.decode()
    person = f"api:{ApiClient.objects.get().client_id}"
    events = AccessEvent.objects.filter(person=person, action="read")
    assert {(e.patient_id, e.outcome, e.channel, e.role) for e in events} == {
        (mine.id, "ok", "api", "api_client"), (theirs.id, "not_found", "api", "api_client")}


@pytest.mark.django_db(transaction=True)
def test_the_database_itself_limits_an_api_request_to_the_clients_lab(client, lab_a):
    if connection.vendor != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")
    from coffre.tenancy import rls

    seen = {}

    @fhir_endpoint("*", "read")
    def scope_probe(request):
        seen["scope"] = rls.current()
        return fhir_response({})

    from django.test import RequestFactory

    request = RequestFactory().get("/", **bearer(api_token(lab_a)))
    assert scope_probe(request).status_code == 200
    assert seen["scope"] == str(lab_a.id)


def test_the_api_client_role_creates_orders_but_never_breaks_the_glass(lab_a, actor_a,
                                                                      sister_patient):
    from coffre.identity.access import BreakGlassRefused, break_glass_access
    from tests.lab_helpers import order_for

    api = services.authenticate_token(api_token(lab_a)).actor()
    patient = create_patient(api, patient_row())
    assert order_for(api, patient.id, "NFS").patient_id == patient.id
    with pytest.raises(BreakGlassRefused):
        break_glass_access(api, sister_patient.id, "urgence vitale, patient inconscient")


@pytest.fixture
def many_patients(lab_a):
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.identity.models import Patient
    from coffre.identity.synthetic import generate_patients
    from coffre.tenancy.actors import Actor

    importer = Actor("importer", lab_a.id, "import", "cli")
    import_rows(importer, lambda: dict_rows(generate_patients(170, seed=5)))
    return list(Patient.unscoped.filter(lab=lab_a).values_list("id", flat=True))


def test_a_client_reading_patients_one_by_one_is_locked_and_a_manager_unlocks_it(
        client, lab_a, many_patients):
    from coffre.audit import detection
    from tests.conftest import member, second_factor_done

    token = api_token(lab_a)
    codes = []
    for patient_id in many_patients:  # h2's FHIR read, through the real door
        codes.append(client.get(f"/fhir/Patient/{patient_id}", **bearer(token)).status_code)
        if codes[-1] != 200:
            break
    assert codes[-1] == 403
    assert len(codes) == detection.DEFAULTS["hard_per_10_minutes"] < 500
    person = f"api:{ApiClient.objects.get().client_id}"
    lock = AccountLock.objects.get(person=person, unlocked_at__isnull=True)
    again = client.get(f"/fhir/Patient/{many_patients[0]}", **bearer(token))
    assert again.status_code == 403
    assert "locked" in again.json()["issue"][0]["diagnostics"]

    manager = member("manon", lab_a, "lab_manager")
    client.force_login(manager)
    second_factor_done(client)
    page = client.get("/laboratoire/clients-api/").content.decode()
    assert f'action="/alertes/verrous/{lock.id}/deverrouiller/"' in page
    assert person in client.get("/alertes/").content.decode()
    response = client.post(f"/alertes/verrous/{lock.id}/deverrouiller/")
    assert response.status_code == 302
    client.logout()
    cache.clear()  # the rate limit of the many calls above
    detection.clear_caches()
    assert client.get(f"/fhir/Patient/{many_patients[0]}", **bearer(token)
                      ).status_code == 200


# --- the command line -------------------------------------------------------------------

def test_the_cli_registers_lists_rotates_and_revokes_a_client(tmp_path):
    from tests.cli_helpers import drop_database, make_cli

    cli, database = make_cli(tmp_path / "home")
    try:
        cli.run("init")
        cli.run("lab", "add", "--finess", "750000010", "--name", "Laboratoire Test")
        added = cli.json_lines("api-client", "add", "--lab", "750000010", "--name",
                               "DPI Clinique", "--scopes", "system/Observation.read")[0]
        assert added["client_secret"].startswith("cfs_")
        assert added["scopes"] == "system/Observation.read"
        listed = cli.json_lines("api-client", "list", "--lab", "750000010")
        assert [row["client_id"] for row in listed] == [added["client_id"]]
        assert "client_secret" not in listed[0]
        rotated = cli.json_lines("api-client", "rotate", added["client_id"])[0]
        assert rotated["client_secret"] != added["client_secret"]
        revoked = cli.json_lines("api-client", "revoke", added["client_id"])[0]
        assert revoked["state"] == "revoked"
        bad = cli.run("api-client", "add", "--lab", "750000010", "--name", "X",
                      "--scopes", "patient/*.read", check=False)
        assert bad.returncode == 2
        assert "launch context" in bad.stderr
        assert cli.json_lines("api-client", "purge-tokens") == [{"purged_tokens": 0}]
    finally:
        drop_database(database)


# --- the lab manager's page -------------------------------------------------------------

@pytest.fixture
def manager_client(client, lab_a):
    from tests.conftest import member, second_factor_done

    client.force_login(member("manon", lab_a, "lab_manager"))
    second_factor_done(client)
    return client


def test_a_manager_registers_a_client_and_sees_its_secret_once(manager_client, lab_a):
    response = manager_client.post("/laboratoire/clients-api/", {
        "name": "DPI Clinique", "scopes": "system/*.read"})
    assert response.status_code == 200
    page = response.content.decode()
    registered = ApiClient.objects.get()
    assert registered.lab_id == lab_a.id and registered.created_by == "manon"
    secret = page.split("data-client-secret>")[1].split("<")[0]
    assert services.digest(secret) == registered.secret_hash
    again = manager_client.get("/laboratoire/clients-api/").content.decode()
    assert registered.client_id in again and secret not in again
    assert AccessEvent.objects.filter(person="manon", action="api_client_add").exists()


def test_a_manager_gets_a_clear_error_for_bad_scopes(manager_client):
    response = manager_client.post("/laboratoire/clients-api/", {
        "name": "DPI", "scopes": "patient/*.read"})
    assert response.status_code == 400
    assert "launch context" in response.content.decode()
    assert not ApiClient.objects.exists()


def test_a_manager_revokes_a_client_of_the_lab_but_not_of_another(manager_client, lab_a,
                                                                  lab_b):
    token = api_token(lab_a)
    mine = ApiClient.objects.get()
    api_client(lab_b)
    theirs = ApiClient.objects.exclude(pk=mine.pk).get()
    assert manager_client.post(f"/laboratoire/clients-api/{theirs.pk}/",
                               {"action": "revoke"}).status_code == 404
    assert manager_client.post(f"/laboratoire/clients-api/{mine.pk}/",
                               {"action": "revoke"}).status_code == 302
    theirs.refresh_from_db()
    assert theirs.active
    assert manager_client.get("/probe/whoami", **bearer(token)).status_code == 401


def test_only_a_lab_manager_sees_the_page(client, lab_a):
    from tests.conftest import member, second_factor_done

    client.force_login(member("sarah", lab_a, "secretary"))
    second_factor_done(client)
    assert client.get("/laboratoire/clients-api/").status_code == 403
