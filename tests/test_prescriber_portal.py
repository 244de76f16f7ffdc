"""Prescriber portal: a doctor sees the published results of the orders they
prescribed, in any lab, and nothing else; the second factor is required."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from coffre.audit.models import AccessEvent
from coffre.identity.access import create_patient
from coffre.labwork.access import OrderNotFound, access_order
from coffre.portal import prescriber
from tests.conftest import make_nir, own_password, patient_row, second_factor_done
from tests.lab_helpers import PRESCRIBER_RPPS, order_for, published, staff_of

OTHER_RPPS = "10009999995"


@pytest.fixture
def doctor(db):
    account, _password = prescriber.add_prescriber(PRESCRIBER_RPPS, "dr.bernard")
    own_password(account.user)
    return account


def test_a_prescriber_account_needs_a_valid_unused_rpps(doctor):
    with pytest.raises(prescriber.InvalidPrescriber, match="RPPS"):
        prescriber.add_prescriber("12345678901", "dr.nobody")
    with pytest.raises(prescriber.InvalidPrescriber, match="already"):
        prescriber.add_prescriber(PRESCRIBER_RPPS, "dr.other")


def test_a_doctor_sees_their_published_orders_in_every_lab_only(staff, patient, doctor,
                                                                lab_b):
    mine = published(staff, patient.id, K="4.4")
    not_mine = published(staff, patient.id, rpps=OTHER_RPPS, K="4.8")
    pending = order_for(staff.secretary, patient.id, "NA")
    staff_b = staff_of(lab_b, suffix="b")
    patient_b = create_patient(staff_b.secretary, patient_row(
        nir=make_nir("M", 1970, 5), sex="M", birth_name="Durand", used_name="",
        first_names="Marc", birth_date="1970-05-02"))
    in_lab_b = published(staff_b, patient_b.id, GLY="5.5")
    listed = prescriber.prescribed_orders(doctor)
    assert {item.order.id for item in listed} == {mine.id, in_lab_b.id}
    assert {item.patient.birth_name for item in listed} == {"Lefèvre", "Durand"}
    view = prescriber.prescribed_order(doctor, mine.id)
    assert [v.display_value for v in view.results] == ["4,4"]
    for foreign in (not_mine.id, pending.id, "nonsense"):
        with pytest.raises(OrderNotFound):
            prescriber.prescribed_order(doctor, foreign)
    reads = set(AccessEvent.objects.filter(person="dr.bernard", action="read")
                .values_list("lab_id", "role"))
    assert reads == {(staff.secretary.lab_id, "prescriber"), (lab_b.id, "prescriber")}


def test_the_prescriber_pages_need_the_second_factor(staff, patient, doctor):
    order = published(staff, patient.id, K="4.4")
    client = Client()
    client.force_login(get_user_model().objects.get(username="dr.bernard"))
    assert "/connexion/activation-2fa/" in client.get("/prescripteur/")["Location"]
    second_factor_done(client)
    assert client.get("/").url == "/prescripteur/"
    page = client.get("/prescripteur/").content.decode()
    assert "MARTIN" in page and order.number in page
    detail = client.get(f"/prescripteur/demandes/{order.id}/").content.decode()
    assert "4,4" in detail
    report = client.get(f"/prescripteur/demandes/{order.id}/compte-rendu.pdf")
    assert report.content.startswith(b"%PDF")
    assert client.get("/patients/").status_code == 403


def test_a_prescription_index_does_not_tell_which_orders_have_no_prescriber(staff, patient):
    from coffre.labwork.models import Order

    for _ in range(20):
        order_for(staff.secretary, patient.id, "K", rpps="")
    assert not Order.unscoped.filter(bi_prescriber__isnull=True).exists()
    assert Order.unscoped.values("bi_prescriber").distinct().count() > 10


def test_a_doctor_sees_no_previous_value_from_another_doctors_order(staff, patient, doctor,
                                                                    client):
    """Prescriber B (the portal's doctor) orders a potassium after prescriber A did: B's
    order page and report show no previous value, not A's 5.3. A's own earlier order
    would show."""
    from tests.test_pdf import text_of

    published(staff, patient.id, rpps=OTHER_RPPS, K="5.3")  # doctor A's
    mine = published(staff, patient.id, K="4.4")  # doctor B's, later
    view = prescriber.prescribed_order(doctor, mine.id)
    assert [(v.display_value, v.previous) for v in view.results] == [("4,4", None)]
    _name, report = prescriber.prescribed_report(doctor, mine.id)
    assert "5,3" not in text_of(report) and "4,4" in text_of(report)
    client.force_login(get_user_model().objects.get(username="dr.bernard"))
    second_factor_done(client)
    page = client.get(f"/prescripteur/demandes/{mine.id}/").content.decode()
    assert "4,4" in page and "5,3" not in page
    # The lab's own page shows the patient's whole history.
    staff_view = access_order(staff.biologist, mine.id)
    assert staff_view.results[0].previous.value == "5.3"
    # Doctor B's own earlier order is B's to compare with.
    again = published(staff, patient.id, K="4.9")
    view = prescriber.prescribed_order(doctor, again.id)
    assert view.results[0].previous.value == "4.4"
    assert "5,3" not in text_of(prescriber.prescribed_report(doctor, again.id)[1])
