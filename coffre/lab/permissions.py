"""Who may do what in the lab workflow: the one table of roles per step."""

from __future__ import annotations

from coffre.accounts.models import Role
from coffre.labs.tenancy import Actor

# The CLI acts for an administrator on the server; "analyser" is an HL7 connection.
CLI = "cli"
ANALYSER = "analyser"
# Portal actors: the coffre.portal layer checks the order is theirs before reading.
PATIENT = "patient"
PRESCRIBER = "prescriber"
# An API client (coffre.fhir.api): reads its lab's data and creates patients and orders;
# its token's scopes are the finer grain. Never break-the-glass (not a caring role).
API_CLIENT = "api_client"

ORDER_ENTRY = frozenset({Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST, CLI, API_CLIENT})
RECEPTION = frozenset({Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST, CLI})
RESULT_ENTRY = frozenset({Role.TECHNICIAN, Role.BIOLOGIST, ANALYSER})
TECHNICAL_VALIDATION = frozenset({Role.TECHNICIAN, Role.BIOLOGIST})
BIOLOGICAL_VALIDATION = frozenset({Role.BIOLOGIST})
CRITICAL_ACK = frozenset({Role.TECHNICIAN, Role.BIOLOGIST})
RESULT_READERS = frozenset({Role.SECRETARY, Role.TECHNICIAN, Role.BIOLOGIST,
                            Role.LAB_MANAGER, CLI, API_CLIENT})
SETTINGS = frozenset({Role.LAB_MANAGER})
PORTAL_READERS = frozenset({PATIENT, PRESCRIBER})


class NotAllowed(PermissionError):
    """This role may not take this step."""


def check_role(actor: Actor, roles: frozenset[str], step: str) -> None:
    if actor.role not in roles:
        raise NotAllowed(f"the role {actor.role!r} may not {step}")
