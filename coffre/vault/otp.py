"""Time-based one-time passwords (RFC 6238 over RFC 4226), for the staff second factor.

SHA-1, 6 digits, 30-second steps: what every authenticator app reads from an
``otpauth://`` URI. The codes come from pyca/cryptography's HOTP (TOTP is HOTP at the
counter ``floor(time / 30)``); working with counters lets the caller refuse a counter it
has already accepted (a replayed code). Comparison is constant-time.
"""

from __future__ import annotations

import base64
import hmac
import os

from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.hotp import HOTP
from cryptography.hazmat.primitives.twofactor.totp import TOTP

OTP_SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length
OTP_DIGITS = 6
OTP_STEP = 30


def new_otp_secret() -> bytes:
    return os.urandom(OTP_SECRET_BYTES)


def otp_base32(secret: bytes) -> str:
    """The secret as an authenticator app takes it (RFC 4648 base32, no padding)."""
    return base64.b32encode(secret).decode().rstrip("=")


def otp_secret_from_base32(text: str) -> bytes:
    cleaned = "".join(text.split()).upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def otp_counter(at: float) -> int:
    return int(at // OTP_STEP)


def otp_code(secret: bytes, counter: int) -> str:
    # HMAC-SHA1 is what RFC 6238 and every authenticator app use; HMAC, not bare SHA-1.
    hotp = HOTP(secret, OTP_DIGITS, SHA1())  # noqa: S303
    return hotp.generate(counter).decode()


def otp_match(secret: bytes, code: str, at: float, window: int = 1,
              after: int = -1) -> int | None:
    """The counter within ``window`` steps of ``at`` (and above ``after``) whose code is
    ``code``, or None."""
    # ASCII only: other scripts' digits pass isdigit() and make compare_digest raise.
    if len(code) != OTP_DIGITS or not (code.isascii() and code.isdigit()):
        return None
    now = otp_counter(at)
    for counter in range(now - window, now + window + 1):
        if counter > after and hmac.compare_digest(otp_code(secret, counter), code):
            return counter
    return None


def otp_uri(secret: bytes, account: str, issuer: str) -> str:
    totp = TOTP(secret, OTP_DIGITS, SHA1(), OTP_STEP)  # noqa: S303
    return totp.get_provisioning_uri(account, issuer)
