"""The client's address behind the reverse proxy (COFFRE_BEHIND_PROXY), for django-axes.

The proxy appends the address it saw to X-Forwarded-For (nginx: $proxy_add_x_forwarded_for,
Caddy does the same), so the last entry is the one a client cannot forge; entries before
it are whatever the client sent.
"""

from __future__ import annotations

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    last = forwarded.split(",")[-1].strip()
    return last or request.META.get("REMOTE_ADDR", "")
