"""The breach pages' forms: the upload of leaked files, the DPO's free text, the CNIL
text as edited, and marking drafts sent."""

from __future__ import annotations

import datetime as dt

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from coffre.breach.models import Channel
from coffre.breach.uploads import MAX_FILES

TEXT_LABELS = {
    "nature": _("Nature de la violation (circonstances, découverte)"),
    "consequences": _("Conséquences probables"),
    "measures_taken": _("Mesures prises"),
    "measures_proposed": _("Mesures proposées"),
    "dpo_contact": _("Contact du délégué à la protection des données"),
    "delay_reasons": _("Motifs du retard (si notification après 72 heures)"),
}


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None):
        files = data if isinstance(data, (list, tuple)) else [data]
        files = [super(MultipleFileField, self).clean(f, initial) for f in files if f]
        if not files:
            raise forms.ValidationError(_("Choisissez au moins un fichier."))
        if len(files) > MAX_FILES:
            raise forms.ValidationError(_("Au plus %(n)s fichiers à la fois.")
                                        % {"n": MAX_FILES})
        return files  # their size was bounded while they were read (breach.uploads)


class UploadForm(forms.Form):
    files = MultipleFileField(label=_("Fichier(s) trouvé(s)"), help_text=_(
        "CSV, TSV, XLSX, JSON, NDJSON ou dump SQL. Le fichier est analysé puis effacé "
        "aussitôt : il n'est jamais conservé."))
    aware_at = forms.DateTimeField(
        label=_("Date et heure de prise de connaissance"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"},
                                   format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        help_text=_("Le délai de 72 heures pour notifier la CNIL court à partir de ce "
                    "moment."))
    nature = forms.CharField(label=TEXT_LABELS["nature"], required=False, max_length=4000,
                             widget=forms.Textarea(attrs={"rows": 3}))

    def clean_aware_at(self):
        value = self.cleaned_data["aware_at"]
        if value > timezone.now() + dt.timedelta(minutes=5):
            raise forms.ValidationError(_("Ce moment est dans le futur."))
        return value


ROWS = {"nature": 5, "consequences": 5, "dpo_contact": 2}


class TextsForm(forms.Form):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, label in TEXT_LABELS.items():
            self.fields[name] = forms.CharField(
                label=label, required=False, max_length=4000,
                widget=forms.Textarea(attrs={"rows": ROWS.get(name, 3)}))


class CnilTextForm(forms.Form):
    body = forms.CharField(label=_("Texte de la notification"), required=False,
                           max_length=20000, widget=forms.Textarea(attrs={"rows": 30}),
                           help_text=_("Videz le champ pour revenir au projet généré."))


class SendForm(forms.Form):
    """Which drafts were sent, and how: ``target`` is "cnil", "letters" (every patient
    not yet marked), or one patient's internal id."""

    target = forms.CharField(max_length=40)
    channel = forms.ChoiceField(choices=Channel.choices)
