"""Who is acting, for which lab. Every read of patient data takes an Actor.

An Actor is built by the web login, the CLI (operating-system user) or an API token;
the identity access layer scopes every patient query to ``actor.lab_id``.

``LabActor`` is an Actor acting for one lab (``lab_id: int``): the web staff, a portal
user, an API client, the CLI of one lab. Only some installation-wide CLI commands act
for no lab (``lab_id=None``). The split is for the type checker only: at run time
``LabActor`` *is* ``Actor`` (same class, same equality, pickling and repr), so
``isinstance(x, LabActor)`` proves nothing; narrow with ``lab_actor(actor)``.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast, overload


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


if TYPE_CHECKING:
    @dataclass(frozen=True)
    class LabActor(Actor):
        """An Actor acting for one lab (see the module's docstring)."""

        lab_id: int
else:
    LabActor = Actor  # one class at run time: nothing built or compared changes


class NoLab(ValueError):
    """An installation-wide actor (no lab) where a lab is needed."""


def lab_actor(actor: Actor) -> LabActor:
    """``actor`` as a LabActor; NoLab if it acts for no lab."""
    if actor.lab_id is None:
        raise NoLab(f"this {actor.channel} actor acts for no laboratory; one is needed here")
    return cast("LabActor", actor)  # its lab_id is an int: a LabActor


def os_user() -> str:
    """``os:<name>`` of the process's effective user id. Not getpass.getuser(), which
    believes $USER / $LOGNAME: anyone can set those, to be logged (and locked, or
    approve) as someone else."""
    uid = os.geteuid()
    try:
        return f"os:{pwd.getpwuid(uid).pw_name}"
    except KeyError:  # a uid without a passwd entry (some containers)
        return f"os:uid{uid}"


@overload
def cli_actor(lab_id: int, role: str = ...) -> LabActor: ...


@overload
def cli_actor(lab_id: None, role: str = ...) -> Actor: ...


def cli_actor(lab_id: int | None, role: str = "cli") -> Actor:
    """The CLI acts as the operating-system user who ran it: for one lab (a LabActor),
    or, for an installation-wide command, for none."""
    return Actor(person=os_user(), lab_id=lab_id, role=role, channel="cli")
