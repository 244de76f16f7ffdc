"""Rotating the material of the installation keys (issue 14, item 16): `coffre keys
rotate --installation PURPOSE` makes a new version and re-seals what the old one
sealed; the old version is destroyed only once nothing needs it; the access log keeps
verifying across an audit key rotation, and the old checkpoint key cannot sign a line
after it."""

from __future__ import annotations

import json

import pytest

from coffre.accounts import mfa
from coffre.accounts.models import Role, TotpDevice
from coffre.audit import alerts, canaries, chain
from coffre.audit.models import AccessEvent, Alert, CanaryMark, ChainHead
from coffre.breach import planting
from coffre.identity.access import access_patient, break_glass_access, create_patient
from coffre.keyring import installation
from coffre.keyring import services as keyring
from coffre.keyring.models import InstallationKey
from coffre.lifecycle import retention
from coffre.lifecycle.models import LegalHold
from coffre.vault import key_id_of
from tests.conftest import member, patient_row


def _ids(purpose: str) -> list[tuple[str, bool]]:
    return list(InstallationKey.objects.filter(purpose=purpose).order_by("pk")
                .values_list("key_id", "active"))


def test_the_accounts_key_rotates_and_every_secret_follows(lab_a):
    alice = member("alice", lab_a, Role.SECRETARY)
    secret = mfa.enroll_confirmed(alice)
    old = keyring.installation_key("accounts").hex_id
    report = installation.rotate_installation_key("accounts")
    assert report.created and report.resealed == 1 and report.kept == 0
    assert _ids("accounts") == [(old, False), (report.key_id, True)]
    device = TotpDevice.objects.get(user=alice)
    assert key_id_of(bytes(device.secret)).hex() == report.key_id
    keyring.clear_caches()
    assert mfa.verify(alice, mfa.current_code(secret))  # the secret is the same secret
    with pytest.raises(installation.InstallationKeyError, match="active one"):
        installation.retire_installation_key("accounts", report.key_id)
    installation.retire_installation_key("accounts", old)
    assert _ids("accounts") == [(report.key_id, True)]


def test_a_rotation_that_stopped_resumes_without_a_third_version(lab_a):
    alice = member("alice", lab_a, Role.SECRETARY)
    secret = mfa.enroll_confirmed(alice)
    keyring.installation_key("accounts")
    keyring.new_installation_version("accounts", keyring.Key.generate())  # then killed
    with pytest.raises(installation.InstallationKeyError, match="still seals 1"):
        installation.retire_installation_key("accounts", _ids("accounts")[0][0])
    report = installation.rotate_installation_key("accounts")
    assert not report.created and report.resealed == 1
    assert len(_ids("accounts")) == 2
    assert mfa.verify(alice, mfa.current_code(secret))


def test_the_legal_hold_key_rotates(actor_a):
    from coffre.tenancy.actors import Actor

    patient = create_patient(actor_a, patient_row())
    manager = Actor("marc", actor_a.lab_id, "lab_manager", "web")
    retention.add_hold(manager, patient.id, "Réquisition judiciaire 2026-118")
    report = installation.rotate_installation_key("legal-hold")
    assert report.resealed == 1
    hold = LegalHold.objects.get()
    assert key_id_of(bytes(hold.reason)).hex() == report.key_id
    keyring.clear_caches()
    assert retention.list_holds(manager)[0]["reason"] == "Réquisition judiciaire 2026-118"


@pytest.fixture
def audited(actor_a, monkeypatch):
    """A log with a sealed purpose (break-the-glass), an acknowledged alert with a
    comment, canaries, and a checkpoint."""
    from coffre.tenancy.actors import Actor

    monkeypatch.setenv("COFFRE_AUDIT_CHECKPOINT_SECONDS", "3600")
    chain.checkpoint_file().unlink(missing_ok=True)
    patient = create_patient(actor_a, patient_row())
    access_patient(actor_a, patient.id)
    planting.plant(actor_a.lab_id, 2, actor_a)
    alerts.raise_alert(actor_a.lab_id, "mass_reading", "alice", "12 patients en 10 min")
    alerts.acknowledge(Alert.objects.get(), Actor("dora", actor_a.lab_id, "dpo", "web"),
                       "Vérifié avec l'intéressée : campagne de rappel.")
    chain.checkpoint_now()
    return patient


def test_the_audit_key_rotates_and_the_log_still_verifies(audited, actor_a, sister_lab):
    old = chain.audit_key().hex_id
    purpose_before = AccessEvent.objects.exclude(purpose=b"").count()
    report = installation.rotate_installation_key("audit")
    assert report.created
    # Alert comment, two canary marks, the chain head's key (and k_0 without an auditor)
    assert report.resealed == 5
    assert report.kept == purpose_before  # the log's purposes are covered by its MACs
    keyring.clear_caches()
    for blob in (Alert.objects.get().comment, *CanaryMark.objects.values_list("sealed",
                                                                                flat=True),
                 ChainHead.objects.get().key):
        assert key_id_of(bytes(blob)).hex() == report.key_id
    assert alerts.comment_of(Alert.objects.get()).startswith("Vérifié")
    assert len(canaries.planted(actor_a.lab_id)) == 2
    access_patient(actor_a, audited.id)  # the chain goes on under the new version
    chain.checkpoint_now()
    verified = chain.verify()
    assert verified.ok, verified.problems
    assert verified.checkpoints == 2
    if purpose_before:
        with pytest.raises(installation.InstallationKeyError, match="still seals"):
            installation.retire_installation_key("audit", old)


def test_a_break_glass_reason_sealed_before_the_rotation_is_still_read(actor_a, sister_lab,
                                                                        sister_patient):
    from coffre.audit.history import patient_history

    break_glass_access(actor_a, sister_patient.id, "Patient transféré aux urgences ce soir")
    installation.rotate_installation_key("audit")
    keyring.clear_caches()
    reasons = [e.reason for e in patient_history(sister_patient.id, with_reasons=True)]
    assert "Patient transféré aux urgences ce soir" in reasons


def test_the_old_checkpoint_key_cannot_sign_a_line_after_the_rotation(audited):
    old_signer = chain.signer()
    installation.rotate_installation_key("audit")
    head = ChainHead.objects.get()
    at = "2030-01-01T00:00:00+00:00"
    forged = {"restore": True, "seq": 0, "mac": "00" * 32, "at": at,
              "signature": old_signer.sign(chain._restore_message(0, bytes(32), at)).hex()}
    with open(chain.checkpoint_file(), "a") as handle:
        handle.write(json.dumps(forged) + "\n")
    problems = chain.verify().problems
    count = len(chain.checkpoint_file().read_text().splitlines())
    assert f"checkpoint line {count} has an invalid signature" in problems
    assert head.seq > 0


def test_the_cli_rotates_shows_and_retires_an_installation_key(tmp_path_factory):
    from tests.cli_helpers import drop_database, make_cli

    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    try:
        cli.run("init")
        cli.run("lab", "add", "--finess", "750000010", "--name", "Laboratoire A")
        before = [r for r in cli.json_lines("keys", "status")
                  if r["kind"] == "installation" and r["purpose"] == "legal-hold"]
        done = cli.json_lines("keys", "rotate", "--installation", "legal-hold")[-1]
        assert done["event"] == "done" and done["purpose"] == "legal-hold"
        after = [r for r in cli.json_lines("keys", "status")
                 if r["kind"] == "installation" and r["purpose"] == "legal-hold"]
        assert [r["active"] for r in after] == [False, True][-len(after):]
        old = next(r["key_id"] for r in after if not r["active"])
        retired = cli.json_lines("keys", "retire", "--installation", "legal-hold",
                                 "--key-id", old)
        assert retired == [{"event": "retired", "purpose": "legal-hold", "key_id": old}]
        bad = cli.run("keys", "rotate", "--installation", "nothing", check=False)
        assert bad.returncode == 2 and "invalid choice" in bad.stderr
        assert len(before) <= 1
    finally:
        drop_database(database)


@pytest.fixture
def produced_export(lab_a, actor_a, tmp_path, monkeypatch):
    """A produced export of lab A (its watermark fingerprints under the current
    "exports" key), and its decrypted CSV."""
    import datetime as dt

    from coffre import config
    from coffre.exports import services as exports
    from coffre.vault import decrypt_with, new_recipient_identity
    from tests.conftest import sign

    monkeypatch.setenv("COFFRE_KEY_FILE", str(config.key_file()))  # the key stays put
    monkeypatch.setenv("COFFRE_HOME", str(tmp_path / "home"))  # a staging area of its own
    for number in range(6):
        create_patient(actor_a, patient_row(nir="", email=f"p{number}@example.org",
                                            birth_name=f"Patient{'ABCDEF'[number]}"))
    member("maud", keyring_lab(actor_a), "lab_manager")
    identity, recipient = new_recipient_identity()
    today = dt.date.today()
    export = exports.request_export(
        keyring_lab(actor_a), purpose="Étude pour le Dr Martin", recipient="CHU de Brest",
        recipient_key=recipient, fields="birth_name,first_names,birth_date,email",
        period_from=today - dt.timedelta(days=1), period_to=today + dt.timedelta(days=1),
        requested_by="sam")
    exports.approve(export.pk, sign("maud"), channel="cli")
    export = exports.run(export.pk)
    return export, decrypt_with(identity, exports.staged_file(export).read_bytes()).decode()


def keyring_lab(actor):
    from coffre.tenancy.models import Lab

    return Lab.objects.get(pk=actor.lab_id)


def test_an_export_made_before_an_exports_key_rotation_is_still_attributed(
        produced_export):
    from coffre.exports import services as exports
    from coffre.exports.models import ExportWatermark

    export, text = produced_export
    old = keyring.installation_key("exports").hex_id
    assert set(ExportWatermark.objects.values_list("key_id", flat=True)) == {old}
    report = installation.rotate_installation_key("exports")
    keyring.clear_caches()
    assert report.created and keyring.installation_key("exports").hex_id != old
    assert exports.attribute(text) == export.pk  # through the old version's key
    with pytest.raises(installation.InstallationKeyError, match="still seals"):
        installation.retire_installation_key("exports", old)


def test_the_export_text_key_rotates_and_reseals_purposes(produced_export):
    from coffre.exports import sealing
    from coffre.exports.models import ExportRequest

    export, _ = produced_export
    before = bytes(ExportRequest.objects.get(pk=export.pk).purpose)
    report = installation.rotate_installation_key("export-text")
    assert report.resealed == 2  # the purpose and the recipient
    row = ExportRequest.objects.get(pk=export.pk)
    assert key_id_of(bytes(row.purpose)).hex() == report.key_id
    assert len(bytes(row.purpose)) == len(before)  # same padding: the size says nothing
    keyring.clear_caches()
    assert sealing.open_text("purpose", row.pk, row.purpose) == "Étude pour le Dr Martin"
    old = next(k for k, active in _ids("export-text") if not active)
    installation.retire_installation_key("export-text", old)
