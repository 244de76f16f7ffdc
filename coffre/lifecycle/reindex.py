"""``coffre keys reindex``: move a lab's blind indexes to its newest index key.

Needed after ``coffre keys rotate --index`` or ``--lab`` (a new generation, perhaps
resized for a new planned population), and once on an installation made before per-lab
index keys (its rows use the legacy installation-wide key: a generation is created for
each lab on the first run).

The rows to do are the lab's patients and orders whose ``bi_key`` is not the newest
generation, so a run that stops (kill -9, Ctrl-C, a crash) resumes by running again,
and a row written meanwhile by a process that still used an older generation is found
too. Each batch of patients is one transaction, the rows locked: the patients' index
values (from their decrypted NIR, names, birth date, phone and e-mail) and their
orders' prescriber index (from the decrypted RPPS) are recomputed together. Searches
keep working throughout: while the newest generation is not complete they try every
generation still in use (coffre.keyring.indexes.in_use). Once no row is left, the
generation is marked complete and the older ones are destroyed (their rows' foreign
key refuses it while any row still uses them).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q, QuerySet

from coffre.bulk import update_rows
from coffre.identity.models import Patient
from coffre.identity.registry import index_values, open_columns, patient_key
from coffre.keyring import indexes
from coffre.keyring.models import LabIndexKey
from coffre.labwork.models import Order
from coffre.labwork.orders import prescriber_index
from coffre.labwork.sealing import unseal
from coffre.progress import Advance

BATCH = 200
_INDEXED = ("nir", "birth_name", "used_name", "birth_date", "phone", "email")
_PATIENT_COLUMNS = ["bi_nir", "bi_birth_name_dob", "bi_used_name_dob", "bi_phone",
                    "bi_email", "bi_key"]



class ReindexError(Exception):
    """A re-index that must not start (unknown lab, bad planned population)."""


@dataclass
class ReindexReport:
    lab_id: int
    generation: str
    created: bool
    patients: int = 0
    orders: int = 0
    remaining: int = 0
    seconds: float = 0.0
    finished: bool = False

    def as_row(self) -> dict:
        rate = self.patients / self.seconds if self.seconds else 0.0
        return {"event": "done", "index_key_id": self.generation, "new_key": self.created,
                "patients": self.patients, "orders": self.orders,
                "remaining": self.remaining, "finished": self.finished,
                "seconds": round(self.seconds, 3), "patients_per_second": round(rate)}


def _not_under(model, lab_id: int, target: LabIndexKey) -> QuerySet:
    return model.unscoped.filter(Q(bi_key__isnull=True) | ~Q(bi_key=target.pk), lab_id=lab_id)


def remaining(lab_id: int) -> int:
    """Patients and orders of the lab not yet under its newest generation."""
    target = LabIndexKey.objects.filter(lab_id=lab_id).order_by("-pk").first()
    if target is None:
        return (Patient.unscoped.filter(lab_id=lab_id).count()
                + Order.unscoped.filter(lab_id=lab_id).count())
    return (_not_under(Patient, lab_id, target).count()
            + _not_under(Order, lab_id, target).count())


def target_generation(lab_id: int, planned_patients: int | None = None
                      ) -> tuple[LabIndexKey, bool]:
    """The generation to move the lab to: its newest, or a new one for a lab still on
    the legacy key. (generation, created)"""
    newest = LabIndexKey.objects.filter(lab_id=lab_id).order_by("-pk").first()
    if newest is not None:
        return newest, False
    planned = planned_patients or max(
        indexes.planned_patients_default(),
        Patient.unscoped.filter(lab_id=lab_id).count())
    return indexes.create_index_key(lab_id, planned, complete=False), True


def _reindex_batch(lab_id: int, ids: list[uuid.UUID], target: LabIndexKey,
                   generation: indexes.Generation) -> tuple[int, int]:
    """One locked batch of patients and their orders; (patients, orders) moved."""
    with transaction.atomic():
        rows = list(Patient.unscoped.select_for_update().filter(lab_id=lab_id, id__in=ids)
                    .values_list("id", "data_key", *_INDEXED))
        keys, updates = {}, []
        for pid, wrapped, *blobs in rows:
            values = {}
            if wrapped is not None:
                keys[pid] = patient_key(pid, lab_id, bytes(wrapped))
                values = open_columns(pid, lab_id, wrapped, dict(zip(_INDEXED, blobs,
                                                                     strict=True)))
            row = index_values(values, generation)
            updates.append((pid, [row[column] for column in _PATIENT_COLUMNS[:-1]]
                            + [row["bi_key_id"]]))
        update_rows(Patient, _PATIENT_COLUMNS, updates)
        orders = list(_not_under(Order, lab_id, target).select_for_update()
                      .filter(patient_id__in=[row[0] for row in rows])
                      .values_list("id", "patient_id", "prescriber_rpps"))
        order_updates = []
        for oid, pid, blob in orders:
            key = keys.get(pid)
            rpps = unseal(key, "order", "prescriber_rpps", oid, blob) if key else ""
            order_updates.append((oid, [prescriber_index(generation, rpps), target.pk]))
        update_rows(Order, ["bi_prescriber", "bi_key"], order_updates)
    return len(rows), len(orders)


def _orphan_orders(lab_id: int, target: LabIndexKey, generation: indexes.Generation) -> int:
    """Orders left under an older generation whose patient was already moved (an order
    created meanwhile by a process holding the older generation)."""
    moved = 0
    while True:
        patient_ids = list(_not_under(Order, lab_id, target)
                           .values_list("patient_id", flat=True).distinct()[:BATCH])
        if not patient_ids:
            return moved
        moved += _reindex_batch(lab_id, patient_ids, target, generation)[1]


def _finish(lab_id: int, target: LabIndexKey) -> bool:
    """Mark the generation complete and destroy the older ones, if no row uses them."""
    with transaction.atomic():
        list(LabIndexKey.objects.select_for_update().filter(lab_id=lab_id))
        if remaining(lab_id):
            return False
        LabIndexKey.objects.filter(pk=target.pk).update(complete=True)
        LabIndexKey.objects.filter(lab_id=lab_id).exclude(pk=target.pk).delete()
    indexes.clear_cache()
    return True


def reindex_lab(lab_id: int, *, planned_patients: int | None = None, batch: int = BATCH,
                limit: int | None = None, advance: Advance | None = None) -> ReindexReport:
    """Move every row of the lab to its newest index generation; stop after ``limit``
    patients (tests), leaving the rest for the next run."""
    started = time.perf_counter()
    target, created = target_generation(lab_id, planned_patients)
    generation = indexes.Generation(target.pk, indexes.indexer_of(target))
    report = ReindexReport(lab_id, target.key_id, created)
    while limit is None or report.patients < limit:
        size = batch if limit is None else min(batch, limit - report.patients)
        ids = list(_not_under(Patient, lab_id, target).order_by("id")
                   .values_list("id", flat=True)[:size])
        if not ids:
            break
        patients, orders = _reindex_batch(lab_id, ids, target, generation)
        report.patients += patients
        report.orders += orders
        if advance:
            advance(patients)
    if limit is None:
        report.orders += _orphan_orders(lab_id, target, generation)
        report.finished = _finish(lab_id, target)
    report.remaining = remaining(lab_id)
    report.seconds = time.perf_counter() - started
    return report
