"""Orders, specimens and results.

Clear columns are operational only: ids, lab, states, timestamps, barcodes, specimen
types and LOINC codes (queries need them, and a copy links them to a patient row that
reveals nothing). Values, comments, flags, clinical information, the prescriber and
rejection reasons are sealed under the patient's data key (coffre.labwork.sealing), each
bound to its table, column and row: erasing the patient erases them too.

As for patients, there is no ``objects`` manager: rows are reached through
``coffre.labwork.access`` (scoped to the actor's lab, reads audited) or ``unscoped`` in
administrative code that says so.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

# Sealed columns per table and their minimum padded size: a short value and an empty
# one look alike at rest.
SEALED = {
    "order": {"prescriber_rpps": 16, "prescriber_name": 48, "clinical_info": 128},
    "specimen": {"rejection_reason": 64},
    "result": {"value": 16, "flag": 0, "comment": 64},
    "critical": {"note": 64},
}


class ResultState(models.TextChoices):
    REGISTERED = "registered", _("Enregistré")
    COLLECTED = "collected", _("Prélevé")
    RECEIVED = "received", _("Reçu")
    IN_ANALYSIS = "in_analysis", _("En analyse")
    TECH_VALIDATED = "tech_validated", _("Validé techniquement")
    BIO_VALIDATED = "bio_validated", _("Validé biologiquement")
    PUBLISHED = "published", _("Diffusé")
    REJECTED = "rejected", _("Non réalisé (échantillon refusé)")
    CANCELLED = "cancelled", _("Annulé")
    INVALIDATED = "invalidated", _("Invalidé (corrigé)")


class SpecimenState(models.TextChoices):
    REGISTERED = "registered", _("À prélever")
    COLLECTED = "collected", _("Prélevé")
    RECEIVED = "received", _("Reçu")
    REJECTED = "rejected", _("Refusé")


class Order(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT)
    patient = models.ForeignKey("identity.Patient", on_delete=models.PROTECT)
    number = models.CharField(max_length=20)
    urgent = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    # How many reports were released; a report after the first is a "rectificatif".
    report_count = models.PositiveIntegerField(default=0)

    prescriber_rpps = models.BinaryField()
    prescriber_name = models.BinaryField()
    clinical_info = models.BinaryField()
    # Blind index of the prescriber's RPPS for the prescriber portal
    # (coffre.labwork.orders.prescriber_index): a random value when there is none.
    bi_prescriber = models.IntegerField(null=True)
    # The index key generation of bi_prescriber (see identity.models.Patient.bi_key).
    bi_key = models.ForeignKey("keyring.LabIndexKey", null=True, on_delete=models.PROTECT,
                               db_column="bi_key", db_index=False, related_name="+")

    unscoped = models.Manager()

    class Meta:
        base_manager_name = "unscoped"
        default_manager_name = "unscoped"
        constraints = [models.UniqueConstraint(fields=["lab", "number"],
                                               name="order_number_per_lab")]
        indexes = [models.Index(fields=["lab", "created_at"], name="order_lab_created"),
                   models.Index(fields=["patient", "created_at"], name="order_patient"),
                   models.Index(fields=["bi_prescriber", "created_at"],
                                name="order_prescriber")]

    def __str__(self) -> str:
        return f"Order {self.number}"


class OrderCounter(models.Model):
    """The last order number given by a lab on a day (numbers read YYMMDDnnnn)."""

    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE)
    day = models.DateField()
    last = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["lab", "day"], name="order_counter_day")]


class Specimen(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="specimens")
    barcode = models.CharField(max_length=32)
    specimen_type = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=SpecimenState.choices,
                             default=SpecimenState.REGISTERED)
    collected_at = models.DateTimeField(null=True, blank=True)
    collected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    received_at = models.DateTimeField(null=True, blank=True)
    received_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    rejection_reason = models.BinaryField()

    unscoped = models.Manager()

    class Meta:
        base_manager_name = "unscoped"
        default_manager_name = "unscoped"
        constraints = [models.UniqueConstraint(fields=["lab", "barcode"],
                                               name="specimen_barcode_per_lab")]
        indexes = [models.Index(fields=["lab", "state"], name="specimen_lab_state")]

    def __str__(self) -> str:
        return f"Specimen {self.barcode}"


class Result(models.Model):
    """One test of an order. A correction after publication is a new Result (version
    + 1, ``replaces`` the old one, which becomes INVALIDATED): history is kept."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT)
    patient = models.ForeignKey("identity.Patient", on_delete=models.PROTECT)
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="results")
    specimen = models.ForeignKey(Specimen, on_delete=models.CASCADE, related_name="results")
    loinc = models.CharField(max_length=16)
    position = models.PositiveSmallIntegerField(default=0)  # report order
    state = models.CharField(max_length=16, choices=ResultState.choices,
                             default=ResultState.REGISTERED)
    version = models.PositiveSmallIntegerField(default=1)
    replaces = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="replaced_by")
    source = models.CharField(max_length=12, default="manual")  # manual, analyser, calculated

    value = models.BinaryField()
    flag = models.BinaryField()
    comment = models.BinaryField()
    # Tag of the clear columns that give the value its meaning (coffre.labwork.sealing:
    # RESULT_BOUND), under the patient's key; checked before any value is shown.
    mac = models.BinaryField(default=b"")

    # Who entered and validated are part of the tag: their accounts are deactivated,
    # never deleted (PROTECT), so a stamp never changes under a result.
    entered_at = models.DateTimeField(null=True, blank=True)
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="+")
    tech_validated_at = models.DateTimeField(null=True, blank=True)
    tech_validated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                          on_delete=models.PROTECT, related_name="+")
    bio_validated_at = models.DateTimeField(null=True, blank=True)
    bio_validated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                         on_delete=models.PROTECT, related_name="+")
    published_at = models.DateTimeField(null=True, blank=True)

    unscoped = models.Manager()

    class Meta:
        base_manager_name = "unscoped"
        default_manager_name = "unscoped"
        indexes = [models.Index(fields=["lab", "state"], name="result_lab_state"),
                   models.Index(fields=["patient", "loinc", "state"], name="result_patient_test")]

    def __str__(self) -> str:
        return f"Result {self.id} ({self.loinc}, {self.state})"


class CriticalValue(models.Model):
    """A critical result waiting for (or having had) a person's acknowledgement."""

    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT)
    result = models.OneToOneField(Result, on_delete=models.CASCADE, related_name="critical")
    raised_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                        on_delete=models.SET_NULL, related_name="+")
    note = models.BinaryField()

    class Meta:
        indexes = [models.Index(fields=["lab", "acknowledged_at"], name="critical_open")]


class LabWorkflowSettings(models.Model):
    lab = models.OneToOneField("labs.Lab", on_delete=models.CASCADE,
                               related_name="workflow_settings")
    # A biologist may validate results they entered themselves (small labs only).
    allow_self_validation = models.BooleanField(default=False)
    # Addresses (IPs or networks, comma-separated) whose MLLP connections the lab's
    # listener reads (coffre.labwork.mllp, `coffre hl7 analysers`); others are closed unread.
    analyser_addresses = models.CharField(max_length=1000, blank=True, default="")
