"""Lab workflow fixtures: the people of a lab (one account each) and orders brought to a
given step, so each test says only what it is about."""

from __future__ import annotations

from dataclasses import dataclass

from coffre.labwork import workflow
from coffre.labwork.models import Order, Result
from coffre.labwork.orders import OrderRequest, create_order
from coffre.tenancy.actors import Actor
from tests.conftest import member

PRESCRIBER_RPPS = "10003456786"


@dataclass
class Staff:
    secretary: Actor
    technician: Actor
    biologist: Actor
    other_biologist: Actor
    manager: Actor


def staff_of(lab, suffix: str = "") -> Staff:
    actors = {}
    for name, role in (("secretary", "secretary"), ("technician", "technician"),
                       ("biologist", "biologist"), ("other_biologist", "biologist"),
                       ("manager", "lab_manager")):
        username = f"{name}{suffix}{lab.id}"
        member(username, lab, role)
        actors[name] = Actor(username, lab.id, role, "web")
    return Staff(**actors)


def order_for(actor: Actor, patient_id, *tests: str, urgent: bool = False,
              rpps: str = PRESCRIBER_RPPS) -> Order:
    return create_order(actor, OrderRequest(
        patient_id=patient_id, tests=tests or ("NFS",), prescriber_rpps=rpps,
        prescriber_name="Paul Bernard", clinical_info="Fatigue, bilan annuel",
        urgent=urgent))


def receive_all(actor: Actor, order: Order) -> None:
    for specimen in order.specimens.all():
        workflow.receive(actor, specimen.barcode)


def result(order: Order, code: str) -> Result:
    from coffre.labwork import catalogue

    return order.results.exclude(state="invalidated").get(loinc=catalogue.test(code).loinc)


def enter(actor: Actor, order: Order, **values: str) -> None:
    workflow.enter_results(actor, [workflow.Entry(result(order, code).id, value)
                                   for code, value in values.items()])


def published(staff: Staff, patient_id, rpps: str = PRESCRIBER_RPPS, **values: str) -> Order:
    """An order of these tests, entered, validated by a technician then a biologist,
    and published."""
    order = order_for(staff.secretary, patient_id, *values, rpps=rpps)
    receive_all(staff.secretary, order)
    enter(staff.technician, order, **values)
    ids = list(order.results.exclude(source="calculated").values_list("id", flat=True))
    workflow.validate_technically(staff.technician, ids)
    workflow.validate_biologically(staff.biologist, ids)
    workflow.publish(staff.biologist, order)
    return order
