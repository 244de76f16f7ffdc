"""Wrapped keys. Only ciphertexts of keys live here; the master key never does."""

from django.db import models


class InstallationKey(models.Model):
    """A key of the whole installation (the blind-index root), wrapped by the master key."""

    purpose = models.CharField(max_length=40)
    key_id = models.CharField(max_length=8, unique=True)
    wrapped = models.BinaryField()
    master_key_id = models.CharField(max_length=8)
    index_bits = models.PositiveSmallIntegerField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["purpose"], name="one_key_per_purpose")]


class LabKey(models.Model):
    """A laboratory's key-encryption key, wrapped by the master key."""

    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="keys")
    key_id = models.CharField(max_length=8, unique=True)
    wrapped = models.BinaryField()
    master_key_id = models.CharField(max_length=8)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
