"""Sessions: logging out everywhere, a new session key at login, expiry after
inactivity."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from coffre.accounts import sessions
from coffre.accounts.models import Role
from coffre.audit.models import AccessEvent
from tests.conftest import STAFF_PASSWORD, member, second_factor_done

pytestmark = pytest.mark.django_db
EVERYWHERE = "/compte/deconnexion-partout/"


@pytest.fixture
def secretary(lab_a):
    return member("sophie.morel", lab_a, Role.SECRETARY)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    second_factor_done(client)
    return client


def password_login(client: Client, username: str = "sophie.morel"):
    return client.post("/connexion/", {"username": username, "password": STAFF_PASSWORD})


def test_logging_out_everywhere_ends_every_session_of_the_person(secretary, lab_a):
    office, laptop = logged_in(secretary), logged_in(secretary)
    colleague = logged_in(member("paul.girard", lab_a, Role.BIOLOGIST))
    for client in (office, laptop, colleague):
        assert client.get("/patients/").status_code == 200
    response = office.post(EVERYWHERE, follow=True)
    assert response.redirect_chain[-1][0] == "/connexion/"
    assert "Toutes vos sessions sont fermées" in response.content.decode()
    assert laptop.get("/patients/").status_code == 302
    assert office.get("/patients/").status_code == 302
    assert colleague.get("/patients/").status_code == 200  # only her sessions
    assert AccessEvent.objects.filter(action="logout_everywhere", person="sophie.morel",
                                      kind="account").count() == 1


def test_a_new_login_after_logging_out_everywhere_works(secretary):
    client = logged_in(secretary)
    client.post(EVERYWHERE)
    assert password_login(client).status_code == 302
    second_factor_done(client)
    assert client.get("/patients/").status_code == 200


def test_the_page_needs_a_login_and_a_post(secretary):
    assert Client().post(EVERYWHERE).status_code == 302
    assert logged_in(secretary).get(EVERYWHERE).status_code == 405
    assert sessions.current_epoch(secretary) == 0


def test_a_password_alone_cannot_end_a_staff_persons_sessions(secretary):
    """Someone who knows the password but not the second factor cannot log the owner
    out of her sessions."""
    owner = logged_in(secretary)
    intruder = Client()
    intruder.force_login(secretary)
    response = intruder.post(EVERYWHERE)
    assert response.status_code == 302 and "/connexion/activation-2fa/" in response.url
    assert sessions.current_epoch(secretary) == 0
    assert owner.get("/patients/").status_code == 200


def test_a_patient_portal_account_can_log_out_everywhere(db):
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("claire.portail", password=STAFF_PASSWORD)
    phone, computer = Client(), Client()
    phone.force_login(user)
    computer.force_login(user)
    assert phone.post(EVERYWHERE).status_code == 302
    assert "_auth_user_id" not in computer.get("/").wsgi_request.session
    assert not AccessEvent.objects.filter(action="logout_everywhere").exists()


def test_the_middleware_ends_a_session_older_than_the_epoch(secretary):
    client = logged_in(secretary)
    assert client.session[sessions.SESSION_EPOCH] == 0
    sessions.end_all_sessions(secretary)
    response = client.get("/patients/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/connexion/")
    assert "Votre session a été fermée" in response.content.decode()
    # a new login carries the new epoch and stays
    fresh = logged_in(secretary)
    assert fresh.session[sessions.SESSION_EPOCH] == 1
    assert fresh.get("/patients/").status_code == 200


def test_a_session_with_no_epoch_counts_as_the_first(secretary):
    client = logged_in(secretary)
    session = client.session
    del session[sessions.SESSION_EPOCH]
    session.save()
    assert client.get("/patients/").status_code == 200
    sessions.end_all_sessions(secretary)
    assert client.get("/patients/").status_code == 302


def test_login_gives_the_session_a_new_key(secretary):
    client = Client()
    session = client.session
    session["seen"] = True  # a session exists before the login (session fixation)
    session.save()
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert password_login(client).status_code == 302
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert not Session.objects.filter(session_key=before).exists()
    assert client.session["seen"] is True  # same data, new key


def test_a_session_expires_after_inactivity(secretary):
    client = logged_in(secretary)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert client.get("/patients/").status_code == 200
    # a request pushes the expiry SESSION_COOKIE_AGE seconds ahead
    expiry = Session.objects.get(session_key=key).expire_date
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert abs(expiry - (timezone.now() + age)) < timedelta(seconds=30)
    # no request for longer than that: the session is over
    Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() - timedelta(seconds=1))
    response = client.get("/patients/")
    assert response.status_code == 302 and response.url.startswith("/connexion/")


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(lab_a):
    from django.test import Client

    from tests.conftest import STAFF_PASSWORD, member, second_factor_done

    user = member("anne.change", lab_a, "secretary")
    here, elsewhere = Client(), Client()
    for client in (here, elsewhere):
        client.force_login(user)
        second_factor_done(client)
    new = "une phrase de passe toute neuve 2026"
    response = here.post("/compte/mot-de-passe/", {
        "old_password": STAFF_PASSWORD, "new_password1": new, "new_password2": new})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new)
    assert here.get("/patients/").status_code == 200
    assert elsewhere.get("/patients/").status_code == 302  # back to the login page


def test_a_weak_new_password_is_refused(lab_a, client):
    from tests.conftest import STAFF_PASSWORD, member, second_factor_done

    client.force_login(member("anne.weak", lab_a, "secretary"))
    second_factor_done(client)
    page = client.post("/compte/mot-de-passe/", {
        "old_password": STAFF_PASSWORD, "new_password1": "azerty123",
        "new_password2": "azerty123"})
    assert page.status_code == 200 and "error" in page.content.decode()


def test_the_sliding_expiry_is_written_at_most_once_a_minute(secretary):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from coffre.accounts.sessions import SESSION_TOUCHED, TOUCH_SECONDS

    client = logged_in(secretary)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.get("/patients/")
    pushed = Session.objects.get(session_key=key).expire_date
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/patients/").status_code == 200
    assert not [q for q in queries if "django_session" in q["sql"]
                and not q["sql"].startswith("SELECT")]
    assert Session.objects.get(session_key=key).expire_date == pushed
    # a minute later the next request moves it again
    session = client.session
    session[SESSION_TOUCHED] -= TOUCH_SECONDS
    session.save()
    Session.objects.filter(session_key=key).update(
        expire_date=timezone.now() + timedelta(seconds=60))
    client.get("/patients/")
    moved = Session.objects.get(session_key=key).expire_date
    age = timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert abs(moved - (timezone.now() + age)) < timedelta(seconds=30)
