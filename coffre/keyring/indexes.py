"""Each laboratory's blind-index keys (the searchable part of the keyring).

A lab has one or more index key *generations* (:class:`LabIndexKey`): a random key,
wrapped by the lab's key-encryption key, with the truncation of each index fixed when
the generation is made (from the lab's planned population, see
``coffre.vault.plan_index_bits``). Every patient row and order row names the generation
its index values were computed with (``bi_key``; NULL for the legacy installation-wide
key of Coffre before per-lab indexes), so:

* new rows are indexed under the lab's newest generation;
* a search computes its value under every generation still in use in the lab (one
  while nothing is being re-indexed, two during ``coffre keys reindex``) and asks for
  ``bi_key = g AND bi_x = value_g`` for each;
* ``coffre keys reindex`` moves the rows not yet under the newest generation, by
  locked batches (resumable: the rows left are the rows whose ``bi_key`` differs), then
  destroys the generations nothing uses any more.

The generations are read from the database at each use (one small indexed query), so
a server never searches with a stale list after a rotation made by the CLI.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from django.db import transaction

from coffre.keyring import services as keyring
from coffre.keyring.models import LabIndexKey
from coffre.vault import BlindIndexer, Key, context, key_id_of, plan_index_bits

# The blind indexes of a patient row: name -> (columns on the row, how often searched).
# Both names (birth, used) share the "name_dob" key so that one search value finds
# either column.
PATIENT_INDEXES: dict[str, tuple[int, int]] = {
    "nir": (1, 4),
    "name_dob": (2, 4),
    "phone": (1, 1),
    "email": (1, 1),
}
# An order row's only index. About 220,000 RPPS numbers exist and a lab sees about
# 2,000 prescribers: 10 bits leave about 2 of the lab's prescribers per index value
# (and 200 of the country's), so a copy cannot group a lab's orders by doctor with
# certainty; the prescriber portal confirms candidates by decryption.
PRESCRIBER_BITS = 10
DEFAULT_PLANNED_PATIENTS = 20_000


def planned_patients_default() -> int:
    """A new lab's planned population (``COFFRE_PLANNED_PATIENTS_PER_LAB``)."""
    return max(8, int(os.environ.get("COFFRE_PLANNED_PATIENTS_PER_LAB",
                                     DEFAULT_PLANNED_PATIENTS)))


def plan(planned_patients: int) -> dict[str, int]:
    """The truncation of each index for a lab of ``planned_patients`` patients."""
    bits = plan_index_bits(planned_patients, PATIENT_INDEXES)
    bits["prescriber"] = PRESCRIBER_BITS
    return bits


def _ad(lab_id: int) -> bytes:
    return context("lab-index-key", lab_id)


def create_index_key(lab_id: int, planned_patients: int | None = None, *,
                     complete: bool) -> LabIndexKey:
    """A new generation for the lab, wrapped by its active key; it becomes the one new
    rows are indexed under. ``complete``: no row needs moving to it (a new lab)."""
    planned = planned_patients or planned_patients_default()
    key = Key.generate()
    return LabIndexKey.objects.create(
        lab_id=lab_id, key_id=key.hex_id, planned_patients=planned, bits=plan(planned),
        wrapped=keyring.active_lab_key(lab_id).wrap(key, _ad(lab_id)), complete=complete)


def rewrap_index_keys(lab_id: int, target: Key) -> int:
    """Re-wrap the lab's index keys under ``target`` (a lab key rotation); returns how
    many moved."""
    moved = 0
    with transaction.atomic():
        for row in LabIndexKey.objects.select_for_update().filter(lab_id=lab_id):
            wrapped = bytes(row.wrapped)
            if key_id_of(wrapped) == target.key_id:
                continue
            key = keyring.lab_key_by_id(key_id_of(wrapped), lab_id).unwrap(wrapped,
                                                                           _ad(lab_id))
            LabIndexKey.objects.filter(pk=row.pk).update(wrapped=target.wrap(key,
                                                                             _ad(lab_id)))
            moved += 1
    return moved


_indexers: dict[str, BlindIndexer] = {}  # key id -> indexer (unwrapped once per process)


def clear_cache() -> None:
    _indexers.clear()


def indexer_of(row: LabIndexKey) -> BlindIndexer:
    indexer = _indexers.get(row.key_id)
    if indexer is None:
        wrapped = bytes(row.wrapped)
        key = keyring.lab_key_by_id(key_id_of(wrapped), row.lab_id).unwrap(
            wrapped, _ad(row.lab_id))
        indexer = _indexers[row.key_id] = BlindIndexer(key, dict(row.bits))
    return indexer


@dataclass(frozen=True)
class Generation:
    """One index key of a lab: ``bi_key`` is what rows store (None: the legacy
    installation-wide key)."""

    bi_key: int | None
    indexer: BlindIndexer

    def compute(self, index: str, normalized: str) -> int:
        return self.indexer.compute(index, normalized)

    def bits_of(self, index: str) -> int:
        return self.indexer.bits_of(index)


def _legacy() -> Generation:
    return Generation(None, keyring.indexer())


def current(lab_id: int) -> Generation:
    """The generation new rows of the lab are indexed under (the legacy key for a lab
    made before per-lab indexes and not re-indexed yet)."""
    row = LabIndexKey.objects.filter(lab_id=lab_id).order_by("-pk").first()
    return _legacy() if row is None else Generation(row.pk, indexer_of(row))


def in_use(lab_id: int) -> list[Generation]:
    """The generations a search of this lab must try: the newest one, and while it is
    not complete, every older one (and the legacy key when no older one was ever
    complete)."""
    rows = list(LabIndexKey.objects.filter(lab_id=lab_id).order_by("-pk"))
    if not rows:
        return [_legacy()]
    found = [Generation(row.pk, indexer_of(row)) for row in rows]
    if rows[0].complete:
        return found[:1]
    if not any(row.complete for row in rows[1:]):
        found.append(_legacy())
    return found


def expected_candidates(planned_patients: int, bits: int, columns: int = 1) -> int:
    """Rows a search over an index of ``bits`` bits decrypts in a lab of that size."""
    return math.ceil(columns * planned_patients / 2**bits)
