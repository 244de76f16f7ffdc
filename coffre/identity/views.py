"""Staff pages for patients. Searches are POSTed so no patient value reaches a URL."""

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from coffre.accounts.acting import staff_view
from coffre.identity.access import PatientNotFound, SearchError, access_patient, find_patients
from coffre.identity.forms import PatientSearchForm


@staff_view
@require_http_methods(["GET", "POST"])
def patient_search(request: HttpRequest) -> HttpResponse:
    form = PatientSearchForm(request.POST or None)
    results, error = None, ""
    if request.method == "POST" and form.is_valid():
        try:
            results = find_patients(request.actor, **form.criteria())
        except SearchError as exc:
            error = str(exc)
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
