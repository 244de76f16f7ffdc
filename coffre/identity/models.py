"""Patients. Every identifying, contact and health value is a ciphertext bound to its
row and column (coffre.vault); searches go through truncated blind indexes.

There is deliberately no ``objects`` manager: patient rows are reached through
``coffre.identity.access`` (scoped to the actor's lab, audited), or through
``Patient.unscoped`` in administrative code that says so by its name.
"""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

# Sealed columns and the minimum padded plaintext size of each (bytes). Free text gets
# a generous minimum so an empty note and a short one look the same at rest.
SEALED_FIELDS: dict[str, int] = {
    "nir": 16,
    "birth_name": 32,
    "used_name": 32,
    "first_names": 32,
    "sex": 0,
    "birth_date": 0,
    "birth_place": 0,
    "address": 64,
    "postal_code": 0,
    "city": 32,
    "phone": 16,
    "email": 48,
    "blood_group": 0,
    "doctor_rpps": 16,
    "doctor_name": 32,
    "insurer": 48,
    "notes": 128,
    "treatments": 128,
}

BLIND_INDEXES = ("nir", "birth_name_dob", "used_name_dob", "phone", "email")


class IdentityStatus(models.TextChoices):
    PROVISIONAL = "PROV", _("Identité provisoire")
    RETRIEVED = "RECUP", _("Identité récupérée")
    VALIDATED = "VALI", _("Identité validée")
    QUALIFIED = "QUAL", _("Identité qualifiée")


class Patient(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT)
    identity_status = models.CharField(max_length=5, choices=IdentityStatus.choices)
    # The row's data key, wrapped by the lab key; NULL once the patient is erased.
    data_key = models.BinaryField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    nir = models.BinaryField()
    birth_name = models.BinaryField()
    used_name = models.BinaryField()
    first_names = models.BinaryField()
    sex = models.BinaryField()
    birth_date = models.BinaryField()
    birth_place = models.BinaryField()
    address = models.BinaryField()
    postal_code = models.BinaryField()
    city = models.BinaryField()
    phone = models.BinaryField()
    email = models.BinaryField()
    blood_group = models.BinaryField()
    doctor_rpps = models.BinaryField()
    doctor_name = models.BinaryField()
    insurer = models.BinaryField()
    notes = models.BinaryField()
    treatments = models.BinaryField()

    bi_nir = models.IntegerField(null=True)
    bi_birth_name_dob = models.IntegerField(null=True)
    bi_used_name_dob = models.IntegerField(null=True)
    bi_phone = models.IntegerField(null=True)
    bi_email = models.IntegerField(null=True)
    # The lab's index key generation these values were computed under (NULL: the
    # legacy installation-wide key). Says nothing about the values. PROTECT: a
    # generation cannot be destroyed while a row still uses it. No index: only
    # `coffre keys reindex` and that check look for rows by it.
    bi_key = models.ForeignKey("keyring.LabIndexKey", null=True, on_delete=models.PROTECT,
                               db_column="bi_key", db_index=False, related_name="+")

    unscoped = models.Manager()

    class Meta:
        base_manager_name = "unscoped"
        default_manager_name = "unscoped"
        indexes = [
            models.Index(fields=["lab", "bi_nir"], name="patient_bi_nir"),
            models.Index(fields=["lab", "bi_birth_name_dob"], name="patient_bi_birth_name"),
            models.Index(fields=["lab", "bi_used_name_dob"], name="patient_bi_used_name"),
            models.Index(fields=["lab", "bi_phone"], name="patient_bi_phone"),
            models.Index(fields=["lab", "bi_email"], name="patient_bi_email"),
        ]

    def __str__(self) -> str:  # never a readable value
        return f"Patient {self.id}"
