"""Break-the-glass: another lab of the group, only with a written reason, logged,
alerted and shown in the patient's history; never a lab outside the group."""

import pytest

from coffre.audit.log import open_text
from coffre.audit.models import AccessEvent, Alert, AlertKind
from coffre.identity.access import (
    PatientNotFound,
    ReasonRequired,
    break_glass_access,
    break_glass_find,
    create_patient,
)
from coffre.tenancy.actors import Actor
from tests.conftest import patient_row

REASON = "Patiente transférée aux urgences, résultats antérieurs nécessaires"


def test_a_patient_of_a_group_lab_is_found_with_a_reason(actor_a, sister_patient):
    found = break_glass_find(actor_a, REASON, email="claire.lefevre@example.fr")
    assert [r.id for r in found] == [sister_patient.id]


def test_no_reason_no_access(actor_a, sister_patient):
    with pytest.raises(ReasonRequired):
        break_glass_find(actor_a, "urgent", email="claire.lefevre@example.fr")
    with pytest.raises(ReasonRequired):
        break_glass_access(actor_a, sister_patient.id, "   ")


def test_a_lab_outside_the_group_is_never_reached(actor_a, actor_b, sister_patient):
    outside = create_patient(actor_b, patient_row(email="b@example.org"))
    assert break_glass_find(actor_a, REASON, email="b@example.org") == []
    with pytest.raises(PatientNotFound):
        break_glass_access(actor_a, outside.id, REASON)


def test_the_access_is_logged_with_its_sealed_reason_and_alerted(actor_a, sister_patient,
                                                                sister_lab):
    break_glass_access(actor_a, sister_patient.id, REASON)
    entry = AccessEvent.objects.get(patient_id=sister_patient.id, outcome="break_glass")
    assert entry.person == "alice" and entry.action == "read"
    assert REASON.encode() not in bytes(entry.purpose)
    assert open_text(entry.purpose, "purpose") == REASON
    alert = Alert.objects.get(kind=AlertKind.BREAK_GLASS)
    assert alert.lab_id == sister_lab.id and alert.patient_id == sister_patient.id


def test_a_lab_without_a_group_has_no_glass_to_break(actor_b, sister_patient):
    assert break_glass_find(actor_b, REASON, email="claire.lefevre@example.fr") == []


@pytest.mark.parametrize("role", ["dpo", "lab_manager", "platform_admin"])
def test_administrative_roles_cannot_break_the_glass(lab_a, sister_patient, role):
    from coffre.identity.access import BreakGlassRefused

    actor = Actor("admin", lab_a.id, role, "web")
    with pytest.raises(BreakGlassRefused):
        break_glass_find(actor, REASON, email="claire.lefevre@example.fr")


def test_a_missed_break_glass_open_is_logged_too(actor_a, sister_lab):
    import uuid

    with pytest.raises(PatientNotFound):
        break_glass_access(actor_a, uuid.uuid4(), REASON)
    assert AccessEvent.objects.filter(outcome="not_found", action="read").count() == 1
