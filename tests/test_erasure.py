"""Erasure by key destruction, the erasure ledger, and its re-application after a
restore of an older database."""

from __future__ import annotations

import json
import os
import stat

import pytest

from coffre.identity.access import PatientNotFound, access_patient, find_patients
from coffre.identity.models import BLIND_INDEXES, Patient
from coffre.labwork.access import OrderNotFound, access_order
from coffre.labwork.sealing import PatientErased, PatientKeys
from coffre.lifecycle import ledger
from coffre.lifecycle.erasure import ErasureRefused, erase_patient, reapply_ledger
from coffre.lifecycle.retention import add_hold, release_hold
from coffre.portal import activation
from coffre.portal.activation import Activation
from coffre.portal.models import ActivationCode, PatientAccount
from tests.conftest import STAFF_PASSWORD, make_nir, patient_row
from tests.lab_helpers import published

BI_COLUMNS = [f"bi_{name}" for name in BLIND_INDEXES]


@pytest.fixture(autouse=True)
def private_ledger(tmp_path, monkeypatch):
    """Each test's database has its own keys: give it its own ledger too."""
    monkeypatch.setattr(ledger, "ledger_dir", lambda: tmp_path / "ledger")
    return tmp_path / "ledger" / ledger.FILE_NAME


def _row(patient_id) -> dict:
    return Patient.unscoped.filter(id=patient_id).values("data_key", *BI_COLUMNS).get()


def test_an_erased_patient_and_their_results_are_gone(staff, patient):
    order = published(staff, patient.id, K="4.4")
    before = _row(patient.id)
    erase_patient(staff.manager, patient.id, "demande du patient (art. 17)")

    after = _row(patient.id)
    assert after["data_key"] is None
    # Fresh random values: with the tests' 8-bit indexes one may equal the old by chance
    # (1/256 each), all of them practically never; the searches below are the proof.
    assert sum(after[c] != before[c] for c in BI_COLUMNS) >= len(BI_COLUMNS) - 2
    with pytest.raises(PatientNotFound):
        access_patient(staff.biologist, patient.id)
    with pytest.raises(OrderNotFound):
        access_order(staff.biologist, order.id)
    with pytest.raises(PatientErased):
        PatientKeys(staff.manager.lab_id)[patient.id]
    row = patient_row()
    assert find_patients(staff.secretary, nir=row["nir"]) == []
    assert find_patients(staff.secretary, name=row["birth_name"],
                         birth_date=row["birth_date"]) == []
    assert find_patients(staff.secretary, name=row["used_name"],
                         birth_date=row["birth_date"]) == []
    assert find_patients(staff.secretary, phone=row["phone"]) == []
    assert find_patients(staff.secretary, email=row["email"]) == []
    # the other patients are still found
    other = patient_row(nir=make_nir("M", 1990, 5), birth_name="Durand", used_name="",
                        sex="M", birth_date="1990-05-02", phone="06 98 76 54 32",
                        email="paul.durand@example.fr")
    from coffre.identity.access import create_patient

    kept = create_patient(staff.secretary, other)
    assert [r.id for r in find_patients(staff.secretary, nir=other["nir"])] == [kept.id]


def test_the_erasure_is_in_the_ledger_and_the_audit_log(staff, patient, private_ledger):
    from coffre.audit.models import AccessEvent

    erase_patient(staff.manager, patient.id, "demande du patient")
    (entry,) = ledger.entries()
    assert entry.patient_id == patient.id and entry.lab_id == staff.manager.lab_id
    assert entry.cause == "request"
    text = private_ledger.read_text()
    assert "demande" not in text and "Lef" not in text  # ids only
    assert stat.S_IMODE(os.stat(private_ledger).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(private_ledger.parent).st_mode) == 0o700
    assert AccessEvent.objects.filter(action="erase", patient_id=patient.id).count() == 1


def test_the_portal_account_and_codes_are_deleted(staff, patient):
    from django.contrib.auth import get_user_model

    code = activation.issue_code(staff.secretary, patient.id)
    user = activation.activate(Activation(code, "14/03/1985", "claire.m85", STAFF_PASSWORD))
    activation.issue_code(staff.secretary, patient.id)
    erase_patient(staff.manager, patient.id, "demande du patient")
    assert not PatientAccount.objects.exists()
    assert not ActivationCode.objects.exists()
    assert not get_user_model().objects.filter(id=user.id).exists()


def test_who_may_erase(staff, patient, actor_b):
    for actor in (staff.secretary, staff.biologist):
        with pytest.raises(ErasureRefused):
            erase_patient(actor, patient.id, "demande du patient")
    from coffre.tenancy.actors import Actor

    with pytest.raises(PatientNotFound):  # another lab's patient does not exist
        erase_patient(Actor("dpo-b", actor_b.lab_id, "dpo", "web"), patient.id, "demande")
    assert _row(patient.id)["data_key"] is not None
    assert ledger.entries() == []


def test_an_erasure_that_fails_leaves_nothing_half_done(staff, patient, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ledger, "append", broken)
    with pytest.raises(OSError):
        erase_patient(staff.manager, patient.id, "demande du patient")
    assert _row(patient.id)["data_key"] is not None
    assert access_patient(staff.secretary, patient.id).nir == patient_row()["nir"]


def test_a_legal_hold_blocks_an_erasure(staff, patient):
    add_hold(staff.manager, patient.id, "contentieux en cours")
    with pytest.raises(ErasureRefused):
        erase_patient(staff.manager, patient.id, "demande du patient")
    release_hold(staff.manager, patient.id)
    erase_patient(staff.manager, patient.id, "demande du patient")


def test_a_tampered_ledger_line_is_detected(staff, patient, private_ledger):
    from coffre.identity.access import create_patient

    second = create_patient(staff.secretary, patient_row(nir=make_nir("F", 1985, 3, serial="456")))
    third = create_patient(staff.secretary, patient_row(nir=make_nir("F", 1985, 3, serial="789")))
    for p in (patient, second, third):
        erase_patient(staff.manager, p.id, "demande du patient")
    assert [e.seq for e in ledger.entries()] == [1, 2, 3]
    lines = private_ledger.read_text().splitlines()

    altered = json.loads(lines[1])
    altered["patient"] = str(patient.id)
    private_ledger.write_text("\n".join([lines[0], json.dumps(altered), lines[2]]) + "\n")
    with pytest.raises(ledger.LedgerError) as error:
        ledger.entries()
    assert error.value.line == 2

    private_ledger.write_text("\n".join([lines[0], lines[2]]) + "\n")  # a line removed
    with pytest.raises(ledger.LedgerError) as error:
        ledger.entries()
    assert error.value.line == 2


def test_reapply_erases_again_a_patient_brought_back_by_a_restore(staff, patient):
    published(staff, patient.id, K="4.4")
    saved = _row(patient.id)
    erase_patient(staff.manager, patient.id, "demande du patient")
    # an older backup is restored: the key and the indexes are back
    Patient.unscoped.filter(id=patient.id).update(**saved)
    assert access_patient(staff.secretary, patient.id).nir == patient_row()["nir"]

    assert reapply_ledger() == 1
    assert _row(patient.id)["data_key"] is None
    assert find_patients(staff.secretary, nir=patient_row()["nir"]) == []
    assert len(ledger.entries()) == 1  # no new line
    assert reapply_ledger() == 0


# --- the commands, through the real ``coffre`` ----------------------------------------

@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    from tests.cli_helpers import demo_installation

    with demo_installation(tmp_path_factory) as cli:
        yield cli


def test_erase_and_ledger_verify_commands(cli):

    finess = cli.demo_finess
    patient_id = cli.json_lines("specimens", "list", "--lab", finess)[0]["patient"]
    args = ("patient", "erase", "--id", patient_id, "--lab", finess, "--reason", "demande")

    refused = cli.run(*args, check=False, stdin="no\n")
    assert refused.returncode == 1 and "nothing was erased" in refused.stderr
    assert cli.json_lines(*args, "--yes") == [{"erased": patient_id, "lab": finess}]
    again = cli.run(*args, "--yes", check=False)
    assert again.returncode == 2  # erased patients are not found

    (verified,) = cli.json_lines("ledger", "verify")
    assert verified["ok"] and verified["entries"] == 1
    path = cli.home / "ledger" / "erasures.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().count(patient_id) == 1

    original = path.read_text()
    path.write_text(original.replace('"cause":"request"', '"cause":"retention"'))
    tampered = cli.run("ledger", "verify", check=False)
    assert tampered.returncode == 1 and "line 1" in tampered.stderr
    path.write_text(original)
    assert cli.json_lines("ledger", "reapply") == [{"reerased": 0}]


def test_a_torn_last_line_is_skipped_then_cut_off_by_the_next_erasure(
        staff, patient, private_ledger):
    from tests.conftest import patient_row

    erase_patient(staff.manager, patient.id, "demande du patient")
    whole = private_ledger.read_bytes()
    private_ledger.write_bytes(whole + b'{"at":"2026-11-28T10:00:00+00:00","cau')  # a crash
    assert [e.seq for e in ledger.entries()] == [1]
    assert ledger.torn_tail() == len(b'{"at":"2026-11-28T10:00:00+00:00","cau')
    from coffre.identity.access import create_patient

    second = create_patient(staff.secretary, patient_row())
    erase_patient(staff.manager, second.id, "demande du patient")
    assert [e.seq for e in ledger.entries()] == [1, 2]
    assert ledger.torn_tail() == 0
    assert private_ledger.read_bytes().startswith(whole)
