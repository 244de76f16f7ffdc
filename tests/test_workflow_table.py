"""The lab workflow's steps are one table (coffre.labwork.workflow.TRANSITIONS), and three
things agree with it: docs/lab-workflow.md shows the same table; for every role and
every state, the order page offers exactly the buttons ``workflow.allowed`` allows; and
each step refuses exactly where ``allowed`` says no (the page never offers a button the
workflow refuses, nor hides one it would take)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.template.loader import render_to_string

from coffre.accounts.models import Role
from coffre.labwork import access, workflow
from coffre.labwork.models import Order, Result, ResultState, SpecimenState
from coffre.labwork.views import order_page_context
from coffre.tenancy.actors import Actor
from coffre.tenancy.capabilities import NotAllowed, roles
from tests.conftest import member
from tests.lab_helpers import order_for, result

S = ResultState
DOC = Path(__file__).resolve().parents[1] / "docs" / "lab-workflow.md"
SUBJECT_STATES = {"result": list(ResultState), "specimen": list(SpecimenState)}


# -- the doc's table -------------------------------------------------------------------

def doc_rows() -> list[dict[str, str]]:
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines)
                 if line.startswith("| step | function | capability |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")),
                             strict=True)))
    return rows


def words(cell: str) -> set[str]:
    return {w.strip() for w in cell.split(",") if w.strip()}


def test_the_docs_table_is_the_codes_table():
    documented = {row["step"]: row for row in doc_rows()}
    assert list(documented) == list(workflow.TRANSITIONS)
    for step, t in workflow.TRANSITIONS.items():
        row = documented[step]
        every = set(SUBJECT_STATES[t.subject])
        assert row["function"] == f"`workflow.{t.function}`", step
        assert row["capability"] == f"`{t.capability}`", step
        assert words(row["who"]) == set(roles(t.capability)), step
        assert row["on"] == t.subject, step
        assert (every if row["from"] == "any" else words(row["from"])) == set(t.sources), step
        assert row["to"] == (t.target or "(unchanged)"), step
        assert row["reason (min. characters)"] == (str(t.reason) if t.reason else "—"), step
        assert row["typed only"] == ("yes" if t.typed_only else "no"), step


def test_every_step_is_a_function_of_the_workflow():
    for t in workflow.TRANSITIONS.values():
        assert callable(getattr(workflow, t.function)), t.step
        assert t.sources <= set(SUBJECT_STATES[t.subject]), t.step


# -- orders in every state -------------------------------------------------------------

@dataclass
class Case:
    name: str
    order: Order
    row: Result  # the row the steps are tried on


def actors(staff, lab) -> dict[str, Actor]:
    member("dora.dpo", lab, "dpo")
    people = {"secretary": staff.secretary, "technician": staff.technician,
              "biologist": staff.biologist, "lab_manager": staff.manager,
              "dpo": Actor("dora.dpo", lab.id, "dpo", "web"),
              "cli": Actor("os:root", lab.id, "cli", "cli"),
              "analyser": Actor("analyser:test", lab.id, "analyser", "hl7")}
    for role in set(Role.values) | set().union(*map(roles, ["order.read", "result.enter"])):
        people.setdefault(role, Actor(f"someone-{role}", lab.id, role, "web"))
    return people


def cases(staff, patient) -> list[Case]:
    """A potassium in each state (one order each), a critical one, and calculated eGFRs."""
    tech, bio, sec = staff.technician, staff.biologist, staff.secretary

    def collect(order):
        workflow.collect(sec, order.specimens.get().id)

    def receive(order):
        workflow.receive(sec, order.specimens.get().barcode)

    def enter(value):
        return lambda order: workflow.enter_results(
            tech, [workflow.Entry(result(order, "K").id, value)])

    def tech_ok(order):
        workflow.validate_technically(tech, [result(order, "K").id])

    def bio_ok(order):
        workflow.validate_biologically(bio, [result(order, "K").id])

    def publish(order):
        workflow.publish(bio, order)

    def cancel(order):
        workflow.cancel(tech, result(order, "K").id, "by mistake")

    def reject(order):
        workflow.reject(sec, order.specimens.get().id, "hémolysé")

    def correct(order):
        workflow.invalidate(bio, result(order, "K").id, "4,3", "typing error")

    published = (receive, enter("4,1"), tech_ok, bio_ok, publish)
    found = []
    for name, steps in (
            ("registered", ()), ("collected", (collect,)), ("received", (receive,)),
            ("in_analysis", (receive, enter("4,1"))), ("critical", (receive, enter("7,1"))),
            ("tech_validated", (receive, enter("4,1"), tech_ok)),
            ("bio_validated", (receive, enter("4,1"), tech_ok, bio_ok)),
            ("published", published), ("cancelled", (cancel,)), ("rejected", (reject,)),
            ("invalidated", (*published, correct))):
        order = order_for(sec, patient.id, "K")
        for step in steps:
            step(order)
        rows = Result.unscoped.filter(order=order)
        row = (rows.get(state=S.INVALIDATED) if name == "invalidated" else rows.get())
        found.append(Case(name, order, row))
    for name, values in (("calculated received", {}),
                         ("calculated in_analysis", {"K": "4,1", "CREA": "80"})):
        order = order_for(sec, patient.id, "K", "CREA")
        for specimen in order.specimens.all():
            workflow.receive(sec, specimen.barcode)
        if values:
            workflow.enter_results(tech, [workflow.Entry(result(order, c).id, v)
                                          for c, v in values.items()])
        found.append(Case(name, order, Result.unscoped.get(order=order, source="calculated")))
    assert {c.row.state for c in found} == set(S)
    return found


# -- each step refuses exactly where allowed says no -------------------------------------

class Undo(Exception):
    pass


def taken(call) -> bool:
    """Whether the step went through (then undone), or was refused."""
    try:
        with transaction.atomic():
            call()
            raise Undo
    except Undo:
        return True
    except (NotAllowed, workflow.WorkflowError):
        return False


def attempt(actor: Actor, case: Case, step: str):
    row = case.row
    return {
        "collect": lambda: workflow.collect(actor, row.specimen_id),
        "receive": lambda: workflow.receive(actor, row.specimen.barcode),
        "reject": lambda: workflow.reject(actor, row.specimen_id, "coagulé"),
        "enter": lambda: workflow.enter_results(actor, [workflow.Entry(row.id, "4,2")]),
        "validate_technically": lambda: workflow.validate_technically(actor, [row.id]),
        "validate_biologically": lambda: workflow.validate_biologically(actor, [row.id]),
        "publish": lambda: workflow.publish(actor, case.order),
        "correct": lambda: workflow.invalidate(actor, row.id, "4,4", "typing error"),
        "cancel": lambda: workflow.cancel(actor, row.id, "asked by mistake"),
        "acknowledge": lambda: workflow.acknowledge_critical(actor, row.id,
                                                             "called Dr Bernard at 10:05"),
    }[step]


def test_each_step_refuses_exactly_where_allowed_says_no(staff, patient, lab_a):
    people = actors(staff, lab_a)
    every = cases(staff, patient)
    checked = 0
    for case in every:
        for step, t in workflow.TRANSITIONS.items():
            if step == "publish" and case.order.results.count() > 1:
                continue  # an order's step: tried where the order holds this row only
            for role, actor in people.items():
                case.row.refresh_from_db()
                subject = case.row.specimen if t.subject == "specimen" else case.row
                expected = workflow.allowed(actor, subject, step)
                assert taken(attempt(actor, case, step)) == expected, (case.name, step, role)
                checked += 1
    assert checked > 700


# -- the order page offers what allowed allows -------------------------------------------

ACTION = re.compile(r'name="action" value="(\w+)"')
TABLE_ROW = re.compile(r"<tr\b.*?</tr>", re.DOTALL)


def offered(html: str, marker: str) -> set[str]:
    """The actions of the table row holding ``marker`` (a row id)."""
    rows = [row for row in TABLE_ROW.findall(html) if marker in row]
    return set(ACTION.findall(rows[0])) if rows else set()


def test_the_order_page_offers_exactly_what_allowed_allows(staff, patient, lab_a):
    people = actors(staff, lab_a)
    reader = staff.biologist
    shown = 0
    for case in cases(staff, patient):
        view = access.access_order(reader, case.order.id)
        for role, actor in people.items():
            html = render_to_string("lab/order_detail.html", order_page_context(actor, view))
            for specimen in view.specimens:
                expected = {s for s in workflow.SPECIMEN_STEPS
                            if workflow.allowed(actor, specimen, s)}
                assert offered(html, str(specimen.id)) - {"receive"} == expected - {
                    "receive"}, (case.name, role)
                # receipt posts the barcode, not the id
                assert ("receive" in offered(html, f'value="{specimen.barcode}"')) == (
                    "receive" in expected), (case.name, role)
            for row in view.results:
                expected = {s for s in workflow.RESULT_STEPS if workflow.allowed(actor, row, s)}
                assert offered(html, f'name="result" value="{row.id}"') == expected, (
                    case.name, role, row.state)
                shown += 1
            publish = any(workflow.allowed(actor, r, "publish") for r in view.results)
            assert ('value="publish"' in html) == publish, (case.name, role)
    assert shown > 100
