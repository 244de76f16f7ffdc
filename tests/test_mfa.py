"""The staff second factor: enrollment, the code at each login, replay, recovery codes,
the pages staff_view guards, and the secret sealed at rest."""

from __future__ import annotations

import base64
import re
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.http import HttpRequest

from coffre.accounts import mfa
from coffre.accounts.models import RecoveryCode, Role, TotpDevice
from tests.conftest import STAFF_PASSWORD, member

PASSWORD = STAFF_PASSWORD


@pytest.fixture
def alice(lab_a):
    return member("alice", lab_a, Role.SECRETARY)


def password_login(client) -> None:
    assert client.login(request=HttpRequest(), username="alice", password=PASSWORD)


def test_enrollment_then_confirmation_gives_ten_recovery_codes(alice):
    secret, uri = mfa.enroll(alice)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert uri.startswith("otpauth://totp/Coffre:alice?") and f"secret={secret}" in uri
    assert mfa.enroll(alice)[0] == secret  # a reload shows the same pending secret
    assert not mfa.is_enrolled(alice)
    with pytest.raises(mfa.WrongCode):
        mfa.confirm(alice, "000000" if mfa.current_code(secret) != "000000" else "111111")

    codes = mfa.confirm(alice, mfa.current_code(secret))
    assert len(codes) == 10 and len(set(codes)) == 10
    assert mfa.is_enrolled(alice)
    with pytest.raises(mfa.AlreadyEnrolled):
        mfa.enroll(alice)
    assert all(not row.code_hash.endswith(code.replace("-", ""))
               for row, code in zip(RecoveryCode.objects.all(), codes, strict=False))


def test_a_wrong_code_is_refused_and_a_replayed_code_too(alice):
    secret = mfa.enroll_confirmed(alice)
    now = mfa.current_code(secret)
    wrong = f"{(int(now) + 1) % 1_000_000:06d}"
    assert not mfa.verify(alice, wrong)
    assert not mfa.verify(alice, "abcdef") and not mfa.verify(alice, "")
    arabic = now.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    assert not mfa.verify(alice, arabic)  # refused, not a TypeError from compare_digest
    assert mfa.verify(alice, now)
    assert not mfa.verify(alice, now)  # the same code again: refused


def test_a_code_from_the_previous_step_is_accepted_but_not_older(alice):
    secret = mfa.enroll_confirmed(alice)
    assert not mfa.verify(alice, mfa.current_code(secret, time.time() - 90))
    assert mfa.verify(alice, mfa.current_code(secret, time.time() - 30))
    # once a step is accepted, earlier steps are refused too
    assert mfa.verify(alice, mfa.current_code(secret))
    assert not mfa.verify(alice, mfa.current_code(secret, time.time() - 30))


def test_a_recovery_code_works_once(alice):
    secret, _ = mfa.enroll(alice)
    codes = mfa.confirm(alice, mfa.current_code(secret))
    assert mfa.use_recovery_code(alice, codes[3].upper().replace("-", " "))
    assert not mfa.use_recovery_code(alice, codes[3])
    assert not mfa.use_recovery_code(alice, "aaaaa-bbbbb")
    assert mfa.remaining_recovery_codes(alice) == 9


def test_the_secret_is_not_stored_in_clear(alice):
    secret, _ = mfa.enroll(alice)
    raw = base64.b32decode(secret)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_totpdevice")
        rows = cursor.fetchall()
    assert len(rows) == 1
    dump = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode()
                    for v in rows[0])
    assert raw not in dump and secret.encode() not in dump
    assert secret.lower().encode() not in dump.lower()


def test_a_sealed_secret_copied_to_another_account_does_not_open(alice, lab_a):
    mfa.enroll(alice)
    bob = get_user_model().objects.create_user("bob", password=PASSWORD)
    mfa.enroll(bob)
    TotpDevice.objects.filter(user=bob).update(
        secret=TotpDevice.objects.get(user=alice).secret)
    from coffre.vault import DecryptionError

    with pytest.raises(DecryptionError):
        mfa.enroll(bob)


def test_staff_pages_are_refused_until_the_second_factor_is_done(client, alice):
    password_login(client)
    for url in ("/patients/", "/laboratoire/", "/alertes/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/connexion/activation-2fa/?next=")

    page = client.get("/connexion/activation-2fa/").content.decode()
    grouped = re.search(r'id="mfa-secret"[^>]*>([A-Z2-7 ]+)<', page).group(1)
    secret = grouped.replace(" ", "")
    assert "otpauth://totp/" in page
    before = client.session.session_key
    response = client.post("/connexion/activation-2fa/?next=/patients/",
                           {"code": mfa.current_code(secret), "next": "/patients/"})
    assert response.status_code == 200 and "Codes de secours" in response.content.decode()
    assert client.session.session_key != before  # rotated after the second factor
    assert client.get("/patients/").status_code == 200

    # A new login of the same person asks for the code again.
    client.logout()
    password_login(client)
    response = client.get("/patients/")
    assert response["Location"].startswith("/connexion/code/?next=")
    assert client.get("/connexion/activation-2fa/")["Location"] == "/connexion/code/"
    later = mfa.current_code(secret, time.time() + 30)
    response = client.post("/connexion/code/", {"code": later, "next": "/patients/"})
    assert response.status_code == 302 and response["Location"] == "/patients/"
    assert client.get("/patients/").status_code == 200


def test_a_recovery_code_replaces_the_code_on_the_page(client, alice):
    secret, _ = mfa.enroll(alice)
    codes = mfa.confirm(alice, mfa.current_code(secret))
    password_login(client)
    response = client.post("/connexion/code/", {"code": codes[0]})
    assert response.status_code == 302
    assert client.get("/patients/").status_code == 200


def test_five_wrong_codes_end_the_session_with_the_lockout_page(client, alice):
    """(Across sessions and addresses: tests/test_second_factor_lockout.py.)"""
    secret = mfa.enroll_confirmed(alice)
    now = int(mfa.current_code(secret))
    password_login(client)
    for attempt in range(4):
        page = client.post("/connexion/code/", {"code": f"{(now + 7 + attempt) % 10**6:06d}"})
        assert page.status_code == 200 and "Code incorrect" in page.content.decode()
    response = client.post("/connexion/code/", {"code": f"{(now + 50) % 10**6:06d}"})
    assert response.status_code == 429 and "Connexion bloquée" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/patients/")["Location"].startswith("/connexion/?next=")


def test_an_outside_next_is_not_followed(client, alice):
    secret = mfa.enroll_confirmed(alice)
    password_login(client)
    response = client.post("/connexion/code/", {"code": mfa.current_code(secret),
                                                "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_the_code_pages_need_a_password_login_first(client, alice):
    for url in ("/connexion/code/", "/connexion/activation-2fa/"):
        assert client.get(url)["Location"].startswith("/connexion/?next=")
    assert not TotpDevice.objects.exists()
