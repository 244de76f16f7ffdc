"""The access log is a forward-secure chain: `coffre audit verify` names the first
changed, removed or reordered entry, and truncation against signed checkpoints."""

import json

import pytest
from django.db import connection

from coffre.audit import chain, log
from coffre.audit.models import AccessEvent, ChainHead
from coffre.identity.access import access_patient, create_patient
from tests.conftest import patient_row


@pytest.fixture
def entries(actor_a, settings, monkeypatch):
    monkeypatch.setenv("COFFRE_AUDIT_CHECKPOINT_SECONDS", "3600")
    chain.checkpoint_file().unlink(missing_ok=True)
    patient = create_patient(actor_a, patient_row())
    for _ in range(9):
        access_patient(actor_a, patient.id)
    assert AccessEvent.objects.count() == 10
    return patient


def test_an_untouched_chain_verifies(entries):
    report = chain.verify()
    assert report.ok, report.problems
    assert report.entries == 10


def test_each_entry_is_chained_to_the_previous_one(entries):
    macs = list(AccessEvent.objects.values_list("mac", flat=True))
    assert len({bytes(m) for m in macs}) == 10
    assert list(AccessEvent.objects.values_list("seq", flat=True)) == list(range(1, 11))


def test_a_changed_entry_is_named(entries):
    AccessEvent.objects.filter(seq=4).update(person="mallory")
    assert chain.verify().problems == ["entry 4 has been changed (its MAC does not match)"]


def test_a_changed_patient_id_or_time_is_caught(entries, actor_b):
    other = create_patient(actor_b, patient_row())
    AccessEvent.objects.filter(seq=6).update(patient_id=other.id)
    assert chain.verify().problems[0].startswith("entry 6 has been changed")


def test_a_removed_entry_is_named(entries):
    AccessEvent.objects.filter(seq=5).delete()
    assert chain.verify().problems[0] == \
        "entry 5 is missing (removed); the chain resumes at entry 6"


def test_reordered_entries_are_named(entries):
    third = AccessEvent.objects.get(seq=3)
    seventh = AccessEvent.objects.get(seq=7)
    AccessEvent.objects.filter(pk=third.pk).update(seq=-1)
    AccessEvent.objects.filter(pk=seventh.pk).update(seq=3)
    AccessEvent.objects.filter(pk=third.pk).update(seq=7)
    assert chain.verify().problems == ["entry 3 is out of order (reordered)"]


def test_an_entry_rewritten_with_a_fresh_mac_still_fails(entries):
    """Without the chain key an attacker cannot recompute a MAC, even a plausible one."""
    import hashlib
    import hmac

    row = AccessEvent.objects.get(seq=8)
    fake = hmac.new(b"guess", b"anything", hashlib.sha256).digest()
    AccessEvent.objects.filter(pk=row.pk).update(outcome="not_found", mac=fake)
    assert chain.verify().problems[0].startswith("entry 8 has been changed")


def test_truncation_is_caught_by_a_signed_checkpoint(entries):
    chain.checkpoint_now()
    AccessEvent.objects.filter(seq__gte=9).delete()
    ChainHead.objects.update(seq=8)  # the attacker fixes the head too
    assert chain.verify().problems[0] == \
        "the log is truncated: it ends at entry 8 but a signed checkpoint records entry 10"


def test_a_cut_tail_with_a_rewritten_head_is_caught_without_checkpoint(entries):
    """The head's MAC is in clear, but its sealed key needs the master key."""
    eighth = AccessEvent.objects.get(seq=8)
    AccessEvent.objects.filter(seq__gte=9).delete()
    ChainHead.objects.update(seq=8, mac=eighth.mac)
    assert chain.verify().problems == [
        "the chain head does not follow from entry 8 (the log's tail was cut or the head "
        "altered)"]


def test_a_wiped_log_is_not_called_intact(entries):
    chain.checkpoint_now()
    AccessEvent.objects.all().delete()
    ChainHead.objects.all().delete()
    problems = chain.verify().problems
    assert problems[0] == "the chain head is missing (the log was wiped or altered)"
    assert "checkpoint records entry 10" in problems[1]


def test_the_first_chain_key_is_never_written_to_the_database(actor_a):
    create_patient(actor_a, patient_row())
    first = chain.first_chain_key()
    with connection.cursor() as cursor:
        cursor.execute("SELECT key FROM audit_chainhead")
        sealed = bytes(cursor.fetchone()[0])
    assert chain.audit_key().open_bytes(sealed, chain._HEAD_AD) != first


def test_truncation_without_checkpoint_is_caught_by_the_head(entries):
    AccessEvent.objects.filter(seq=10).delete()
    assert chain.verify().problems == ["the chain head says entry 10 but the log ends at entry 9"]


def test_a_forged_checkpoint_line_is_refused(entries):
    chain.checkpoint_now()
    path = chain.checkpoint_file()
    line = json.loads(path.read_text().splitlines()[-1])
    line["seq"] = 999
    path.write_text(json.dumps(line) + "\n")
    assert "checkpoint line 1 has an invalid signature" in chain.verify().problems


def test_checkpoints_are_written_after_commit_at_the_interval(
        actor_a, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setenv("COFFRE_AUDIT_CHECKPOINT_SECONDS", "0")
    chain.checkpoint_file().unlink(missing_ok=True)
    with django_capture_on_commit_callbacks(execute=False) as pending:
        create_patient(actor_a, patient_row())
    assert not chain.checkpoint_file().exists()  # nothing before the commit
    for callback in pending:
        callback()
    lines = chain.checkpoint_file().read_text().splitlines()
    assert lines and json.loads(lines[-1])["seq"] == 1


def test_the_current_chain_key_is_not_stored_in_clear(entries):
    head = ChainHead.objects.get()
    key = chain.first_chain_key()
    for _ in range(10):
        from coffre.vault.chain import next_key

        key = next_key(key)
    assert key not in bytes(head.key)


def test_no_audit_entry_holds_a_readable_value(entries, actor_a):
    log.record(actor_a, "read", [entries.id], purpose="Urgence : patiente Lefèvre au SAU")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_accessevent")
        dump = repr(cursor.fetchall()).lower()
    for value in ("lefèvre", "lefevre", "claire", "612345678", "example.fr", "urgence"):
        assert value not in dump


@pytest.fixture
def auditor(monkeypatch):
    """An auditor key pair set before the first entry, as `coffre init` does."""
    import base64

    from coffre.vault.chain import new_auditor_keypair

    private, public = new_auditor_keypair()
    monkeypatch.setenv("COFFRE_AUDITOR_PUBLIC_KEY", base64.b64encode(public).decode())
    return private


def test_with_an_auditor_key_the_server_cannot_recover_the_first_key(auditor, actor_a):
    from coffre.vault import DecryptionError

    create_patient(actor_a, patient_row())
    head = ChainHead.objects.get()
    assert head.first_key_holder == "auditor"
    with pytest.raises(DecryptionError):
        chain.audit_key().open_bytes(bytes(head.first_key), chain._FIRST_AD)
    with pytest.raises(chain.VerifyError, match="--auditor-key"):
        chain.verify()


def test_the_auditor_verifies_and_still_catches_a_change(auditor, actor_a):
    patient = create_patient(actor_a, patient_row())
    access_patient(actor_a, patient.id)
    assert chain.verify(auditor_private=auditor).ok
    AccessEvent.objects.filter(seq=2).update(action="search")
    assert chain.verify(auditor_private=auditor).problems == [
        "entry 2 has been changed (its MAC does not match)"]
