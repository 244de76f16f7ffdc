"""Per-lab blind-index keys (issue 14, item 1): a copy of the database cannot link one
person's rows across labs, a probe patient in one lab says nothing about another, a
row's whole tuple of index values stays within CipherSweet's bound for the lab's
planned population, and `coffre keys reindex` moves an installation (or a rotated lab)
to new index keys without a search ever missing a patient."""

from __future__ import annotations

import math

import pytest
from django.db import IntegrityError, transaction

from coffre.audit.models import AuditSettings
from coffre.identity.access import create_patient, find_patients
from coffre.identity.models import Patient
from coffre.identity.registry import clean_values, index_inputs
from coffre.identity.synthetic import generate_patients
from coffre.keyring import indexes
from coffre.keyring import services as keyring
from coffre.keyring.models import LabIndexKey
from coffre.lifecycle import reindex
from coffre.tenancy.actors import Actor
from coffre.tenancy.services import add_lab
from coffre.vault import combined_bits, index_bits, plan_index_bits

BI_COLUMNS = ("bi_nir", "bi_birth_name_dob", "bi_used_name_dob", "bi_phone", "bi_email")


def _quiet(lab) -> None:
    """Searching many patients from one account would rightly lock it: not tested here."""
    AuditSettings.objects.create(lab=lab, hard_per_10_minutes=10**6, hard_per_hour=10**6,
                                 soft_per_10_minutes=10**6, soft_per_hour=10**6)


def _tuples(lab_id: int, ids) -> dict:
    return {row[0]: row[1:] for row in Patient.unscoped.filter(lab_id=lab_id, id__in=ids)
            .values_list("id", *BI_COLUMNS)}


@pytest.mark.parametrize("population", [8, 1_000, 17_566, 20_000, 100_000, 500_000, 10**7])
def test_a_rows_combined_index_bits_stay_within_the_bound_for_the_planned_population(
        population):
    bits = plan_index_bits(population, indexes.PATIENT_INDEXES)
    combined = combined_bits(bits, indexes.PATIENT_INDEXES)
    assert combined <= index_bits(population)
    coincidences = population / 2**combined
    assert coincidences >= 2  # the whole tuple of a row stands for 2 rows or more
    assert combined >= index_bits(population) - 1  # and the budget is used


def test_a_new_lab_gets_its_own_index_key_sized_for_its_plan(vault):
    small = add_lab("750000010", "Petit laboratoire", planned_patients=5_000)
    large = add_lab("690000013", "Grand laboratoire", planned_patients=400_000)
    one, two = (LabIndexKey.objects.get(lab=small), LabIndexKey.objects.get(lab=large))
    assert one.key_id != two.key_id and one.complete and two.complete
    for row in (one, two):
        patient_bits = {k: row.bits[k] for k in indexes.PATIENT_INDEXES}
        assert combined_bits(patient_bits, indexes.PATIENT_INDEXES) == \
            index_bits(row.planned_patients)
    assert two.bits["nir"] > one.bits["nir"]


@pytest.fixture
def three_labs(vault):
    labs = [add_lab(finess, name) for finess, name in
            (("750000010", "Laboratoire A"), ("690000013", "Laboratoire B"),
             ("350000014", "Laboratoire C"))]
    for lab in labs:
        _quiet(lab)
    return labs


def test_the_same_person_in_two_labs_is_not_linked_by_any_index(three_labs):
    """With one installation-wide key every row of these 150 people would be equal in
    every column across the two labs; with per-lab keys equal values occur only by the
    chance a truncated hash gives."""
    lab_a, lab_b, _ = three_labs
    people = list(generate_patients(150, seed=41))
    in_a = [create_patient(Actor("a", lab_a.id, "secretary", "web"), p).id for p in people]
    in_b = [create_patient(Actor("b", lab_b.id, "secretary", "web"), p).id for p in people]
    a, b = _tuples(lab_a.id, in_a), _tuples(lab_b.id, in_b)
    pairs = [(a[x], b[y]) for x, y in zip(in_a, in_b, strict=True)]
    assert sum(one == two for one, two in pairs) <= 2  # whole tuples: chance 150 / 2**13
    generation = indexes.current(lab_a.id)
    for column, position in zip(BI_COLUMNS, range(5), strict=True):
        equal = sum(one[position] == two[position] for one, two in pairs)
        chance = 150 / 2 ** generation.bits_of(
            "name_dob" if "name" in column else column.removeprefix("bi_"))
        assert equal <= 3 * chance + 10, column
    # The keys themselves differ: the untruncated hashes of one value are unrelated.
    value = index_inputs(clean_values(people[0])[0])["bi_nir"]
    one = indexes.current(lab_a.id).indexer
    two = indexes.current(lab_b.id).indexer
    assert one._key("nir") != two._key("nir")
    assert one.key_id != two.key_id and value


def test_a_probe_patient_in_one_lab_tells_nothing_about_another(three_labs):
    """A secretary of lab C creates patients with guessed values (names, birth dates,
    phones): their index values, read from a copy of the database, match lab A's rows
    of those people no better than chance, and a search in C finds only the probes."""
    lab_a, _, lab_c = three_labs
    people = list(generate_patients(120, seed=42))
    targets = [create_patient(Actor("a", lab_a.id, "secretary", "web"), p).id
               for p in people]
    probe_actor = Actor("mallory", lab_c.id, "secretary", "web")
    probes = [create_patient(probe_actor, p).id for p in people]
    a, c = _tuples(lab_a.id, targets), _tuples(lab_c.id, probes)
    confirmed = sum(a[t] == c[p] for t, p in zip(targets, probes, strict=True))
    assert confirmed <= 2
    found = find_patients(probe_actor, name=people[0]["birth_name"],
                          birth_date=people[0]["birth_date"])
    assert [r.id for r in found] == [probes[0]]


def test_searches_find_every_patient_whatever_the_coincidences(three_labs):
    lab_a = three_labs[0]
    actor = Actor("a", lab_a.id, "secretary", "web")
    people = list(generate_patients(60, seed=43))
    ids = [create_patient(actor, p).id for p in people]
    checked = 0
    for pid, person in list(zip(ids, people, strict=True))[:20]:
        assert pid in {r.id for r in find_patients(actor, name=person["birth_name"],
                                                   birth_date=person["birth_date"])}
        for trait in ("nir", "phone", "email"):
            if person[trait]:
                assert pid in {r.id for r in find_patients(actor, **{trait: person[trait]})}
                checked += 1
    assert checked >= 30


def _make_legacy(lab_id: int) -> None:
    """Turn a lab into one made before per-lab index keys: its rows indexed under the
    installation-wide key, no generation of its own."""
    from coffre.identity.registry import index_values, open_patient

    legacy = indexes.Generation(None, keyring.indexer())
    for patient in Patient.unscoped.filter(lab_id=lab_id):
        values = open_patient(patient).values
        Patient.unscoped.filter(pk=patient.pk).update(**index_values(values, legacy))
    LabIndexKey.objects.filter(lab_id=lab_id).delete()
    indexes.clear_cache()


def _all_found(actor: Actor, people, ids) -> bool:
    return all((not p["nir"] or pid in {r.id for r in find_patients(actor, nir=p["nir"])})
               and pid in {r.id for r in find_patients(actor, name=p["birth_name"],
                                                       birth_date=p["birth_date"])}
               for pid, p in zip(ids, people, strict=True))


def test_reindex_moves_a_legacy_lab_without_a_search_ever_missing_a_patient(three_labs):
    lab_a = three_labs[0]
    actor = Actor("a", lab_a.id, "secretary", "web")
    people = list(generate_patients(30, seed=44))
    ids = [create_patient(actor, p).id for p in people]
    _make_legacy(lab_a.id)
    assert [g.bi_key for g in indexes.in_use(lab_a.id)] == [None]
    assert _all_found(actor, people, ids)

    partial = reindex.reindex_lab(lab_a.id, limit=12, batch=5)
    assert partial.created and partial.patients == 12 and not partial.finished
    assert partial.remaining == 18
    assert len(indexes.in_use(lab_a.id)) == 2  # the new key and the legacy one
    assert _all_found(actor, people, ids)
    late = dict(next(generate_patients(1, seed=45)))
    late_id = create_patient(actor, late).id  # written under the new key meanwhile
    assert Patient.unscoped.get(pk=late_id).bi_key_id == indexes.current(lab_a.id).bi_key

    done = reindex.reindex_lab(lab_a.id)
    assert not done.created and done.finished and done.remaining == 0
    assert done.patients == 18
    newest = LabIndexKey.objects.get(lab=lab_a)
    assert newest.complete
    assert [g.bi_key for g in indexes.in_use(lab_a.id)] == [newest.pk]
    assert not Patient.unscoped.filter(lab=lab_a, bi_key__isnull=True).exists()
    assert _all_found(actor, [*people, late], [*ids, late_id])


def test_a_resized_index_key_moves_every_row_and_retires_the_old_one(three_labs):
    lab_a = three_labs[0]
    actor = Actor("a", lab_a.id, "secretary", "web")
    people = list(generate_patients(20, seed=46))
    ids = [create_patient(actor, p).id for p in people]
    old = LabIndexKey.objects.get(lab=lab_a)
    new = indexes.create_index_key(lab_a.id, 300_000, complete=False)
    assert new.bits["nir"] != old.bits["nir"]
    assert _all_found(actor, people, ids)  # old rows found through the old key
    report = reindex.reindex_lab(lab_a.id)
    assert report.finished and report.patients == 20
    assert list(LabIndexKey.objects.filter(lab=lab_a)) == [new]
    assert _all_found(actor, people, ids)


def test_an_index_key_still_used_by_a_row_cannot_be_destroyed(three_labs):
    lab_a = three_labs[0]
    create_patient(Actor("a", lab_a.id, "secretary", "web"),
                   next(generate_patients(1, seed=47)))
    used = LabIndexKey.objects.get(lab=lab_a)
    with pytest.raises(IntegrityError), transaction.atomic():
        used.delete()


def test_lookups_decrypt_the_planned_share_of_the_lab(vault):
    """What the truncation costs, written down in the threat model: a search by NIR in
    a lab of the seed profile's size decrypts about R / 2**bits candidates."""
    bits = indexes.plan(17_566)
    assert bits["nir"] >= 4
    assert indexes.expected_candidates(17_566, bits["nir"]) <= math.ceil(17_566 / 16)


def test_the_production_check_fails_while_a_lab_is_on_the_legacy_key(three_labs):
    from coffre.serving.checks import blind_indexes

    lab_a = three_labs[0]
    create_patient(Actor("a", lab_a.id, "secretary", "web"),
                   next(generate_patients(1, seed=48)))
    assert [item.ok for item in blind_indexes()] == [True]
    _make_legacy(lab_a.id)
    item = next(blind_indexes())
    assert not item.ok and "1 lab(s)" in item.message and "reindex" in item.fix
    reindex.reindex_lab(lab_a.id, limit=0)  # a generation made, no row moved yet
    assert not next(blind_indexes()).ok
    reindex.reindex_lab(lab_a.id)
    assert next(blind_indexes()).ok
