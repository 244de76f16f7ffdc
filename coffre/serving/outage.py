"""503 while the database is away: a short French page (or a FHIR OperationOutcome on
the API), never a traceback, SQL or value; the next request after the database returns
gets a fresh connection, so the server recovers without a restart.

Django turns an exception raised anywhere below this middleware (a view, the session or
row-level-security middleware) into a 500 response before it gets here, and announces
it with ``got_request_exception``: the receiver notes a database failure on the
request, and the middleware swaps the 500 for a 503.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError, connections
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from coffre.fhir.outcome import outcome

logger = logging.getLogger("coffre.serving")
RETRY_AFTER_SECONDS = "30"


def is_outage(exc: BaseException | None) -> bool:
    """A lost or refused connection, a pool timeout, a database that refuses new
    sessions: all reach Django as OperationalError or InterfaceError. Redis (the shared
    cache, when configured) unreachable is an outage too."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, OperationalError | InterfaceError | RedisConnectionError
                      | RedisTimeoutError)


def _note_failure(sender, request: HttpRequest | None = None, **kwargs) -> None:
    exc = sys.exc_info()[1]
    if request is None or exc is None:
        return
    # Django's own request logger is muted (it can echo URLs and form data); this line
    # says that an exception happened, of which type, in which request: never its
    # message or traceback, which may quote a value.
    fields = {"event": "exception", "exception": type(exc).__name__,
              "request_id": getattr(request, "coffre_request_id", "")}
    logger.error("exception in a request: %s (request %s)", fields["exception"],
              fields["request_id"], extra={"coffre": fields})
    if is_outage(exc):
        request.coffre_database_down = True
        _spare_the_session(request)


def _spare_the_session(request: HttpRequest) -> None:
    """Keep the session middleware from loading the session on the way out of a failed
    request: that second database attempt would double the wait before the 503. An
    empty cache is never saved (no save on a 5xx) and the session cookie is left as it
    is."""
    session = getattr(request, "session", None)
    if session is not None and not hasattr(session, "_session_cache"):
        session._session_cache = {}


def connection_lost() -> bool:
    """For views that turn every exception into their own 500 (the FHIR API answers an
    OperationOutcome): the request's database connection failed and is still unusable.
    Django notes any failure but bad data or a broken constraint in ``errors_occurred``."""
    for connection in connections.all(initialized_only=True):
        if not connection.errors_occurred:
            continue
        if connection.connection is None or not connection.is_usable():
            return True
    return False


def unavailable(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/fhir/"):
        response = outcome(503, "transient",
                           "the service is temporarily unavailable; try again later")
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = RETRY_AFTER_SECONDS
    return response


class DatabaseOutageMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        got_request_exception.connect(_note_failure, dispatch_uid="coffre-outage")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not (getattr(request, "coffre_database_down", False)
                or (response.status_code == 500 and connection_lost())):
            return response
        logger.warning("database unavailable: answered 503",
                    extra={"coffre": {"event": "database_unavailable",
                                      "request_id": getattr(request, "coffre_request_id", "")}})
        # A broken connection is not given to the next request of this thread.
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()
        return unavailable(request)
