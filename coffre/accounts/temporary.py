"""Temporary passwords: chosen or seen by someone else, replaced at the first login.

A password handed to a person (a lab manager's new account, ``coffre prescriber add``,
any reset that hands one out) is marked when it is set (:func:`mark`). A login copies
the mark into the session (:func:`note_on_login`), and :class:`TemporaryPasswordMiddleware`
sends every page to the password change page, the second-factor enrollment included,
except that page, logout and the code page. A person who already has an authenticator
types the code before changing the password (a temporary password alone never replaces
an enrolled person's password); one who has none changes it first, then enrolls.

Only a change that the password policy accepts and that differs from the temporary
password removes the mark (:func:`changed`). Setting a password changes the account's
session hash, which ends every session opened before it: no session without the note
outlives a new temporary password.
"""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from coffre.accounts.models import TemporaryPassword

SESSION_NOTE = "temporary_password_for"  # the user id whose password is temporary
# Where a session with a temporary password may go (URL names).
ALLOWED = frozenset({"password_change", "logout", "login", "mfa_verify", "set_language"})


def mark(user, issued_by: str) -> None:
    """The person's password was set by ``issued_by``: they must replace it."""
    TemporaryPassword.objects.update_or_create(user=user, defaults={"issued_by": issued_by})


def is_marked(user) -> bool:
    return TemporaryPassword.objects.filter(user_id=user.pk).exists()


def note_on_login(sender, request, user, **kwargs) -> None:
    """A ``user_logged_in`` receiver: the session remembers a temporary password."""
    if request is None or not hasattr(request, "session"):
        return
    if is_marked(user):
        request.session[SESSION_NOTE] = request.session.get(SESSION_KEY)
    else:
        request.session.pop(SESSION_NOTE, None)


def is_pending(request: HttpRequest) -> bool:
    """Whether this session's person still has to replace a temporary password."""
    if not request.user.is_authenticated:
        return False
    note = request.session.get(SESSION_NOTE)
    return note is not None and note == request.session.get(SESSION_KEY)


def changed(request: HttpRequest, user) -> None:
    """The person set a password of their own (the policy accepted it): the mark goes.
    Call in the transaction that saved the password."""
    TemporaryPassword.objects.filter(user_id=user.pk).delete()
    request.session.pop(SESSION_NOTE, None)


def waive_for_demo(user) -> None:
    """The demo prints its accounts' passwords for the person trying it, like a password
    of their own: no change is forced. For ``coffre demo`` only."""
    TemporaryPassword.objects.filter(user_id=user.pk).delete()


class TemporaryPasswordMiddleware:
    """Sends a session whose password is temporary to the password change page, whatever
    it asks for (but :data:`ALLOWED`). Put it after the authentication and session-epoch
    middleware. Reads the session only: no database query on the way."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> HttpResponse | None:
        if not is_pending(request):
            return None
        if getattr(request.resolver_match, "url_name", None) in ALLOWED:
            return None
        return redirect("password_change")
