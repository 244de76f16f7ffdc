"""Canary patients: invisible in a dump, never listed, and any read raises an alert."""

from django.db import connection

from coffre.audit import canaries
from coffre.audit.models import AccessEvent, Alert, AlertKind, CanaryMark
from coffre.identity.access import access_patient, find_patients
from coffre.identity.models import Patient
from coffre.labs.tenancy import Actor


def plant(lab, count=3):
    canaries.plant(lab.id, count, Actor("os:admin", lab.id, "import", "cli"))
    return [r for r in canaries.planted(lab.id)]


def test_planting_adds_ordinary_looking_sealed_patients(lab_a):
    records = plant(lab_a)
    assert len(records) == 3 and CanaryMark.objects.count() == 3
    assert Patient.unscoped.filter(lab=lab_a).count() == 3


def test_nothing_in_the_database_says_which_patients_are_canaries(lab_a):
    records = plant(lab_a)
    with connection.cursor() as cursor:
        cursor.execute("SELECT sealed FROM audit_canarymark")
        sealed = b"".join(bytes(row[0]) for row in cursor.fetchall())
        cursor.execute("SELECT patient_id FROM audit_accessevent")
        logged = [row[0] for row in cursor.fetchall()]
    for record in records:
        assert record["patient_id"].replace("-", "").encode() not in sealed
        assert record["values"]["birth_name"].encode() not in sealed
    # Created and logged as an import creates patients, nothing more.
    entries = set(AccessEvent.objects.values_list("action", "role", "person"))
    assert entries == {("create", "import", "os:admin")} and len(logged) == 3


def test_reading_a_canary_raises_an_immediate_alert(lab_a, actor_a):
    record = plant(lab_a)[0]
    access_patient(actor_a, record["patient_id"])
    alert = Alert.objects.get(kind=AlertKind.CANARY)
    assert alert.person == "alice" and alert.lab_id == lab_a.id
    assert alert.patient_id is None  # the alerts table must not point at canaries


def test_a_canary_is_never_shown_in_search_results_but_the_search_alerts(lab_a, actor_a):
    record = plant(lab_a, 1)[0]
    values = record["values"]
    found = find_patients(actor_a, name=values["birth_name"], birth_date=values["birth_date"])
    assert found == []
    assert Alert.objects.filter(kind=AlertKind.CANARY).count() == 1
    assert AccessEvent.objects.filter(action="search",
                                      patient_id=record["patient_id"]).exists()


def test_canary_values_are_unique_in_the_lab(lab_a):
    names = [r["values"]["birth_name"] for r in plant(lab_a, 20)]
    assert len(set(names)) == 20
