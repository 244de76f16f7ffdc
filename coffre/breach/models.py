"""A breach record (GDPR art. 33/34) and its notifications.

The scan report stored here holds counts and internal ids only (coffre.breach.report).
Free text typed by the data-protection officer may name patients or health facts, so it
is sealed, like a patient row, under a data key of its own wrapped by the lab's key
(coffre.keyring.new_row_key): a copy of the database reads none of it, and rotating the
lab key re-wraps that key without touching the text.
"""

from __future__ import annotations

import datetime as dt

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

CNIL_DEADLINE = dt.timedelta(hours=72)  # GDPR art. 33(1)
# The sealed free-text columns of a breach, with their padding (so a short text and an
# empty one have the same size at rest).
SEALED_TEXT = {"nature": 256, "consequences": 256, "measures_taken": 256,
               "measures_proposed": 256, "dpo_contact": 128, "delay_reasons": 128}


class BreachStatus(models.TextChoices):
    DRAFT = "draft", _("Brouillon")
    NOTIFIED = "notified", _("Notifiée")
    CLOSED = "closed", _("Close")


class Breach(models.Model):
    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="breaches")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(default=timezone.now)
    aware_at = models.DateTimeField(default=timezone.now)  # when the lab became aware
    status = models.CharField(max_length=10, choices=BreachStatus.choices,
                              default=BreachStatus.DRAFT)
    report = models.JSONField(default=dict)  # ScanReport.to_dict(), this lab's part only
    data_key = models.BinaryField()  # wrapped by the lab key, seals the columns below
    nature = models.BinaryField(default=b"")
    consequences = models.BinaryField(default=b"")
    measures_taken = models.BinaryField(default=b"")
    measures_proposed = models.BinaryField(default=b"")
    dpo_contact = models.BinaryField(default=b"")
    delay_reasons = models.BinaryField(default=b"")  # art. 33(1), when notified late

    class Meta:
        ordering = ["-aware_at", "-pk"]

    @property
    def deadline(self) -> dt.datetime:
        return self.aware_at + CNIL_DEADLINE


class NotificationKind(models.TextChoices):
    CNIL = "cnil", _("CNIL")
    PATIENT = "patient", _("Patient")


class Channel(models.TextChoices):
    LETTER = "letter", _("Courrier")
    EMAIL = "email", _("Courriel")
    ONLINE = "online", _("Téléservice CNIL")


class Notification(models.Model):
    """One draft to send: the CNIL's, or one affected patient's. A patient's letter is
    generated on demand (their name and address are read then, and logged); ``body``
    holds the text as the DPO edited it (sealed), empty while the draft is untouched."""

    breach = models.ForeignKey(Breach, on_delete=models.CASCADE,
                               related_name="notifications")
    lab_id = models.IntegerField()  # kept beside every patient-data row (sharding by lab)
    kind = models.CharField(max_length=10, choices=NotificationKind.choices)
    patient_id = models.UUIDField(null=True)
    channel = models.CharField(max_length=10, choices=Channel.choices, blank=True)
    body = models.BinaryField(default=b"")
    reviewed_by = models.CharField(max_length=150, blank=True)
    reviewed_at = models.DateTimeField(null=True)
    sent_by = models.CharField(max_length=150, blank=True)
    sent_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["kind", "pk"]
        constraints = [models.UniqueConstraint(fields=["breach", "patient_id"],
                                               name="one_notification_per_patient")]
