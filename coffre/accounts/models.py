"""A person's roles: one membership per lab they work for. One account per person."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    SECRETARY = "secretary", _("Secrétaire")
    TECHNICIAN = "technician", _("Technicien")
    BIOLOGIST = "biologist", _("Biologiste")
    LAB_MANAGER = "lab_manager", _("Responsable de laboratoire")
    DPO = "dpo", _("Délégué à la protection des données")
    PLATFORM_ADMIN = "platform_admin", _("Administrateur de la plateforme")


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="memberships")
    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE, related_name="members")
    role = models.CharField(max_length=20, choices=Role.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "lab"], name="one_role_per_lab")]


class TotpDevice(models.Model):
    """A person's authenticator (TOTP, RFC 6238). The secret is sealed with the
    installation's "accounts" key, bound to the user id (``coffre.accounts.mfa``)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="totp_device")
    secret = models.BinaryField()
    confirmed = models.BooleanField(default=False)
    # The highest time step accepted: a code of that step or an earlier one is refused.
    last_counter = models.BigIntegerField(default=-1)
    created_at = models.DateTimeField(auto_now_add=True)


class RecoveryCode(models.Model):
    """A one-time code replacing a TOTP code (lost phone); only its hash is kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="recovery_codes")
    code_hash = models.CharField(max_length=256)
    used_at = models.DateTimeField(null=True, blank=True)


class SessionEpoch(models.Model):
    """A person's session generation (``coffre.accounts.sessions``): each session keeps
    the epoch current at its login, and a session older than the person's epoch is
    logged out at its next request ("log out everywhere")."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="session_epoch")
    epoch = models.PositiveIntegerField(default=0)
    changed_at = models.DateTimeField(auto_now=True)


class Deactivation(models.Model):
    """An account a lab manager deactivated: lifting a mass-reading lock must not bring
    it back (coffre.audit.detection.unlock reactivates only accounts without one)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="deactivation")
    by = models.CharField(max_length=150)
    at = models.DateTimeField(auto_now_add=True)


class TemporaryPassword(models.Model):
    """A password someone else chose or saw (a lab manager's new account, ``coffre
    prescriber add``): the person replaces it before anything else
    (``coffre.accounts.temporary``). Removed only by that change."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="temporary_password")
    issued_by = models.CharField(max_length=150)
    issued_at = models.DateTimeField(auto_now_add=True)


class PersonWideRequest(models.Model):
    """A lab manager's request for a change that reaches every lab of a person who works
    for several (second-factor reset, login-lock release, reactivation): it is made once
    a manager of each of the person's labs has asked (``coffre.accounts.managing``)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="person_wide_requests")
    action = models.CharField(max_length=20)
    lab = models.ForeignKey("labs.Lab", on_delete=models.CASCADE, related_name="+")
    by = models.CharField(max_length=150)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "action", "lab"],
                                               name="one_request_per_lab")]


def dpo_emails(lab_id: int | None) -> list[str]:
    """The e-mail addresses of the lab's data protection officers (coffre.audit.alerts
    mails them each alert of the lab)."""
    return sorted({m.user.email for m in Membership.objects.filter(
        lab_id=lab_id, role=Role.DPO).select_related("user") if m.user.email})
