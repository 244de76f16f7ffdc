"""The client's address, the one place that decides it: django-axes counts failed logins
by it (AXES_CLIENT_IP_CALLABLE), the API counts failed token requests and rate limits
by it, and access-log entries (web and API) record it.

Without COFFRE_TRUSTED_PROXIES it is REMOTE_ADDR and X-Forwarded-For is ignored (a client
could write anything there). With it, X-Forwarded-For plus REMOTE_ADDR is read from the
nearest hop outwards: each proxy appends the address it saw (nginx's
$proxy_add_x_forwarded_for, Caddy's default), so the client is the first hop that is not
a trusted proxy; entries further left are whatever the client sent. COFFRE_TRUSTED_PROXIES
names the proxies by address or network, or gives their number when every request passes
through the same chain (docs/deploy.md).
"""

from __future__ import annotations

import functools
import ipaddress

from django.conf import settings
from django.http import HttpRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.COFFRE_TRUSTED_PROXIES
    if not trusted:
        return remote
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return nearest_untrusted([*hops, remote], trusted)


def nearest_untrusted(hops: list[str], trusted: int | tuple[str, ...]) -> str:
    """The client among ``hops`` (farthest first, REMOTE_ADDR last): walking from the
    nearest, the first hop that is not a trusted proxy. A hop that is not an address
    stops the walk at the last good one (a trusted proxy never writes one); when every
    hop is trusted, the farthest."""
    found = ""
    for distance, text in enumerate(reversed(hops)):
        address = _parse(text)
        if address is None:
            return found or text[:45]
        found = str(address)
        if not _is_proxy(address, distance, trusted):
            return found
    return found


def _is_proxy(address: Address, distance: int, trusted: int | tuple[str, ...]) -> bool:
    if isinstance(trusted, int):
        return distance < trusted
    return any(address in network for network in _networks(trusted))


@functools.lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def _parse(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:1.2.3.4 is 1.2.3.4
    return mapped or address


def describe(trusted: int | tuple[str, ...]) -> str:
    """COFFRE_TRUSTED_PROXIES in words, for `coffre check --production`."""
    if isinstance(trusted, int):
        return f"{trusted} prox{'y' if trusted == 1 else 'ies'} in front of every request"
    return ", ".join(trusted)
