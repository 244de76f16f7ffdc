"""Recording access to patient data. The one place where reads are logged.

Entries carry ids, never readable values: the patient by internal id, the action, the
kind of data, the outcome.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from django.utils import timezone

from coffre.audit.models import AccessEvent
from coffre.labs.tenancy import Actor


def record(actor: Actor, action: str, patient_ids: Iterable[uuid.UUID | None], *,
           kind: str = "identity", outcome: str = "ok") -> None:
    """One entry per patient touched (one with no patient for an empty search)."""
    now = timezone.now()
    ids = list(patient_ids) or [None]
    AccessEvent.objects.bulk_create(
        AccessEvent(at=now, person=actor.person, role=actor.role, channel=actor.channel,
                    lab_id=actor.lab_id, patient_id=pid, action=action, kind=kind,
                    address=actor.address, outcome=outcome)
        for pid in ids
    )
