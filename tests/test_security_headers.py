"""Security headers on every response, the cookie flags, and HTTPS mode (COFFRE_HTTPS=1):
HSTS, a redirect to https and secure cookies."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from django.test import Client, override_settings

import coffre.settings
from coffre.accounts.models import Role
from coffre.accounts.security import CONTENT_SECURITY_POLICY
from tests.conftest import STAFF_PASSWORD, member, second_factor_done

PASSWORD = STAFF_PASSWORD
SETTINGS_FILE = Path(coffre.settings.__file__)


@pytest.fixture
def alice(lab_a):
    return member("alice", lab_a, Role.SECRETARY)


def assert_security_headers(response) -> None:
    csp = response["Content-Security-Policy"]
    assert csp == CONTENT_SECURITY_POLICY
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'" and directives["object-src"] == "'none'"
    assert directives["form-action"] == "'self'"
    permissions = response["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in permissions, feature
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_the_login_page_carries_the_security_headers(client):
    response = client.get("/connexion/")
    assert response.status_code == 200
    assert_security_headers(response)


def test_every_kind_of_response_carries_them(client, alice):
    client.force_login(alice)
    second_factor_done(client)
    for url, status in (("/patients/", 200), ("/", 302), ("/alertes/", 403),
                        ("/nulle-part/", 404),
                        ("/patients/00000000-0000-0000-0000-000000000000/", 404)):
        response = client.get(url)
        assert response.status_code == status, url
        assert_security_headers(response)


@pytest.mark.django_db
def test_a_static_file_carries_them_too(client):
    response = client.get("/static/coffre/coffre.css")
    assert response.status_code == 200
    assert_security_headers(response)


@pytest.mark.django_db
def test_the_session_and_csrf_cookies_are_http_only_and_same_site(client, alice):
    page = client.get("/connexion/")
    csrf = page.cookies["csrftoken"]
    assert csrf["httponly"] and csrf["samesite"] == "Lax"
    response = client.post("/connexion/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    session = response.cookies["sessionid"]
    assert session["httponly"] and session["samesite"] == "Lax"
    assert not session["secure"]  # plain HTTP (development) unless COFFRE_HTTPS=1


def test_the_pages_carry_the_csrf_token_in_their_forms_not_for_javascript(client, alice):
    client.force_login(alice)
    second_factor_done(client)
    page = client.get("/patients/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in page and "<script" not in page


def test_coffre_https_switches_on_hsts_the_redirect_and_secure_cookies(monkeypatch):
    monkeypatch.setenv("COFFRE_HTTPS", "1")
    https = runpy.run_path(str(SETTINGS_FILE))
    assert https["SESSION_COOKIE_SECURE"] and https["CSRF_COOKIE_SECURE"]
    assert https["SECURE_HSTS_SECONDS"] >= 31536000 and https["SECURE_SSL_REDIRECT"]
    monkeypatch.setenv("COFFRE_HTTPS", "0")
    plain = runpy.run_path(str(SETTINGS_FILE))
    assert not plain.get("SESSION_COOKIE_SECURE") and not plain.get("SECURE_HSTS_SECONDS")


@pytest.mark.django_db
def test_in_https_mode_the_responses_say_so(alice):
    with override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True,
                           SECURE_HSTS_SECONDS=31536000, SECURE_SSL_REDIRECT=True):
        client = Client()
        plain = client.get("/connexion/")
        assert plain.status_code == 301
        assert plain["Location"].startswith("https://")

        page = client.get("/connexion/", secure=True)
        assert page.status_code == 200
        assert page["Strict-Transport-Security"].startswith("max-age=31536000")
        assert_security_headers(page)
        assert page.cookies["csrftoken"]["secure"]
        response = client.post("/connexion/", {"username": "alice", "password": PASSWORD},
                               secure=True)
        assert response.status_code == 302
        assert response.cookies["sessionid"]["secure"]
        assert response.cookies["sessionid"]["httponly"]
