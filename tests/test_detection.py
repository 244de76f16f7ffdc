"""Mass reading is detected and stopped while it happens."""

import datetime as dt
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from coffre.accounts.models import Membership, Role
from coffre.audit import detection
from coffre.audit.models import AccessEvent, AccountLock, Alert, AlertKind, AuditSettings
from coffre.identity.access import access_patient, find_patients
from coffre.identity.importer import dict_rows, import_rows
from coffre.identity.models import Patient
from coffre.identity.synthetic import generate_patients
from coffre.tenancy.actors import Actor


@pytest.fixture
def many_patients(lab_a):
    importer = Actor("importer", lab_a.id, "import", "cli")
    report = import_rows(importer, lambda: dict_rows(generate_patients(520, seed=3)))
    assert report.imported == 520
    return list(Patient.unscoped.filter(lab=lab_a).values_list("id", flat=True))


@pytest.fixture
def reader(lab_a):
    user = get_user_model().objects.create_user("eve", password="x" * 20)
    Membership.objects.create(user=user, lab=lab_a, role=Role.SECRETARY)
    dpo = get_user_model().objects.create_user("dora", email="dpo@example.org")
    Membership.objects.create(user=dpo, lab=lab_a, role=Role.DPO)
    return Actor("eve", lab_a.id, "secretary", "web", "10.0.0.9")


def test_a_scripted_reader_is_locked_before_reading_500_patients(many_patients, reader):
    read = 0
    with pytest.raises(detection.AccountLocked):
        for patient_id in many_patients:
            access_patient(reader, patient_id)
            read += 1
    assert read < 500
    assert read + 1 == detection.DEFAULTS["hard_per_10_minutes"]
    kinds = set(Alert.objects.values_list("kind", flat=True))
    assert {AlertKind.MASS_READING, AlertKind.ACCOUNT_LOCKED} <= kinds
    assert AccountLock.objects.filter(person="eve", unlocked_at__isnull=True).exists()


def test_the_soft_threshold_alerts_the_dpo_once_by_mail(many_patients, reader):
    for patient_id in many_patients[:detection.DEFAULTS["soft_per_10_minutes"] + 5]:
        access_patient(reader, patient_id)
    alerts = Alert.objects.filter(kind=AlertKind.MASS_READING)
    assert alerts.count() == 1
    assert [m.to for m in mail.outbox] == [["dpo@example.org"]]
    body = mail.outbox[0].body
    assert "eve" in body and "patients distincts" in body
    assert not AccountLock.objects.exists()


def test_a_locked_account_reads_nothing_more_and_its_sessions_stop(many_patients, reader):
    detection.lock(reader, "test")
    assert not get_user_model().objects.get(username="eve").is_active
    with pytest.raises(detection.AccountLocked):
        access_patient(reader, many_patients[0])
    with pytest.raises(detection.AccountLocked):
        find_patients(reader, email="x@example.com")


def test_a_manager_unlock_restores_the_account(many_patients, reader):
    detection.lock(reader, "test")
    manager = Actor("mona", reader.lab_id, "lab_manager", "web")
    with pytest.raises(detection.SelfUnlock):
        detection.unlock("eve", by=reader)
    assert detection.unlock("eve", by=manager) == 1
    assert AccessEvent.objects.filter(action="unlock", person="mona").exists()
    assert get_user_model().objects.get(username="eve").is_active
    access_patient(reader, many_patients[0])


def test_the_cli_is_watched_and_locked_the_same_way(many_patients, lab_a):
    cli = Actor("os:operator", lab_a.id, "cli", "cli")
    with pytest.raises(detection.AccountLocked):
        for patient_id in many_patients:
            access_patient(cli, patient_id)
    assert AccountLock.objects.filter(person="os:operator").exists()


def test_thresholds_are_settings_of_the_lab(many_patients, reader, lab_a):
    AuditSettings.objects.create(lab=lab_a, soft_per_10_minutes=5, hard_per_10_minutes=10)
    read = 0
    with pytest.raises(detection.AccountLocked):
        for patient_id in many_patients:
            access_patient(reader, patient_id)
            read += 1
    assert read == 9


def test_reading_the_same_patient_again_does_not_count_twice(many_patients, reader):
    for _ in range(300):
        access_patient(reader, many_patients[0])
    assert detection.distinct_read("eve") == {"10_minutes": 1, "hour": 1}
    assert not Alert.objects.exists()


def test_a_busy_account_gets_a_higher_soft_threshold_but_the_same_hard_one(reader, lab_a):
    two_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    AccessEvent.objects.bulk_create(
        AccessEvent(seq=-i, at=two_days_ago, person="eve", role="secretary", channel="web",
                    lab_id=lab_a.id, patient_id=uuid.uuid4(),
                    action="read", kind="identity", mac=b"") for i in range(1, 91))
    limits = detection.thresholds(reader)
    assert limits.soft["10_minutes"] == 149  # 2 x 90, capped below the hard threshold
    assert limits.hard["10_minutes"] == 150


def test_the_hourly_limit_holds_for_a_reader_who_stays_slow_per_10_minutes(many_patients,
                                                                         reader, lab_a):
    """A reader who spreads 395 patients over the last hour, then reads a few more."""
    earlier = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    AccessEvent.objects.bulk_create(
        AccessEvent(seq=-i, at=earlier, person="eve", role="secretary", channel="web",
                    lab_id=lab_a.id, patient_id=uuid.uuid4(), action="read",
                    kind="identity", mac=b"") for i in range(1, 396))
    read = 0
    with pytest.raises(detection.AccountLocked):
        for patient_id in many_patients[:50]:
            access_patient(reader, patient_id)
            read += 1
    assert read < detection.CHECK_EVERY
    assert AccountLock.objects.get(person="eve").reason.startswith("40")
