"""Staff pages for patients. Searches are POSTed so no patient value reaches a URL."""

import uuid

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from coffre.accounts.acting import staff_view
from coffre.audit.history import patient_history
from coffre.identity import grants
from coffre.identity.access import (
    BreakGlassRefused,
    PatientNotFound,
    ReasonRequired,
    SearchError,
    access_patient,
    break_glass_access,
    break_glass_find,
    find_patients,
    other_group_labs,
)
from coffre.identity.forms import BreakGlassSearchForm, PatientSearchForm
from coffre.labwork.access import patient_orders, tests_with_history
from coffre.tenancy.capabilities import may
from coffre.tenancy.models import Lab


def _search_page(request: HttpRequest, form: PatientSearchForm | None = None,
                 results: list | None = None, error: str = "",
                 bg_form: BreakGlassSearchForm | None = None, bg_results: list | None = None,
                 bg_error: str = "") -> HttpResponse:
    group_labs = ({lab.id: lab for lab in other_group_labs(request.actor)}
                  if may(request.actor, "patient.break_glass") else {})
    return render(request, "identity/search.html", {
        "form": form or PatientSearchForm(), "results": results, "error": error,
        "group_labs": group_labs, "bg_form": bg_form or BreakGlassSearchForm(prefix="bg"),
        "bg_results": [(r, group_labs.get(r.lab_id)) for r in bg_results or []],
        "bg_searched": bg_results is not None, "bg_error": bg_error,
        "bg_open": bg_form is not None})


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
    return _search_page(request, form, results, error)


@staff_view
@require_http_methods(["GET", "POST"])
def break_glass_search(request: HttpRequest) -> HttpResponse:
    """Search the other labs of the group; the results are granted for a short while."""
    if request.method == "GET":
        return redirect("patient_search")
    form = BreakGlassSearchForm(request.POST, prefix="bg")
    results, error = None, ""
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        try:
            results = break_glass_find(request.actor, reason, **form.criteria())
        except SearchError as exc:
            error = str(exc)
        except BreakGlassRefused:
            raise PermissionDenied("break-the-glass is not open to this role") from None
        else:
            grants.grant(request.session, request.actor.lab_id, [r.id for r in results],
                         reason)
    return _search_page(request, bg_form=form, bg_results=results, bg_error=error)


@staff_view
@require_http_methods(["GET"])
def patient_detail(request: HttpRequest, patient_id: str) -> HttpResponse:
    try:
        record = access_patient(request.actor, patient_id)
    except PatientNotFound:
        raise Http404("no such patient") from None
    history = patient_history(record.id,
                              with_reasons=may(request.membership, "patient.history_reasons"))
    lab = {}
    if may(request.actor, "result.read"):
        lab = {"orders": patient_orders(request.actor, record.id),
               "charts": tests_with_history(request.actor, record.id),
               "can_order": may(request.actor, "order.create")}
    return render(request, "identity/patient.html", {"patient": record, "history": history,
                                                     **lab})


@staff_view
@require_http_methods(["GET"])
def break_glass_patient(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    """A record of another lab of the group, under a live grant; each view is logged
    with the reason and alerted to that lab's DPO."""
    reason = grants.granted_reason(request.session, request.actor.lab_id, patient_id)
    if reason is None:
        raise Http404("no such patient")
    try:
        record = break_glass_access(request.actor, patient_id, reason)
    except (PatientNotFound, ReasonRequired, BreakGlassRefused):
        raise Http404("no such patient") from None
    return render(request, "identity/patient.html", {
        "patient": record, "break_glass": True,
        "patient_lab": Lab.objects.filter(pk=record.lab_id).first()})
