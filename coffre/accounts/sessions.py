"""Sessions: logging a person out everywhere.

Django already gives the rest of the issue: ``login()`` gives the session a new key
(no session fixation), and ``SESSION_COOKIE_AGE`` with ``SESSION_SAVE_EVERY_REQUEST``
ends a session after that long without a request (inactivity, not a fixed lifetime).

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

from collections.abc import Callable

from django.contrib import messages
from django.contrib.auth import logout
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _

SESSION_EPOCH = "session_epoch"


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
