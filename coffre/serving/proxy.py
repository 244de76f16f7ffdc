"""The client's address behind the reverse proxy (COFFRE_BEHIND_PROXY), for django-axes
and the other per-address limits.

The proxy appends the address it saw to X-Forwarded-For (nginx: $proxy_add_x_forwarded_for,
Caddy does the same), so the last entry is the one a client cannot forge; entries before
it are whatever the client sent.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    last = forwarded.split(",")[-1].strip()
    return last or request.META.get("REMOTE_ADDR", "")


def client_address(request: HttpRequest) -> str:
    """The address a per-address limit counts: the proxy's last X-Forwarded-For entry
    behind the proxy (every client would share the proxy's address otherwise), else the
    connection's. Without a proxy the header is the client's own and is ignored."""
    return client_ip(request) if settings.COFFRE_BEHIND_PROXY else request.META.get(
        "REMOTE_ADDR", "")
