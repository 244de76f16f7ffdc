"""Erasure of a patient by destroying their data key (crypto-shredding).

The patient's data key seals their identity and, through coffre.labwork.sealing, their
orders, specimens, results and critical values: once the wrapped key is NULL none of it
opens. The row stays (orders point at it) but every blind index gets a fresh random
value, so no search finds it, and the portal account and activation codes are deleted.

Order of the steps: the database changes and the audit entry in one transaction, then,
still inside it, the ledger line (written and fsynced) before the commit. If the commit
then fails, the ledger names an erasure that did not happen: re-applying it erases the
patient again, which is what was asked. The other order could lose an erasure that did
happen when a backup older than it is restored.
"""

from __future__ import annotations

import uuid

from django.contrib.auth import get_user_model
from django.db import transaction

from coffre.audit import log
from coffre.identity.access import PatientNotFound, patients_for
from coffre.identity.models import Patient
from coffre.identity.registry import index_values
from coffre.keyring import indexes
from coffre.lifecycle import ledger
from coffre.lifecycle.holds import active_hold_ids
from coffre.tenancy.actors import LabActor, cli_actor
from coffre.tenancy.capabilities import require

MIN_REASON = 5


class ErasureRefused(PermissionError):
    pass


def _parse(patient_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return patient_id if isinstance(patient_id, uuid.UUID) else uuid.UUID(str(patient_id))
    except ValueError:
        raise PatientNotFound("no such patient") from None


def erase_patient(actor: LabActor, patient_id: uuid.UUID | str, reason: str, *,
                  cause: str = "request") -> None:
    """Erase a patient of the actor's lab: all or nothing, recorded in the ledger and the
    audit log. PatientNotFound for another lab's patient, an unknown or an erased one;
    ErasureRefused for a role that may not erase, no reason, or an active legal hold."""
    require(actor, "patient.erase", ErasureRefused)
    if len(reason.strip()) < MIN_REASON:
        raise ErasureRefused(f"an erasure needs a reason of at least {MIN_REASON} characters")
    pid = _parse(patient_id)
    with transaction.atomic():
        patient = patients_for(actor).select_for_update().filter(id=pid).first()
        if patient is None:
            raise PatientNotFound("no such patient")
        if pid in active_hold_ids(actor.lab_id, [pid]):
            raise ErasureRefused("this patient is under a legal hold: release it first")
        _shred(patient.id, patient.lab_id)
        log.record(actor, "erase", [pid], purpose=reason)
        ledger.append(pid, patient.lab_id, cause)  # before the commit: see the module doc


def _shred(patient_id: uuid.UUID, lab_id: int) -> None:
    """The database part of an erasure (inside the caller's transaction)."""
    from coffre.portal.models import ActivationCode, PatientAccount

    Patient.unscoped.filter(id=patient_id).update(
        data_key=None, **index_values({}, indexes.current(lab_id)))
    users = list(PatientAccount.objects.filter(patient_id=patient_id)
                 .values_list("user_id", flat=True))
    PatientAccount.objects.filter(patient_id=patient_id).delete()
    if users:
        get_user_model().objects.filter(id__in=users).delete()
    ActivationCode.objects.filter(patient_id=patient_id).delete()


def reapply_ledger() -> int:
    """After a restore: erase again every patient of the ledger who has a data key in this
    database, without new ledger lines. Returns how many were re-erased. Raises
    ledger.LedgerError (nothing erased) if the ledger does not verify."""
    count = 0
    for entry in ledger.entries():
        with transaction.atomic():
            patient = (Patient.unscoped.select_for_update()
                       .filter(id=entry.patient_id, data_key__isnull=False).first())
            if patient is None:
                continue
            _shred(patient.id, patient.lab_id)
            log.record(cli_actor(patient.lab_id), "erase", [patient.id], outcome="reapplied",
                       purpose=f"erasure ledger line {entry.seq}")
        count += 1
    return count
