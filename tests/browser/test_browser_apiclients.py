"""The lab manager's API clients page in a real browser: a client registered, its
secret shown once, the secret working at the token endpoint, then revoked."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client

from coffre.accounts.models import Role
from tests.browser.helpers import inline_code, log_in, shoot
from tests.conftest import member

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def ask_token(client_id: str, secret: str):
    """The OAuth2 client-credentials request a client's software sends (RFC 6749 4.4)."""
    return Client().post("/fhir/auth/token", urlencode({
        "grant_type": "client_credentials", "client_id": client_id,
        "client_secret": secret}), content_type="application/x-www-form-urlencoded")


def test_a_manager_registers_a_client_sees_its_secret_once_and_revokes_it(
        open_page, lab_a):
    member("resp-browser", lab_a, Role.LAB_MANAGER)
    page = open_page()
    log_in(page, "resp-browser")
    page.goto("/laboratoire/clients-api/")
    page.get_by_label("Nom du logiciel").fill("Logiciel du cabinet Dupont")
    page.get_by_label("Portées").fill("system/Observation.read system/DiagnosticReport.read")
    page.get_by_role("button", name="Enregistrer").click()
    client_id = page.locator("[data-client-id]").inner_text()
    secret = page.locator("[data-client-secret]").inner_text()
    assert page.get_by_text("Affiché une seule fois").is_visible()
    found = inline_code(page)  # before the screenshot, which marks inputs style=""
    assert (found["scripts"], found["styles"], found["handlers"]) == (0, 0, 0)
    shoot(page, "api-clients-01-secret-shown")

    token = ask_token(client_id, secret)
    assert token.status_code == 200
    assert set(token.json()["scope"].split()) == {"system/Observation.read",
                                                  "system/DiagnosticReport.read"}

    page.goto("/laboratoire/clients-api/")  # the secret is not shown again
    assert page.locator("[data-client-secret]").count() == 0
    page.get_by_role("button", name="Révoquer").click()
    assert page.get_by_text("Révoqué", exact=True).is_visible()
    shoot(page, "api-clients-02-revoked")
    refused = ask_token(client_id, secret)
    assert refused.status_code == 401
