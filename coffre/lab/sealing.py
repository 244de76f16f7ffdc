"""Sealing lab values under their patient's data key, bound to table, column and row.

A result copied to another row, column or patient fails to open. The patient's key is
the one that seals their identity (coffre.identity.registry.patient_key): erasing the
patient (destroying that key) makes their orders and results unreadable as well.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from coffre.identity.models import Patient
from coffre.identity.registry import patient_key
from coffre.lab.models import SEALED
from coffre.vault import Key, context_prefix

_PREFIX = {(table, column): context_prefix(table, column)
           for table, columns in SEALED.items() for column in columns}


class PatientErased(LookupError):
    """The patient's data key is gone: their lab data can no longer be read."""


def seal(key: Key, table: str, column: str, row_id: uuid.UUID | int, value: str) -> bytes:
    ad = _PREFIX[(table, column)] + str(row_id).encode()
    return key.seal(value, ad, SEALED[table][column])


def unseal(key: Key, table: str, column: str, row_id: uuid.UUID | int, blob: bytes) -> str:
    return key.open(bytes(blob), _PREFIX[(table, column)] + str(row_id).encode())


def seal_columns(key: Key, table: str, row_id: uuid.UUID | int,
                 values: dict[str, str]) -> dict[str, bytes]:
    """Every sealed column of ``table``: absent values are sealed empty, never NULL."""
    return {column: seal(key, table, column, row_id, values.get(column, ""))
            for column in SEALED[table]}


class PatientKeys:
    """Data keys of the patients one operation touches, unwrapped once each.

    Only patients of ``lab_id`` are found; the caller has already scoped its rows.
    """

    def __init__(self, lab_id: int) -> None:
        self.lab_id = lab_id
        self._keys: dict[uuid.UUID, Key] = {}

    def load(self, patient_ids: Iterable[uuid.UUID]) -> None:
        missing = set(patient_ids) - self._keys.keys()
        if not missing:
            return
        rows = (Patient.unscoped.filter(lab_id=self.lab_id, id__in=missing,
                                        data_key__isnull=False)
                .values_list("id", "data_key"))
        for patient_id, wrapped in rows:
            self._keys[patient_id] = patient_key(patient_id, self.lab_id, wrapped)

    def __getitem__(self, patient_id: uuid.UUID) -> Key:
        if patient_id not in self._keys:
            self.load([patient_id])
        try:
            return self._keys[patient_id]
        except KeyError:
            raise PatientErased("this patient's data was erased") from None
