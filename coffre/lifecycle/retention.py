"""Retention rules, legal holds and the purge.

Rules per lab (``RetentionRule``), defaults when absent (``DEFAULT_YEARS``):

- reports, 10 years from the order's creation: the order goes with its specimens,
  results and critical values (deleted rows; they were sealed under the patient's key);
- genetics, 30 years: an order with a genetics test keeps it that long. The catalogue
  has no genetics test yet (``GENETICS_LOINCS`` is empty): the category waits for them;
- identity, 10 years: a patient with no order left, created that long ago, is erased
  (``erase_patient``: key destroyed, ledger line).

A patient under an active legal hold keeps everything. Canary patients are left alone
(they are traps, not people). ``purge(dry_run=True)`` computes the same lists and
changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from coffre.audit import canaries, log
from coffre.identity.access import PatientNotFound, patients_for
from coffre.identity.models import Patient
from coffre.keyring import services as keyring
from coffre.labwork.models import CriticalValue, Order, Result, Specimen
from coffre.lifecycle.erasure import ErasureRefused, erase_patient
from coffre.lifecycle.holds import active_hold_ids
from coffre.lifecycle.models import DEFAULT_YEARS, Category, LegalHold, RetentionRule
from coffre.tenancy.actors import LabActor, cli_actor
from coffre.tenancy.capabilities import require
from coffre.tenancy.models import Lab
from coffre.vault import context

# LOINC codes of genetics tests (none in the catalogue yet).
GENETICS_LOINCS: frozenset[str] = frozenset()
BATCH = 500


class HoldError(ValueError):
    pass


# --- rules -----------------------------------------------------------------------------

def years_for(lab_id: int) -> dict[str, int]:
    years = {str(c): DEFAULT_YEARS[c] for c in Category}
    years.update(RetentionRule.objects.filter(lab_id=lab_id).values_list("category", "years"))
    return years


def years_before(now: dt.datetime, years: int) -> dt.datetime:
    try:
        return now.replace(year=now.year - years)
    except ValueError:  # 29 February
        return now.replace(year=now.year - years, day=28)


# --- legal holds -------------------------------------------------------------------------

def _hold_ad(hold_id: uuid.UUID) -> bytes:
    return context("legal_hold", "reason", hold_id)


def register_sealed() -> None:
    """The holds' reasons, for `coffre keys rotate --installation legal-hold`."""
    from coffre.keyring.installation import SealedColumn, register

    register(SealedColumn("legal-hold", "lifecycle.LegalHold", "reason",
                          lambda row: _hold_ad(row.pk)))


def _check(actor: LabActor) -> None:
    require(actor, "patient.hold", PermissionError)


def add_hold(actor: LabActor, patient_id: uuid.UUID, reason: str) -> LegalHold:
    _check(actor)
    if not reason.strip():
        raise HoldError("a legal hold needs a reason")
    if not patients_for(actor).filter(id=patient_id).exists():
        raise PatientNotFound("no such patient")
    if active_hold_ids(actor.lab_id, [patient_id]):
        raise HoldError("this patient is already under a legal hold")
    hold_id = uuid.uuid4()
    sealed = keyring.installation_key("legal-hold").seal(reason.strip(), _hold_ad(hold_id))
    with transaction.atomic():
        hold = LegalHold.objects.create(id=hold_id, lab_id=actor.lab_id, patient_id=patient_id,
                                        reason=sealed, created_by=actor.person,
                                        created_at=timezone.now())
        log.record(actor, "hold", [patient_id], purpose=reason)
    return hold


def release_hold(actor: LabActor, patient_id: uuid.UUID) -> int:
    """Release the patient's active hold(s); returns how many (0: there was none)."""
    _check(actor)
    with transaction.atomic():
        released = (LegalHold.objects.filter(lab_id=actor.lab_id, patient_id=patient_id,
                                             released_at__isnull=True)
                    .update(released_at=timezone.now(), released_by=actor.person))
        if released:
            log.record(actor, "hold_release", [patient_id])
    return released


def list_holds(actor: LabActor, *, include_released: bool = False) -> list[dict]:
    """Holds of the actor's lab; the reasons are opened, so the listing is audited."""
    _check(actor)
    holds = LegalHold.objects.filter(lab_id=actor.lab_id).order_by("created_at")
    if not include_released:
        holds = holds.filter(released_at__isnull=True)
    key = keyring.installation_key("legal-hold")
    rows = [{"patient": str(h.patient_id), "reason": key.open(bytes(h.reason), _hold_ad(h.id)),
             "created_by": h.created_by, "created_at": h.created_at.isoformat(),
             "released_at": h.released_at.isoformat() if h.released_at else None}
            for h in holds]
    if rows:
        log.record(actor, "read", [uuid.UUID(r["patient"]) for r in rows], kind="legal_hold")
    return rows


# --- the purge ---------------------------------------------------------------------------

@dataclass
class LabPurge:
    lab_id: int
    orders: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)  # erased (or to erase)
    held: list[str] = field(default_factory=list)  # expired data kept by a legal hold


@dataclass
class PurgeReport:
    dry_run: bool
    now: dt.datetime
    labs: list[LabPurge] = field(default_factory=list)

    @property
    def orders(self) -> int:
        return sum(len(lab.orders) for lab in self.labs)

    @property
    def patients(self) -> int:
        return sum(len(lab.patients) for lab in self.labs)

    def as_dict(self) -> dict:
        return {"dry_run": self.dry_run, "at": self.now.isoformat(),
                "orders": self.orders, "patients": self.patients,
                "held": sum(len(lab.held) for lab in self.labs),
                "labs": [asdict(lab) for lab in self.labs]}


def _expired_orders(lab_id: int, years: dict[str, int], now: dt.datetime
                    ) -> QuerySet[Order]:
    """The lab's orders past their retention."""
    reports_cut = years_before(now, years[Category.REPORTS])
    genetics_cut = years_before(now, years[Category.GENETICS])
    orders = Order.unscoped.filter(lab_id=lab_id, created_at__lt=reports_cut)
    if GENETICS_LOINCS:
        young_genetics = (Result.unscoped.filter(lab_id=lab_id, loinc__in=GENETICS_LOINCS,
                                                 order__created_at__gte=genetics_cut)
                          .values("order_id"))
        orders = orders.exclude(id__in=young_genetics)
    return orders


def _delete_orders(order_ids: list[uuid.UUID]) -> None:
    """Orders with their specimens, results and critical values. A corrected result
    PROTECTs the one it replaces: unlink the versions first."""
    results = Result.unscoped.filter(order_id__in=order_ids)
    results.exclude(replaces=None).update(replaces=None)
    CriticalValue.objects.filter(result__order_id__in=order_ids).delete()
    results.delete()
    Specimen.unscoped.filter(order_id__in=order_ids).delete()
    Order.unscoped.filter(id__in=order_ids).delete()


def _purge_lab(lab_id: int, now: dt.datetime, dry_run: bool) -> LabPurge:
    report = LabPurge(lab_id)
    years = years_for(lab_id)
    actor = cli_actor(lab_id)
    canary = canaries.canary_ids()
    held = active_hold_ids(lab_id)
    expired_orders = _expired_orders(lab_id, years, now)
    expired = [(o, p) for o, p in expired_orders.order_by("created_at")
               .values_list("id", "patient_id") if p not in canary]
    kept_by_hold = {p for _, p in expired if p in held}
    doomed = [(o, p) for o, p in expired if p not in held]
    for start in range(0, len(doomed), BATCH):
        batch = doomed[start:start + BATCH]
        report.orders += [str(o) for o, _ in batch]
        if not dry_run:
            with transaction.atomic():
                _delete_orders([o for o, _ in batch])
                for _, patient_id in batch:  # one audit entry per deleted order
                    log.record(actor, "purge", [patient_id], kind="order")

    # Patients old enough with no order surviving this purge (the same query before and
    # after the deletions, so a dry run lists what the real run erases).
    surviving = (Order.unscoped.filter(lab_id=lab_id)
                 .exclude(id__in=expired_orders.values("id")).values("patient_id"))
    candidates = (Patient.unscoped.filter(
        lab_id=lab_id, data_key__isnull=False,
        created_at__lt=years_before(now, years[Category.IDENTITY]))
        .exclude(id__in=surviving).order_by("created_at").values_list("id", flat=True))
    for patient_id in list(candidates):
        if patient_id in canary:
            continue
        if patient_id in held:
            kept_by_hold.add(patient_id)
            continue
        if dry_run:
            report.patients.append(str(patient_id))
            continue
        try:
            erase_patient(actor, patient_id, "retention period of the identity expired",
                          cause="retention")
        except (PatientNotFound, ErasureRefused):
            continue  # erased or held meanwhile
        log.record(actor, "purge", [patient_id], kind="identity")
        report.patients.append(str(patient_id))
    report.held = sorted(str(p) for p in kept_by_hold)
    return report


def purge(lab_id: int | None = None, *, dry_run: bool, now: dt.datetime | None = None
          ) -> PurgeReport:
    """Delete expired orders and erase expired patients of one lab (or every lab)."""
    now = now or timezone.now()
    labs = [lab_id] if lab_id is not None else list(
        Lab.objects.order_by("id").values_list("id", flat=True))
    report = PurgeReport(dry_run=dry_run, now=now)
    for lab in labs:
        report.labs.append(_purge_lab(lab, now, dry_run))
    return report
