"""A person's roles: one membership per lab they work for. One account per person."""

from django.conf import settings
from django.db import models
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
