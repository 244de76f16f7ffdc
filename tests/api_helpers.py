"""API clients for tests: registered and given a token through the real services."""

from __future__ import annotations

from coffre.apiclients import services
from coffre.tenancy.actors import Actor, cli_actor

ALL_SCOPES = "system/*.read system/*.write"


def api_client(lab, scopes: str = ALL_SCOPES, name: str = "Logiciel de test",
               by: Actor | None = None):
    """(client, secret) of a new client of ``lab``, registered by ``by`` (the CLI's
    operating-system user by default)."""
    return services.register_client(lab, name, scopes, by or cli_actor(lab.id))


def api_token(lab, scopes: str = ALL_SCOPES, by: Actor | None = None) -> str:
    """A valid bearer access token of a new client of ``lab`` with these scopes."""
    client, secret = api_client(lab, scopes, by=by)
    authenticated = services.authenticate_client(client.client_id, secret)
    return services.issue_token(authenticated).access_token


def bearer(token: str) -> dict[str, str]:
    """Test-client keyword arguments carrying the token: ``client.get(url, **bearer(t))``."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
