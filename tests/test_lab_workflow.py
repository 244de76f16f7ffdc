"""Orders, specimens and results through every state, and every refusal."""

from __future__ import annotations

import pytest

from coffre.lab import access, workflow
from coffre.lab.models import Result, ResultState, SpecimenState
from tests.conftest import patient_row
from tests.lab_helpers import enter, order_for, receive_all, result, staff_of

S = ResultState


@pytest.fixture
def staff(lab_a):
    return staff_of(lab_a)


@pytest.fixture
def patient(staff):
    from coffre.identity.access import create_patient

    return create_patient(staff.secretary, patient_row())


def test_an_order_registers_one_specimen_per_tube_and_one_result_per_test(staff, patient):
    order = order_for(staff.secretary, patient.id, "NFS", "IONO", "CREA")
    types = sorted(order.specimens.values_list("specimen_type", flat=True))
    assert len(types) == len(set(types)) == 2
    assert order.results.count() == 13 + 5 + 2  # creatinine brings eGFR
    assert set(order.results.values_list("state", flat=True)) == {S.REGISTERED}


def test_a_full_day_from_reception_to_publication(staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "CREA")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4,2", CREA="80")
    egfr = order.results.get(source="calculated")
    assert egfr.state == S.IN_ANALYSIS
    ids = [result(order, "K").id, result(order, "CREA").id]
    workflow.validate_technically(staff.technician, ids)
    assert Result.unscoped.get(pk=egfr.pk).state == S.TECH_VALIDATED
    workflow.validate_biologically(staff.biologist, ids)
    assert workflow.publish(staff.biologist, order) == 3
    view = access.access_order(staff.secretary, order.id)
    assert {v.state for v in view.results} == {S.PUBLISHED}
    assert next(v for v in view.results if v.test.code == "K").display_value == "4,2"


def test_self_validation_is_refused_and_nothing_changes(staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    enter(staff.biologist, order, K="4.0")
    enter(staff.technician, order, NA="140")
    ids = [result(order, "NA").id, result(order, "K").id]
    workflow.validate_technically(staff.technician, ids)
    with pytest.raises(workflow.WorkflowError, match="same person"):
        workflow.validate_biologically(staff.biologist, ids)
    assert set(order.results.values_list("state", flat=True)) == {S.TECH_VALIDATED}
    assert workflow.validate_biologically(staff.other_biologist, ids) == 2


def test_a_critical_value_must_be_acknowledged_before_validation(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="7.1")
    potassium = result(order, "K")
    workflow.validate_technically(staff.technician, [potassium.id])
    with pytest.raises(workflow.WorkflowError, match="critical"):
        workflow.validate_biologically(staff.biologist, [potassium.id])
    workflow.acknowledge_critical(staff.technician, potassium.id,
                                  "Dr Bernard prévenu par téléphone à 10h12")
    assert workflow.validate_biologically(staff.biologist, [potassium.id]) == 1
    view = access.access_order(staff.biologist, order.id)
    assert view.results[0].flag == "HH"


def test_a_correction_after_publication_keeps_history_and_amends_the_report(staff, patient):
    from coffre.lab import reports

    order = order_for(staff.secretary, patient.id, "HB")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, HB="9.1")
    hb = result(order, "HB")
    workflow.validate_technically(staff.technician, [hb.id])
    workflow.validate_biologically(staff.biologist, [hb.id])
    workflow.publish(staff.biologist, order)
    new = workflow.invalidate(staff.biologist, hb.id, "12.1", "Erreur de transcription")
    assert Result.unscoped.get(pk=hb.pk).state == S.INVALIDATED
    assert new.version == 2 and new.replaces_id == hb.id
    workflow.validate_biologically(staff.other_biologist, [new.id])
    workflow.publish(staff.other_biologist, order)
    order.refresh_from_db()
    data = reports.report_data(access.access_order(staff.secretary, order.id))
    assert data.amended and "Erreur de transcription" in data.amendment_note
    assert [line.value for s in data.sections for line in s.lines] == ["12,1"]


def test_a_rejected_specimen_ends_its_tests(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    specimen = order.specimens.get()
    workflow.reject(staff.secretary, specimen.id, "hémolysé")
    specimen.refresh_from_db()
    assert specimen.state == SpecimenState.REJECTED
    assert result(order, "K").state == S.REJECTED
    view = access.access_order(staff.secretary, order.id)
    assert view.rejection_reasons[specimen.id] == "hémolysé"


def test_a_secretary_may_not_enter_results(staff, patient):
    from coffre.lab.permissions import NotAllowed

    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    with pytest.raises(NotAllowed):
        enter(staff.secretary, order, K="4")


def test_a_bad_value_refuses_the_whole_batch(staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    with pytest.raises(workflow.WorkflowError) as refused:
        enter(staff.technician, order, K="4.1", NA="cent")
    assert "Sodium" in str(refused.value)
    assert set(order.results.values_list("state", flat=True)) == {S.RECEIVED}
