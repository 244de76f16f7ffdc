"""Staff pages of the controlled exports: the lab's requests, a new request, and a
request's page where a second person approves or refuses it.

The approver is the logged-in person, who signs the approval again with their password
and a second-factor code (step-up, ``accounts.stepup``): a session left open on a shared
workstation does not approve an export. The credentials carry ``request.user``'s
username, never a typed name, so the approval and the run's audit entries ("approved by
...") name them. The run itself stays
with the operator at the server (``coffre export run ID``): it writes the encrypted file
to the server's staging directory, which only the operator can hand over
(``coffre export fetch``), and a large run would hold a web worker for seconds.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from coffre.accounts import mfa, stepup
from coffre.accounts.acting import requires, staff_view
from coffre.exports import services
from coffre.exports.forms import FIELD_LABELS, FORMAT_LABELS, ExportRequestForm
from coffre.exports.models import ExportRequest, ExportState
from coffre.exports.services import state_label
from coffre.tenancy.access import RowNotFound

STEP_UP_REASONS = {
    "locked": gettext_lazy("Compte bloqué après trop d'échecs : l'export n'est pas "
                           "approuvé. Réessayez plus tard ou demandez au responsable du "
                           "laboratoire de lever le blocage."),
    "password": gettext_lazy("Mot de passe incorrect : l'export n'est pas approuvé."),
    "no_second_factor": gettext_lazy("Votre compte n'a pas de double authentification "
                                     "active : l'export n'est pas approuvé."),
    "code": gettext_lazy("Code de double authentification incorrect ou déjà utilisé : "
                         "l'export n'est pas approuvé."),
}


# -- helpers --------------------------------------------------------------------------

def _username(request: HttpRequest) -> str:
    return request.user.get_username()


def _where(request: HttpRequest) -> dict[str, str]:
    """The channel and address the export steps' audit entries record."""
    return {"channel": "web", "address": request.actor.address}


def _export(request: HttpRequest, export_id: int) -> ExportRequest:
    """The acting lab's export; another lab's or none is the same 404."""
    try:
        return services.access_export(request.actor, export_id)
    except RowNotFound:
        raise Http404("no such export") from None


def _row(export: ExportRequest) -> dict:
    """What a page shows of a request; its purpose and recipient opened (sealed at rest)."""
    texts = services.texts(export)
    return {"export": export, "state": state_label(export.state),
            "purpose": texts.purpose, "recipient": texts.recipient,
            "fields": [str(FIELD_LABELS.get(f, f)) for f in export.field_list()],
            "format": str(FORMAT_LABELS.get(export.format, export.format))}


# -- pages ----------------------------------------------------------------------------

@staff_view
@requires("export.request")
@require_GET
def export_list(request: HttpRequest) -> HttpResponse:
    lab = request.membership.lab
    return render(request, "exports/list.html", {
        "rows": [_row(e) for e in services.requests_of(lab)],
        "threshold": services.dpo_threshold(lab.id)})


@staff_view
@requires("export.request")
@require_http_methods(["GET", "POST"])
def export_new(request: HttpRequest) -> HttpResponse:
    form = ExportRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            export = services.request_export(
                request.membership.lab, purpose=data["purpose"],
                recipient=data["recipient"], recipient_key=data["recipient_key"].strip(),
                fields=",".join(data["fields"]), period_from=data["period_from"],
                period_to=data["period_to"], requested_by=_username(request),
                format=data["format"], **_where(request))
        except services.ExportError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, _(
                "Demande d'export n° %(id)s enregistrée : une autre personne doit "
                "l'approuver.") % {"id": export.pk})
            return redirect("export_detail", export_id=export.pk)
    return render(request, "exports/new.html", {
        "form": form, "threshold": services.dpo_threshold(request.membership.lab_id)},
        status=400 if form.is_bound and form.errors else 200)


@staff_view
@requires("export.request")
@require_GET
def export_detail(request: HttpRequest, export_id: int) -> HttpResponse:
    export = _export(request, export_id)
    me = _username(request)
    cannot_approve = cannot_refuse = None
    if export.state == ExportState.REQUESTED:
        problem = services.approval_refusal(export, me)  # refreshes size_estimate
        cannot_approve = str(problem) if problem else None
    problem = services.refusal_refusal(export, me)
    cannot_refuse = str(problem) if problem else None
    return render(request, "exports/detail.html", {
        **_row(export), "can_approve": (export.state == ExportState.REQUESTED
                                        and cannot_approve is None),
        "cannot_approve": cannot_approve, "can_refuse": cannot_refuse is None,
        "threshold": services.dpo_threshold(export.lab_id)})


@staff_view
@requires("export.request")
@require_POST
def export_approve(request: HttpRequest, export_id: int) -> HttpResponse:
    export = _export(request, export_id)
    credentials = stepup.Credentials(_username(request), request.POST.get("password", ""),
                                     request.POST.get("code", ""))
    try:
        services.approve(export.pk, credentials, request=request, **_where(request))
    except services.ExportError as error:
        messages.error(request, str(error))
    except stepup.StepUpRefused as refused:
        if refused.reason == "locked" or mfa.count_failure(request):
            # As on the code page: too many failures end the session.
            logout(request)
            messages.error(request, STEP_UP_REASONS["locked"] if refused.reason == "locked"
                           else _("Trop de codes erronés : la session a été fermée. "
                                  "Reconnectez-vous."))
            return redirect("login")
        messages.error(request, STEP_UP_REASONS[refused.reason])
    else:
        messages.success(request, _("Export n° %(id)s approuvé par %(who)s.")
                         % {"id": export.pk, "who": _username(request)})
    return redirect("export_detail", export_id=export.pk)


@staff_view
@requires("export.request")
@require_POST
def export_refuse(request: HttpRequest, export_id: int) -> HttpResponse:
    export = _export(request, export_id)
    try:
        services.refuse(export.pk, _username(request), **_where(request))
    except services.ExportError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, _("Export n° %(id)s refusé.") % {"id": export.pk})
    return redirect("export_detail", export_id=export.pk)
