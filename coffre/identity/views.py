"""Staff pages for patients. Searches are POSTed so no patient value reaches a URL."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from coffre.accounts.acting import staff_view
from coffre.identity.access import PatientNotFound, SearchError, access_patient, find_patients
from coffre.identity.forms import PatientSearchForm

# The access layer's messages are English (the CLI and import reports share them); the
# staff pages say the same rule in the page's language. Neither ever holds the value.
_SEARCH_ERRORS = (
    ("NIR check key", _("NIR : la clé de contrôle (2 derniers chiffres) ne correspond pas "
                        "aux 13 premiers caractères.")),
    ("NIR must have 15", _("NIR : il faut 15 caractères, les 13 du numéro et la clé.")),
    ("NIR", _("NIR invalide : vérifiez la saisie.")),
    ("a search by name", _("La recherche par nom demande aussi la date de naissance.")),
    ("birth date", _("Date de naissance invalide.")),
    ("phone", _("Numéro de téléphone invalide.")),
    ("e-mail", _("Adresse de courriel invalide.")),
)


def search_error_message(error: SearchError) -> str:
    reason = str(error)
    for start, message in _SEARCH_ERRORS:
        if reason.startswith(start):
            return str(message)
    return str(_("Indiquez un NIR, un nom et une date de naissance, un téléphone ou un "
                 "courriel."))


@staff_view
@require_http_methods(["GET", "POST"])
def patient_search(request: HttpRequest) -> HttpResponse:
    form = PatientSearchForm(request.POST or None)
    results, error = None, ""
    if request.method == "POST" and form.is_valid():
        try:
            results = find_patients(request.actor, **form.criteria())
        except SearchError as exc:
            error = search_error_message(exc)
    return render(request, "identity/search.html",
                  {"form": form, "results": results, "error": error})


@staff_view
@require_http_methods(["GET"])
def patient_detail(request: HttpRequest, patient_id: str) -> HttpResponse:
    try:
        record = access_patient(request.actor, patient_id)
    except PatientNotFound:
        raise Http404("no such patient") from None
    return render(request, "identity/patient.html", {"patient": record})
