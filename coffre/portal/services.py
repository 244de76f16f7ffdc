"""What a portal account may read: its own patient's published results (a patient), or
the published results of orders it prescribed (a prescriber). The patient id and the
RPPS come from the account, never from the request; an order that is not theirs is
"not found", like an order that does not exist. Every read is logged under the
account's name with the role "patient" or "prescriber"."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.utils import timezone

from coffre.audit.history import HistoryEntry, patient_history
from coffre.labwork import catalogue
from coffre.labwork.access import (
    OrderNotFound,
    OrderView,
    Point,
    access_order,
    parse_order_id,
    reference_for,
    result_series,
    tests_with_history,
)
from coffre.labwork.models import Order, ResultState
from coffre.labwork.reports import report_pdf
from coffre.labwork.scope import orders_for
from coffre.labwork.workflow import demographics
from coffre.portal.activation import portal_actor
from coffre.portal.models import PatientAccount
from coffre.tenancy.actors import LabActor
from coffre.tenancy.models import Lab


@dataclass(frozen=True)
class PortalOrder:
    order: Order
    lab: Lab
    published: int


def patient_account_of(user) -> PatientAccount | None:
    """The patient account a login belongs to, if any."""
    return PatientAccount.objects.select_related("user").filter(user=user).first()


def actor_for(account: PatientAccount) -> LabActor:
    return portal_actor(account.user.username, account.lab_id)


def published_orders(account: PatientAccount) -> list[PortalOrder]:
    """The patient's orders with at least one published result, newest first. Numbers,
    dates and counts only: nothing is opened, nothing logged."""
    actor = actor_for(account)
    orders = list(orders_for(actor).filter(patient_id=account.patient_id,
                                           results__state=ResultState.PUBLISHED)
                  .distinct().order_by("-created_at"))
    labs = Lab.objects.in_bulk({o.lab_id for o in orders})
    counts: dict[uuid.UUID, int] = {}
    for order_id in (Order.unscoped.filter(id__in=[o.id for o in orders])
                     .filter(results__state=ResultState.PUBLISHED)
                     .values_list("id", flat=True)):
        counts[order_id] = counts.get(order_id, 0) + 1
    return [PortalOrder(o, labs[o.lab_id], counts.get(o.id, 0)) for o in orders]


def _access_own_order(account: PatientAccount, order_id: uuid.UUID | str) -> uuid.UUID:
    """An order of the account's patient with a published result; OrderNotFound (a
    RowNotFound) else. Scoped to the account, not to a lab."""
    oid = parse_order_id(order_id)
    mine = orders_for(actor_for(account)).filter(
        id=oid, patient_id=account.patient_id,
        results__state=ResultState.PUBLISHED).exists()
    if not mine:
        raise OrderNotFound("no such order")
    return oid


def patient_order(account: PatientAccount, order_id: uuid.UUID | str) -> OrderView:
    return access_order(actor_for(account), _access_own_order(account, order_id),
                        published_only=True)


def patient_report(account: PatientAccount, order_id: uuid.UUID | str) -> tuple[str, bytes]:
    return report_pdf(actor_for(account), _access_own_order(account, order_id), published_only=True)


def patient_tests(account: PatientAccount) -> list[catalogue.TestDef]:
    return tests_with_history(actor_for(account), account.patient_id)


def patient_series(account: PatientAccount, loinc: str) -> list[Point]:
    return result_series(actor_for(account), account.patient_id, loinc)


def reference_today(account: PatientAccount, test: catalogue.TestDef
                    ) -> catalogue.Range | None:
    """The range that applies to the patient today (for the chart's band). Sex and birth
    date are opened for the rule, not shown."""
    person = demographics([account.patient_id]).get(account.patient_id)
    if person is None:
        return None
    return reference_for(test, person, timezone.now())


def access_log(account: PatientAccount) -> list[HistoryEntry]:
    """Who opened this patient's record and when: the patient's right to know."""
    return patient_history(account.patient_id, limit=200)
