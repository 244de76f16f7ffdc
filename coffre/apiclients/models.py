"""API clients of a lab and the bearer tokens issued to them (OAuth2 client credentials).

Only SHA-256 digests of the client secrets and access tokens are stored: both are 256-bit
random values made by ``secrets``, not human passwords, so a fast hash is enough (nobody
can search a 2^256 space, which is what Argon2's cost protects against for guessable
passwords), and it lets each API call find its token by an indexed digest lookup instead
of running Argon2 per request. A copy of these tables lets nobody call the API.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ApiClient(models.Model):
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="+")
    name = models.CharField(max_length=200)
    client_id = models.CharField(max_length=40, unique=True)  # public identifier
    secret_hash = models.CharField(max_length=64)  # SHA-256 hex of the secret
    scopes = models.CharField(max_length=1000)  # normalised, space-separated
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_by = models.CharField(max_length=150, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def person(self) -> str:
        """How the audit log and the mass-reading detection name this client."""
        return f"api:{self.client_id}"


class AccessToken(models.Model):
    client = models.ForeignKey(ApiClient, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)  # SHA-256 hex of the token
    scopes = models.CharField(max_length=1000)  # granted (the client's, or narrower)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
