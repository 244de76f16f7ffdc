"""API clients for tests: registered and given a token through the real services."""

from __future__ import annotations

from coffre.apiclients import services
from coffre.labs.tenancy import cli_actor

ALL_SCOPES = "system/*.read system/*.write"


def api_client(lab, scopes: str = ALL_SCOPES, name: str = "Logiciel de test"):
    """(client, secret) of a new client of ``lab``."""
    return services.register_client(lab, name, scopes, cli_actor(lab.id))


def api_token(lab, scopes: str = ALL_SCOPES) -> str:
    """A valid bearer access token of a new client of ``lab`` with these scopes."""
    client, secret = api_client(lab, scopes)
    authenticated = services.authenticate_client(client.client_id, secret)
    return services.issue_token(authenticated).access_token


def bearer(token: str) -> dict[str, str]:
    """Test-client keyword arguments carrying the token: ``client.get(url, **bearer(t))``."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
