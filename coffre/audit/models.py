"""The access log: who did what to which patient, by internal id only."""

from django.db import models
from django.utils import timezone


class AccessEvent(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    person = models.CharField(max_length=150)
    role = models.CharField(max_length=40)
    channel = models.CharField(max_length=10)
    lab_id = models.IntegerField(null=True, db_index=True)
    patient_id = models.UUIDField(null=True, db_index=True)
    action = models.CharField(max_length=20)  # read, search, create, update, export, print
    kind = models.CharField(max_length=40)  # identity, contact, health...
    address = models.CharField(max_length=45, blank=True)
    outcome = models.CharField(max_length=20, default="ok")

    class Meta:
        ordering = ["id"]
