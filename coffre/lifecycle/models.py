"""Retention rules and legal holds (coffre.lifecycle.retention).

A hold's reason is free text a person typed, so it may name the patient or a
diagnosis: it is sealed (installation key "legal-hold", bound to the row), never clear.
"""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _


class Category(models.TextChoices):
    # Orders, specimens, results and critical values, counted from the order's creation.
    REPORTS = "reports", _("Comptes rendus")
    # Genetics results (none in the catalogue yet: the category is kept for them).
    GENETICS = "genetics", _("Génétique")
    # The patient's identity, once no order is left and the record is old enough.
    IDENTITY = "identity", _("Identité")


DEFAULT_YEARS = {Category.REPORTS: 10, Category.GENETICS: 30, Category.IDENTITY: 10}


class RetentionRule(models.Model):
    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE,
                            related_name="retention_rules")
    category = models.CharField(max_length=16, choices=Category.choices)
    years = models.PositiveSmallIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lab", "category"],
                                               name="retention_rule_per_lab")]

    def __str__(self) -> str:
        return f"{self.category}: {self.years} years (lab {self.lab_id})"


class LegalHold(models.Model):
    """While a hold is active (not released), the purge keeps every datum of the
    patient and an erasure is refused."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT)
    patient = models.ForeignKey("identity.Patient", on_delete=models.PROTECT,
                                related_name="+")
    reason = models.BinaryField()  # sealed
    created_by = models.CharField(max_length=150)  # Actor.person
    created_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["lab", "released_at"], name="legal_hold_active")]

    def __str__(self) -> str:
        return f"LegalHold {self.id}"
