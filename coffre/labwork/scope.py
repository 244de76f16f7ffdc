"""Every lab query starts here: the actor's lab, never an erased patient, nothing for
an account locked by the mass-reading detection (as coffre.identity.access does for
patients). Querysets only: no value is read, nothing is logged."""

from __future__ import annotations

from django.db.models import QuerySet

from coffre.audit import detection
from coffre.labwork.models import Order, Result, Specimen
from coffre.tenancy.actors import LabActor


def orders_for(actor: LabActor) -> QuerySet[Order]:
    detection.ensure_not_locked(actor)
    return Order.unscoped.filter(lab_id=actor.lab_id, patient__data_key__isnull=False)


def specimens_for(actor: LabActor) -> QuerySet[Specimen]:
    detection.ensure_not_locked(actor)
    return Specimen.unscoped.filter(lab_id=actor.lab_id,
                                    order__patient__data_key__isnull=False)


def results_for(actor: LabActor) -> QuerySet[Result]:
    detection.ensure_not_locked(actor)
    return Result.unscoped.filter(lab_id=actor.lab_id, patient__data_key__isnull=False)
