"""The password change form: Django's, which applies the password policy
(``AUTH_PASSWORD_VALIDATORS``), and refuses to keep the same password (a temporary one
would otherwise stay the one its issuer knows)."""

from __future__ import annotations

from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


class NewPasswordForm(PasswordChangeForm):
    def clean(self):
        cleaned = super().clean()
        old, new = cleaned.get("old_password"), cleaned.get("new_password1")
        if old and new and old == new and not self.has_error("new_password2"):
            self.add_error("new_password1", ValidationError(
                _("Le nouveau mot de passe doit être différent de l'actuel."),
                code="password_unchanged"))
        return cleaned
