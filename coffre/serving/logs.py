"""Request logs and the log file handler.

One line per request: a request id, the method, the route *pattern* (``patients/<uuid:
pk>/``, never the path as typed nor its query string: a search puts names there), the
status, the duration and who acted (account id, role, lab id; never a username, which
for a patient account may be their e-mail). Nothing from the request body.
"""

from __future__ import annotations

import contextlib
import json
import logging
import logging.handlers
import re
import sys
import time
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from coffre import config

logger = logging.getLogger("coffre.request")

# A request id from the reverse proxy is kept when it looks like one (so proxy and
# application lines can be joined); anything else is replaced, never logged.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


def request_id(request: HttpRequest) -> str:
    given = request.META.get("HTTP_X_REQUEST_ID", "")
    return given if _REQUEST_ID.match(given) else uuid.uuid4().hex


def route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return f"/{match.route}" if match is not None and match.route is not None else "-"


def actor(request: HttpRequest) -> dict:
    """Who acted, from what the request already loaded (never a database query here:
    the database may be the reason the request failed)."""
    fields: dict = {}
    user = request.__dict__.get("_cached_user")  # set once AuthenticationMiddleware ran
    if user is not None and getattr(user, "is_authenticated", False):
        fields["user"] = user.pk
    membership = getattr(request, "membership", None)
    if membership is not None:
        fields["role"] = membership.role
        fields["lab"] = membership.lab_id
    elif getattr(request, "patient_account", None) is not None:
        fields["role"] = "patient"
    elif getattr(request, "prescriber_account", None) is not None:
        fields["role"] = "prescriber"
    return fields


def request_fields(request: HttpRequest, status: int, started: float) -> dict:
    return {"event": "request", "request_id": request.coffre_request_id,
            "method": request.method, "route": route(request), "status": status,
            "ms": round((time.monotonic() - started) * 1000, 1), **actor(request)}


class RequestLogMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        request.coffre_request_id = request_id(request)
        response = self.get_response(request)
        response["X-Request-ID"] = request.coffre_request_id
        fields = request_fields(request, response.status_code, started)
        logger.info("%s %s %s %sms", fields["method"], fields["route"], fields["status"],
                 fields["ms"], extra={"coffre": fields})
        return response


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and a request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
                 "level": record.levelname, "logger": record.name}
        fields = getattr(record, "coffre", None)
        if fields:
            entry.update(fields)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type only: a message or traceback may quote a value. (None:
            # exc_info=True outside an exception, which must not break the line.)
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, ensure_ascii=False, default=str)


class LogFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file whose write failures (disk full, read-only) are reported on
    stderr in one clear line, at most once a minute, instead of logging's traceback."""

    _last_complaint = 0.0

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        now = time.monotonic()
        if now - LogFileHandler._last_complaint < 60:
            return
        LogFileHandler._last_complaint = now
        reason = (config.disk_problem(exc, self.baseFilename) if isinstance(exc, OSError)
                  else f"cannot write the log {self.baseFilename}: {type(exc).__name__}")
        with contextlib.suppress(OSError):
            sys.stderr.write(f"coffre: log lines are being lost: {reason}\n")
