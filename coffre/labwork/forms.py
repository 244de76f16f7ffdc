"""Forms of the lab pages. Patient values only ever arrive by POST."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from coffre.labwork import catalogue
from coffre.labwork.models import ResultState
from coffre.labwork.orders import MAX_CLINICAL_INFO

S = ResultState


class OrderForm(forms.Form):
    prescriber_rpps = forms.CharField(label=_("RPPS du prescripteur"), required=False,
                                      max_length=20)
    prescriber_name = forms.CharField(label=_("Nom du prescripteur"), required=False,
                                      max_length=200)
    urgent = forms.BooleanField(label=_("Urgent"), required=False)
    clinical_info = forms.CharField(label=_("Renseignements cliniques"), required=False,
                                    max_length=MAX_CLINICAL_INFO,
                                    widget=forms.Textarea(attrs={"rows": 3}))
    quick_codes = forms.CharField(
        label=_("Codes rapides"), required=False, max_length=500,
        help_text=_("Codes séparés par des espaces, par exemple : NFS IONO CRP"))
    panels = forms.MultipleChoiceField(
        label=_("Bilans"), required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(p.code, p.label) for p in catalogue.PANELS.values()])
    tests = forms.MultipleChoiceField(
        label=_("Analyses"), required=False,
        choices=[(t.loinc, t.label) for t in catalogue.TESTS.values()])

    def codes(self) -> tuple[str, ...]:
        data = self.cleaned_data
        typed = data.get("quick_codes", "").replace(",", " ").split()
        return tuple(dict.fromkeys([*data.get("panels", []), *typed,
                                    *data.get("tests", [])]))


class BarcodeForm(forms.Form):
    barcode = forms.CharField(label=_("Code-barres"), max_length=32,
                              widget=forms.TextInput(attrs={
                                  "autofocus": True, "autocomplete": "off",
                                  "inputmode": "numeric", "class": "barcode"}))


OPEN_STATES = [S.REGISTERED, S.COLLECTED, S.RECEIVED, S.IN_ANALYSIS, S.TECH_VALIDATED,
               S.BIO_VALIDATED]


class WorklistFilter(forms.Form):
    paillasse = forms.ChoiceField(
        label=_("Paillasse"), required=False,
        choices=[("", _("Toutes")), *catalogue.BENCHES.items()])
    etat = forms.ChoiceField(
        label=_("État"), required=False,
        choices=[("", _("En cours (tous)"))] + [(s.value, s.label) for s in OPEN_STATES])


class SettingsForm(forms.Form):
    allow_self_validation = forms.BooleanField(
        label=_("Autoriser un biologiste à valider les résultats qu'il a lui-même saisis"),
        required=False,
        help_text=_("Réservé aux petits laboratoires : la validation biologique par une "
                    "seconde personne reste la règle."))
