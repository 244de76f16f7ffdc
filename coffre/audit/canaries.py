"""Canary patients: synthetic patients planted in each lab, which no one should ever
read. A read raises an immediate alert; their values, kept sealed, let a leaked file
be attributed to the lab (the breach issue matches them).

Nothing in the database says which patients are canaries: each mark is a sealed record
(patient id, lab, values) under the installation's audit key; the patients are ordinary
sealed rows, created and logged exactly as an import creates patients (so a copy shows
a small import, like any other); a canary alert names the reader, not the patient.
"""

from __future__ import annotations

import json
import random
import secrets
import time
import uuid
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from coffre.audit import alerts, chain, log
from coffre.audit.models import AlertKind, CanaryMark
from coffre.bulk import bulk_insert
from coffre.identity import synthetic
from coffre.identity.models import Patient
from coffre.identity.registry import clean_values, sealed_row
from coffre.labs.tenancy import Actor
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


def plant(lab_id: int, count: int, actor: Actor) -> int:
    """Add ``count`` canaries to a lab, with values no real patient of it shares."""
    rng = random.Random(secrets.randbits(64))  # noqa: S311 - only picks synthetic rows
    key = chain.audit_key()
    rows, marks = [], []
    for row in synthetic.generate_patients(count, seed=rng.randrange(10**9),
                                           start_index=rng.randrange(10**6)):
        row["birth_name"] = _unique_name(rng)
        values, errors = clean_values(row)
        if errors:  # synthetic rows are valid; a canary must never be half-made
            raise RuntimeError(f"generated canary failed validation: {errors[0]}")
        sealed = sealed_row(lab_id, values)
        rows.append(sealed)
        record = {"patient_id": str(sealed["id"]), "lab_id": lab_id,
                  "planted_at": timezone.now().isoformat(), "values": values}
        marks.append(CanaryMark(lab_id=lab_id, sealed=key.seal(json.dumps(record), _AD)))
    with transaction.atomic():
        bulk_insert(Patient, rows)
        CanaryMark.objects.bulk_create(marks)
        log.record(actor, "create", [row["id"] for row in rows])
    clear_cache()
    return count


def _unique_name(rng: random.Random) -> str:
    """A plausible Breton-looking surname with a random part, so it is unique."""
    first = rng.choice(("KER", "LE ", "TRE", "PLOU", "GUI", "LAN", "PEN"))
    middle = "".join(rng.choice("BDGKLMNRSTV") + rng.choice("AEIOU") for _ in range(3))
    return (first + middle).title()


def planted(lab_id: int | None = None) -> list[dict]:
    """The sealed records (for attribution and the DPO), opened in memory."""
    return [r for r in _records() if lab_id is None or r["lab_id"] == lab_id]
