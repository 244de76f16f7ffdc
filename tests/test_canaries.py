"""Canary patients: invisible in a dump, never listed, any read raises an alert, and
nothing in a copy or in a leaked file tells them from the lab's patients (issue 14,
item 3)."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter

import pytest
from django.db import connection

from coffre.audit import canaries
from coffre.audit.models import AccessEvent, Alert, AlertKind, AuditSettings, CanaryMark
from coffre.breach import planting
from coffre.identity.access import access_patient, find_patients
from coffre.identity.models import SEALED_FIELDS, Patient
from coffre.identity.registry import open_patient
from coffre.labwork.models import Order
from coffre.tenancy.actors import Actor

ADMIN = "os:admin"


def plant(lab, count=3):
    planting.plant(lab.id, count, Actor(ADMIN, lab.id, "cli", "cli"))
    return list(canaries.planted(lab.id))


def test_planting_adds_ordinary_looking_sealed_patients(lab_a):
    records = plant(lab_a)
    assert len(records) == 3 and CanaryMark.objects.count() == 3
    assert Patient.unscoped.filter(lab=lab_a).count() == 3


def test_nothing_in_the_database_says_which_patients_are_canaries(lab_a):
    records = plant(lab_a)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM audit_canarymark")
        columns = [c[0] for c in cursor.description]
        marks = cursor.fetchall()
    assert set(columns) == {"id", "lab_id", "sealed"}  # no clear time to match
    sealed = b"".join(bytes(row[columns.index("sealed")]) for row in marks)
    for record in records:
        assert record["patient_id"].replace("-", "").encode() not in sealed
        assert record["values"]["birth_name"].encode() not in sealed
    # The log names no canary: one planting entry, its canaries' ids sealed.
    ids = {r["patient_id"] for r in records}
    logged = {str(pid) for pid in AccessEvent.objects.values_list("patient_id", flat=True)}
    assert not ids & logged
    plants = AccessEvent.objects.filter(action=planting.PLANT_ACTION)
    assert plants.count() == 1 and plants.get().patient_id is None


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


# --- indistinguishable from the lab's patients ----------------------------------------

@pytest.fixture
def populated(vault):
    """A lab of 400 patients and their 2015-2020 history, imported as `coffre generate`
    does, then 40 canaries."""
    from coffre.setup import generate_patients
    from coffre.tenancy.models import Lab

    generate_patients(400, 1, 7, lambda _d, _t: (lambda _n: None))
    lab = Lab.objects.get()
    AuditSettings.objects.create(lab=lab, hard_per_10_minutes=10**6, hard_per_hour=10**6,
                                 soft_per_10_minutes=10**6, soft_per_hour=10**6)
    planting.plant(lab.id, 40, Actor(ADMIN, lab.id, "cli", "cli"))
    canary_ids = {str(r["patient_id"]) for r in canaries.planted(lab.id)}
    return lab, canary_ids


def _auc(canary: list[float], real: list[float]) -> float:
    """The chance that a canary scores above a real patient (ties count half): 0.5 is
    no better than a coin."""
    wins = sum((c > r) + 0.5 * (c == r) for c in canary for r in real)
    return wins / (len(canary) * len(real))


def _shape(text: str) -> str:
    return re.sub(r"[a-zà-ÿ]", "a", re.sub(r"[A-ZÀ-Þ]", "A", re.sub(r"\d", "9", text)))


def _features(patient: Patient, values: dict[str, str], orders: list[Order]) -> dict:
    """What a copy (clear columns, ciphertext sizes) and a leaked file (the values)
    show of one patient; categorical features are scored by their frequency."""
    created = patient.created_at
    found = {
        "created_at": created.timestamp(), "created_hour": created.hour,
        "created_weekday": created.weekday(),
        "updated_minus_created": (patient.updated_at - created).total_seconds(),
        "orders": len(orders),
        "first_order": min((o.created_at.timestamp() for o in orders), default=0),
        "orders_without_author": sum(o.created_by_id is None for o in orders),
        "urgent": sum(o.urgent for o in orders),
    }
    for name in SEALED_FIELDS:
        found[f"size_{name}"] = len(bytes(getattr(patient, name)))
    email = values["email"]
    found.update({
        "cat_status": patient.identity_status, "cat_bi_key": str(patient.bi_key_id),
        "cat_name_shape": _shape(values["birth_name"]),
        "cat_name_prefix": values["birth_name"][:3].upper(),
        "cat_first_names_count": str(len(values["first_names"].split())),
        "cat_used_name": str(bool(values["used_name"])),
        "cat_email_domain": email.rsplit("@", 1)[-1] if email else "",
        "cat_email_shape": _shape(email.split("@")[0]) if email else "",
        "cat_phone_prefix": values["phone"][:7], "cat_nir_absent": str(not values["nir"]),
        "cat_town": values["city"], "cat_birth_place": values["birth_place"][:2],
        "cat_notes": str(bool(values["notes"])), "cat_doctor": values["doctor_rpps"][:3],
        "name_length": len(values["birth_name"]),
        "birth_year": int(values["birth_date"][:4]),
    })
    return found


def test_no_clear_column_nor_value_shape_tells_a_canary_from_a_patient(populated):
    """For every feature a copy or a leaked file shows, the best a classifier can do
    with it (the AUC of the feature, or of how common its value is among the lab's
    patients) stays near chance. With the old canaries (surnames of a generated shape,
    a mark time equal to the row's, no history, registered all at once) several
    features reach an AUC of 0.9-1.0."""
    lab, canary_ids = populated
    orders: dict = {}
    for order in Order.unscoped.filter(lab=lab):
        orders.setdefault(order.patient_id, []).append(order)
    rows = {"canary": [], "real": []}
    for patient in Patient.unscoped.filter(lab=lab):
        values = open_patient(patient).values
        group = "canary" if str(patient.id) in canary_ids else "real"
        rows[group].append(_features(patient, values, orders.get(patient.id, [])))
    assert len(rows["canary"]) == 40 and len(rows["real"]) == 400
    worst = {}
    for feature in rows["real"][0]:
        real = [r[feature] for r in rows["real"]]
        canary = [c[feature] for c in rows["canary"]]
        if feature.startswith("cat_"):
            # What a copy shows: how many other patients of the lab share the value.
            counts = Counter(real + canary)
            real = [counts[v] - 1 for v in real]
            canary = [counts[v] - 1 for v in canary]
        auc = _auc(canary, real)
        worst[feature] = round(max(auc, 1 - auc), 3)
    assert max(worst.values()) < 0.75, sorted(worst.items(), key=lambda i: -i[1])[:5]


def test_canary_identifiers_are_never_a_patients(populated):
    from coffre.identity.digests import PatientDigests, email_text, nir_text, phone_text

    lab, canary_ids = populated
    records = canaries.planted(lab.id)
    real = [pid for pid in Patient.unscoped.filter(lab=lab).values_list("id", flat=True)
            if str(pid) not in canary_ids]
    digests = PatientDigests(lab.id)
    position = {pid: at for at, pid in enumerate(digests.ids)}
    real_positions = {position[pid] for pid in real}
    for record in records:
        values = record["values"]
        for slot, text in (("nir", nir_text(values["nir"])),
                           ("phone", phone_text(values["phone"])),
                           ("email", email_text(values["email"]))):
            if text[2:]:
                assert not set(digests.get(slot, text)) & real_positions, slot


def test_planting_is_audited_per_sampled_patient_outside_the_reading_counts(populated):
    _lab, canary_ids = populated
    sampled = AccessEvent.objects.filter(action=planting.SAMPLE_ACTION)
    assert sampled.count() == 400  # the whole lab, at most planting.SAMPLE patients
    assert not {str(e.patient_id) for e in sampled} & canary_ids
    assert set(sampled.values_list("person", flat=True)) == {ADMIN}
    assert not Alert.objects.exists()


def test_canaries_have_a_history_like_the_labs(populated):
    lab, canary_ids = populated
    per_patient = Counter(str(pid) for pid in Order.unscoped.filter(lab=lab)
                          .values_list("patient_id", flat=True))
    with_orders = sum(1 for pid in canary_ids if per_patient[pid])
    assert with_orders >= 20  # about 80% of patients have an order at 1.6 per patient
    first = Order.unscoped.filter(lab=lab).earliest("created_at").created_at
    assert all(o.created_at >= first - dt.timedelta(days=1)
               for o in Order.unscoped.filter(lab=lab, patient_id__in=canary_ids))
