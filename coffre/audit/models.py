"""The access log (a forward-secure MAC chain), alerts, locks, per-lab thresholds and
canary marks. Entries carry ids, never readable values; free text (a break-the-glass
reason, an acknowledgement comment) is sealed."""

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AccessEvent(models.Model):
    # Few indexes: each costs every read of a patient a B-tree insert. seq for the
    # chain, patient for the patient's history, (person, at) for the detection.
    seq = models.BigIntegerField(unique=True)  # position in the chain, from 1
    at = models.DateTimeField(default=timezone.now)
    person = models.CharField(max_length=150)
    role = models.CharField(max_length=40)
    channel = models.CharField(max_length=10)
    lab_id = models.IntegerField(null=True)
    patient_id = models.UUIDField(null=True, db_index=True)
    action = models.CharField(max_length=20)  # read, search, create, update, export, print
    kind = models.CharField(max_length=40)  # identity, contact, health...
    purpose = models.BinaryField(default=b"")  # sealed reason (break-the-glass), or empty
    address = models.CharField(max_length=45, blank=True)
    outcome = models.CharField(max_length=20, default="ok")
    mac = models.BinaryField()

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["person", "at"], name="access_person_at")]


class ChainHead(models.Model):
    """The last entry's position and MAC, the current chain key (sealed), and the first
    key k_0 sealed for the auditor (or, without an auditor key, for the installation)."""

    seq = models.BigIntegerField(default=0)
    mac = models.BinaryField()
    key = models.BinaryField()
    first_key = models.BinaryField(default=b"")
    first_key_holder = models.CharField(max_length=12, default="installation")
    checkpoint_seq = models.BigIntegerField(default=0)
    checkpoint_epoch = models.BigIntegerField(default=0)  # seconds; 0 = never


class AlertKind(models.TextChoices):
    MASS_READING = "mass_reading", _("Lecture massive")
    ACCOUNT_LOCKED = "account_locked", _("Compte verrouillé")
    CANARY = "canary", _("Patient sentinelle consulté")
    BREAK_GLASS = "break_glass", _("Bris de glace")
    # Wrong second-factor codes after a right password locked the logins
    # (coffre.accounts.locks.second_factor_failed).
    SECOND_FACTOR = "second_factor", _("Codes de double authentification erronés")
    TAMPERING = "tampering", _("Données modifiées hors de Coffre")


class Alert(models.Model):
    at = models.DateTimeField(default=timezone.now, db_index=True)
    lab_id = models.IntegerField(null=True, db_index=True)
    kind = models.CharField(max_length=20, choices=AlertKind.choices)
    person = models.CharField(max_length=150)  # who caused it
    summary = models.CharField(max_length=300)  # counts and ids only, never a value
    patient_id = models.UUIDField(null=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    acknowledged_at = models.DateTimeField(null=True)
    comment = models.BinaryField(default=b"")  # sealed

    class Meta:
        ordering = ["-at"]

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class AccountLock(models.Model):
    """A person (web user, ``os:<user>`` of the CLI, ``api:<client>``, or the shared
    budget ``api-by:<registrant>@<FINESS>`` of the API clients one person registered in
    one lab) locked by the mass-reading detection until a manager unlocks them."""

    person = models.CharField(max_length=150, db_index=True)
    lab_id = models.IntegerField(null=True)
    locked_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=300)
    # Who answers for the locked person (an API client's registrant): not them either.
    answerable = models.CharField(max_length=150, blank=True, default="")
    unlocked_by = models.CharField(max_length=150, blank=True)
    unlocked_at = models.DateTimeField(null=True)


class AuditSettings(models.Model):
    """Per-lab thresholds of the mass-reading detection (defaults in detection.py)."""

    lab = models.OneToOneField("labs.Lab", on_delete=models.CASCADE, related_name="audit")
    soft_per_10_minutes = models.PositiveIntegerField(null=True, blank=True)
    hard_per_10_minutes = models.PositiveIntegerField(null=True, blank=True)
    soft_per_hour = models.PositiveIntegerField(null=True, blank=True)
    hard_per_hour = models.PositiveIntegerField(null=True, blank=True)
    export_approval_patients = models.PositiveIntegerField(null=True, blank=True)


class CanaryMark(models.Model):
    """One planted canary patient. The patient id and its planting record (with its
    time) are sealed, and the row has no clear time, so a copy of the database does not
    say which patients are canaries."""

    lab_id = models.IntegerField()
    sealed = models.BinaryField()
