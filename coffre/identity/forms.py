from django import forms
from django.utils.translation import gettext_lazy as _

from coffre.identity.access import MIN_REASON


class PatientSearchForm(forms.Form):
    nir = forms.CharField(label=_("NIR / INS"), required=False, max_length=21)
    name = forms.CharField(label=_("Nom de naissance ou d'usage"), required=False,
                           max_length=100)
    birth_date = forms.DateField(label=_("Date de naissance"), required=False,
                                 widget=forms.DateInput(attrs={"type": "date"}))
    phone = forms.CharField(label=_("Téléphone"), required=False, max_length=30)
    email = forms.CharField(label=_("Courriel"), required=False, max_length=254)

    def criteria(self) -> dict[str, str]:
        data = self.cleaned_data
        dob = data.get("birth_date")
        return {"nir": data.get("nir") or None, "name": data.get("name") or None,
                "birth_date": dob.isoformat() if dob else None,
                "phone": data.get("phone") or None, "email": data.get("email") or None}


class BreakGlassSearchForm(PatientSearchForm):
    """The same criteria, over the other labs of the group, with a written reason."""

    reason = forms.CharField(
        label=_("Motif (obligatoire, enregistré et transmis au DPO)"),
        min_length=MIN_REASON, max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={
            "required": _("Le bris de glace demande un motif écrit."),
            "min_length": _("Le motif doit faire au moins %(limit_value)d caractères."),
        })

    field_order = ["reason"]
