"""The client's address behind reverse proxies (COFFRE_TRUSTED_PROXIES), one helper for
every consumer: failed logins (django-axes), failed API token requests, the API's rate
limits and the access log. A flood of failed token requests locks its own address, and
the client ids it names from there, never a valid client elsewhere."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coffre import config
from coffre.audit.models import AccessEvent
from coffre.serving import checks
from tests.api_helpers import api_client
from tests.conftest import member, second_factor_done

pytestmark = pytest.mark.django_db
PROXY = "127.0.0.1"  # the documented reverse proxy on the same host
FLOODER, CLIENT = "203.0.113.66", "198.51.100.7"


# --- the helper -------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "parsed"), [
    ("", ()), ("0", 0), ("2", 2), ("127.0.0.1,::1", ("127.0.0.1/32", "::1/128")),
    (" 10.0.0.0/8 , 192.0.2.1", ("10.0.0.0/8", "192.0.2.1/32")),
])
def test_the_setting_takes_a_number_or_addresses(monkeypatch, value, parsed):
    monkeypatch.setenv("COFFRE_TRUSTED_PROXIES", value)
    assert config.trusted_proxies() == parsed


def test_a_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv("COFFRE_TRUSTED_PROXIES", "127.0.0.1,proxy.local")
    with pytest.raises(config.ConfigError, match=r"COFFRE_TRUSTED_PROXIES: 'proxy\.local'"):
        config.trusted_proxies()


@pytest.mark.parametrize(("trusted", "forwarded", "remote", "expected"), [
    ((), "6.6.6.6", PROXY, PROXY),  # nobody trusted: X-Forwarded-For is ignored
    (("127.0.0.1/32",), "6.6.6.6, 203.0.113.7", PROXY, "203.0.113.7"),  # forged left part
    (("127.0.0.1/32",), "6.6.6.6", "198.51.100.2", "198.51.100.2"),  # not via the proxy
    (("127.0.0.1/32",), "", PROXY, PROXY),
    (("127.0.0.1/32",), "6.6.6.6, not-an-address", PROXY, PROXY),
    (("127.0.0.0/8", "10.0.0.0/8"), "6.6.6.6, 203.0.113.7, 10.0.0.5", PROXY, "203.0.113.7"),
    (("127.0.0.1/32",), "::ffff:203.0.113.7", PROXY, "203.0.113.7"),
    (("::1/128",), "2001:db8::7", "::1", "2001:db8::7"),
    (1, "6.6.6.6, 203.0.113.7", PROXY, "203.0.113.7"),
    (2, "6.6.6.6, 203.0.113.7, 10.0.0.5", PROXY, "203.0.113.7"),
    (2, "203.0.113.7", PROXY, "203.0.113.7"),  # a shorter chain: the farthest hop
])
def test_the_client_is_the_nearest_hop_that_is_not_a_trusted_proxy(rf, settings, trusted,
                                                                    forwarded, remote,
                                                                    expected):
    from coffre.serving.proxy import client_address

    settings.COFFRE_TRUSTED_PROXIES = trusted
    request = rf.get("/", REMOTE_ADDR=remote,
                     **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {}))
    assert client_address(request) == expected


def test_django_axes_asks_the_same_helper(settings):
    from axes.helpers import get_client_ip_address
    from django.test import RequestFactory

    settings.COFFRE_TRUSTED_PROXIES = ("127.0.0.1/32",)
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT)
    assert get_client_ip_address(request) == CLIENT


# --- production check -------------------------------------------------------------------

def test_the_production_check_names_a_proxy_without_trusted_proxies(settings):
    settings.COFFRE_BEHIND_PROXY, settings.COFFRE_TRUSTED_PROXIES = True, ()
    item, = checks.client_address()
    assert not item.ok and "COFFRE_TRUSTED_PROXIES" in item.message
    assert "COFFRE_TRUSTED_PROXIES=127.0.0.1,::1" in item.fix
    settings.COFFRE_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
    item, = checks.client_address()
    assert item.ok and "127.0.0.1/32" in item.message
    settings.COFFRE_BEHIND_PROXY, settings.COFFRE_TRUSTED_PROXIES = False, ()
    assert all(item.ok for item in checks.client_address())


# --- the token endpoint under a flood ---------------------------------------------------

def ask_token(client_id: str, secret: str, address: str, via_proxy: bool):
    """A token request from ``address``, directly or through the proxy on this host."""
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    where = ({"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": address} if via_proxy
             else {"REMOTE_ADDR": address})
    return Client().post("/fhir/auth/token", urlencode({"grant_type": "client_credentials"}),
                         content_type="application/x-www-form-urlencoded",
                         HTTP_AUTHORIZATION=f"Basic {pair}", **where)


def test_behind_the_proxy_a_flooding_address_does_not_lock_out_the_other_clients(
        settings, lab_a, patient):
    settings.COFFRE_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
    registered, secret = api_client(lab_a)
    for index in range(settings.COFFRE_LOGIN_ADDRESS_FAILURES):
        # a few guesses at the valid client's secret, then unknown client ids
        name = (registered.client_id if index < settings.COFFRE_LOGIN_ACCOUNT_FAILURES - 1
                else f"cfc_{index:016d}")
        assert ask_token(name, "guess", FLOODER, via_proxy=True).status_code == 401
    assert ask_token(registered.client_id, secret, FLOODER, via_proxy=True
                     ).status_code == 429  # the flooding address is locked out
    answer = ask_token(registered.client_id, secret, CLIENT, via_proxy=True)
    assert answer.status_code == 200
    assert AccessEvent.objects.get(action="api_token").address == CLIENT
    read = Client().get(f"/fhir/Patient/{patient.id}", REMOTE_ADDR=PROXY,
                        HTTP_X_FORWARDED_FOR=f"6.6.6.6, {CLIENT}",
                        HTTP_AUTHORIZATION=f"Bearer {answer.json()['access_token']}")
    assert read.status_code == 200
    entry = AccessEvent.objects.filter(action="read", patient_id=patient.id).latest("id")
    assert (entry.channel, entry.address) == ("api", CLIENT)


def test_a_flood_naming_a_valid_client_does_not_lock_it_out_elsewhere(settings, lab_a):
    registered, secret = api_client(lab_a)
    for _ in range(settings.COFFRE_LOGIN_ACCOUNT_FAILURES):
        assert ask_token(registered.client_id, "guess", FLOODER, via_proxy=False
                         ).status_code == 401
    # From the flooding address, this client id is locked, even with its secret...
    assert ask_token(registered.client_id, secret, FLOODER, via_proxy=False
                     ).status_code == 429
    # ...but the client itself, from its own address, is not.
    assert ask_token(registered.client_id, secret, CLIENT, via_proxy=False
                     ).status_code == 200


# --- logins and the access log of the web ---------------------------------------------

def test_behind_the_proxy_failed_logins_lock_the_clients_address_only(settings, lab_a):
    from tests.conftest import STAFF_PASSWORD

    settings.COFFRE_TRUSTED_PROXIES = ("127.0.0.1/32",)
    member("bob", lab_a, "secretary")

    def login(username: str, password: str, address: str) -> int:
        return Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=address).post(
            "/connexion/", {"username": username, "password": password}).status_code

    for index in range(settings.COFFRE_LOGIN_ADDRESS_FAILURES):
        login(f"nobody{index % 4}", "wrong", FLOODER)
    assert login("bob", STAFF_PASSWORD, FLOODER) == 429
    assert login("bob", STAFF_PASSWORD, CLIENT) == 302


def test_behind_the_proxy_a_staff_read_records_the_clients_address(settings, lab_a,
                                                                   patient):
    settings.COFFRE_TRUSTED_PROXIES = ("127.0.0.1/32",)
    browser = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT)
    browser.force_login(get_user_model().objects.get(username=f"secretary{lab_a.id}"))
    second_factor_done(browser)
    assert browser.get(f"/patients/{patient.id}/").status_code == 200
    entry = AccessEvent.objects.filter(action="read", patient_id=patient.id).latest("id")
    assert (entry.channel, entry.address) == ("web", CLIENT)
