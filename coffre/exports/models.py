"""Export requests and the fingerprints of their watermark rows. No patient value is
stored here in clear: the purpose and the recipient, free text that can name a patient or
a diagnosis, are sealed (coffre.exports.sealing); the watermark rows are synthetic, and
only their keyed fingerprints are kept."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class ExportState(models.TextChoices):
    REQUESTED = "requested"
    APPROVED = "approved"
    PRODUCED = "produced"
    DOWNLOADED = "downloaded"
    EXPIRED = "expired"
    REFUSED = "refused"


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    NDJSON = "ndjson", "FHIR NDJSON"


class ExportRequest(models.Model):
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="+")
    purpose = models.BinaryField(default=b"")  # sealed (coffre.exports.sealing)
    recipient = models.BinaryField(default=b"")  # sealed
    recipient_key = models.CharField(max_length=200)  # age X25519 public key
    fields = models.CharField(max_length=400)  # registry CSV columns, comma-separated
    format = models.CharField(max_length=8, choices=ExportFormat.choices,
                              default=ExportFormat.CSV)  # of the file: CSV or FHIR NDJSON
    period_from = models.DateField()
    period_to = models.DateField()
    patient_ids = models.JSONField(null=True, blank=True)  # optional explicit list (ids)
    requested_by = models.CharField(max_length=150)  # an account (web), os:<user> (CLI)
    requested_at = models.DateTimeField(default=timezone.now)
    approved_by = models.CharField(max_length=150, blank=True)  # the account that signed
    approved_os_user = models.CharField(max_length=150, blank=True)  # os:<user> (CLI only)
    approved_role = models.CharField(max_length=20, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=12, choices=ExportState.choices,
                             default=ExportState.REQUESTED)
    size_estimate = models.PositiveIntegerField(default=0)  # patients covered (counted)
    rows_exported = models.PositiveIntegerField(null=True, blank=True)
    produced_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    downloaded_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)  # expired or refused

    def field_list(self) -> list[str]:
        return self.fields.split(",")


class ExportWatermark(models.Model):
    """Keyed fingerprints (HMAC under the installation's "exports" key) of one export's
    synthetic watermark rows: a whole row, and each distinctive cell. A copy of the
    database cannot confirm a guess without the key."""

    export = models.ForeignKey(ExportRequest, on_delete=models.CASCADE,
                               related_name="watermarks")
    fingerprint = models.CharField(max_length=64, db_index=True)
    # The "exports" installation key version the fingerprint key derives from: a
    # rotation keeps older versions while a fingerprint needs them.
    key_id = models.CharField(max_length=8, default="")
