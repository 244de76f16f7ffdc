"""The prescriber portal: a doctor (RPPS) sees the published results of the orders they
prescribed, in any lab of the installation, and nothing else: the previous values beside
each result come from that doctor's own earlier orders of the patient too.

Orders carry a blind index of the prescriber's RPPS (coffre.labwork.orders.prescriber_index,
truncated so that several doctors share each value); candidates are confirmed by
opening the sealed RPPS. Each order and patient shown is logged as a read by the
prescriber, in the order's lab. Accounts need the staff second factor: a doctor reads
many patients' results.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import overload

from django.contrib.auth import get_user_model
from django.db import transaction

from coffre.accounts import temporary
from coffre.audit import detection
from coffre.identity import french
from coffre.identity.access import access_patient
from coffre.identity.registry import PatientRecord
from coffre.labwork.access import OrderNotFound, OrderView, access_order, parse_order_id
from coffre.labwork.models import Order, ResultState
from coffre.labwork.orders import prescriber_filter
from coffre.labwork.reports import report_pdf
from coffre.labwork.sealing import PatientKeys, unseal
from coffre.portal.models import PrescriberAccount
from coffre.tenancy.actors import Actor, LabActor, cli_actor
from coffre.tenancy.capabilities import PRESCRIBER
from coffre.tenancy.models import Lab

LIST_LIMIT = 50  # newest orders on the list page: each line reads a patient's identity


class InvalidPrescriber(ValueError):
    pass


def prescriber_account_of(user) -> PrescriberAccount | None:
    """The prescriber account a login belongs to, if any."""
    return PrescriberAccount.objects.select_related("user").filter(user=user).first()


@overload
def prescriber_actor(account: PrescriberAccount, lab_id: int) -> LabActor: ...


@overload
def prescriber_actor(account: PrescriberAccount, lab_id: None) -> Actor: ...


def prescriber_actor(account: PrescriberAccount, lab_id: int | None) -> Actor:
    """The prescriber, for the lab of an order (a LabActor) or for none (their lock)."""
    return Actor(person=account.user.username, lab_id=lab_id, role=PRESCRIBER,
                 channel="portal")


def add_prescriber(rpps: str, username: str) -> tuple[PrescriberAccount, str]:
    """An account for a doctor, with a temporary password shown once; at the first login
    the doctor replaces it, then enrolls the second factor."""
    try:
        rpps = french.clean_rpps(rpps)
    except french.InvalidValue as exc:
        raise InvalidPrescriber(str(exc)) from None
    username = username.strip().lower()
    if not username or get_user_model().objects.filter(username=username).exists():
        raise InvalidPrescriber("this login is empty or taken")
    if PrescriberAccount.objects.filter(rpps=rpps).exists():
        raise InvalidPrescriber("this RPPS already has an account")
    password = "-".join(secrets.token_urlsafe(6) for _ in range(4))
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, password=password)
        temporary.mark(user, issued_by=cli_actor(None).person)
        account = PrescriberAccount.objects.create(user=user, rpps=rpps)
    return account, password


def _candidates(account: PrescriberAccount):
    detection.ensure_not_locked(prescriber_actor(account, None))
    return (Order.unscoped.filter(prescriber_filter(Lab.objects.values_list("id", flat=True),
                                                    account.rpps),
                                  patient__data_key__isnull=False,
                                  results__state=ResultState.PUBLISHED)
            .distinct().order_by("-created_at"))


def _is_theirs(account: PrescriberAccount, order: Order, keys: dict[int, PatientKeys]) -> bool:
    """The truncated index gathers a few doctors' orders: keep this doctor's."""
    lab_keys = keys.setdefault(order.lab_id, PatientKeys(order.lab_id))
    key = lab_keys[order.patient_id]
    return unseal(key, "order", "prescriber_rpps", order.id,
                  order.prescriber_rpps) == account.rpps


@dataclass(frozen=True)
class PrescribedOrder:
    order: Order
    lab: Lab
    patient: PatientRecord


def prescribed_orders(account: PrescriberAccount) -> list[PrescribedOrder]:
    """The newest orders this doctor prescribed that have published results, with the
    patient's name and birth date (each logged as a read)."""
    keys: dict[int, PatientKeys] = {}
    found = []
    for order in _candidates(account).iterator(chunk_size=200):
        if _is_theirs(account, order, keys):
            found.append(order)
            if len(found) == LIST_LIMIT:
                break
    labs = Lab.objects.in_bulk({o.lab_id for o in found})
    return [PrescribedOrder(order, labs[order.lab_id], access_patient(
        prescriber_actor(account, order.lab_id), order.patient_id,
        ["birth_name", "used_name", "first_names", "sex", "birth_date"]))
        for order in found]


def _access_own_order(account: PrescriberAccount, order_id: uuid.UUID | str) -> Order:
    """An order this doctor prescribed; OrderNotFound (a RowNotFound) else. Scoped to
    the account, across its labs."""
    oid = parse_order_id(order_id)
    order = _candidates(account).filter(id=oid).first()
    if order is None or not _is_theirs(account, order, {}):
        raise OrderNotFound("no such order")
    return order


def prescribed_order(account: PrescriberAccount, order_id: uuid.UUID | str) -> OrderView:
    """One of the doctor's orders, published results only; previous values come from
    this doctor's own orders of the patient, never from another doctor's."""
    order = _access_own_order(account, order_id)
    return access_order(prescriber_actor(account, order.lab_id), order.id,
                        published_only=True, prescribed_by=account.rpps)


def prescribed_report(account: PrescriberAccount, order_id: uuid.UUID | str
                      ) -> tuple[str, bytes]:
    order = _access_own_order(account, order_id)
    return report_pdf(prescriber_actor(account, order.lab_id), order.id, published_only=True,
                      prescribed_by=account.rpps)
