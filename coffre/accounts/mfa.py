"""The staff second factor: a TOTP authenticator (RFC 6238) and one-time recovery codes.

Every staff account needs it. After the password (Django's login view), the session is
"password ok, second factor pending" until :func:`complete` marks it done;
``accounts.acting`` sends such a session to the code page, or to the enrollment page if
the person has no confirmed authenticator yet. A new login always starts pending
(:func:`_forget_on_login`).

The TOTP secret is sealed with the installation key "accounts", bound to the user id: it
is never stored in clear, and a sealed secret copied to another account does not open.
Recovery codes are kept as password hashes. Codes are checked within one 30-second step
either side of now; a step already accepted is refused, so a code cannot be replayed.
A wrong code at login is a failed authentication of the account, counted and locked
like a wrong password (``coffre.accounts.locks.second_factor_failed``).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterator

from django.contrib.auth import SESSION_KEY
from django.contrib.auth.hashers import check_password, make_password
from django.db import transaction
from django.utils import timezone

from coffre.accounts.models import RecoveryCode, TotpDevice
from coffre.keyring import services as keyring
from coffre.vault import (
    context,
    new_otp_secret,
    otp_base32,
    otp_code,
    otp_counter,
    otp_match,
    otp_secret_from_base32,
    otp_uri,
)

KEY_PURPOSE = "accounts"
ISSUER = "Coffre"
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
MAX_FAILURES = 5
SESSION_DONE = "mfa_done_for"  # the user id whose second factor this session passed
SESSION_FAILURES = "mfa_failures"


class WrongCode(Exception):
    """The code does not match the authenticator (or was already used)."""


class AlreadyEnrolled(Exception):
    """The account has a confirmed authenticator: enrollment would replace it."""


def _ad(user_id: int) -> bytes:
    return context("accounts_totpdevice", "secret", user_id)


def _seal(user_id: int, secret: bytes) -> bytes:
    return keyring.installation_key(KEY_PURPOSE).seal_bytes(secret, _ad(user_id))


def _open(device: TotpDevice) -> bytes:
    return keyring.installation_key(KEY_PURPOSE).open_bytes(bytes(device.secret),
                                                            _ad(device.user_id))


def register_sealed() -> None:
    """The TOTP secrets, for `coffre keys rotate --installation accounts`."""
    from coffre.keyring.installation import SealedColumn, register

    register(SealedColumn(KEY_PURPOSE, "accounts.TotpDevice", "secret",
                          lambda row: _ad(row.user_id)))


def _now() -> float:
    return timezone.now().timestamp()


def _digits(code: str) -> str:
    return re.sub(r"[\s-]", "", code or "")


def is_enrolled(user) -> bool:
    return TotpDevice.objects.filter(user=user, confirmed=True).exists()


def enroll(user) -> tuple[str, str]:
    """The secret (base32) and ``otpauth://`` URI of the person's pending authenticator,
    created if needed. An unconfirmed one is reused, so reloading the page does not
    invalidate what the app has already read."""
    device = TotpDevice.objects.filter(user=user).first()
    if device is not None and device.confirmed:
        raise AlreadyEnrolled(user.get_username())
    if device is None:
        secret = new_otp_secret()
        device = TotpDevice.objects.create(user=user, secret=_seal(user.pk, secret))
    else:
        secret = _open(device)
    return otp_base32(secret), otp_uri(secret, user.get_username(), ISSUER)


def _accept(device: TotpDevice, code: str) -> bool:
    """Check a code against the device and record its step; refuses a used step."""
    counter = otp_match(_open(device), _digits(code), _now(), after=device.last_counter)
    if counter is None:
        return False
    # Two requests with the same code: only one moves the counter.
    moved = TotpDevice.objects.filter(pk=device.pk, last_counter__lt=counter).update(
        last_counter=counter)
    return moved == 1


def _new_recovery_codes(user) -> list[str]:
    codes = ["-".join("".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(5))
                      for _ in range(2)) for _ in range(RECOVERY_CODES)]
    RecoveryCode.objects.filter(user=user).delete()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user=user, code_hash=make_password(_recovery_form(code)))
        for code in codes)
    return codes


def _recovery_form(code: str) -> str:
    return re.sub(r"[^a-z0-9]", "", (code or "").lower())


@transaction.atomic
def confirm(user, code: str) -> list[str]:
    """Confirm the pending authenticator with a first code; returns the recovery codes,
    to be shown once. Raises WrongCode."""
    device = TotpDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
    if device is None or not _accept(device, code):
        raise WrongCode
    TotpDevice.objects.filter(pk=device.pk).update(confirmed=True)
    return _new_recovery_codes(user)


def verify(user, code: str) -> bool:
    """True if ``code`` is the confirmed authenticator's current code, never used."""
    device = TotpDevice.objects.filter(user=user, confirmed=True).first()
    return device is not None and _accept(device, code)


def use_recovery_code(user, code: str) -> bool:
    """True, once, for each recovery code of the person."""
    form = _recovery_form(code)
    if len(form) != 10:
        return False
    for row in RecoveryCode.objects.filter(user=user, used_at__isnull=True):
        if check_password(form, row.code_hash):
            used = RecoveryCode.objects.filter(pk=row.pk, used_at__isnull=True).update(
                used_at=timezone.now())
            return used == 1
    return False


def remaining_recovery_codes(user) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def reset(user) -> None:
    """Remove the person's authenticator and recovery codes (a new enrollment follows)."""
    TotpDevice.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()


def enroll_confirmed(user) -> str:
    """A new, confirmed authenticator without typing a code; returns its secret (base32).
    For the demo accounts only, which print it next to their password."""
    reset(user)
    secret, _ = enroll(user)
    TotpDevice.objects.filter(user=user).update(confirmed=True)
    return secret


def current_code(secret_b32: str, at: float | None = None) -> str:
    """The code an authenticator app shows for this secret (now, or at ``at``)."""
    return otp_code(otp_secret_from_base32(secret_b32), otp_counter(_now() if at is None
                                                                    else at))


# --- the session -------------------------------------------------------------------------

def is_verified(session) -> bool:
    done = session.get(SESSION_DONE)
    return done is not None and done == session.get(SESSION_KEY)


def mark_verified(session) -> None:
    """Mark the session's logged-in user as past the second factor (also used by the
    tests, which log in without the pages)."""
    session[SESSION_DONE] = session.get(SESSION_KEY)
    session.pop(SESSION_FAILURES, None)


def complete(request) -> None:
    """The second factor is done: mark the session and give it a new key."""
    mark_verified(request.session)
    request.session.cycle_key()


def count_failure(request) -> bool:
    """Count a wrong code in this session; True when the session must end. (A wrong
    code on the code page counts against the account instead: ``accounts.locks``.)"""
    failures = request.session.get(SESSION_FAILURES, 0) + 1
    request.session[SESSION_FAILURES] = failures
    return failures >= MAX_FAILURES


def _forget_on_login(sender, request, user, **kwargs) -> None:
    """Every password login starts with the second factor pending."""
    if request is not None and hasattr(request, "session"):
        request.session.pop(SESSION_DONE, None)
        request.session.pop(SESSION_FAILURES, None)


def sealed_secrets() -> Iterator[tuple[int, str]]:
    """(user id, base32 secret) of every authenticator, opened in memory: what the leak
    check looks for in clear on disk."""
    for device in TotpDevice.objects.all().iterator():
        yield device.user_id, base64.b32encode(_open(device)).decode().rstrip("=")
