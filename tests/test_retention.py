"""Retention rules, legal holds and the purge."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from coffre.audit.models import AccessEvent
from coffre.identity.access import create_patient
from coffre.identity.models import Patient
from coffre.labwork import workflow
from coffre.labwork.models import CriticalValue, Order, Result, Specimen
from coffre.lifecycle import ledger
from coffre.lifecycle.models import RetentionRule
from coffre.lifecycle.retention import (
    HoldError,
    add_hold,
    list_holds,
    purge,
    release_hold,
    years_before,
)
from tests.conftest import make_nir, patient_row
from tests.lab_helpers import enter, order_for, published, receive_all, result

NOW = timezone.now()
OLD = NOW - dt.timedelta(days=365 * 11)


@pytest.fixture(autouse=True)
def private_ledger(tmp_path, monkeypatch):
    monkeypatch.setattr(ledger, "ledger_dir", lambda: tmp_path / "ledger")


def _age(order: Order, when: dt.datetime) -> Order:
    Order.unscoped.filter(id=order.id).update(created_at=when)
    return order


def _age_patient(patient_id, when: dt.datetime = OLD) -> None:
    Patient.unscoped.filter(id=patient_id).update(created_at=when)


def _erased(patient_id) -> bool:
    return Patient.unscoped.get(id=patient_id).data_key is None


@pytest.fixture
def old_and_young(staff, patient):
    """An 11-year-old order with a corrected result and a critical value, and a young one."""
    old = order_for(staff.secretary, patient.id, "K")
    receive_all(staff.secretary, old)
    enter(staff.technician, old, K="7.9")  # a critical potassium
    workflow.acknowledge_critical(staff.biologist, result(old, "K").id, "médecin prévenu")
    ids = [result(old, "K").id]
    workflow.validate_technically(staff.technician, ids)
    workflow.validate_biologically(staff.biologist, ids)
    workflow.publish(staff.biologist, old)
    workflow.invalidate(staff.biologist, result(old, "K").id, "4.2", "erreur de saisie")
    assert CriticalValue.objects.filter(result__order=old).exists()
    assert Result.unscoped.filter(order=old, replaces__isnull=False).exists()
    young = published(staff, patient.id, K="4.4")
    return _age(old, OLD), young


def test_dry_run_changes_nothing(staff, patient, old_and_young):
    old, _young = old_and_young
    _age_patient(patient.id)
    counts = (Order.unscoped.count(), Specimen.unscoped.count(), Result.unscoped.count())
    events = AccessEvent.objects.count()
    report = purge(staff.manager.lab_id, dry_run=True, now=NOW)
    assert report.dry_run and report.orders == 1 and report.patients == 0
    assert report.labs[0].orders == [str(old.id)]
    assert (Order.unscoped.count(), Specimen.unscoped.count(), Result.unscoped.count()) == counts
    assert AccessEvent.objects.count() == events
    assert not _erased(patient.id)


def test_purge_deletes_expired_orders_and_keeps_younger_ones(staff, patient, old_and_young):
    old, young = old_and_young
    report = purge(staff.manager.lab_id, dry_run=False, now=NOW)
    assert report.orders == 1 and report.patients == 0
    assert not Order.unscoped.filter(id=old.id).exists()
    assert not Specimen.unscoped.filter(order_id=old.id).exists()
    assert not Result.unscoped.filter(order_id=old.id).exists()
    assert not CriticalValue.objects.filter(result__order_id=old.id).exists()
    assert Order.unscoped.filter(id=young.id).exists() and young.results.exists()
    assert not _erased(patient.id)  # still has an order
    assert AccessEvent.objects.filter(action="purge", kind="order",
                                      patient_id=patient.id).count() == 1
    assert purge(staff.manager.lab_id, dry_run=False, now=NOW).orders == 0


def test_an_old_patient_with_no_order_left_is_erased(staff, patient):
    old = _age(published(staff, patient.id, K="4.4"), OLD)
    _age_patient(patient.id)
    recent = create_patient(staff.secretary, patient_row(nir=make_nir("F", 1985, 3, "75056",
                                                                      "456")))
    dry = purge(staff.manager.lab_id, dry_run=True, now=NOW)
    assert dry.labs[0].patients == [str(patient.id)] and not _erased(patient.id)

    report = purge(staff.manager.lab_id, dry_run=False, now=NOW)
    assert report.labs[0].orders == [str(old.id)]
    assert report.labs[0].patients == [str(patient.id)]
    assert _erased(patient.id) and not _erased(recent.id)  # too young
    (entry,) = ledger.entries()
    assert entry.patient_id == patient.id and entry.cause == "retention"
    assert AccessEvent.objects.filter(action="purge", kind="identity").count() == 1
    assert AccessEvent.objects.filter(action="erase", patient_id=patient.id).count() == 1


def test_a_legal_hold_stops_the_purge(staff, patient, old_and_young):
    old, _ = old_and_young
    _age_patient(patient.id)
    add_hold(staff.manager, patient.id, "contentieux: expertise judiciaire")
    with pytest.raises(HoldError):
        add_hold(staff.manager, patient.id, "une deuxième fois")
    report = purge(staff.manager.lab_id, dry_run=False, now=NOW)
    assert report.orders == 0 and report.patients == 0
    assert report.labs[0].held == [str(patient.id)]
    assert Order.unscoped.filter(id=old.id).exists()
    (hold,) = list_holds(staff.manager)
    assert hold["reason"] == "contentieux: expertise judiciaire"
    from coffre.lifecycle.models import LegalHold

    assert b"contentieux" not in bytes(LegalHold.objects.get().reason)  # sealed

    assert release_hold(staff.manager, patient.id) == 1
    assert list_holds(staff.manager) == []
    assert purge(staff.manager.lab_id, dry_run=False, now=NOW).orders == 1


def test_holds_are_for_managers_and_dpo(staff, patient):
    with pytest.raises(PermissionError):
        add_hold(staff.secretary, patient.id, "contentieux")


def test_a_lab_rule_overrides_the_default(staff, patient, lab_b):
    order = _age(published(staff, patient.id, K="4.4"), NOW - dt.timedelta(days=365 * 6))
    assert purge(staff.manager.lab_id, dry_run=True, now=NOW).orders == 0
    RetentionRule.objects.create(lab_id=lab_b.id, category="reports", years=5)  # other lab
    assert purge(staff.manager.lab_id, dry_run=True, now=NOW).orders == 0
    RetentionRule.objects.create(lab_id=staff.manager.lab_id, category="reports", years=5)
    report = purge(None, dry_run=False, now=NOW)  # every lab
    assert report.labs[0].orders == [str(order.id)] and report.orders == 1


def test_years_before_a_leap_day():
    leap = dt.datetime(2024, 2, 29, 12, tzinfo=dt.UTC)
    assert years_before(leap, 10) == dt.datetime(2014, 2, 28, 12, tzinfo=dt.UTC)


# --- the commands, through the real ``coffre`` ----------------------------------------

@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    from tests.cli_helpers import demo_installation

    with demo_installation(tmp_path_factory) as cli:
        yield cli


def test_purge_and_hold_commands(cli):

    finess = cli.demo_finess
    patient_id = cli.json_lines("specimens", "list", "--lab", finess)[0]["patient"]
    specimens = cli.json_lines("specimens", "list", "--lab", finess)

    (dry,) = cli.json_lines("purge", "--dry-run")
    assert dry["dry_run"] is True and {"orders", "patients", "held", "labs"} <= set(dry)
    (one_lab,) = cli.json_lines("purge", "--lab", finess, "--dry-run")
    assert len(one_lab["labs"]) == 1
    assert "expired_exports" not in dry  # a dry run ends nothing
    assert cli.json_lines("specimens", "list", "--lab", finess) == specimens
    (real,) = cli.json_lines("purge")
    assert real["expired_exports"] == [] and real["expired_api_tokens"] == 0

    (added,) = cli.json_lines("hold", "add", "--patient", patient_id, "--lab", finess,
                              "--reason", "expertise judiciaire")
    assert added["patient"] == patient_id
    (listed,) = cli.json_lines("hold", "list", "--lab", finess)
    assert listed["patient"] == patient_id and listed["reason"] == "expertise judiciaire"
    cli.json_lines("hold", "release", "--patient", patient_id, "--lab", finess)
    assert cli.json_lines("hold", "list", "--lab", finess) == []
    again = cli.run("hold", "release", "--patient", patient_id, "--lab", finess, check=False)
    assert again.returncode == 1
    bad = cli.run("purge", "--lab", "000000000", check=False)
    assert bad.returncode == 2
