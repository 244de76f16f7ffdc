"""The export pages: the lab's requests for the lab manager and the DPO, a request made
by the logged-in person, and an approval by a second logged-in person (the DPO above the
lab's threshold), within the acting lab only."""

from __future__ import annotations

import datetime as dt
import html

import pytest
from django.test import Client

from coffre import config
from coffre.accounts.models import Role
from coffre.audit import log
from coffre.audit.models import AccessEvent, AuditSettings
from coffre.exports import services
from coffre.exports.models import ExportRequest, ExportState
from coffre.identity.access import create_patient
from coffre.tenancy.actors import Actor
from coffre.vault import new_recipient_identity
from tests.conftest import (
    STAFF_PASSWORD,
    make_nir,
    member,
    patient_row,
    second_factor_done,
    sign,
)

pytestmark = pytest.mark.django_db
TODAY = dt.date.today()
LIST = "/exports/"
NEW = "/exports/nouvelle/"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A staging area of its own for each test (the master key stays where it is)."""
    monkeypatch.setenv("COFFRE_KEY_FILE", str(config.key_file()))
    monkeypatch.setenv("COFFRE_HOME", str(tmp_path / "home"))


@pytest.fixture
def recipient() -> str:
    return new_recipient_identity()[1]


@pytest.fixture
def people(lab_a):
    return {role: member(f"{role}.a", lab_a, role) for role in
            (Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST, Role.LAB_MANAGER, Role.DPO)}


@pytest.fixture
def patients(lab_a):
    """Three patients of lab A created today."""
    actor = Actor("secretary.a", lab_a.id, Role.SECRETARY, "web")
    return [create_patient(actor, patient_row(nir=make_nir("F", 1980 + i, 3),
                                              birth_date=f"{1980 + i}-03-14",
                                              email=f"p{i}@example.fr"))
            for i in range(3)]


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    second_factor_done(client)
    return client


def text(response) -> str:
    return html.unescape(response.content.decode())


def form_data(recipient: str, **overrides) -> dict:
    data = {"purpose": "Étude de cohorte anémie 2026", "recipient": "CHU de Rennes",
            "recipient_key": recipient, "fields": ["nir", "birth_name", "birth_date"],
            "period_from": (TODAY - dt.timedelta(days=1)).isoformat(),
            "period_to": (TODAY + dt.timedelta(days=1)).isoformat()}
    data.update(overrides)
    return data


def signature(user) -> dict:
    """The approval form's step-up fields: the person's password and an unused code."""
    credentials = sign(user.get_username())
    return {"password": credentials.password, "code": credentials.code}


def requested(lab, recipient: str, by: str) -> ExportRequest:
    return services.request_export(
        lab, purpose="Étude de cohorte anémie 2026", recipient="CHU de Rennes",
        recipient_key=recipient, fields="nir,birth_name,birth_date",
        period_from=TODAY - dt.timedelta(days=1), period_to=TODAY + dt.timedelta(days=1),
        requested_by=by)


# --- who sees the pages ------------------------------------------------------------------

@pytest.mark.parametrize("role", [Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST])
def test_the_export_pages_are_forbidden_to_the_other_roles(people, lab_a, recipient, role):
    export = requested(lab_a, recipient, "lab_manager.a")
    client = logged_in(people[role])
    assert client.get(LIST).status_code == 403
    assert client.get(NEW).status_code == 403
    assert client.get(f"/exports/{export.pk}/").status_code == 403
    assert client.post(f"/exports/{export.pk}/approuver/").status_code == 403
    assert ExportRequest.objects.get(pk=export.pk).state == ExportState.REQUESTED


@pytest.mark.parametrize("role", [Role.LAB_MANAGER, Role.DPO])
def test_the_list_opens_for_the_manager_and_the_dpo(people, lab_a, recipient, role):
    export = requested(lab_a, recipient, "lab_manager.a")
    response = logged_in(people[role]).get(LIST)
    assert response.status_code == 200
    body = text(response)
    assert "Étude de cohorte anémie 2026" in body and "CHU de Rennes" in body
    assert f'href="/exports/{export.pk}/"' in body
    assert "Nom de naissance" in body and "En attente d'approbation" in body
    assert 'href="/exports/"' in body  # the nav link


def test_an_anonymous_visitor_is_sent_to_the_login_page(people):
    response = Client().get(LIST)
    assert response.status_code == 302 and "/connexion/" in response["Location"]


# --- request, approval -------------------------------------------------------------------

def test_a_manager_requests_an_export_through_the_form(people, lab_a, patients, recipient):
    client = logged_in(people[Role.LAB_MANAGER])
    form = client.get(NEW)
    assert form.status_code == 200
    assert 'type="checkbox" name="fields" value="notes"' in form.content.decode()
    response = client.post(NEW, form_data(recipient))
    export = ExportRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/exports/{export.pk}/"
    assert export.requested_by == "lab_manager.a" and export.lab_id == lab_a.id
    assert export.field_list() == ["nir", "birth_name", "birth_date"]
    assert export.size_estimate == 3 and export.state == ExportState.REQUESTED


def test_a_bad_request_is_shown_in_french_and_nothing_is_created(people, recipient):
    client = logged_in(people[Role.LAB_MANAGER])
    response = client.post(NEW, form_data("age1pasunecle"))
    assert response.status_code == 400
    assert "Clé publique age du destinataire invalide" in text(response)
    response = client.post(NEW, form_data(recipient, fields=[]))
    assert "Choisissez au moins un champ." in text(response)
    response = client.post(NEW, form_data(recipient, period_from=TODAY.isoformat(),
                                          period_to=(TODAY - dt.timedelta(days=3)).isoformat()))
    assert "La période se termine avant de commencer." in text(response)
    assert not ExportRequest.objects.exists()


def test_the_requester_cannot_approve_and_a_dpo_can(people, lab_a, patients, recipient):
    manager = logged_in(people[Role.LAB_MANAGER])
    manager.post(NEW, form_data(recipient))
    export = ExportRequest.objects.get()
    url = f"/exports/{export.pk}/"
    page = text(manager.get(url))
    assert "il doit être approuvé par une autre personne" in page
    assert f'action="{url}approuver/"' not in page
    refused = manager.post(f"{url}approuver/", signature(people[Role.LAB_MANAGER]),
                           follow=True)
    assert "il doit être approuvé par une autre personne" in text(refused)
    assert ExportRequest.objects.get().state == ExportState.REQUESTED

    dpo = logged_in(people[Role.DPO])
    page = text(dpo.get(url))
    assert f'action="{url}approuver/"' in page
    assert 'name="password"' in page and 'autocomplete="one-time-code"' in page
    done = dpo.post(f"{url}approuver/", signature(people[Role.DPO]), follow=True)
    assert "approuvé par dpo.a" in text(done)
    assert "coffre export run" in text(done)
    export.refresh_from_db()
    assert (export.state, export.approved_by, export.approved_role) == (
        ExportState.APPROVED, "dpo.a", Role.DPO)


def test_a_large_export_cannot_be_approved_by_a_lab_manager(people, lab_a, patients,
                                                             recipient):
    AuditSettings.objects.create(lab=lab_a, export_approval_patients=2)
    export = requested(lab_a, recipient, "dpo.a")  # the DPO asks, a manager may not approve
    url = f"/exports/{export.pk}/"
    manager = logged_in(people[Role.LAB_MANAGER])
    page = text(manager.get(url))
    assert "Cet export couvre 3 patients, plus que le seuil de 2" in page
    assert f'action="{url}approuver/"' not in page
    response = manager.post(f"{url}approuver/", signature(people[Role.LAB_MANAGER]),
                            follow=True)
    assert "seul le délégué à la protection des données (DPO)" in text(response)
    assert ExportRequest.objects.get().state == ExportState.REQUESTED


def test_a_small_export_is_approved_by_a_manager_and_refused_by_the_dpo(
        people, lab_a, patients, recipient):
    export = requested(lab_a, recipient, "dpo.a")
    logged_in(people[Role.LAB_MANAGER]).post(f"/exports/{export.pk}/approuver/",
                                             signature(people[Role.LAB_MANAGER]))
    export.refresh_from_db()
    assert (export.approved_by, export.approved_role) == ("lab_manager.a", Role.LAB_MANAGER)
    logged_in(people[Role.DPO]).post(f"/exports/{export.pk}/refuser/")
    assert ExportRequest.objects.get().state == ExportState.REFUSED


def test_the_web_approver_is_named_on_the_request_and_in_the_access_log(
        people, lab_a, patients, recipient):
    export = requested(lab_a, recipient, "lab_manager.a")
    logged_in(people[Role.DPO]).post(f"/exports/{export.pk}/approuver/",
                                     signature(people[Role.DPO]))
    export.refresh_from_db()
    assert export.approved_by == "dpo.a"
    approval = AccessEvent.objects.get(action="export_approve")
    assert (approval.person, approval.role, approval.channel, approval.patient_id) == (
        "dpo.a", "dpo", "web", None)
    services.run(export.pk)  # the operator's step
    events = AccessEvent.objects.filter(action="export")
    assert {e.patient_id for e in events} == {p.id for p in patients}
    for event in events:
        assert "approved by dpo.a" in log.open_text(event.purpose, "purpose")
    page = text(logged_in(people[Role.LAB_MANAGER]).get(LIST))
    assert "dpo.a" in page and "Produit" in page


def test_another_labs_export_is_a_404(people, lab_a, lab_b, recipient):
    member("manager.b", lab_b, Role.LAB_MANAGER)
    theirs = services.request_export(
        lab_b, purpose="Étude confidentielle du labo B", recipient="Registre B",
        recipient_key=recipient, fields="nir", period_from=TODAY, period_to=TODAY,
        requested_by="manager.b")
    dpo = logged_in(people[Role.DPO])
    assert dpo.get(f"/exports/{theirs.pk}/").status_code == 404
    assert dpo.post(f"/exports/{theirs.pk}/approuver/",
                    signature(people[Role.DPO])).status_code == 404
    assert dpo.post(f"/exports/{theirs.pk}/refuser/").status_code == 404
    assert dpo.get("/exports/99999/").status_code == 404
    assert "Étude confidentielle du labo B" not in text(dpo.get(LIST))
    assert ExportRequest.objects.get(pk=theirs.pk).state == ExportState.REQUESTED


# --- step-up: the session alone does not approve ----------------------------------------

def test_an_open_session_alone_cannot_approve(people, lab_a, patients, recipient):
    """A DPO's session left open on a shared workstation: whoever sits there does not
    know her password and authenticator code, and approves nothing."""
    export = requested(lab_a, recipient, "lab_manager.a")
    url = f"/exports/{export.pk}/approuver/"
    dpo = logged_in(people[Role.DPO])
    genuine = signature(people[Role.DPO])
    for attempt, message in (({}, "Mot de passe incorrect"),
                             ({"password": "devinette", "code": genuine["code"]},
                              "Mot de passe incorrect"),
                             ({"password": STAFF_PASSWORD, "code": "000000"},
                              "Code de double authentification incorrect")):
        response = dpo.post(url, attempt, follow=True)
        assert message in text(response)
        assert ExportRequest.objects.get(pk=export.pk).state == ExportState.REQUESTED
    refused = AccessEvent.objects.filter(action="export_approve", outcome="refused")
    assert [(e.person, e.channel) for e in refused] == [("dpo.a", "web")] * 3
    # Her own password and code, typed now, approve it.
    assert "approuvé par dpo.a" in text(dpo.post(url, genuine, follow=True))
    assert ExportRequest.objects.get(pk=export.pk).state == ExportState.APPROVED


def test_repeated_wrong_codes_lock_the_account_and_end_the_session(people, lab_a, patients,
                                                                   recipient):
    export = requested(lab_a, recipient, "lab_manager.a")
    url = f"/exports/{export.pk}/approuver/"
    dpo = logged_in(people[Role.DPO])
    sign("dpo.a")  # an authenticator, so that the password passes and the code is judged
    for _ in range(4):
        assert dpo.post(url, {"password": STAFF_PASSWORD, "code": "000000"}).status_code == 302
    last = dpo.post(url, {"password": STAFF_PASSWORD, "code": "000000"})
    assert last.status_code == 429  # the failed-login lockout page (django-axes)
    assert dpo.get(LIST).status_code == 302  # logged out
    # Locked: her genuine credentials no longer approve, from a new session either.
    response = logged_in(people[Role.DPO]).post(url, signature(people[Role.DPO]))
    assert response.status_code in {302, 429}
    assert ExportRequest.objects.get(pk=export.pk).state == ExportState.REQUESTED
