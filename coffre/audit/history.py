"""A patient's access history, read from the access log: who opened the record, when,
from which lab, and whether it was a break-the-glass access.

Shown on the staff patient page and, later, to the patient on the portal. Reading the
history writes nothing to the log: the page that shows it has already logged its read.
Entries carry names of staff and labs, never a patient value; the sealed reason of a
break-the-glass access is opened only when the caller asks for it (the DPO's view).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

from coffre.audit.log import open_text
from coffre.audit.models import AccessEvent
from coffre.tenancy.models import Lab

ACTION_LABELS = {
    "read": _("consultation"),
    "search": _("recherche"),
    "create": _("création"),
    "update": _("modification"),
    "export": _("export"),
    "print": _("impression"),
    "validate": _("validation"),
    "publish": _("diffusion du compte rendu"),
    # coffre.breach.letters: name and address read to write the art. 34 letter
    "notify": _("lecture pour vous informer d'une violation de données"),
    "notified": _("information envoyée (violation de données)"),
    # coffre.breach.scan: the record was found in a leaked file the lab examined
    "breach_scan": _("retrouvé dans un fichier divulgué (analyse de la violation)"),
}
KIND_LABELS = {
    "identity": _("identité"),
    "results": _("résultats"),
    "order": _("demande d'analyses"),
    "specimen": _("échantillon"),
    "report": _("compte rendu"),
    "labels": _("étiquettes"),
    "receipt": _("reçu de prélèvement"),
    "portal": _("compte du portail patient"),
    "portal_code": _("code d'activation du portail"),
    "right_of_access": _("copie de toutes vos données (droit d'accès)"),
    "breach_letter": _("courrier d'information sur une violation de données"),
    "breach": _("violation de données"),
}
OTHER_ROLES = {"analyser": _("Automate"), "patient": _("Patient (portail)"),
               "prescriber": _("Prescripteur (portail)"), "cli": _("Ligne de commande"),
               "import": _("Import"), "api_client": _("Logiciel connecté (API)")}
# The staff roles' labels are coffre.accounts' (Role), registered by its ready(): the
# audit sits below the accounts and imports nothing of them.
_STAFF_ROLES: dict[str, str] = {}
# An attempt on an id the person could not reach read nothing of the patient.
NOT_ACCESSES = ("not_found",)


@dataclass(frozen=True)
class HistoryEntry:
    at: dt.datetime
    person: str
    role: str
    role_label: str
    channel: str
    lab_id: int | None
    lab_name: str
    action: str
    action_label: str
    kind_label: str
    break_glass: bool
    reason: str  # the break-the-glass reason, only when asked for; else ""


def register_role_labels(choices: Iterable[tuple[str, str]]) -> None:
    """(value, label) of each staff role; labels may be lazy translations."""
    _STAFF_ROLES.update(choices)


def role_label(role: str) -> str:
    if role in _STAFF_ROLES:
        return str(_STAFF_ROLES[role])
    return str(OTHER_ROLES.get(role, role))


def patient_history(patient_id: uuid.UUID, limit: int = 50, *,
                    with_reasons: bool = False) -> list[HistoryEntry]:
    """The latest ``limit`` accesses to the patient, newest first.

    The caller must already be allowed to see the patient (it went through
    ``identity.access``). ``with_reasons`` opens the sealed break-the-glass reasons.
    """
    events = list(AccessEvent.objects.filter(patient_id=patient_id)
                  .exclude(outcome__in=NOT_ACCESSES)
                  .order_by("-seq")[:limit])
    labs = Lab.objects.in_bulk({e.lab_id for e in events if e.lab_id is not None})
    return [HistoryEntry(
        at=e.at, person=e.person, role=e.role, role_label=role_label(e.role),
        channel=e.channel, lab_id=e.lab_id,
        lab_name=labs[e.lab_id].name if e.lab_id in labs else "",
        action=e.action, action_label=str(ACTION_LABELS.get(e.action, e.action)),
        kind_label=str(KIND_LABELS.get(e.kind, e.kind)),
        break_glass=e.outcome == "break_glass",
        reason=open_text(e.purpose, "purpose") if with_reasons and e.purpose else "",
    ) for e in events]
