"""Planting canary patients that look like the lab's own (``coffre canary plant``).

A canary must not be told apart from the lab's patients in a copy of the database or
in a leaked file, else it is removed before the copy is sold and attributes nothing:

* its identity is drawn trait by trait from the lab's patients
  (:class:`coffre.identity.decoys.LabProfile`), with identifiers of its own that no
  patient of the lab shares (checked against every patient, decrypted once);
* its row's registration time is one of the lab's registration times, moved by up to
  two hours; nothing else in its row differs from an imported patient's;
* it gets a history of published orders like the lab's (the lab's period of orders,
  its mean number of orders per patient, the authors its orders have);
* its mark (coffre.audit.models.CanaryMark) is sealed and carries no time.

The planting is recorded in the access log as one ``canary_plant`` entry per lab, with
no patient id (the canaries' ids are in its sealed purpose), and one ``decoy_sample``
entry per patient whose traits were sampled. A copy holding the access log can still
find the patients that no ``create`` entry names: docs/threat-model.md says so.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import secrets
import uuid

from django.db import transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from coffre.audit import canaries, chain, log
from coffre.audit.models import CanaryMark
from coffre.bulk import bulk_insert
from coffre.identity.decoys import LabProfile, draw_unused
from coffre.identity.digests import PatientDigests
from coffre.identity.models import Patient
from coffre.identity.registry import sealed_row
from coffre.keyring import indexes
from coffre.tenancy.actors import Actor

PLANT_ACTION = "canary_plant"
SAMPLE_ACTION = "decoy_sample"


def plant(lab_id: int, count: int, actor: Actor) -> int:
    """Add ``count`` canaries to a lab (see the module docstring)."""
    rng = random.Random(secrets.randbits(64))  # noqa: S311 - picks traits, not secrets
    profile = LabProfile(lab_id, rng, exclude=set(canaries.canary_ids()))
    taken = PatientDigests(lab_id)
    mine: set[tuple[str, str]] = set()  # the new canaries' own values
    generation = indexes.current(lab_id)
    key = chain.audit_key()
    rows, marks, made = [], [], []
    for _ in range(count):
        values = draw_unused(profile, taken, mine, rng)
        row = sealed_row(lab_id, values, generation)
        row["created_at"] = row["updated_at"] = profile.registered_at(rng)
        rows.append(row)
        record = {"patient_id": str(row["id"]), "lab_id": lab_id,
                  "planted_at": timezone.now().isoformat(), "values": values}
        marks.append(CanaryMark(lab_id=lab_id, sealed=key.seal(json.dumps(record),
                                                               canaries._AD)))
        made.append((row["id"], row["data_key"], values["sex"], values["birth_date"],
                     values["doctor_rpps"], values["doctor_name"]))
    rng.shuffle(marks)  # the marks' order says nothing of the patients' order
    with transaction.atomic():
        bulk_insert(Patient, rows)
        CanaryMark.objects.bulk_create(marks)
        _history(lab_id, made, rng)
        _audit(actor, lab_id, profile.sampled, [row["id"] for row in rows])
    canaries.clear_cache()
    return count


def _history(lab_id: int, made: list[tuple], rng: random.Random) -> None:
    """Published orders for the canaries, over the lab's period of orders, at its mean
    number of orders per patient; each order's author drawn from the lab's orders."""
    from coffre.labwork.models import Order
    from coffre.labwork.synthetic import generate_history

    orders = Order.unscoped.filter(lab_id=lab_id)
    span = orders.aggregate(first=Min("created_at"), last=Max("created_at"), n=Count("id"))
    patients = Patient.unscoped.filter(lab_id=lab_id).count() or 1
    if not span["n"]:
        return
    start = timezone.localtime(span["first"]).date()
    end = timezone.localtime(span["last"]).date() + dt.timedelta(days=1)
    generate_history(lab_id, made, seed=rng.randrange(10**9), start=start, end=end,
                     orders_per_patient=span["n"] / patients, parallel=False)
    authors = list(orders.exclude(patient_id__in=[m[0] for m in made])
                   .values_list("created_by_id", flat=True)[:1000])
    if authors:
        for order_id in orders.filter(patient_id__in=[m[0] for m in made]).values_list(
                "id", flat=True):
            Order.unscoped.filter(pk=order_id).update(created_by_id=rng.choice(authors))


def _audit(actor: Actor, lab_id: int, sampled: list[uuid.UUID], made: list[uuid.UUID]
           ) -> None:
    """The sampled patients' reads (outside the mass-reading counts, like a breach
    scan's: planting must not lock the administrator), and one planting entry whose
    sealed purpose names the canaries."""
    entry = {"at": timezone.now(), "person": actor.person, "role": actor.role,
             "channel": actor.channel, "lab_id": lab_id, "kind": "identity",
             "address": actor.address, "outcome": "ok"}
    purpose = log.seal_text("sampled to draw decoy identities (canary patients)", "purpose")
    chain.append([{**entry, "action": SAMPLE_ACTION, "patient_id": pid, "purpose": purpose}
                  for pid in sampled])
    chain.append([{**entry, "action": PLANT_ACTION, "patient_id": None,
                   "purpose": log.seal_text(f"{len(made)} canaries: "
                                            + " ".join(str(pid) for pid in made), "purpose")}])
