"""The second-factor walk: every URL pattern of the site, requested (GET and POST) by a
staff session past the password whose second factor is pending, must send it to the
code page (or to the enrollment page for a person with no authenticator yet). The walk
enumerates the patterns, as the isolation walk does, so a new staff page cannot escape
it: a page is a staff page unless it is named below with what it answers instead.

The same walk with a temporary password: every page but the change page, logout and the
code page sends the session to the password change page."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import URLPattern, reverse

from coffre.accounts import mfa, temporary
from coffre.accounts.models import Role
from coffre.identity.access import create_patient
from tests.conftest import STAFF_PASSWORD, member, patient_row
from tests.test_isolation_walk import parameters, routed, site_patterns

pytestmark = pytest.mark.django_db
CODE_PAGE = "/connexion/code/?next="
ENROLL_PAGE = "/connexion/activation-2fa/?next="
CHANGE_PAGE = "/compte/mot-de-passe/"

# The pages that are not staff pages, with the statuses a pending staff session gets
# there (GET, POST). Anything else is a staff page and must ask for the second factor.
NOT_STAFF = {
    # where a login lands: it sends staff on to the patient search (a staff page)
    "home": ({302}, {405}),
    # the login itself and the second factor's own pages
    "login": ({200}, {200}),
    "mfa_verify": ({200, 302}, {200, 302}),
    "mfa_enroll": ({200, 302}, {200, 302}),
    "logout": ({405}, {302}),
    # the patient portal: activation is for anonymous patients, the rest for patient
    # accounts only (a staff account is refused)
    "portal_activation": ({200}, {200}),
    "portal_home": ({403}, {403}), "portal_order": ({403}, {403}),
    "portal_report": ({403}, {403}), "portal_chart": ({403}, {403}),
    "portal_my_data": ({403}, {403}), "portal_access_log": ({403}, {403}),
}
# The FHIR API answers a bearer token, never a session (tests/test_isolation_walk.py):
# its public description, or a refusal.
API_PUBLIC = {"fhir_metadata", "fhir_openapi"}
API_REFUSALS = {400, 401, 405}


def api_names() -> set[str]:
    return {p.name for route, p in routed() if route.lstrip("^").startswith("fhir/")}


def urls(patient_id: uuid.UUID) -> list[tuple[URLPattern, str]]:
    """Every pattern, its parameters filled; the patient is a real one of the person's
    lab, so that a page skipping the second factor would show the record."""
    fill = {"patient_id": patient_id, "order_id": uuid.uuid4(), "loinc": "718-7",
            "alert_id": 1, "lock_id": 1, "membership_id": 1, "export_id": 1,
            "breach_id": 1, "client_pk": 1, "resource_id": patient_id, "rest": "Patient"}
    found = []
    for pattern in site_patterns():
        names = parameters(pattern)
        unknown = set(names) - set(fill)
        assert not unknown, f"{pattern.name}: say how to fill {unknown}"
        found.append((pattern, reverse(pattern.name, kwargs={n: fill[n] for n in names})))
    return found


def password_only(username: str, password: str = STAFF_PASSWORD) -> Client:
    client = Client()
    response = client.post("/connexion/", {"username": username, "password": password})
    assert response.status_code == 302
    return client


def walk(client: Client, username: str, patient_id) -> list[tuple[str, str, int, str]]:
    """(name, method, status, location) of every pattern, GET and POST, in a session
    after the password only (logged in again when a page ended it)."""
    answers = []
    for pattern, url in urls(patient_id):
        for method in ("get", "post"):
            if "_auth_user_id" not in client.session:
                client = password_only(username)
            response = getattr(client, method)(url)
            answers.append((pattern.name, method, response.status_code,
                            response.get("Location", "")))
    return answers


def problems(answers, asks_for: str) -> list[tuple]:
    """The answers that let a pending session through, or that are unexpected."""
    api = api_names()
    wrong, redirected = [], set()
    for name, method, status, location in answers:
        if name in NOT_STAFF:
            expected = NOT_STAFF[name][method == "post"]
            if status not in expected:
                wrong.append((name, method, status, location))
        elif name in api:
            if status not in API_REFUSALS and not (name in API_PUBLIC and status == 200):
                wrong.append((name, method, status, location))
        elif status == 302 and location.startswith(asks_for):
            redirected.add(name)
        elif status != 405:  # a method the page does not take: nothing ran
            wrong.append((name, method, status, location))
    staff = {name for name, *_ in answers} - set(NOT_STAFF) - api
    wrong += [(name, "neither method asks for the second factor") for name in
              sorted(staff - redirected)]
    return wrong


@pytest.fixture
def patient(actor_a):
    return create_patient(actor_a, patient_row())


@pytest.mark.parametrize("enrolled", [True, False], ids=["code", "enrollment"])
def test_every_staff_page_asks_a_pending_session_for_the_second_factor(
        lab_a, patient, enrolled, capsys):
    user = member("walker.pending", lab_a, Role.BIOLOGIST)
    if enrolled:
        mfa.enroll_confirmed(user)
    answers = walk(password_only("walker.pending"), "walker.pending", patient.id)
    assert not problems(answers, CODE_PAGE if enrolled else ENROLL_PAGE)
    assert set(NOT_STAFF) <= {name for name, *_ in answers}, "a page named here is gone"
    staff = len({name for name, *_ in answers} - set(NOT_STAFF) - api_names())
    assert staff > 40
    with capsys.disabled():
        print(f"\nsecond-factor walk: {len(answers)} requests, {staff} staff pages ask for "
              "the second factor")


def test_the_walk_catches_a_page_that_skips_the_second_factor(lab_a, patient, monkeypatch):
    """Positive control, in process: the patient record page let through without the
    second factor shows up as a problem (the same mutant applied to the code turns the
    walk above red)."""
    from coffre.accounts import acting

    real = acting.second_factor_pending

    def skipping_the_record(request):
        if request.resolver_match.url_name == "patient_detail":
            return None
        return real(request)

    monkeypatch.setattr(acting, "second_factor_pending", skipping_the_record)
    mfa.enroll_confirmed(member("walker.pending", lab_a, Role.BIOLOGIST))
    answers = walk(password_only("walker.pending"), "walker.pending", patient.id)
    assert ("patient_detail", "get", 200, "") in problems(answers, CODE_PAGE)


# --- a temporary password -------------------------------------------------------------

# Where a session with a temporary password may still go (coffre.accounts.temporary),
# and what it gets there; every other page sends it to the change page.
WITH_TEMPORARY = {
    "password_change": ({200}, {200}),
    "login": ({200}, {200}),
    "logout": ({405}, {302}),
    "mfa_verify": ({302}, {302}),  # no authenticator yet: on to the enrollment, refused
}


def test_every_page_sends_a_temporary_password_to_the_change_page(lab_a, patient):
    user = member("walker.new", lab_a, Role.SECRETARY)
    temporary.mark(user, issued_by="martine.leroux")
    answers = walk(password_only("walker.new"), "walker.new", patient.id)
    wrong = []
    for name, method, status, location in answers:
        if name in WITH_TEMPORARY:
            if status not in WITH_TEMPORARY[name][method == "post"]:
                wrong.append((name, method, status, location))
        elif (status, location) != (302, CHANGE_PAGE):
            wrong.append((name, method, status, location))
    assert not wrong
    assert {name for name, *_ in answers} >= set(WITH_TEMPORARY)
