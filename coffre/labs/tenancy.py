"""Who is acting, for which lab. Every read of patient data takes an Actor.

An Actor is built by the web login, the CLI (operating-system user) or an API token;
the identity access layer scopes every patient query to ``actor.lab_id``.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass


@dataclass(frozen=True)
class SharedBudget:
    """Persons whose reads count as one person's (the API clients one person registered in
    one lab): the mass-reading detection counts them together and locks them together
    under ``name``, and the person ``answerable`` for them may not lift that lock."""

    name: str  # e.g. "api-by:manon@750000010"
    members: frozenset[str]
    answerable: str


@dataclass(frozen=True)
class Actor:
    person: str  # username, "os:<user>" for the CLI, "api:<client_id>" for an API client
    lab_id: int | None  # None only for installation-wide CLI commands
    role: str
    channel: str  # "web", "cli" or "api"
    address: str = ""  # the client's, from coffre.serving.proxy.client_address
    shared: SharedBudget | None = None  # a budget counted on top of the person's own


def cli_actor(lab_id: int | None, role: str = "cli") -> Actor:
    """The CLI acts as the operating-system user who ran it."""
    return Actor(person=f"os:{getpass.getuser()}", lab_id=lab_id, role=role, channel="cli")
