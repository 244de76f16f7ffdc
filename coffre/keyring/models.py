"""Wrapped keys. Only ciphertexts of keys live here; the master key never does."""

from django.db import models


class InstallationKey(models.Model):
    """A key of the whole installation for one purpose (accounts, audit, exports,
    legal-hold, the legacy blind-index root that also keys the erasure ledger), wrapped
    by the master key. A purpose has one active version; older ones stay to open what
    they sealed until `coffre keys retire --installation` destroys them."""

    purpose = models.CharField(max_length=40)
    key_id = models.CharField(max_length=8, unique=True)
    wrapped = models.BinaryField()
    master_key_id = models.CharField(max_length=8)
    index_bits = models.PositiveSmallIntegerField(null=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["purpose"],
                                               condition=models.Q(active=True),
                                               name="one_active_key_per_purpose")]


class LabKey(models.Model):
    """A laboratory's key-encryption key, wrapped by the master key."""

    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="keys")
    key_id = models.CharField(max_length=8, unique=True)
    wrapped = models.BinaryField()
    master_key_id = models.CharField(max_length=8)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)


class ReencryptionRun(models.Model):
    """Progress of ``coffre keys reencrypt``: patients are re-encrypted one by one in
    primary-key order, and ``last_patient_id`` moves in the same transaction as the
    patient it names. A run with no ``finished_at`` resumes after its cursor; patients
    created meanwhile get a fresh key anyway. ``lab`` NULL means every lab."""

    lab = models.ForeignKey("labs.Lab", null=True, on_delete=models.CASCADE, related_name="+")
    last_patient_id = models.UUIDField(null=True)
    patients_done = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True)


class LabIndexKey(models.Model):
    """One generation of a laboratory's blind-index key, wrapped by the lab's key.
    ``bits``: the truncation of each index, fixed for the generation's life (from the
    lab's planned population, coffre.keyring.indexes.plan). ``complete``: every row of
    the lab is indexed under this generation (older ones are then destroyed)."""

    lab = models.ForeignKey("labs.Lab", on_delete=models.PROTECT, related_name="index_keys")
    key_id = models.CharField(max_length=8, unique=True)
    wrapped = models.BinaryField()
    bits = models.JSONField()
    planned_patients = models.PositiveIntegerField()
    complete = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
