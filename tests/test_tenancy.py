"""A person of lab A cannot read, find or guess a patient of lab B."""

import uuid

import pytest

from coffre.identity.access import PatientNotFound, access_patient, create_patient, find_patients
from tests.conftest import make_nir, patient_row

SEARCHES = [
    {"nir": make_nir("F", 1985, 3)},
    {"name": "Lefèvre", "birth_date": "1985-03-14"},
    {"phone": "0612345678"},
    {"email": "claire.lefevre@example.fr"},
]


def test_a_patient_of_another_lab_cannot_be_opened(actor_a, actor_b):
    theirs = create_patient(actor_b, patient_row())
    with pytest.raises(PatientNotFound):
        access_patient(actor_a, theirs.id)


def test_another_labs_patient_looks_exactly_like_a_missing_one(actor_a, actor_b):
    theirs = create_patient(actor_b, patient_row())
    with pytest.raises(PatientNotFound) as foreign:
        access_patient(actor_a, theirs.id)
    with pytest.raises(PatientNotFound) as missing:
        access_patient(actor_a, uuid.uuid4())
    assert str(foreign.value) == str(missing.value)


@pytest.mark.parametrize("criteria", SEARCHES)
def test_a_patient_of_another_lab_is_never_found(actor_a, actor_b, criteria):
    create_patient(actor_b, patient_row())
    assert find_patients(actor_a, **criteria) == []
    assert len(find_patients(actor_b, **criteria)) == 1


def test_the_same_person_in_two_labs_is_two_separate_records(actor_a, actor_b):
    mine = create_patient(actor_a, patient_row())
    theirs = create_patient(actor_b, patient_row())
    assert [r.id for r in find_patients(actor_a, **SEARCHES[0])] == [mine.id]
    assert [r.id for r in find_patients(actor_b, **SEARCHES[0])] == [theirs.id]


def test_a_malformed_id_is_just_not_found(actor_a):
    with pytest.raises(PatientNotFound):
        access_patient(actor_a, "../../etc/passwd")
