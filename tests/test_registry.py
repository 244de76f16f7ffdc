"""Patients at rest: sealed, bound to their row, found through blind indexes."""

import pytest
from django.db import connection

from coffre.audit.models import AccessEvent
from coffre.identity.access import InvalidPatient, access_patient, create_patient, find_patients
from coffre.identity.models import SEALED_FIELDS, Patient
from coffre.keyring import services as keyring
from coffre.vault import DecryptionError
from tests.conftest import make_nir, patient_row


def test_a_created_patient_reads_back_in_clear(actor_a):
    created = create_patient(actor_a, patient_row())
    record = access_patient(actor_a, created.id)
    assert record.birth_name == "Lefèvre"
    assert record.phone == "+33612345678"
    assert record.notes == "Grossesse en cours, 2e trimestre"


def test_no_value_of_a_patient_is_stored_in_clear(actor_a):
    create_patient(actor_a, patient_row())
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM identity_patient")
        stored = b"".join(bytes(v) if isinstance(v, bytes | memoryview) else str(v).encode()
                          for v in cursor.fetchone())
    for value in ("Lefèvre", "LEFEVRE", "Martin", "Claire", "612345678", "lilas", "example.fr",
                  "Grossesse", "1985-03-14", "CPAM", "Bernard"):
        assert value.lower().encode() not in stored.lower()


def test_a_ciphertext_copied_to_another_patient_does_not_decrypt(actor_a):
    one = create_patient(actor_a, patient_row())
    two = create_patient(actor_a, patient_row(nir=make_nir("M", 1970, 5), sex="M",
                                              birth_date="1970-05-02", notes=""))
    source = Patient.unscoped.get(id=one.id)
    Patient.unscoped.filter(id=two.id).update(notes=source.notes)
    with pytest.raises(DecryptionError):
        access_patient(actor_a, two.id)


def test_a_ciphertext_copied_to_another_column_does_not_decrypt(actor_a):
    one = create_patient(actor_a, patient_row())
    source = Patient.unscoped.get(id=one.id)
    Patient.unscoped.filter(id=one.id).update(used_name=source.birth_name)
    with pytest.raises(DecryptionError):
        access_patient(actor_a, one.id)


def test_absent_values_are_sealed_not_null(actor_a):
    created = create_patient(actor_a, patient_row(notes="", email="", blood_group=""))
    row = Patient.unscoped.get(id=created.id)
    for name in SEALED_FIELDS:
        assert getattr(row, name) is not None
    with_note = Patient.unscoped.get(id=create_patient(
        actor_a, patient_row(nir=make_nir("F", 1985, 3, serial="124"))).id)
    assert len(row.notes) == len(with_note.notes)


@pytest.mark.parametrize("criteria", [
    {"nir": "2 85 03 75 056 123 {key}"},
    {"name": "LEFEVRE", "birth_date": "1985-03-14"},
    {"name": "lefèvre", "birth_date": "1985-03-14"},
    {"name": "Martin", "birth_date": "1985-03-14"},
    {"phone": "+33 6 12 34 56 78"},
    {"phone": "0612345678"},
    {"email": "Claire.Lefevre@EXAMPLE.fr"},
])
def test_a_patient_is_found_by_each_searchable_trait(actor_a, criteria):
    created = create_patient(actor_a, patient_row())
    if "nir" in criteria:
        nir = make_nir("F", 1985, 3)
        criteria = {"nir": f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} "
                           f"{nir[10:13]} {nir[13:]}"}
    assert [r.id for r in find_patients(actor_a, **criteria)] == [created.id]


def test_a_search_confirms_candidates_after_decryption(actor_a):
    create_patient(actor_a, patient_row())
    assert find_patients(actor_a, name="LEFEVRE", birth_date="1985-03-15") == []
    assert find_patients(actor_a, name="LEFEVRES", birth_date="1985-03-14") == []


def test_an_invalid_patient_is_refused_with_every_reason_and_nothing_written(actor_a):
    with pytest.raises(InvalidPatient) as caught:
        create_patient(actor_a, patient_row(nir="285037505612399", birth_name="",
                                            email="not-an-email", sex="X"))
    columns = {e.column for e in caught.value.errors}
    assert {"nir", "birth_name", "email", "sex"} <= columns
    assert "285037505612399" not in str(caught.value)
    assert Patient.unscoped.count() == 0


def test_a_nir_that_contradicts_sex_or_birth_date_is_refused(actor_a):
    with pytest.raises(InvalidPatient) as caught:
        create_patient(actor_a, patient_row(nir=make_nir("M", 1985, 3)))
    assert [e.column for e in caught.value.errors] == ["nir"]


def test_reads_and_searches_are_recorded_by_id_only(actor_a):
    created = create_patient(actor_a, patient_row())
    find_patients(actor_a, email="claire.lefevre@example.fr")
    access_patient(actor_a, created.id)
    events = list(AccessEvent.objects.values_list("action", "patient_id", "person"))
    assert events == [("create", created.id, "alice"), ("search", created.id, "alice"),
                      ("read", created.id, "alice")]


def test_a_patient_moved_to_another_lab_in_the_database_does_not_open_there(actor_a, actor_b,
                                                                           lab_b):
    from coffre.identity.access import PatientNotFound

    created = create_patient(actor_a, patient_row())
    Patient.unscoped.filter(id=created.id).update(lab_id=lab_b.id)
    with pytest.raises((DecryptionError, PatientNotFound)):
        access_patient(actor_b, created.id)


def test_absent_values_leave_no_null_blind_index(actor_a):
    created = create_patient(actor_a, patient_row(nir="", used_name="", email="", phone=""))
    row = Patient.unscoped.get(id=created.id)
    for column in ("bi_nir", "bi_used_name_dob", "bi_email", "bi_phone"):
        assert getattr(row, column) is not None, column


def test_a_patient_without_nir_or_email_never_breaks_a_search(actor_a):
    """Absent values carry random index values; one may coincide with a searched one."""
    for number in range(40):
        create_patient(actor_a, patient_row(nir="", email="", phone="",
                                            birth_name=f"Sans{number:02d}"))
    wanted = make_nir("M", 1990, 1, serial="999")
    indexer = keyring.indexer()
    target = indexer.compute("nir", wanted)
    Patient.unscoped.update(bi_nir=target, bi_email=target)  # force the coincidence
    assert find_patients(actor_a, nir=wanted) == []
    assert find_patients(actor_a, email="nobody@example.org") == []
