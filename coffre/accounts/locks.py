"""Failed-login lockout, per account and per address (django-axes).

django-axes records failed logins (``axes.models.AccessAttempt``: one row per username,
address and user agent) and compares one count with one limit. Coffre wants two limits:
``COFFRE_LOGIN_ACCOUNT_FAILURES`` for one username from anywhere (guessing one person's
password) and ``COFFRE_LOGIN_ADDRESS_FAILURES`` for one address over any usernames
(trying a password across accounts). ``CoffreAxesHandler`` folds both into the count
axes compares with ``AXES_FAILURE_LIMIT`` (the account limit). Failures count while the
last one is less than ``AXES_COOLOFF_TIME`` old, and a lockout lasts that long after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from axes.attempts import get_cool_off_threshold
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_client_username, get_failure_limit
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone


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


def lockout_response(request, original_response=None, credentials=None):
    """The page a locked-out login gets (``AXES_LOCKOUT_CALLABLE``), HTTP 429."""
    from django.shortcuts import render

    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    return render(request, "accounts/lockout.html", {"minutes": minutes}, status=429)
