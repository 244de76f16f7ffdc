"""Who may do what: the one table of roles per capability.

Services check it (``require``) before they read or change anything; pages ask it
(``may``) only to show or hide a link or a button. No other module lists roles
(tests/test_capabilities.py checks it). The lab workflow's steps name their capability
in ``coffre.labwork.workflow.TRANSITIONS``; docs/architecture.md ("Who may do what") shows
this table.

A role is a staff membership's (``coffre.accounts.models.Role``: the values, spelled out
here so this module stays below the accounts app) or one of the actors without a
membership below.
"""

from __future__ import annotations

from typing import Protocol

# Actors without a membership. The CLI acts for an administrator on the server;
# "analyser" is an HL7 connection; the portals' patients and prescribers (the
# coffre.portal layer checks the order is theirs before reading); an API client
# (coffre.fhir.api: its token's scopes are the finer grain).
CLI = "cli"
ANALYSER = "analyser"
PATIENT = "patient"
PRESCRIBER = "prescriber"
API_CLIENT = "api_client"

SECRETARY = "secretary"
TECHNICIAN = "technician"
BIOLOGIST = "biologist"
LAB_MANAGER = "lab_manager"
DPO = "dpo"

# The people who care for patients (not the roles that administer: lab manager, DPO,
# platform administrator), and the bench.
_CARE = frozenset({SECRETARY, TECHNICIAN, BIOLOGIST})
_BENCH = frozenset({TECHNICIAN, BIOLOGIST})
_STAFF_READERS = _CARE | {LAB_MANAGER, CLI, API_CLIENT}

CAPABILITIES: dict[str, frozenset[str]] = {
    # -- lab workflow (coffre.labwork; each step of workflow.TRANSITIONS names one)
    "order.create": _CARE | {CLI, API_CLIENT},
    # collection, receipt and rejection of specimens; the reception page; a portal
    # activation code and the receipt that carries it
    "specimen.receive": _CARE | {CLI},
    "result.enter": _BENCH | {ANALYSER},
    "result.validate_technically": _BENCH,
    "result.cancel": _BENCH,
    "critical.acknowledge": _BENCH,
    "result.validate_biologically": frozenset({BIOLOGIST}),
    "result.publish": frozenset({BIOLOGIST}),
    "result.correct": frozenset({BIOLOGIST}),
    # worklists, specimen listings, a patient's orders and charts
    "result.read": _STAFF_READERS,
    # one order (page, report) or one test's series: staff readers and the portals
    "order.read": _STAFF_READERS | {PATIENT, PRESCRIBER},
    "lab.settings": frozenset({LAB_MANAGER}),
    # -- patients
    "patient.break_glass": _CARE,
    "patient.erase": frozenset({LAB_MANAGER, DPO, CLI}),
    "patient.hold": frozenset({LAB_MANAGER, DPO, CLI}),
    # the purposes written in a patient's access history
    "patient.history_reasons": frozenset({DPO}),
    # -- exports (coffre.exports): the pages, an approval, an approval above the lab's
    # DPO threshold, a refusal
    "export.request": frozenset({LAB_MANAGER, DPO}),
    "export.approve": frozenset({LAB_MANAGER, DPO}),
    "export.approve_large": frozenset({DPO}),
    "export.refuse": frozenset({LAB_MANAGER, DPO}),
    # -- alerts (separation of duties: the DPO acknowledges, the lab manager lifts locks)
    "alert.review": frozenset({DPO, LAB_MANAGER}),
    "alert.acknowledge": frozenset({DPO}),
    "lock.lift": frozenset({LAB_MANAGER, CLI}),
    # -- breaches (coffre.breach): see the records and scans; act on them
    "breach.view": frozenset({DPO, LAB_MANAGER}),
    "breach.manage": frozenset({DPO}),
    # `coffre breach record` and `drafts` for the --by person: the lab manager too, where
    # the web asks breach.manage (a difference older than this table, kept as it was)
    "breach.record": frozenset({DPO, LAB_MANAGER}),
    # -- the lab's accounts and API clients
    "accounts.manage": frozenset({LAB_MANAGER}),
    "apiclients.manage": frozenset({LAB_MANAGER}),
}

# The roles a lab manager may give on the accounts page (not platform administrator).
ASSIGNABLE = (SECRETARY, TECHNICIAN, BIOLOGIST, LAB_MANAGER, DPO)


class HasRole(Protocol):
    """An Actor (frozen: its role is read-only) or a Membership."""

    @property
    def role(self) -> str: ...


class NotAllowed(PermissionError):
    """This role may not do this."""


def roles(capability: str) -> frozenset[str]:
    """The roles holding ``capability``; KeyError for a name not in the table."""
    return CAPABILITIES[capability]


def may(actor: HasRole | None, capability: str) -> bool:
    """Whether ``actor`` (an Actor, a Membership, or None) holds ``capability``."""
    return actor is not None and actor.role in CAPABILITIES[capability]


def require(actor: HasRole, capability: str,
            refusal: type[Exception] = NotAllowed) -> None:
    """Raise ``refusal`` (the service's own refusal) unless ``actor`` holds
    ``capability``. The message names the role and the capability, never a value."""
    if not may(actor, capability):
        raise refusal(f"the role {actor.role!r} may not {capability}")


def held_by(role: str) -> frozenset[str]:
    """The capabilities of ``role`` (the pages' ``may`` context)."""
    return frozenset(name for name, holders in CAPABILITIES.items() if role in holders)
