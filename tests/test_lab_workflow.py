"""Orders, specimens and results through every state, and every refusal."""

from __future__ import annotations

import pytest

from coffre.labwork import access, workflow
from coffre.labwork.models import Result, ResultState, SpecimenState
from tests.conftest import patient_row
from tests.lab_helpers import enter, order_for, published, receive_all, result, staff_of
from tests.refusal_helpers import refused, row_codes

S = ResultState




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
    with refused(workflow.WorkflowError, "workflow.biological_validation_refused") as caught:
        workflow.validate_biologically(staff.biologist, ids)
    assert row_codes(caught.value) == {"workflow.self_validation"}
    assert set(order.results.values_list("state", flat=True)) == {S.TECH_VALIDATED}
    assert workflow.validate_biologically(staff.other_biologist, ids) == 2


def test_a_critical_value_must_be_acknowledged_before_validation(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="7.1")
    potassium = result(order, "K")
    workflow.validate_technically(staff.technician, [potassium.id])
    with refused(workflow.WorkflowError, "workflow.biological_validation_refused") as caught:
        workflow.validate_biologically(staff.biologist, [potassium.id])
    assert row_codes(caught.value) == {"workflow.critical_not_acknowledged"}
    workflow.acknowledge_critical(staff.technician, potassium.id,
                                  "Dr Bernard prévenu par téléphone à 10h12")
    assert workflow.validate_biologically(staff.biologist, [potassium.id]) == 1
    view = access.access_order(staff.biologist, order.id)
    assert view.results[0].flag == "HH"


def test_a_correction_after_publication_keeps_history_and_amends_the_report(staff, patient):
    from coffre.labwork import reports

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
    from coffre.tenancy.capabilities import NotAllowed

    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    with pytest.raises(NotAllowed):
        enter(staff.secretary, order, K="4")


def test_a_bad_value_refuses_the_whole_batch(staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    receive_all(staff.secretary, order)
    with refused(workflow.WorkflowError, "workflow.entry_refused") as caught:
        enter(staff.technician, order, K="4.1", NA="cent")
    assert "Sodium" in str(caught.value)
    assert row_codes(caught.value) == {"workflow.not_a_number"}
    assert set(order.results.values_list("state", flat=True)) == {S.RECEIVED}


# -- each transition's refusals ------------------------------------------------------

def test_collection_then_receipt_moves_specimen_and_tests(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    specimen = order.specimens.get()
    workflow.collect(staff.secretary, specimen.id)
    assert result(order, "K").state == S.COLLECTED
    with refused(workflow.WorkflowError, "workflow.not_waiting_for_collection"):
        workflow.collect(staff.secretary, specimen.id)
    workflow.receive(staff.technician, specimen.barcode)
    specimen.refresh_from_db()
    assert specimen.state == SpecimenState.RECEIVED and specimen.received_at
    assert result(order, "K").state == S.RECEIVED
    with refused(workflow.WorkflowError, "workflow.cannot_be_received"):
        workflow.receive(staff.technician, specimen.barcode)


def test_a_specimen_of_another_lab_is_unknown(staff, patient, lab_b):
    order = order_for(staff.secretary, patient.id, "K")
    barcode = order.specimens.get().barcode
    other = staff_of(lab_b, suffix="b")
    with pytest.raises(workflow.SpecimenNotFound):
        workflow.receive(other.secretary, barcode)
    with pytest.raises(access.OrderNotFound):
        access.access_order(other.secretary, order.id)
    assert list(access.worklist(other.technician)) == []


def test_results_cannot_be_entered_before_receipt(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    with refused(workflow.WorkflowError, "workflow.entry_refused") as caught:
        enter(staff.technician, order, K="4.1")
    assert row_codes(caught.value) == {"workflow.not_open_for_entry"}


def test_a_calculated_result_cannot_be_typed(staff, patient):
    order = order_for(staff.secretary, patient.id, "CREA")
    receive_all(staff.secretary, order)
    egfr = order.results.get(source="calculated")
    with refused(workflow.WorkflowError, "workflow.entry_refused") as caught:
        workflow.enter_results(staff.technician, [workflow.Entry(egfr.id, "90")])
    assert row_codes(caught.value) == {"workflow.calculated"}


def test_technical_validation_needs_a_value(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    with refused(workflow.WorkflowError, "workflow.technical_validation_refused") as caught:
        workflow.validate_technically(staff.technician, [result(order, "K").id])
    assert row_codes(caught.value) == {"workflow.not_in_analysis"}


def test_biological_validation_needs_technical_validation_and_a_biologist(staff, patient):
    from coffre.tenancy.capabilities import NotAllowed

    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.1")
    potassium = result(order, "K").id
    with refused(workflow.WorkflowError, "workflow.biological_validation_refused") as caught:
        workflow.validate_biologically(staff.biologist, [potassium])
    assert row_codes(caught.value) == {"workflow.not_technically_validated"}
    workflow.validate_technically(staff.technician, [potassium])
    with pytest.raises(NotAllowed):
        workflow.validate_biologically(staff.technician, [potassium])
    with pytest.raises(NotAllowed):
        workflow.publish(staff.technician, order)


def test_a_lab_may_allow_self_validation(staff, patient, lab_a):
    from coffre.labwork.models import LabWorkflowSettings

    LabWorkflowSettings.objects.create(lab=lab_a, allow_self_validation=True)
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.biologist, order, K="4.1")
    workflow.validate_technically(staff.biologist, [result(order, "K").id])
    assert workflow.validate_biologically(staff.biologist, [result(order, "K").id]) == 1


def test_publishing_needs_validated_results(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    with refused(workflow.WorkflowError, "workflow.nothing_to_publish"):
        workflow.publish(staff.biologist, order)


def test_only_a_published_result_is_corrected_and_with_a_reason(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.1")
    with refused(workflow.WorkflowError, "workflow.not_published"):
        workflow.invalidate(staff.biologist, result(order, "K").id, "4.2", "erreur de saisie")
    with refused(workflow.WorkflowError, "workflow.reason_required"):
        workflow.invalidate(staff.biologist, result(order, "K").id, "4.2", "")


def test_a_test_is_cancelled_before_biological_validation_only(staff, patient):
    order = order_for(staff.secretary, patient.id, "K", "NA")
    workflow.cancel(staff.technician, result(order, "NA").id, "demandé par erreur")
    assert result(order, "NA").state == S.CANCELLED
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="4.1")
    workflow.validate_technically(staff.technician, [result(order, "K").id])
    workflow.validate_biologically(staff.biologist, [result(order, "K").id])
    with refused(workflow.WorkflowError, "workflow.cannot_be_cancelled"):
        workflow.cancel(staff.technician, result(order, "K").id, "trop tard")


def test_a_critical_value_is_acknowledged_once_with_a_note(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="2.1")
    potassium = result(order, "K").id
    with refused(workflow.WorkflowError, "workflow.note_required"):
        workflow.acknowledge_critical(staff.technician, potassium, "ok")
    workflow.acknowledge_critical(staff.technician, potassium, "Patient rappelé à 9h")
    with refused(workflow.WorkflowError, "workflow.already_acknowledged"):
        workflow.acknowledge_critical(staff.biologist, potassium, "Patient rappelé à 9h")


def test_a_value_is_retyped_until_technical_validation(staff, patient):
    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="5.9")
    enter(staff.technician, order, K="4.3")
    view = access.access_order(staff.technician, order.id)
    assert view.results[0].value == "4.3" and view.results[0].flag == ""


# -- flags, deltas and history --------------------------------------------------------

@pytest.mark.parametrize(("sex", "expected"), [("M", "L"), ("F", "")])
def test_flags_follow_the_patient_sex(staff, sex, expected):
    from coffre.identity.access import create_patient
    from tests.conftest import make_nir

    person = create_patient(staff.secretary, patient_row(
        sex=sex, nir=make_nir(sex, 1985, 3), used_name=""))
    order = order_for(staff.secretary, person.id, "HB")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, HB="12.5")
    assert access.access_order(staff.biologist, order.id).results[0].flag == expected


def test_the_validation_queue_shows_the_previous_value_and_the_delta(staff, patient):
    published(staff, patient.id, CREA="80")
    order = order_for(staff.secretary, patient.id, "CREA")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, CREA="160")
    workflow.validate_technically(staff.technician, [result(order, "CREA").id])
    (queued,) = access.validation_queue(staff.biologist)
    creatinine = next(v for v in queued.results if v.test.code == "CREA")
    assert creatinine.previous.value == "80" and creatinine.delta
    egfr = next(v for v in queued.results if v.test.code != "CREA")
    assert egfr.result.state == S.TECH_VALIDATED and egfr.value


def test_a_chart_series_holds_published_values_in_time_order(staff, patient):
    published(staff, patient.id, GLY="5.1")
    published(staff, patient.id, GLY="6.4")
    series = access.result_series(staff.biologist, patient.id, "GLY")
    assert [p.value for p in series] == [5.1, 6.4]
    assert [t.code for t in access.tests_with_history(staff.biologist, patient.id)] == ["GLY"]


# -- secrecy, erasure and the access log ----------------------------------------------

def test_values_are_sealed_and_bound_to_their_row(staff, patient):
    from coffre.labwork.sealing import PatientKeys, unseal
    from coffre.vault import DecryptionError

    order = published(staff, patient.id, K="4.7", NA="141")
    potassium, sodium = result(order, "K"), result(order, "NA")
    assert b"4.7" not in bytes(potassium.value)
    key = PatientKeys(potassium.lab_id)[potassium.patient_id]
    with pytest.raises(DecryptionError):
        unseal(key, "result", "value", sodium.id, potassium.value)
    with pytest.raises(DecryptionError):
        unseal(key, "result", "comment", potassium.id, potassium.value)


def test_an_erased_patient_takes_their_results_along(staff, patient):
    from coffre.identity.models import Patient

    order = published(staff, patient.id, K="4.7")
    Patient.unscoped.filter(pk=patient.id).update(data_key=None)
    with pytest.raises(access.OrderNotFound):
        access.access_order(staff.biologist, order.id)
    assert access.worklist(staff.technician) == []


def test_reads_are_logged_and_worklists_read_nothing(staff, patient):
    from coffre.audit.models import AccessEvent

    order = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, order)
    before = AccessEvent.objects.filter(action="read").count()
    rows = access.worklist(staff.technician)
    assert [r.specimen.barcode for r in rows] == [order.specimens.get().barcode]
    assert AccessEvent.objects.filter(action="read").count() == before
    access.access_order(staff.technician, order.id)
    kinds = set(AccessEvent.objects.filter(action="read", patient_id=patient.id,
                                           person=staff.technician.person)
                .values_list("kind", flat=True))
    assert kinds == {"identity", "results"}
