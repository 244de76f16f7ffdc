"""The export request form (no patient value: a purpose, a recipient, columns, dates)."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils.translation import gettext_lazy as _

from coffre.fhir.bulk import EXPORT_COLUMNS
from coffre.identity.registry import CSV_COLUMNS
from coffre.vault import RecipientKeyError, check_recipient

# The registry's CSV columns, said in French on the form (the value sent is the column).
FIELD_LABELS = {
    "nir": _("NIR (numéro de sécurité sociale)"), "birth_name": _("Nom de naissance"),
    "used_name": _("Nom d'usage"), "first_names": _("Prénoms"), "sex": _("Sexe"),
    "birth_date": _("Date de naissance"), "birth_place": _("Lieu de naissance (INSEE)"),
    "address": _("Adresse"), "postal_code": _("Code postal"), "city": _("Commune"),
    "phone": _("Téléphone"), "email": _("Courriel"), "blood_group": _("Groupe sanguin"),
    "doctor_rpps": _("RPPS du médecin traitant"), "doctor_name": _("Médecin traitant"),
    "insurer": _("Organisme d'assurance maladie"), "notes": _("Notes"),
}


# The file's format, said on the form and the pages.
FORMAT_LABELS = {"csv": _("CSV (colonnes du registre)"),
                 "ndjson": _("FHIR NDJSON (une ressource Patient par ligne)")}


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self) -> None:
        super().__init__(format="%Y-%m-%d")


class ExportRequestForm(forms.Form):
    purpose = forms.CharField(
        label=_("Motif"), max_length=2000, widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Pourquoi ces données sortent du laboratoire (lu par le DPO)."))
    recipient = forms.CharField(label=_("Destinataire"), max_length=200)
    recipient_key = forms.CharField(
        label=_("Clé publique age du destinataire"), max_length=200,
        help_text=_("Commence par age1… : le fichier est chiffré pour cette clé seule."),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false",
                                      "class": "mono"}))
    fields = forms.MultipleChoiceField(
        label=_("Champs exportés"), widget=forms.CheckboxSelectMultiple,
        choices=[(name, FIELD_LABELS.get(name, name)) for name in CSV_COLUMNS],
        error_messages={"required": _("Choisissez au moins un champ.")})
    format = forms.ChoiceField(
        label=_("Format du fichier"), choices=list(FORMAT_LABELS.items()), initial="csv",
        widget=forms.RadioSelect, required=False,
        help_text=_("FHIR NDJSON : seuls l'identité, la naissance, l'adresse et les "
                    "coordonnées peuvent être exportés dans ce format."))
    period_from = forms.DateField(label=_("Du"), widget=DateInput())
    period_to = forms.DateField(label=_("Au"), widget=DateInput())

    def clean_recipient_key(self) -> str:
        # Checked here: services.request_export only turns a ValueError into an
        # ExportError, and the vault's RecipientKeyError is not one.
        try:
            return check_recipient(self.cleaned_data["recipient_key"])
        except (RecipientKeyError, ValueError):
            raise forms.ValidationError(_(
                "Clé publique age du destinataire invalide (une clé X25519 commençant "
                "par age1…).")) from None

    def clean_format(self) -> str:
        return self.cleaned_data.get("format") or "csv"

    def clean(self) -> dict:
        data = super().clean()
        start, end = data.get("period_from"), data.get("period_to")
        if isinstance(start, dt.date) and isinstance(end, dt.date) and start > end:
            self.add_error("period_to", _("La période se termine avant de commencer."))
        outside = [f for f in data.get("fields") or [] if f not in EXPORT_COLUMNS]
        if data.get("format") == "ndjson" and outside:
            self.add_error("fields", _(
                "Ces champs n'ont pas de place dans une ressource FHIR Patient : "
                "%(fields)s. Exportez-les en CSV, ou décochez-les.")
                % {"fields": ", ".join(str(FIELD_LABELS.get(f, f)) for f in outside)})
        return data
