"""Portal accounts. A patient account is one Django user bound to one patient row; a
prescriber account is bound to one RPPS number. Neither has a staff membership, so no
staff page opens for them (coffre.accounts.acting.staff_view needs one).

Activation codes are printed once on the sample receipt: a public id (to find the row)
and a secret kept only as a password hash (Argon2id), like a password.
"""

from django.conf import settings
from django.db import models


class ActivationCode(models.Model):
    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE)
    patient = models.ForeignKey("identity.Patient", on_delete=models.CASCADE,
                                related_name="+")
    public_id = models.CharField(max_length=8, unique=True)
    secret_hash = models.CharField(max_length=200)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveSmallIntegerField(default=0)


class PatientAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="patient_account")
    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE)
    patient = models.OneToOneField("identity.Patient", on_delete=models.CASCADE,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)


class PrescriberAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="prescriber_account")
    # A doctor's RPPS number is public (the national directory): not patient data.
    rpps = models.CharField(max_length=11, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
