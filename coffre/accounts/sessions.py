"""Sessions: logging a person out everywhere.

Django already gives the rest of the issue: ``login()`` gives the session a new key
(no session fixation). ``SESSION_COOKIE_AGE`` ends a session after that long without a
request (inactivity, not a fixed lifetime): :class:`SlidingSessionMiddleware` pushes the
expiry forward, writing the session at most once a minute rather than on every request.

"Everywhere" uses a per-person epoch (``SessionEpoch``): a login stores the person's
current epoch in the new session (:func:`stamp_session`, on ``user_logged_in``), and
:class:`SessionEpochMiddleware` logs out a session whose stored epoch is older than the
person's. :func:`end_all_sessions` bumps the epoch: every session of the person, on
every device, ends at its next request. A session with no epoch stored (opened before
this existed) counts as epoch 0, so it ends at the first bump too.

The lab manager's deactivation and second-factor reset end the person's sessions the
same way (``coffre.accounts.managing``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.sessions.middleware import SessionMiddleware
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

SESSION_EPOCH = "session_epoch"
SESSION_TOUCHED = "touched"
# How stale the stored expiry may get: a session ends between SESSION_COOKIE_AGE and
# that plus this after its last request. Writing it on every request instead cost a
# transaction (3 round trips) per page.
TOUCH_SECONDS = 60


def current_epoch(user) -> int:
    from coffre.accounts.models import SessionEpoch

    epoch = SessionEpoch.objects.filter(user_id=user.pk).values_list("epoch", flat=True)
    return next(iter(epoch), 0)


@transaction.atomic
def end_all_sessions(user) -> int:
    """Bump the person's epoch: every session opened before now ends at its next
    request. Returns the new epoch."""
    from coffre.accounts.models import SessionEpoch

    SessionEpoch.objects.get_or_create(user_id=user.pk)
    SessionEpoch.objects.filter(user_id=user.pk).update(epoch=F("epoch") + 1)
    return current_epoch(user)


def is_current(session, user) -> bool:
    return session.get(SESSION_EPOCH, 0) >= current_epoch(user)


def stamp_session(sender, request, user, **kwargs) -> None:
    """A new login belongs to the person's current epoch."""
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_EPOCH] = current_epoch(user)


class SessionEpochMiddleware:
    """Logs out a session older than its person's epoch; the request goes on as an
    anonymous visitor (pages needing a login send it to the login page). Put it after
    ``AuthenticationMiddleware`` and ``MessageMiddleware``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated and not is_current(request.session, user):
            logout(request)
            messages.info(request, _("Votre session a été fermée. Reconnectez-vous."),
                          fail_silently=True)
        return self.get_response(request)


class SlidingSessionMiddleware(SessionMiddleware):
    """Django's session middleware, with the inactivity expiry moved forward by a write
    at most every ``TOUCH_SECONDS`` (``SESSION_SAVE_EVERY_REQUEST`` stays off). A session
    the request did not load is left alone: nothing to refresh, and no database
    round trip on the way out of a failed request."""

    def process_response(self, request: HttpRequest, response: HttpResponse
                         ) -> HttpResponse:
        session = getattr(request, "session", None)
        if (session is not None and session.accessed and not session.is_empty()
                and response.status_code < 500):
            now = int(time.time())
            if now - session.get(SESSION_TOUCHED, 0) >= TOUCH_SECONDS:
                session[SESSION_TOUCHED] = now  # marks it modified: saved, expiry moved
        return super().process_response(request, response)
