"""Creating an order: its number, its specimens (one per specimen type, each with a
barcode) and one registered result per test, the prescriber and clinical information
sealed under the patient's key."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy

from coffre.audit import log
from coffre.identity import french
from coffre.identity.access import PatientNotFound, patients_for
from coffre.keyring import indexes
from coffre.labwork import catalogue
from coffre.labwork.models import Order, OrderCounter, Result, Specimen
from coffre.labwork.sealing import PatientKeys, bind_result, seal_columns
from coffre.refusals import Refusal, reason
from coffre.tenancy.actors import Actor, LabActor
from coffre.tenancy.capabilities import require
from coffre.vault import Key


class InvalidOrder(Refusal, ValueError):
    """The order cannot be created; the reason names the problem, never a value."""


UNKNOWN_TEST = reason("order.unknown_test", gettext_lazy("Code d'analyse inconnu : %(code)s"))
NO_TEST = reason("order.no_test", gettext_lazy("Choisissez au moins une analyse ou un bilan."))
PRESCRIBER_RPPS = reason("order.prescriber_rpps", gettext_lazy(
    "RPPS du prescripteur invalide (11 chiffres, clé de Luhn)."))
CLINICAL_INFO_TOO_LONG = reason("order.clinical_info_too_long", gettext_lazy(
    "Renseignements cliniques trop longs."))
DAY_FULL = reason("order.day_full", gettext_lazy("Plus de 9999 demandes en un jour."))


@dataclass(frozen=True)
class OrderRequest:
    patient_id: uuid.UUID
    tests: tuple[str, ...]          # LOINC, local or panel codes
    prescriber_rpps: str = ""
    prescriber_name: str = ""
    clinical_info: str = ""
    urgent: bool = False


MAX_CLINICAL_INFO = 2000


def prescriber_index(generation: indexes.Generation, rpps: str) -> int:
    """The order's prescriber blind index under one of the lab's index keys (a random
    value when there is no RPPS, so that "no prescriber" is not visible either). Its
    truncation: coffre.keyring.indexes.PRESCRIBER_BITS."""
    if not rpps:
        return secrets.randbelow(2 ** generation.bits_of("prescriber"))
    return generation.compute("prescriber", rpps)


def prescriber_filter(lab_ids: Iterable[int], rpps: str, prefix: str = "") -> Q:
    """Orders of these labs that may have been prescribed by ``rpps`` (each lab's index
    keys are its own): candidates, to be confirmed by decrypting the RPPS. ``prefix``
    reaches the order from another model ("order__" from a result)."""
    found = Q(**{f"{prefix}pk__in": []})
    for lab_id in lab_ids:
        for generation in indexes.in_use(lab_id):
            key = (Q(**{f"{prefix}bi_key__isnull": True}) if generation.bi_key is None
                   else Q(**{f"{prefix}bi_key": generation.bi_key}))
            found |= Q(**{f"{prefix}lab_id": lab_id}) & key & Q(**{
                f"{prefix}bi_prescriber": prescriber_index(generation, rpps)})
    return found


def user_id(actor: Actor) -> int | None:
    """The account behind a web or API actor (None for the CLI and analysers)."""
    if actor.channel == "cli":
        return None
    return (get_user_model().objects.filter(username=actor.person)
            .values_list("id", flat=True).first())


def next_number(lab_id: int, day: dt.date) -> str:
    """YYMMDDnnnn, unique per lab; call inside a transaction (the counter row is
    locked until it ends, so two receptions never share a number)."""
    counter, _ = OrderCounter.objects.get_or_create(lab_id=lab_id, day=day)
    OrderCounter.objects.filter(pk=counter.pk).update(last=F("last") + 1)
    last = OrderCounter.objects.filter(pk=counter.pk).values_list("last", flat=True).get()
    if last > 9999:
        raise InvalidOrder(DAY_FULL)
    return f"{day:%y%m%d}{last:04d}"


def _clean(request: OrderRequest) -> tuple[list[str], str]:
    try:
        loincs = catalogue.expand(request.tests)
    except catalogue.UnknownTest as exc:
        raise InvalidOrder(UNKNOWN_TEST, code=exc.test_code.strip()) from None
    if not loincs:
        raise InvalidOrder(NO_TEST)
    rpps = ""
    if request.prescriber_rpps.strip():
        try:
            rpps = french.clean_rpps(request.prescriber_rpps)
        except french.InvalidValue:
            raise InvalidOrder(PRESCRIBER_RPPS) from None
    if len(request.clinical_info) > MAX_CLINICAL_INFO:
        raise InvalidOrder(CLINICAL_INFO_TOO_LONG)
    return loincs, rpps


def create_order(actor: LabActor, request: OrderRequest, *,
                 now: dt.datetime | None = None) -> Order:
    """Register an order for a patient of the actor's lab, all or nothing."""
    require(actor, "order.create")
    loincs, rpps = _clean(request)
    if not patients_for(actor).filter(id=request.patient_id).exists():
        raise PatientNotFound("no such patient")
    now = now or timezone.now()
    by = user_id(actor)
    with transaction.atomic():
        # The patient's row lock orders this with a re-encryption of the patient
        # (coffre.lifecycle.reencrypt), so the order is sealed under the key that stays.
        list(patients_for(actor).select_for_update().filter(id=request.patient_id)
             .values_list("id", flat=True))
        key = PatientKeys(actor.lab_id)[request.patient_id]
        generation = indexes.current(actor.lab_id)
        order_id = uuid.uuid4()
        order = Order.unscoped.create(
            id=order_id, lab_id=actor.lab_id, patient_id=request.patient_id,
            number=next_number(actor.lab_id, timezone.localdate(now)),
            urgent=request.urgent, created_at=now, created_by_id=by,
            bi_prescriber=prescriber_index(generation, rpps), bi_key_id=generation.bi_key,
            **seal_columns(key, "order", order_id, {
                "prescriber_rpps": rpps,
                "prescriber_name": " ".join(request.prescriber_name.split())[:200],
                "clinical_info": request.clinical_info.strip()}))
        _add_specimens_and_results(order, loincs, key)
        log.record(actor, "create", [request.patient_id], kind="order")
    return order


def _add_specimens_and_results(order: Order, loincs: Iterable[str], key: Key) -> None:
    by_type: dict[str, Specimen] = {}
    results = []
    for position, loinc in enumerate(loincs):
        test = catalogue.test(loinc)
        specimen = by_type.get(test.specimen)
        if specimen is None:
            specimen_id = uuid.uuid4()
            specimen = Specimen.unscoped.create(
                id=specimen_id, lab_id=order.lab_id, order=order, specimen_type=test.specimen,
                barcode=f"{order.number}{len(by_type) + 1:02d}",
                **seal_columns(key, "specimen", specimen_id, {}))
            by_type[test.specimen] = specimen
        result_id = uuid.uuid4()
        result = Result(id=result_id, lab_id=order.lab_id, patient_id=order.patient_id,
                        order=order, specimen=specimen, loinc=loinc, position=position,
                        source="calculated" if test.calculated else "manual",
                        **seal_columns(key, "result", result_id, {}))
        bind_result(key, result)
        results.append(result)
    Result.unscoped.bulk_create(results)
