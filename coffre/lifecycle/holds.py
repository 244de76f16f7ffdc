"""Which patients are under an active legal hold: the erasure refuses them
(coffre.lifecycle.erasure), the purge skips them (coffre.lifecycle.retention, where holds
are added and released)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from coffre.lifecycle.models import LegalHold


def active_hold_ids(lab_id: int, patient_ids: Iterable[uuid.UUID] | None = None
                    ) -> set[uuid.UUID]:
    holds = LegalHold.objects.filter(lab_id=lab_id, released_at__isnull=True)
    if patient_ids is not None:
        holds = holds.filter(patient_id__in=list(patient_ids))
    return set(holds.values_list("patient_id", flat=True))
