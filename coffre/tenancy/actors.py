"""Who is acting, for which lab. Every read of patient data takes an Actor.

An Actor is built by the web login, the CLI (operating-system user) or an API token;
the identity access layer scopes every patient query to ``actor.lab_id``.
"""

from __future__ import annotations

import os
import pwd
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


def os_user() -> str:
    """``os:<name>`` of the process's effective user id. Not getpass.getuser(), which
    believes $USER / $LOGNAME: anyone can set those, to be logged (and locked, or
    approve) as someone else."""
    uid = os.geteuid()
    try:
        return f"os:{pwd.getpwuid(uid).pw_name}"
    except KeyError:  # a uid without a passwd entry (some containers)
        return f"os:uid{uid}"


def cli_actor(lab_id: int | None, role: str = "cli") -> Actor:
    """The CLI acts as the operating-system user who ran it."""
    return Actor(person=os_user(), lab_id=lab_id, role=role, channel="cli")
