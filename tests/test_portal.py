"""Patient portal: activation with the receipt code and birth date, and a patient sees
their own published results only."""

from __future__ import annotations

import pytest

from coffre.identity.access import create_patient
from coffre.lab import access
from coffre.portal import activation, services
from coffre.portal.activation import Activation, ActivationRefused
from coffre.portal.models import ActivationCode, PatientAccount
from tests.conftest import STAFF_PASSWORD, make_nir, patient_row
from tests.lab_helpers import order_for, published

BIRTH = "14/03/1985"




def _activate(code: str, birth: str = BIRTH, username: str = "claire.m85"):
    return activation.activate(Activation(code, birth, username, STAFF_PASSWORD))


def test_a_patient_activates_with_the_code_and_birth_date(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    user = _activate(code.lower().replace("-", " "))
    account = PatientAccount.objects.get(user=user)
    assert account.patient_id == patient.id
    assert user.check_password(STAFF_PASSWORD)
    with pytest.raises(ActivationRefused):
        _activate(code, username="second.try")


def test_the_code_is_kept_as_a_hash_only(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    row = ActivationCode.objects.get()
    secret = code.split("-")[1]
    assert secret not in row.secret_hash and row.secret_hash.startswith("argon2")


def test_a_wrong_birth_date_is_refused_like_a_wrong_code_and_burns_the_code(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    refusals = set()
    for _ in range(activation.MAX_FAILURES):
        with pytest.raises(ActivationRefused) as refused:
            _activate(code, birth="15/03/1985")
        refusals.add(str(refused.value))
    with pytest.raises(ActivationRefused) as wrong_code:
        _activate(code[:-1] + ("0" if code[-1] != "0" else "1"))
    assert refusals == {str(wrong_code.value)}
    with pytest.raises(ActivationRefused):
        _activate(code)  # burnt after MAX_FAILURES
    assert not PatientAccount.objects.exists()


def test_a_weak_password_is_refused_and_the_code_still_works(staff, patient):
    code = activation.issue_code(staff.secretary, patient.id)
    with pytest.raises(ActivationRefused) as refused:
        activation.activate(Activation(code, BIRTH, "claire.m85", "azerty123"))
    assert refused.value.problems
    assert _activate(code)


def test_a_new_code_replaces_the_previous_one(staff, patient):
    first = activation.issue_code(staff.secretary, patient.id)
    second = activation.issue_code(staff.secretary, patient.id)
    with pytest.raises(ActivationRefused):
        _activate(first)
    assert _activate(second)


def test_a_patient_sees_only_their_published_results(staff, patient):
    other = create_patient(staff.secretary, patient_row(
        nir=make_nir("M", 1970, 5), sex="M", birth_name="Durand", used_name="",
        first_names="Marc", birth_date="1970-05-02"))
    mine = published(staff, patient.id, K="4.4")
    pending = order_for(staff.secretary, patient.id, "NA")
    theirs = published(staff, other.id, K="5.0")
    account = PatientAccount.objects.get(
        user=_activate(activation.issue_code(staff.secretary, patient.id)))
    assert [p.order.id for p in services.published_orders(account)] == [mine.id]
    view = services.patient_order(account, mine.id)
    assert [v.display_value for v in view.results] == ["4,4"]
    for foreign in (theirs.id, pending.id, "not-a-uuid"):
        with pytest.raises(access.OrderNotFound):
            services.patient_order(account, foreign)
    name, content = services.patient_report(account, mine.id)
    assert content.startswith(b"%PDF") and mine.number in name


def test_a_patient_sees_who_read_their_record(staff, patient):
    published(staff, patient.id, K="4.4")
    account = PatientAccount.objects.get(
        user=_activate(activation.issue_code(staff.secretary, patient.id)))
    people = {entry.person for entry in services.access_log(account)}
    assert {staff.secretary.person, staff.biologist.person} <= people


def test_the_receipt_carries_a_code_until_the_patient_has_an_account(staff, patient):
    import io

    from pypdf import PdfReader

    from coffre.portal.receipt import receipt_pdf

    order = order_for(staff.secretary, patient.id, "K")
    _, content = receipt_pdf(staff.secretary, order.id, "https://resultats.example.fr")
    text = PdfReader(io.BytesIO(content)).pages[0].extract_text()
    code = next(line for line in text.splitlines() if line.count("-") == 1
                and len(line.strip()) == 17).strip()
    _activate(code)
    _, again = receipt_pdf(staff.secretary, order.id, "https://resultats.example.fr")
    assert code not in PdfReader(io.BytesIO(again)).pages[0].extract_text()
