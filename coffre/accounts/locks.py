"""Failed-login lockout, per account and per address (django-axes).

django-axes records failed logins (``axes.models.AccessAttempt``: one row per username,
address and user agent) and compares one count with one limit. Coffre wants two limits:
``COFFRE_LOGIN_ACCOUNT_FAILURES`` for one username from anywhere (guessing one person's
password) and ``COFFRE_LOGIN_ADDRESS_FAILURES`` for one address over any usernames
(trying a password across accounts). ``CoffreAxesHandler`` folds both into the count
axes compares with ``AXES_FAILURE_LIMIT`` (the account limit). Failures count while the
last one is less than ``AXES_COOLOFF_TIME`` old, and a lockout lasts that long after it.

A wrong second-factor code (or recovery code) is a failed authentication of the account
too (:func:`second_factor_failed`): it is counted in the same records, from the same
address, so the two limits hold across sessions, and the lock it brings is the password
lockout itself (same page, same list on the manager's page, same release).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.db import transaction
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _

from coffre.tenancy.actors import Actor


def _failures(since: datetime, **match) -> int:
    attempts = AccessAttempt.objects.filter(attempt_time__gte=since, **match)
    return attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0


class CoffreAxesHandler(AxesDatabaseHandler):
    def get_failures(self, request, credentials=None) -> int:
        since = get_cool_off_threshold(request)
        username = get_client_username(request, credentials)
        by_account = _failures(since, username=username) if username else 0
        address = getattr(request, "axes_ip_address", None)
        by_address = _failures(since, ip_address=address) if address else 0
        if by_address >= settings.COFFRE_LOGIN_ADDRESS_FAILURES:
            return max(by_account, get_failure_limit(request, credentials))
        return by_account


@dataclass(frozen=True)
class LoginLock:
    username: str
    failures: int
    last_failure: datetime
    locked_until: datetime


def login_locks(lab_id: int) -> list[LoginLock]:
    """Accounts of a lab's members that are locked now for failed logins, by username.

    (An address lockout is not an account's: it shows here only when the account itself
    reached its limit.)
    """
    from coffre.accounts.models import Membership

    cool_off = settings.AXES_COOLOFF_TIME
    since = timezone.now() - cool_off
    usernames = Membership.objects.filter(lab_id=lab_id).values_list(
        "user__username", flat=True)
    rows = (AccessAttempt.objects.filter(attempt_time__gte=since, username__in=usernames)
            .values("username")
            .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
            .order_by("username"))
    return [LoginLock(row["username"], row["failures"], row["last"], row["last"] + cool_off)
            for row in rows if row["failures"] >= settings.COFFRE_LOGIN_ACCOUNT_FAILURES]


def is_locked_out(request: HttpRequest, username: str) -> bool:
    """Whether an authentication of this account from this address is refused now (the
    account's limit or the address's), by the very check django-axes makes before a
    password."""
    return not AxesProxyHandler.is_allowed(request, {"username": username})


def count_failure(request: HttpRequest, username: str) -> bool:
    """Count a failed authentication of the account from the request's address, in the
    records a wrong password goes to (django-axes receives Django's
    ``user_login_failed``). True when the account or the address is now locked out."""
    user_login_failed.send(sender=__name__, credentials={"username": username},
                           request=request)
    return is_locked_out(request, username)


def _actors(request: HttpRequest) -> list[Actor]:
    """The logged-in person in each lab they work for (the audit entries and alerts go
    to every one of them); a prescriber, the only account with a second factor and no
    lab, acts for none."""
    from coffre.accounts.acting import request_memberships

    username = request.user.get_username()
    address = getattr(request, "axes_ip_address", None) or request.META.get("REMOTE_ADDR", "")
    memberships = request_memberships(request)
    if not memberships:
        return [Actor(username, None, "prescriber", "portal", address)]
    return [Actor(username, m.lab_id, m.role, "web", address) for m in memberships]


def try_second_factor(request: HttpRequest, code: str
                      ) -> Literal["passed", "wrong", "locked"]:
    """Check a code or recovery code of the logged-in person, unless the account or the
    address is locked out; a wrong one is counted (:func:`second_factor_failed`).

    One attempt at a time per person: the check, the count and the lock decision run in
    one transaction holding the person's authenticator row, so a burst of parallel
    guesses cannot all pass the lock check before the first failures are counted."""
    from coffre.accounts import mfa
    from coffre.accounts.models import TotpDevice

    user = request.user
    with transaction.atomic():
        list(TotpDevice.objects.select_for_update().filter(user=user).values_list("pk"))
        if is_locked_out(request, user.get_username()):
            return "locked"
        if mfa.verify(user, code) or mfa.use_recovery_code(user, code):
            return "passed"
        return "locked" if second_factor_failed(request) else "wrong"


def second_factor_failed(request: HttpRequest) -> bool:
    """A wrong code or recovery code after a right password: a failed authentication of
    the account (:func:`count_failure`), recorded in the access log of each of the
    person's labs. When it locks the account or the address, the lock is logged too and
    each lab's data-protection officers are alerted: whoever typed the codes knows the
    password. Returns True then; the caller ends the session with the lockout page."""
    from coffre.audit import alerts, log
    from coffre.audit.models import AlertKind

    locked = count_failure(request, request.user.get_username())
    actors = _actors(request)
    for actor in actors:
        log.record(actor, "second_factor", [], kind="account", outcome="wrong_code")
    if locked:
        summary = _("Codes de double authentification erronés après un mot de passe "
                    "correct, depuis l'adresse %(address)s : connexions bloquées "
                    "%(minutes)s minutes. Si ce n'était pas la personne, son mot de passe "
                    "est connu d'un tiers : faites-le changer.") % {
                        "address": actors[0].address or "?", "minutes": _lock_minutes()}
        for actor in actors:
            log.record(actor, "login_locked", [], kind="account", outcome="locked")
            alerts.raise_alert(actor.lab_id, AlertKind.SECOND_FACTOR, actor.person, summary)
    return locked


def _lock_minutes() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)


def lockout_response(request: HttpRequest, original_response=None, credentials=None
                     ) -> HttpResponse:
    """The page a locked-out login gets (``AXES_LOCKOUT_CALLABLE``), HTTP 429; on the
    code page it also says the password was accepted."""
    from django.shortcuts import render

    after_password = getattr(request.resolver_match, "url_name", "") == "mfa_verify"
    return render(request, "accounts/lockout.html",
                  {"minutes": _lock_minutes(), "after_password": after_password},
                  status=429)
