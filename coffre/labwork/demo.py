"""Demo lab activity: orders in every state for the demo labs' synthetic patients.

Everything goes through the workflow services (coffre.labwork.orders, coffre.labwork.workflow),
acting as the demo staff accounts with explicit times, so the staff pages have content:
orders to receive, benches waiting for entry, results in analysis, a validation queue
(with a delta and an unacknowledged critical potassium), published history over the
previous months (charts with several points) and one amended report.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils import timezone

from coffre.labwork import catalogue, workflow
from coffre.labwork.models import Order, Result, ResultState
from coffre.labwork.orders import OrderRequest, create_order
from coffre.tenancy.actors import LabActor

S = ResultState
# The demo accounts of a lab: the user name is f"demo{n}{suffix}", one person each.
DEMO_STAFF: tuple[tuple[str, str], ...] = (
    ("", "secretary"),
    ("-tech", "technician"),
    ("-bio", "biologist"),
    ("-bio2", "biologist"),
    ("-resp", "lab_manager"),
    ("-dpo", "dpo"),
)
PRESCRIBERS = (("10003456786", "Paul Bernard"), ("10000000025", "Hélène Roux"))
HISTORY_MONTHS = 5


@dataclass(frozen=True)
class DemoStaff:
    secretary: LabActor
    technician: LabActor
    biologist: LabActor
    other_biologist: LabActor
    manager: LabActor
    dpo: LabActor


def demo_usernames(number: int) -> list[tuple[str, str]]:
    """(user name, role) of lab number ``number``'s demo accounts."""
    return [(f"demo{number}{suffix}", role) for suffix, role in DEMO_STAFF]


def staff_for(number: int, lab_id: int) -> DemoStaff:
    actors = [LabActor(username, lab_id, role, "web") for username, role in
              demo_usernames(number)]
    return DemoStaff(*actors)


class _Lab:
    """One demo lab's activity, with a deterministic random source."""

    def __init__(self, staff: DemoStaff, patients: Sequence[uuid.UUID], now: dt.datetime,
                 seed: int) -> None:
        self.staff = staff
        self.patients = list(patients)
        self.now = now
        self.rng = random.Random(seed)  # noqa: S311 - synthetic data, not security
        self.people = workflow.demographics(self.patients)
        self.orders = 0

    def patient(self, index: int) -> uuid.UUID:
        return self.patients[index % len(self.patients)]

    # -- steps --------------------------------------------------------------------

    def order(self, index: int, tests: str, at: dt.datetime, urgent: bool = False) -> Order:
        rpps, name = PRESCRIBERS[index % len(PRESCRIBERS)]
        self.orders += 1
        return create_order(self.staff.secretary, OrderRequest(
            patient_id=self.patient(index), tests=tuple(tests.split()), prescriber_rpps=rpps,
            prescriber_name=name, clinical_info="Bilan de suivi", urgent=urgent), now=at)

    def receive(self, order: Order, at: dt.datetime) -> None:
        for specimen in order.specimens.order_by("barcode"):
            workflow.receive(self.staff.secretary, specimen.barcode, at=at)

    def enter(self, order: Order, at: dt.datetime, **fixed: str) -> list[Result]:
        person = self.people[order.patient_id]
        age = person.age_days(at)
        rows = [r for r in order.results.filter(state__in=[S.RECEIVED, S.IN_ANALYSIS])
                if r.source != "calculated"]
        entries = []
        for row in rows:
            test = catalogue.test(row.loinc)
            value = fixed.get(test.code) or self.value(test, person.sex, age)
            entries.append(workflow.Entry(row.id, value))
        workflow.enter_results(self.staff.technician, entries, source="analyser", at=at)
        return rows

    def validate_technically(self, rows: list[Result], at: dt.datetime) -> None:
        workflow.validate_technically(self.staff.technician, [r.id for r in rows], at=at)

    def publish(self, order: Order, rows: list[Result], at: dt.datetime) -> None:
        workflow.validate_biologically(self.staff.biologist, [r.id for r in rows], at=at)
        workflow.publish(self.staff.biologist, order, at=at + dt.timedelta(minutes=5))

    def value(self, test: catalogue.TestDef, sex: str, age_days: int) -> str:
        """A plausible value, mostly inside the reference range."""
        if test.kind == "coded":
            return test.choices[0]
        if test.kind != "numeric":
            return "RAS"
        rng = catalogue.reference_range(test, sex, age_days)
        low, high = (rng.low, rng.high) if rng else (None, None)
        if low is None and high is None:
            low, high = 1.0, 10.0
        elif low is None:
            low, high = high * 0.2, high * 0.8
        elif high is None:
            low, high = low * 1.1, low * 1.8
        span = high - low
        number = self.rng.uniform(low + 0.1 * span, high - 0.1 * span)
        if self.rng.random() < 0.08:  # now and then an abnormal value
            number = high + 0.15 * span
        return f"{number:.{test.decimals}f}"

    # -- stories ------------------------------------------------------------------

    def full(self, index: int, tests: str, at: dt.datetime, **fixed: str) -> Order:
        """An order taken all the way to publication."""
        order = self.order(index, tests, at)
        self.receive(order, at + dt.timedelta(minutes=50))
        rows = self.enter(order, at + dt.timedelta(hours=2), **fixed)
        self.validate_technically(rows, at + dt.timedelta(hours=2, minutes=30))
        self.publish(order, rows, at + dt.timedelta(hours=4))
        return order

    def history(self, index: int, hb: float) -> None:
        """Monthly published checks over the previous months: a chart with points."""
        for months in range(HISTORY_MONTHS, 0, -1):
            at = self.now - dt.timedelta(days=30 * months + self.rng.randint(0, 4),
                                         hours=self.rng.randint(2, 5))
            self.full(index, "NFS IONO CREA", at.replace(hour=8, minute=10),
                      HB=f"{hb + self.rng.uniform(-0.3, 0.3):.1f}",
                      K=f"{self.rng.uniform(3.9, 4.6):.1f}")

    def today(self, hours_ago: float) -> dt.datetime:
        return self.now - dt.timedelta(hours=hours_ago)

    def run(self) -> int:
        staff = self.staff
        # Published history, then today's results that the biologist will compare to it.
        self.history(0, hb=13.6)
        self.history(1, hb=12.9)
        self.full(11, "BILAN_HEPATIQUE BILAN_LIPIDIQUE", self.now - dt.timedelta(days=3,
                                                                                 hours=5))
        # An amended report: a published haemoglobin corrected, validated again, re-released.
        at = self.now - dt.timedelta(days=10, hours=3)
        amended = self.full(2, "NFS", at, HB="9.1")
        hb = amended.results.get(loinc=catalogue.test("HB").loinc, state=S.PUBLISHED)
        new = workflow.invalidate(staff.biologist, hb.id, "12.1", "Erreur de transcription",
                                  at=at + dt.timedelta(days=1))
        workflow.validate_biologically(staff.other_biologist, [new.id],
                                       at=at + dt.timedelta(days=1, minutes=10))
        workflow.publish(staff.other_biologist, amended, at=at + dt.timedelta(days=1,
                                                                              minutes=15))
        # Registered: waiting for the specimens.
        self.order(3, "NFS BILAN_LIPIDIQUE", self.today(1.5))
        self.order(4, "THYROIDE", self.today(0.5))
        self.order(12, "HEMOSTASE", self.today(0.7), urgent=True)
        # Received, waiting for entry on the HEMATO and BIOCHIMIE benches.
        for index, tests, hours, urgent in ((5, "NFS", 3.0, False),
                                            (6, "IONO CREA", 2.5, False),
                                            (7, "NFS IONO", 2.0, True)):
            order = self.order(index, tests, self.today(hours + 1), urgent=urgent)
            self.receive(order, self.today(hours))
        # In analysis: values in, not validated yet.
        for index, tests in ((8, "NFS"), (9, "IONO GLY")):
            order = self.order(index, tests, self.today(5))
            self.receive(order, self.today(4.5))
            self.enter(order, self.today(3.5))
        # Technically validated, waiting for the biologist: a delta, a critical, a usual one.
        for index, tests, fixed in ((0, "NFS", {"HB": "9.4"}),
                                    (1, "IONO CREA", {"K": "6.9"}),
                                    (10, "NFS IONO", {})):
            order = self.order(index, tests, self.today(6))
            self.receive(order, self.today(5.5))
            rows = self.enter(order, self.today(4), **fixed)
            self.validate_technically(rows, self.today(3.8))
        return self.orders


def load_lab_demo(number: int, lab_id: int, patient_ids: Sequence[uuid.UUID], *,
                  now: dt.datetime | None = None) -> int:
    """Orders in every state for one demo lab (once: nothing if its demo secretary has
    registered orders already).
    Returns the number of orders created."""
    staff = staff_for(number, lab_id)
    if not patient_ids or Order.unscoped.filter(
            lab_id=lab_id, created_by__username=staff.secretary.person).exists():
        return 0
    return _Lab(staff, patient_ids, now or timezone.now(), seed=number).run()
