"""Step-up: a staff person proves, for one sensitive action (approving an export), that
they are who they say, with credentials typed now: their password and a second-factor
code (the authenticator's current code, or one of their recovery codes).

The one place where that proof is decided, for the web (where a logged-in session is not
enough) and the CLI (where the operating-system user says nothing about which staff
account is at the keyboard). The password goes through Django's ``authenticate``, so the
failed-login lockout (django-axes, ``accounts.locks``) counts a wrong one and refuses a
locked or inactive account; the code goes through ``accounts.mfa`` (``verify`` then
``use_recovery_code``: replay refused, a recovery code used once). A wrong code counts as
a failed login of the account too: guessing codes from the shell is stopped by the same
lock as guessing passwords.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass, field
from typing import TextIO

from django.contrib.auth import authenticate
from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from coffre.accounts import locks, mfa

# The address the CLI's attempts are counted under (per-address lockout included).
CLI_ADDRESS = "127.0.0.1"


@dataclass(frozen=True)
class Credentials:
    """What a person typed to prove who they are; the secrets stay out of reprs."""

    username: str
    password: str = field(repr=False)
    code: str = field(repr=False)


class StepUpRefused(PermissionError):
    """The credentials did not prove the person. ``reason``: "locked" (too many failed
    attempts), "password" (wrong password, unknown or deactivated account),
    "no_second_factor" (no confirmed authenticator) or "code" (wrong or used code)."""

    MESSAGES = {
        "locked": "the account is locked after too many failed attempts",
        "password": "wrong user name or password (or a deactivated account)",
        "no_second_factor": "the account has no confirmed authenticator: sign in on the "
                            "web once to enrol one",
        "code": "wrong or already used second-factor code",
    }

    def __init__(self, reason: str) -> None:
        super().__init__(self.MESSAGES[reason])
        self.reason = reason


def cli_request(os_user: str) -> HttpRequest:
    """The request django-axes counts a CLI attempt under (address, agent)."""
    request = HttpRequest()
    request.META = {"REMOTE_ADDR": CLI_ADDRESS, "HTTP_USER_AGENT": f"coffre cli {os_user}"[:255],
                    "PATH_INFO": "coffre-cli"}
    request.path = request.path_info = "coffre-cli"
    return request


def confirm(credentials: Credentials, request: HttpRequest) -> AbstractBaseUser:
    """The user whose password and second-factor code these are, or StepUpRefused.

    ``request`` is the web request, or :func:`cli_request` for the CLI. Call it outside
    any transaction that a refusal rolls back: the failure must stay counted.
    """
    user = authenticate(request, username=credentials.username,
                        password=credentials.password)
    if user is None:
        raise StepUpRefused("locked" if getattr(request, "axes_locked_out", False)
                            else "password")
    if not mfa.is_enrolled(user):
        raise StepUpRefused("no_second_factor")
    code = credentials.code
    if not (mfa.verify(user, code) or mfa.use_recovery_code(user, code)):
        locks.count_failure(request, credentials.username)  # as the code page counts
        raise StepUpRefused("code")
    return user


def read_credentials(username: str, stream: TextIO | None = None) -> Credentials:
    """The password and code of ``username`` for the CLI: asked without echo on a
    terminal, else read from two lines of standard input (password, then code), never
    from the command line or the environment, where other processes of the machine and
    the shell history could read them."""
    stream = stream or sys.stdin
    if stream.isatty():
        password = getpass.getpass(f"Password of {username}: ")
        code = getpass.getpass("Authenticator code (or a recovery code): ")
        return Credentials(username, password, code)
    lines = [stream.readline().rstrip("\r\n") for _ in range(2)]
    if not all(lines):
        raise ValueError("standard input must hold the password, then the second-factor "
                         "code, on two lines")
    return Credentials(username, lines[0], lines[1])

