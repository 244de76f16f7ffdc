"""Canary patients: decoy patients planted in each lab, which no one should ever read.
A read raises an immediate alert; their values, kept sealed, let a leaked file be
attributed to the lab (coffre.breach.attribution).

Nothing in the database says which patients are canaries: each mark is a sealed record
(patient id, lab, values, planting time) under the installation's audit key, with no
clear time; the patients are ordinary sealed rows that look like the lab's own
(coffre.breach.planting makes them); a canary alert names the reader, not the patient.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable

from django.utils.translation import gettext as _

from coffre.audit import alerts, chain
from coffre.audit.models import AlertKind, CanaryMark
from coffre.tenancy.actors import Actor
from coffre.vault import context

_AD = context("audit", "canary")
_cache: tuple[float, frozenset[uuid.UUID]] | None = None
CACHE_SECONDS = 30


def clear_cache() -> None:
    global _cache
    _cache = None


def _records() -> list[dict]:
    key = chain.audit_key()
    return [json.loads(key.open(bytes(mark.sealed), _AD)) for mark in CanaryMark.objects.all()]


def canary_ids() -> frozenset[uuid.UUID]:
    global _cache
    if _cache is None or time.monotonic() - _cache[0] > CACHE_SECONDS:
        _cache = (time.monotonic(),
                  frozenset(uuid.UUID(record["patient_id"]) for record in _records()))
    return _cache[1]


def without(records: list, ids: Iterable[uuid.UUID] | None = None) -> list:
    """Drop canaries from what a person is shown (lists, searches, worklists)."""
    canaries = canary_ids() if ids is None else frozenset(ids)
    return [record for record in records if record.id not in canaries]


def check_reads(actor: Actor, patient_ids: Iterable[uuid.UUID]) -> None:
    """One alert per canary read. No patient id on the alert: the alerts table would tell
    a copy which patients are canaries (`coffre canary list` and the breach scan know)."""
    for _canary in set(patient_ids) & canary_ids():
        alerts.raise_alert(actor.lab_id, AlertKind.CANARY, actor.person,
                           _("patient sentinelle lu (canal %(channel)s) : cela n'arrive "
                             "jamais dans le travail normal") % {"channel": actor.channel})


def planted(lab_id: int | None = None) -> list[dict]:
    """The sealed records (for attribution and the DPO), opened in memory."""
    return [r for r in _records() if lab_id is None or r["lab_id"] == lab_id]
