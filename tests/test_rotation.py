"""Key rotation (master and lab keys re-wrapped, never data), re-encryption of patient
data under new data keys, retirement of old versions, resumability."""

from __future__ import annotations

import shutil

import pytest

from coffre import config
from coffre.identity.access import access_patient, create_patient
from coffre.identity.models import SEALED_FIELDS, Patient
from coffre.keyring import rotation
from coffre.keyring import services as keyring
from coffre.keyring.models import InstallationKey, LabKey, ReencryptionRun
from coffre.labwork.access import access_order
from coffre.labwork.models import Order, Result, Specimen
from coffre.lifecycle import reencrypt
from coffre.vault import key_id_of
from coffre.vault.master import read_key_file
from tests.cli_helpers import drop_database, make_cli
from tests.conftest import make_nir, patient_row
from tests.lab_helpers import published, staff_of


@pytest.fixture(autouse=True)
def private_key_file(tmp_path, monkeypatch):
    """Rotation edits the key file: give each test a copy of the session's."""
    copy = tmp_path / "keys" / "master.key"
    copy.parent.mkdir(mode=0o700)
    shutil.copyfile(config.key_file(), copy)
    copy.chmod(0o600)
    monkeypatch.setenv("COFFRE_KEY_FILE", str(copy))
    monkeypatch.setenv("COFFRE_ACTIVE_KEY_SECONDS", "0")  # no grace period before retire
    keyring.clear_caches()
    return copy


@pytest.fixture
def staff(lab_a):
    return staff_of(lab_a)


@pytest.fixture
def patients(staff):
    """Five patients of lab A, the first with a published order."""
    made = [create_patient(staff.secretary, patient_row(
        nir=make_nir("F", 1985, 3, serial=f"{100 + n}"), email=f"p{n}@example.fr",
        phone=f"06 12 34 56 {10 + n}")) for n in range(5)]
    order = published(staff, made[0].id, K="4.7", NA="141")
    return made, order


@pytest.fixture
def other(lab_b, actor_b):
    return create_patient(actor_b, patient_row())


def _values(actor, patient_id) -> dict:
    keyring.clear_caches()
    return dict(access_patient(actor, patient_id).values)


def _results(actor, order_id) -> dict:
    keyring.clear_caches()
    return {v.test.code: v.value for v in access_order(actor, order_id).results}


def _lab_key_ids(lab_id) -> set[str]:
    return {key_id_of(bytes(w)).hex() for w in Patient.unscoped.filter(lab_id=lab_id)
            .values_list("data_key", flat=True)}


def test_rotate_master_rewraps_every_key_and_everything_still_opens(staff, patients, other,
                                                                   actor_b, private_key_file):
    made, order = patients
    old = keyring.master_keys().current.hex_id
    before = {p.id: _values(staff.secretary, p.id) for p in made}
    data_keys = dict(Patient.unscoped.values_list("id", "data_key"))

    report = rotation.rotate_master(batch=1)

    new = read_key_file(private_key_file).current.hex_id
    assert report.added and report.master_key_id == new != old
    assert report.rewrapped == InstallationKey.objects.count() + LabKey.objects.count()
    assert report.remaining == 0
    assert not InstallationKey.objects.filter(master_key_id=old).exists()
    assert not LabKey.objects.filter(master_key_id=old).exists()
    # data keys and data untouched (only keys were re-wrapped)
    assert dict(Patient.unscoped.values_list("id", "data_key")) == data_keys
    assert {p.id: _values(staff.secretary, p.id) for p in made} == before
    assert _results(staff.biologist, order.id) == {"K": "4.7", "NA": "141"}
    assert _values(actor_b, other.id)["birth_name"] == "Lefèvre"
    # run again: nothing to do under the (unused at first) same version? a new one
    again = rotation.rotate_master()
    assert again.remaining == 0 and again.rewrapped == report.rewrapped


def test_rotate_master_resumes_after_a_stop_without_a_third_version(staff, patients,
                                                                    private_key_file):
    made, order = patients
    total = InstallationKey.objects.count() + LabKey.objects.count()
    first = rotation.rotate_master(batch=1, limit=1)  # "crash" after one row
    assert first.rewrapped == 1 and first.remaining == total - 1
    keyring.clear_caches()
    assert _values(staff.secretary, made[1].id)["first_names"] == "Claire Anne"
    second = rotation.rotate_master()
    assert not second.added and second.master_key_id == first.master_key_id
    assert second.rewrapped == total - 1 and second.remaining == 0
    assert len(read_key_file(private_key_file).older) == 1
    assert _results(staff.biologist, order.id)["K"] == "4.7"


def test_an_interrupted_row_is_rolled_back_and_redone(staff, patients, monkeypatch):
    made, _order = patients
    real = rotation._rewrap_master_row
    calls = []

    def crash(model, ad_of, pk, target):
        calls.append(pk)
        if len(calls) == 2:
            raise RuntimeError("kill -9")
        return real(model, ad_of, pk, target)

    monkeypatch.setattr(rotation, "_rewrap_master_row", crash)
    with pytest.raises(RuntimeError):
        rotation.rotate_master(batch=1)
    monkeypatch.setattr(rotation, "_rewrap_master_row", real)
    report = rotation.rotate_master()
    assert report.remaining == 0 and not report.added
    assert _values(staff.secretary, made[2].id)["email"] == "p2@example.fr"


def test_retire_master_is_refused_while_in_use_then_removes_the_version(
        staff, patients, private_key_file):
    old = keyring.master_keys().current.hex_id
    with pytest.raises(rotation.RotationError, match="current"):
        rotation.retire_master(old)
    rotation.rotate_master(limit=1)
    with pytest.raises(rotation.RotationError, match="still wraps"):
        rotation.retire_master(old)
    rotation.rotate_master()
    rotation.retire_master(old)
    assert all(k.hex_id != old for k in read_key_file(private_key_file).older)
    keyring.clear_caches()
    keyring.check()
    assert _values(staff.secretary, patients[0][0].id)["city"] == "Paris"


def test_rotate_lab_rewraps_the_labs_data_keys_only(staff, patients, other, lab_a, lab_b,
                                                    actor_b):
    made, order = patients
    old = LabKey.objects.get(lab=lab_a, active=True).key_id
    other_before = Patient.unscoped.filter(lab=lab_b).values_list("data_key", flat=True)[0]
    sealed_before = Patient.unscoped.filter(lab=lab_a).values_list("id", "nir")
    sealed_before = dict(sealed_before)

    report = rotation.rotate_lab(lab_a.id, batch=2)

    new = LabKey.objects.get(lab=lab_a, active=True).key_id
    assert report.created and report.lab_key_id == new != old
    assert report.rewrapped == len(made) and report.remaining == 0
    assert _lab_key_ids(lab_a.id) == {new}
    assert LabKey.objects.filter(lab=lab_a).count() == 2  # the old one stays readable
    assert dict(Patient.unscoped.filter(lab=lab_a).values_list("id", "nir")) == sealed_before
    assert bytes(Patient.unscoped.filter(lab=lab_b).values_list("data_key", flat=True)[0]) \
        == bytes(other_before)
    assert _values(staff.secretary, made[3].id)["email"] == "p3@example.fr"
    assert _results(staff.biologist, order.id) == {"K": "4.7", "NA": "141"}
    assert _values(actor_b, other.id)["city"] == "Paris"


def test_rotate_lab_resumes_and_retire_waits_for_the_last_row(staff, patients, lab_a):
    made, order = patients
    old = LabKey.objects.get(lab=lab_a, active=True).key_id
    first = rotation.rotate_lab(lab_a.id, batch=2, limit=3)
    assert first.rewrapped == 3 and first.remaining == 2
    keyring.clear_caches()
    assert _values(staff.secretary, made[4].id)["phone"]  # old and new both open
    with pytest.raises(rotation.RotationError, match="still wraps 2"):
        rotation.retire_lab_key(lab_a.id, old)
    with pytest.raises(rotation.RotationError, match="active"):
        rotation.retire_lab_key(lab_a.id, first.lab_key_id)
    second = rotation.rotate_lab(lab_a.id)
    assert not second.created and second.lab_key_id == first.lab_key_id
    assert second.rewrapped == 2 and second.remaining == 0
    rotation.retire_lab_key(lab_a.id, old)
    assert not LabKey.objects.filter(key_id=old).exists()
    assert {p.id: _values(staff.secretary, p.id)["used_name"] for p in made} == {
        p.id: "Martin" for p in made}
    assert _results(staff.biologist, order.id)["NA"] == "141"


def _ciphertexts(lab_id) -> dict:
    rows = {}
    for patient in Patient.unscoped.filter(lab_id=lab_id):
        for name in SEALED_FIELDS:
            rows[("patient", name, patient.id)] = bytes(getattr(patient, name))
        rows[("patient", "data_key", patient.id)] = bytes(patient.data_key)
    for model, columns in ((Order, ("prescriber_rpps", "prescriber_name", "clinical_info")),
                           (Specimen, ("rejection_reason",)),
                           (Result, ("value", "flag", "comment"))):
        for row in model.unscoped.filter(lab_id=lab_id):
            for column in columns:
                rows[(model.__name__, column, row.id)] = bytes(getattr(row, column))
    return rows


def test_reencrypt_changes_every_ciphertext_and_values_read_back(staff, patients, other,
                                                                 lab_a, lab_b, actor_b):
    made, order = patients
    before_values = {p.id: _values(staff.secretary, p.id) for p in made}
    before_results = _results(staff.biologist, order.id)
    before = _ciphertexts(lab_a.id)
    other_before = _ciphertexts(lab_b.id)
    old_data_keys = {p.id: keyring.open_row_key(
        Patient.unscoped.get(id=p.id).data_key, "patient", lab_a.id, p.id).key_id
        for p in made}

    report = reencrypt.reencrypt(lab_a.id)

    assert report.finished and report.reencrypted == len(made)
    assert report.tables["result"] >= 2 and report.tables["order"] == 1
    after = _ciphertexts(lab_a.id)
    assert after.keys() == before.keys()
    assert all(after[k] != before[k] for k in before)
    for p in made:  # a new data key: every value is sealed under its id
        wrapped = Patient.unscoped.get(id=p.id).data_key
        new_id = keyring.open_row_key(wrapped, "patient", lab_a.id, p.id).key_id
        assert new_id != old_data_keys[p.id]
        assert key_id_of(bytes(Patient.unscoped.get(id=p.id).nir)) == new_id
    assert {p.id: _values(staff.secretary, p.id) for p in made} == before_values
    assert _results(staff.biologist, order.id) == before_results
    assert _ciphertexts(lab_b.id) == other_before
    assert _values(actor_b, other.id)["nir"] == patient_row()["nir"]


def test_reencrypt_resumes_after_a_crash_in_the_middle(staff, patients, lab_a, monkeypatch):
    made, order = patients
    before = _ciphertexts(lab_a.id)
    real = reencrypt.reencrypt_patient
    calls = []

    def crash(patient_id, run, tables):
        calls.append(patient_id)
        if len(calls) == 3:
            raise RuntimeError("kill -9")
        return real(patient_id, run, tables)

    monkeypatch.setattr(reencrypt, "reencrypt_patient", crash)
    with pytest.raises(RuntimeError):
        reencrypt.reencrypt(lab_a.id)
    run = ReencryptionRun.objects.get()
    assert run.patients_done == 2 and run.finished_at is None
    keyring.clear_caches()
    assert all(_values(staff.secretary, p.id)["sex"] == "F" for p in made)  # mixed: fine

    monkeypatch.setattr(reencrypt, "reencrypt_patient", real)
    report = reencrypt.reencrypt(lab_a.id)
    assert report.resumed and report.finished and report.reencrypted == len(made) - 2
    after = _ciphertexts(lab_a.id)
    assert all(after[k] != before[k] for k in before)  # each patient done exactly once
    assert ReencryptionRun.objects.get().finished_at is not None
    assert _results(staff.biologist, order.id) == {"K": "4.7", "NA": "141"}
    assert not reencrypt.reencrypt(lab_a.id).resumed  # a finished run is not resumed


def test_reencrypt_with_a_limit_then_again(staff, patients, lab_a):
    made, _order = patients
    first = reencrypt.reencrypt(lab_a.id, limit=2)
    assert first.reencrypted == 2 and not first.finished
    second = reencrypt.reencrypt(lab_a.id)
    assert second.resumed and second.reencrypted == len(made) - 2 and second.finished


def test_status_counts_rows_per_key_version(staff, patients, lab_a, lab_b, other):
    rotation.rotate_lab(lab_a.id, limit=2)
    rows = rotation.status()
    master = [r for r in rows if r["kind"] == "master"]
    assert master[0]["current"]
    assert master[0]["installation_keys"] == InstallationKey.objects.count()
    assert master[0]["lab_keys"] == LabKey.objects.count()
    lab_rows = {r["key_id"]: r for r in rows if r["kind"] == "lab"}
    active = LabKey.objects.get(lab=lab_a, active=True).key_id
    assert lab_rows[active]["patients"] == 2
    assert sum(r["patients"] for r in lab_rows.values() if r["lab"] == lab_a.finess) == 5
    assert sum(r["patients"] for r in lab_rows.values() if r["lab"] == lab_b.finess) == 1


@pytest.fixture
def cli(tmp_path):
    cli, database = make_cli(tmp_path / "home")
    cli.env["COFFRE_ACTIVE_KEY_SECONDS"] = "0"  # retire right after the rotation
    cli.run("init")
    yield cli
    drop_database(database)


def test_the_keys_commands_end_to_end(cli):
    cli.run("generate", "--patients", "40", "--labs", "2", "--seed", "7")
    finess = cli.json_lines("lab", "list")[0]["finess"]
    csv_nir = make_nir("M", 1990, 1, serial="901")
    cli.run("lab", "add", "--finess", "750000010", "--name", "Laboratoire Test")
    path = cli.home / "one.csv"
    import csv

    from coffre.identity.registry import CSV_COLUMNS

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerow(patient_row(nir=csv_nir, sex="M", birth_date="1990-01-05"))
    cli.run("import", "patients", str(path), "--lab", "750000010")
    old = next(r for r in cli.json_lines("keys", "status") if r["kind"] == "master")["key_id"]

    lines = cli.json_lines("keys", "rotate", "--master")
    done = lines[-1]
    assert done["event"] == "done" and done["remaining"] == 0 and done["rewrapped"] >= 4
    found = cli.json_lines("patient", "find", "--nir", csv_nir, "--lab", "750000010")
    assert len(found) == 1 and found[0]["birth_name"] == "Lefèvre"

    refused = cli.run("keys", "retire", "--master", done["master_key_id"], check=False)
    assert refused.returncode == 1 and "current" in refused.stderr
    assert cli.json_lines("keys", "retire", "--master", old)[0]["event"] == "retired"

    rotated, reindexed = cli.json_lines("keys", "rotate", "--lab", finess)
    assert rotated["remaining"] == 0 and rotated["rewrapped"] > 0
    # The lab's blind-index key rotates with its lab key: every patient re-indexed.
    assert reindexed["finished"] and reindexed["patients"] == rotated["patients"] > 0
    assert reindexed["index_key_id"] != rotated["lab_key_id"]
    status = cli.json_lines("keys", "status")
    old_lab = next(r for r in status if r["kind"] == "lab" and r["lab"] == finess
               and not r["active"])
    assert old_lab["patients"] == 0
    cli.run("keys", "retire", "--lab", finess, "--key-id", old_lab["key_id"])

    again = cli.json_lines("keys", "reencrypt")[-1]
    assert again["finished"] and again["reencrypted"] == 41
    found = cli.json_lines("patient", "find", "--nir", csv_nir, "--lab", "750000010")
    assert len(found) == 1 and found[0]["email"] == "claire.lefevre@example.fr"
    bad = cli.run("keys", "retire", "--lab", finess, check=False)
    assert bad.returncode == 2 and "--key-id" in bad.stderr


def test_a_running_server_picks_up_the_new_lab_key_and_retire_waits(staff, patients, lab_a,
                                                                    monkeypatch):
    """A process that cached the old active lab key keeps using it for at most
    COFFRE_ACTIVE_KEY_SECONDS; retire waits twice that after the rotation."""
    monkeypatch.setenv("COFFRE_ACTIVE_KEY_SECONDS", "3600")
    old_key = keyring.active_lab_key(lab_a.id)  # the "server" caches it
    old = old_key.hex_id
    report = rotation.rotate_lab(lab_a.id)
    keyring._active_lab_key[lab_a.id] = (keyring.time.monotonic(), old_key)  # stale cache
    late = create_patient(staff.secretary, patient_row(
        nir=make_nir("F", 1985, 3, serial="999"), email="late@example.fr"))
    assert _lab_key_ids(lab_a.id) == {report.lab_key_id, old}
    with pytest.raises(rotation.RotationError, match="replaced less than 7200 s ago"):
        rotation.retire_lab_key(lab_a.id, old)
    monkeypatch.setenv("COFFRE_ACTIVE_KEY_SECONDS", "0")
    assert keyring.active_lab_key(lab_a.id).hex_id == report.lab_key_id  # re-checked
    with pytest.raises(rotation.RotationError, match="still wraps 1"):
        rotation.retire_lab_key(lab_a.id, old)
    again = rotation.rotate_lab(lab_a.id)  # resumes: no third key
    assert not again.created and again.rewrapped == 1
    rotation.retire_lab_key(lab_a.id, old)
    assert _values(staff.secretary, late.id)["email"] == "late@example.fr"


def test_new_keys_are_wrapped_under_the_key_files_current_master(staff, patients, lab_b,
                                                                 private_key_file):
    """A server started before the rotation (old master in memory) wraps a new lab key
    under the new version, which a retire of the old version would otherwise break."""
    stale = keyring.master_keys()
    report = rotation.rotate_master()
    keyring._master = stale
    from coffre.tenancy.services import add_lab

    add_lab("350000014", "Laboratoire C")
    assert set(LabKey.objects.values_list("master_key_id", flat=True)) == {
        report.master_key_id}


def test_reencrypt_keeps_critical_notes_and_rejection_reasons(staff, patients, lab_a):
    from coffre.labwork import workflow
    from coffre.labwork.models import CriticalValue
    from coffre.labwork.sealing import PatientKeys, unseal
    from tests.lab_helpers import enter, order_for, receive_all, result

    made, _order = patients
    order = order_for(staff.secretary, made[1].id, "K")
    receive_all(staff.secretary, order)
    enter(staff.technician, order, K="7.1")
    potassium = result(order, "K")
    workflow.acknowledge_critical(staff.technician, potassium.id, "Dr Bernard prévenu à 10h12")
    rejected = order_for(staff.secretary, made[2].id, "NA")
    specimen = rejected.specimens.get()
    workflow.reject(staff.secretary, specimen.id, "Tube hémolysé")
    note_before = bytes(CriticalValue.objects.get(result=potassium).note)

    reencrypt.reencrypt(lab_a.id)

    keyring.clear_caches()
    keys = PatientKeys(lab_a.id)
    critical = CriticalValue.objects.get(result=potassium)
    assert bytes(critical.note) != note_before
    assert unseal(keys[made[1].id], "critical", "note", potassium.id,
                  critical.note) == "Dr Bernard prévenu à 10h12"
    specimen.refresh_from_db()
    assert unseal(keys[made[2].id], "specimen", "rejection_reason", specimen.id,
                  specimen.rejection_reason) == "Tube hémolysé"
    assert _results(staff.biologist, order.id)["K"] == "7.1"
