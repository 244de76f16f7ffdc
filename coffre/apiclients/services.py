"""Registering API clients, issuing and checking their bearer tokens.

Secrets and tokens are shown once and stored as SHA-256 digests only (coffre/apiclients/
models.py says why a fast hash fits 256-bit random values). Nothing here logs a secret or
a token; failed client authentications are counted like failed logins.

Limits hold per client and per person: the clients one person registered in one lab
share one rate limit, one token quota and one mass-reading budget (``shared_budget``),
so that registering ten clients does not give ten times the room.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from coffre.apiclients import scopes as scope_grammar
from coffre.apiclients.models import AccessToken, ApiClient
from coffre.apiclients.scopes import Scope, ScopeError
from coffre.audit import log as audit_log
from coffre.config import env_int
from coffre.tenancy.access import one_row
from coffre.tenancy.actors import Actor, LabActor, SharedBudget
from coffre.tenancy.capabilities import API_CLIENT
from coffre.tenancy.models import Lab
from coffre.vault import same_digest, token_digest

logger = logging.getLogger("coffre.apiclients")

# Prefixes let leak scanners and people recognise what a pasted string is.
SECRET_PREFIX = "cfs_"  # noqa: S105 (a prefix, not a secret)
TOKEN_PREFIX = "cft_"  # noqa: S105 (a prefix, not a token)
CLIENT_PREFIX = "cfc_"


def token_minutes() -> int:
    """Lifetime of an access token (``COFFRE_API_TOKEN_MINUTES``, default 15)."""
    return max(1, env_int("COFFRE_API_TOKEN_MINUTES", 15))


def rate_per_minute() -> int:
    """API calls per minute (``COFFRE_API_RATE_PER_MINUTE``) of one client, whatever
    token it uses, and of all the clients one person registered in a lab together."""
    return max(1, env_int("COFFRE_API_RATE_PER_MINUTE", 600))


def tokens_per_minute() -> int:
    """Tokens one client (and one person's clients together) may obtain per minute
    (``COFFRE_API_TOKENS_PER_MINUTE``)."""
    return max(1, env_int("COFFRE_API_TOKENS_PER_MINUTE", 20))


class ApiClientError(ValueError):
    """A registration or revocation request is wrong; the message says what."""


class ClientAuthFailed(PermissionError):
    """Unknown client, wrong secret or revoked client: one vague answer for all."""


class ClientLockedOut(PermissionError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many failed client authentications; try again later")
        self.retry_after = retry_after


class TokenRejected(PermissionError):
    """The bearer token is unknown, expired or revoked, or its client is revoked."""


class Throttled(PermissionError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limit reached; slow down")
        self.retry_after = retry_after


@dataclass(frozen=True)
class ApiPrincipal:
    """Who calls the API: a client of one lab, with the scopes of its token, and the
    budget it shares with the other clients its registrant registered in that lab."""

    client_id: str
    lab_id: int
    scopes: tuple[Scope, ...]
    shared: SharedBudget

    @property
    def person(self) -> str:
        return f"api:{self.client_id}"

    def allows(self, resource: str, access: str) -> bool:
        return scope_grammar.allows(self.scopes, resource, access)

    def readable(self) -> frozenset[str]:
        """The FHIR types the token may read (what an answer may contain)."""
        return frozenset(t for t in scope_grammar.RESOURCE_TYPES if self.allows(t, "read"))

    def actor(self, address: str = "") -> LabActor:
        return LabActor(person=self.person, lab_id=self.lab_id, role=API_CLIENT,
                        channel="api", address=address, shared=self.shared)


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


def digest(secret: str) -> str:
    return token_digest(secret)


def budget_name(client: ApiClient) -> str:
    """How locks, alerts and rate limits name the clients one person registered in one
    lab (``api-by:<registrant>@<FINESS>``)."""
    return f"api-by:{client.created_by}@{client.lab.finess}"[:150]


def shared_budget(client: ApiClient) -> SharedBudget:
    """The client and every client (revoked ones included: their recent reads still
    count) that the same person registered in the same lab."""
    peers = ApiClient.objects.filter(lab_id=client.lab_id, created_by=client.created_by
                                     ).values_list("client_id", flat=True)
    return SharedBudget(name=budget_name(client),
                        members=frozenset({client.person, *(f"api:{c}" for c in peers)}),
                        answerable=client.created_by)


# --- registration -----------------------------------------------------------------------

def register_client(lab: Lab, name: str, scope_text: str, by: Actor
                    ) -> tuple[ApiClient, str]:
    """A new client of the lab and its secret, returned this once (only its digest is
    kept). Raises ApiClientError or ScopeError before writing anything."""
    name = " ".join(name.split())
    if not name:
        raise ApiClientError("the client needs a name (e.g. the software it is)")
    if len(name) > 200:
        raise ApiClientError("the client name is longer than 200 characters")
    granted = scope_grammar.render(scope_grammar.parse(scope_text))
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        client = ApiClient.objects.create(
            lab=lab, name=name, client_id=CLIENT_PREFIX + secrets.token_hex(8),
            secret_hash=digest(secret), scopes=granted, created_by=by.person)
        audit_log.record(by, "api_client_add", [], kind="api_client")
    return client, secret


def clients_of(lab_id: int) -> list[ApiClient]:
    return list(ApiClient.objects.filter(lab_id=lab_id).select_related("lab")
                .order_by("revoked_at", "name"))


def access_client(actor: LabActor, client_pk: int | str) -> ApiClient:
    """A client of the actor's lab by its row id; RowNotFound for another lab's or none."""
    return one_row(ApiClient.objects.filter(lab_id=actor.lab_id), client_pk, "API client")


def client_of_lab(lab_id: int | None, client_id: str) -> ApiClient:
    """The lab's client by its public id (or its row id); another lab's is not found."""
    clients = ApiClient.objects.filter(lab_id=lab_id) if lab_id else ApiClient.objects
    found = clients.filter(client_id=client_id).first()
    if found is None and client_id.isascii() and client_id.isdigit():  # not "²"
        found = clients.filter(pk=int(client_id)).first()
    if found is None:
        raise ApiClientError(f"no API client {client_id}")
    return found


def revoke_client(client: ApiClient, by: Actor) -> None:
    """The client and every token it holds stop working at their next call."""
    now = timezone.now()
    with transaction.atomic():
        if client.revoked_at is None:
            client.revoked_at, client.revoked_by = now, by.person
            client.save(update_fields=["revoked_at", "revoked_by"])
        client.tokens.filter(revoked_at__isnull=True).update(revoked_at=now)
        audit_log.record(by, "api_client_revoke", [], kind="api_client")


def rotate_secret(client: ApiClient, by: Actor) -> str:
    """A new secret, returned once; the old one and the tokens it obtained stop at once
    (a rotation usually follows a suspected leak)."""
    if not client.active:
        raise ApiClientError("a revoked client cannot get a new secret")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        client.secret_hash = digest(secret)
        client.save(update_fields=["secret_hash"])
        client.tokens.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        audit_log.record(by, "api_secret_rotate", [], kind="api_client")
    return secret


# --- throttling (Django cache: per process by default, Redis when configured) ------------

def _bucket(kind: str, key: str, window: int) -> tuple[str, int]:
    now = time.time()
    start = int(now // window)
    return f"coffre:api:{kind}:{digest(key)[:32]}:{start}", int((start + 1) * window - now) + 1


def count_hit(kind: str, key: str, limit: int, window: int = 60) -> None:
    """Count one call in a fixed window; raises Throttled past ``limit``."""
    name, retry_after = _bucket(kind, key, window)
    cache.add(name, 0, timeout=window + 1)
    try:
        hits = cache.incr(name)
    except ValueError:  # the entry expired between add and incr
        cache.set(name, 1, timeout=window + 1)
        hits = 1
    if hits > limit:
        raise Throttled(retry_after)


def _cool_off() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def _failure_keys(client_id: str, address: str) -> list[tuple[str, int]]:
    """What failed authentications lock, for the cool-off time after the last one: this
    client id from this address (a stale secret, or someone guessing it there), and this
    address for every client id (a flood). Never a client id from everywhere: the id is
    public, so anyone could lock a client out, while its 256-bit secret cannot be
    guessed anyway. The address is the client's (coffre.serving.proxy.client_address):
    behind a proxy not declared in COFFRE_TRUSTED_PROXIES, everyone shares one."""
    return [(f"coffre:api:fail:pair:{digest(client_id + chr(31) + address)[:32]}",
             settings.COFFRE_LOGIN_ACCOUNT_FAILURES),
            (f"coffre:api:fail:addr:{digest(address)[:32]}",
             settings.COFFRE_LOGIN_ADDRESS_FAILURES)]


def _check_not_locked_out(client_id: str, address: str) -> None:
    for key, limit in _failure_keys(client_id, address):
        if (cache.get(key) or 0) >= limit:
            raise ClientLockedOut(_cool_off())


def _bump(key: str) -> int:
    count = (cache.get(key) or 0) + 1
    cache.set(key, count, timeout=_cool_off())
    return count


def _record_failure(client_id: str, address: str, client: ApiClient | None) -> None:
    """Count the failure per (client id, address) and per address; a registered
    client's failures from every address are counted too, and named in the log when
    they reach the address limit (its secret may have leaked, or it is being flooded)."""
    for key, _limit in _failure_keys(client_id, address):
        _bump(key)
    logger.warning("failed API client authentication from %s", address or "?")
    if client is not None:
        failures = _bump(f"coffre:api:fail:client:{digest(client_id)[:32]}")
        if failures == settings.COFFRE_LOGIN_ADDRESS_FAILURES:
            logger.warning("API client %s: %s failed authentications within %s minutes; "
                           "it is not locked (see the addresses above)", client.client_id,
                           failures, _cool_off() // 60)


# --- client credentials and tokens ------------------------------------------------------

def authenticate_client(client_id: str, secret: str, address: str = "") -> ApiClient:
    """The active client these credentials belong to; ClientAuthFailed otherwise, and
    ClientLockedOut after too many failures (checked before the secret)."""
    _check_not_locked_out(client_id, address)
    client = ApiClient.objects.filter(client_id=client_id).select_related("lab").first()
    # Compare a digest even for an unknown client: the answer takes the same time.
    expected = client.secret_hash if client else digest(secrets.token_hex(16))
    if not same_digest(digest(secret), expected) or client is None \
            or not client.active:
        _record_failure(client_id, address, client)
        raise ClientAuthFailed("invalid client credentials")
    return client


def issue_token(client: ApiClient, scope_text: str | None = None, address: str = ""
                ) -> IssuedToken:
    """A bearer token for the client, its scopes narrowed to ``scope_text`` when given
    (ScopeError if that asks for more than the client has). The issue is in the access
    log with the caller's address: a stolen secret used from elsewhere shows there."""
    count_hit("issue", client.client_id, tokens_per_minute())
    count_hit("issue-by", budget_name(client), tokens_per_minute())
    granted = scope_grammar.parse(client.scopes)
    wanted = granted if not scope_text or not scope_text.strip() else scope_grammar.narrow(
        granted, scope_grammar.parse(scope_text))
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    lifetime = token_minutes() * 60
    now = timezone.now()
    with transaction.atomic():
        AccessToken.objects.create(client=client, token_hash=digest(token),
                                   scopes=scope_grammar.render(wanted), created_at=now,
                                   expires_at=now + dt.timedelta(seconds=lifetime))
        audit_log.record(Actor(client.person, client.lab_id, API_CLIENT, "api", address),
                         "api_token", [], kind="api_client")
    purge_expired(client)  # keeps the table to the live tokens without a cron job
    return IssuedToken(token, lifetime, scope_grammar.render(wanted))


def authenticate_token(token: str) -> ApiPrincipal:
    """The principal of a live token; TokenRejected otherwise (one message for all)."""
    wanted = digest(token)
    row = (AccessToken.objects.select_related("client__lab")
           .filter(token_hash=wanted).first())
    if (row is None or not same_digest(row.token_hash, wanted)
            or row.revoked_at is not None or row.expires_at <= timezone.now()
            or not row.client.active):
        raise TokenRejected("the access token is invalid, expired or revoked")
    try:
        granted = scope_grammar.parse(row.scopes)
    except ScopeError:  # a type the API no longer serves: refuse rather than guess
        raise TokenRejected("the access token is invalid, expired or revoked") from None
    return ApiPrincipal(row.client.client_id, row.client.lab_id, granted,
                        shared_budget(row.client))


def throttle(principal: ApiPrincipal) -> None:
    """Per client (a new token does not start afresh) and per registrant."""
    count_hit("call", principal.client_id, rate_per_minute())
    count_hit("call-by", principal.shared.name, rate_per_minute())


def purge_expired(client: ApiClient | None = None) -> int:
    """Delete expired and revoked tokens (of one client, or all); returns how many."""
    tokens = AccessToken.objects.filter(expires_at__lte=timezone.now()) | \
        AccessToken.objects.filter(revoked_at__isnull=False)
    if client is not None:
        tokens = tokens.filter(client=client)
    return tokens.delete()[0]
