"""Creating and listing laboratories. A new lab gets its own key-encryption key."""

from __future__ import annotations

from django.db import transaction

from coffre.identity.french import InvalidValue, clean_finess
from coffre.keyring import services as keyring
from coffre.labs.models import Lab


class LabError(ValueError):
    pass


def add_lab(finess: str, name: str, address: str = "") -> Lab:
    try:
        finess = clean_finess(finess)
    except InvalidValue as exc:
        raise LabError(f"FINESS: {exc}") from None
    if not name.strip():
        raise LabError("a laboratory needs a name")
    if Lab.objects.filter(finess=finess).exists():
        raise LabError(f"a laboratory with FINESS {finess} already exists")
    with transaction.atomic():
        lab = Lab.objects.create(finess=finess, name=name.strip(), address=address.strip())
        keyring.create_lab_key(lab.id)
    return lab


def lab_by_finess(finess: str) -> Lab:
    try:
        return Lab.objects.get(finess=finess.strip().upper())
    except Lab.DoesNotExist:
        raise LabError(f"no laboratory with FINESS {finess}") from None
