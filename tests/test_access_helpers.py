"""Every lab-owned row is reached by one ``access_<thing>(actor, id)``: it fetches the
row of the actor's lab, and answers another lab's row exactly as it answers a missing
or malformed id, with a RowNotFound (docs/architecture.md, "Reaching a lab's rows")."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from coffre.accounts import managing
from coffre.accounts.models import Membership
from coffre.apiclients import services as apiclients
from coffre.audit import alerts, detection
from coffre.audit.models import AccessEvent, AccountLock, Alert
from coffre.breach import notifications
from coffre.breach.models import Breach
from coffre.exports import services as exports
from coffre.exports.models import ExportRequest
from coffre.identity.access import access_patient, create_patient
from coffre.labwork import access, workflow
from coffre.tenancy.access import RowNotFound
from coffre.tenancy.actors import Actor
from coffre.tenancy.capabilities import NotAllowed
from tests.api_helpers import api_client
from tests.conftest import patient_row
from tests.lab_helpers import order_for, staff_of


@dataclass
class LabRows:
    """One row of each lab-owned model in one lab, and a manager of that lab."""

    manager: Actor
    ids: dict[str, object]


def _rows_of(lab) -> LabRows:
    staff = staff_of(lab)
    patient = create_patient(staff.secretary, patient_row())
    order = order_for(staff.secretary, patient.id)
    client, _secret = api_client(lab)
    today = dt.date.today()
    return LabRows(staff.manager, {
        "patient": patient.id,
        "order": order.id,
        "order_row": order.id,
        "specimen": order.specimens.first().id,
        "result": order.results.first().id,
        "alert": Alert.objects.create(lab_id=lab.id, kind="canary", person="x",
                                      summary="test").pk,
        "lock": AccountLock.objects.create(person=f"locked{lab.id}", lab_id=lab.id,
                                           reason="test").pk,
        "client": client.pk,
        "export": ExportRequest.objects.create(
            lab=lab, recipient_key="age1test", fields="nir", period_from=today,
            period_to=today, requested_by="x").pk,
        "breach": Breach.objects.create(lab=lab, created_by="x", data_key=b"k").pk,
        "membership": Membership.objects.get(lab=lab,
                                             user__username=staff.secretary.person).pk,
    })


# Called as the lab's manager; access_order (which opens results) as a biologist.
HELPERS: dict[str, Callable[[Actor, object], object]] = {
    "patient": access_patient,
    "order": lambda actor, oid: access.access_order(
        Actor(actor.person, actor.lab_id, "biologist", actor.channel), oid),
    "order_row": access.access_order_row,
    "specimen": access.access_specimen,
    "result": access.access_result,
    "alert": alerts.access_alert,
    "lock": detection.access_lock,
    "client": apiclients.access_client,
    "export": exports.access_export,
    "breach": notifications.access_breach,
    "membership": managing.access_membership,
}


@pytest.fixture
def two_labs(lab_a, lab_b) -> tuple[LabRows, LabRows]:
    return _rows_of(lab_a), _rows_of(lab_b)


def _refusal(helper: Callable[[Actor, object], object], actor: Actor, row_id: object
             ) -> RowNotFound:
    with pytest.raises(RowNotFound) as refused:
        helper(actor, row_id)
    return refused.value


@pytest.mark.parametrize("thing", sorted(HELPERS))
def test_each_access_helper_fetches_its_own_labs_row(two_labs, thing):
    mine, _theirs = two_labs
    found = HELPERS[thing](mine.manager, mine.ids[thing])
    if thing == "order":  # access_order answers an OrderView, opened
        found = found.order
    assert (found.pk if hasattr(found, "pk") else found.id) == mine.ids[thing]


@pytest.mark.parametrize("thing", sorted(HELPERS))
def test_each_access_helper_refuses_another_labs_row_as_a_missing_one(two_labs, thing):
    mine, theirs = two_labs
    helper = HELPERS[thing]
    elsewhere = _refusal(helper, mine.manager, theirs.ids[thing])
    unknown_id = uuid.uuid4() if isinstance(mine.ids[thing], uuid.UUID) else 987654321
    missing = _refusal(helper, mine.manager, unknown_id)
    malformed = _refusal(helper, mine.manager, "not-an-id")
    assert type(elsewhere) is type(missing) is type(malformed)
    assert str(elsewhere) == str(missing) == str(malformed)
    assert str(theirs.ids[thing]) not in str(elsewhere)


def test_the_other_lab_is_refused_too(two_labs):
    """The same, seen from lab B: nothing in the helpers favours the first lab."""
    mine, theirs = two_labs
    for thing, helper in HELPERS.items():
        _refusal(helper, theirs.manager, mine.ids[thing])


def test_the_self_validation_switch_is_a_managers_and_is_audited(lab_a):
    staff = staff_of(lab_a)
    with pytest.raises(NotAllowed):
        workflow.set_self_validation(staff.biologist, True)
    assert not workflow.self_validation_allowed(lab_a.id)

    workflow.set_self_validation(staff.manager, True)
    assert workflow.self_validation_allowed(lab_a.id)
    workflow.set_self_validation(staff.manager, True)  # no change, no entry
    workflow.set_self_validation(staff.manager, False)
    assert not workflow.self_validation_allowed(lab_a.id)
    entries = AccessEvent.objects.filter(kind="lab_settings", lab_id=lab_a.id)
    assert [(e.person, e.action) for e in entries.order_by("pk")] == [
        (staff.manager.person, "update"), (staff.manager.person, "update")]
