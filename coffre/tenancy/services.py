"""Creating and listing laboratories. A new lab gets its own key-encryption key and its
own blind-index key, sized for the patients it plans to hold."""

from __future__ import annotations

from django.db import transaction

from coffre.identity.french import InvalidValue, clean_finess
from coffre.keyring import indexes
from coffre.keyring import services as keyring
from coffre.tenancy.models import Lab


class LabError(ValueError):
    pass


def add_lab(finess: str, name: str, address: str = "",
            planned_patients: int | None = None) -> Lab:
    """A new laboratory. ``planned_patients`` sizes its blind indexes (default
    ``COFFRE_PLANNED_PATIENTS_PER_LAB``); `coffre keys rotate --index` resizes them."""
    try:
        finess = clean_finess(finess)
    except InvalidValue as exc:
        raise LabError(f"FINESS: {exc}") from None
    if not name.strip():
        raise LabError("a laboratory needs a name")
    if planned_patients is not None and planned_patients < 1:
        raise LabError("the planned number of patients must be at least 1")
    if Lab.objects.filter(finess=finess).exists():
        raise LabError(f"a laboratory with FINESS {finess} already exists")
    with transaction.atomic():
        lab = Lab.objects.create(finess=finess, name=name.strip(), address=address.strip())
        keyring.create_lab_key(lab.id)
        indexes.create_index_key(lab.id, planned_patients, complete=True)
    return lab


def lab_by_finess(finess: str) -> Lab:
    try:
        return Lab.objects.get(finess=finess.strip().upper())
    except Lab.DoesNotExist:
        raise LabError(f"no laboratory with FINESS {finess}") from None
