import math

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from coffre.portal.activation import ActivationRefused, TooManyAttempts

# The activation layer speaks English (tests, logs); the page says the same in the
# page's language. Password rule messages arrive translated already.
_REFUSALS = (
    ("code or birth date", _("Code ou date de naissance non reconnus, ou code expiré. "
                             "Vérifiez votre reçu et votre date de naissance : après 5 "
                             "dates de naissance erronées, le code ne sert plus.")),
    ("the birth date", _("Date de naissance invalide : écrivez-la JJ/MM/AAAA.")),
    ("the login must be", _("L'identifiant doit faire 6 à 40 caractères : lettres "
                            "minuscules, chiffres, « . », « _ » ou « - ».")),
    ("this login is taken", _("Cet identifiant est déjà pris, choisissez-en un autre.")),
    ("this patient already", _("Un compte existe déjà pour ce dossier : connectez-vous.")),
)


class ActivationForm(forms.Form):
    code = forms.CharField(label=_("Code d'activation (sur votre reçu)"), max_length=40,
                           widget=forms.TextInput(attrs={"autocomplete": "off",
                                                         "autofocus": True}))
    birth_date = forms.CharField(label=_("Date de naissance"), max_length=10,
                                 widget=forms.TextInput(attrs={"placeholder": "JJ/MM/AAAA"}))
    username = forms.CharField(label=_("Identifiant de connexion à choisir"), max_length=40,
                               widget=forms.TextInput(attrs={"autocomplete": "username"}))
    password = forms.CharField(label=_("Mot de passe à choisir"), max_length=200,
                               widget=forms.PasswordInput(
                                   attrs={"autocomplete": "new-password"}))
    password_again = forms.CharField(label=_("Mot de passe (encore)"), max_length=200,
                                     widget=forms.PasswordInput(
                                         attrs={"autocomplete": "new-password"}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("password") != data.get("password_again"):
            raise forms.ValidationError(_("Les deux mots de passe diffèrent."))
        return data

    def explain(self, refused: ActivationRefused) -> list[str]:
        if isinstance(refused, TooManyAttempts):
            minutes = max(1, math.ceil(refused.retry_after / 60))
            return [ngettext("Trop d'essais depuis cette connexion. Réessayez dans "
                             "%(n)s minute.",
                             "Trop d'essais depuis cette connexion. Réessayez dans "
                             "%(n)s minutes.", minutes) % {"n": minutes}]
        explained = []
        for problem in refused.problems:
            message = next((str(text) for start, text in _REFUSALS
                            if problem.startswith(start)), problem)
            explained.append(message)
        return explained
