"""Recording access to patient data. The one place where reads are logged.

Entries carry ids, never readable values: the patient by internal id, the action, the
kind of data, the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.utils import timezone

from coffre.audit.models import AccessEvent
from coffre.bulk import bulk_insert
from coffre.labs.tenancy import Actor


def record(actor: Actor, action: str, patient_ids: Iterable[uuid.UUID | None], *,
           kind: str = "identity", outcome: str = "ok") -> None:
    """One entry per patient touched (one with no patient for an empty search)."""
    entry = {"at": timezone.now(), "person": actor.person, "role": actor.role,
             "channel": actor.channel, "lab_id": actor.lab_id, "action": action,
             "kind": kind, "address": actor.address, "outcome": outcome}
    bulk_insert(AccessEvent, [{**entry, "patient_id": pid} for pid in list(patient_ids) or [None]])
