"""The alerts page: the data-protection officer reviews and acknowledges the lab's
alerts; the lab manager sees them and lifts account locks. Neither can do the other's
part (separation of duties)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from coffre.accounts.acting import requires, staff_view
from coffre.audit import alerts, detection
from coffre.identity.access import reachable_ids
from coffre.tenancy.access import RowNotFound
from coffre.tenancy.capabilities import may


@staff_view
@requires("alert.review")
@require_GET
def alert_list(request: HttpRequest) -> HttpResponse:
    lab_id = request.actor.lab_id
    is_dpo = may(request.membership, "alert.acknowledge")
    pending = alerts.open_alerts(lab_id)
    done = alerts.acknowledged_alerts(lab_id)
    return render(request, "audit/alerts.html", {
        "open_alerts": pending,
        "linkable": reachable_ids(request.actor, [a.patient_id for a in pending]),
        "acknowledged": [(a, alerts.comment_of(a) if is_dpo else "") for a in done],
        "can_acknowledge": is_dpo,
        "locks": (detection.open_locks(lab_id)
                  if may(request.membership, "lock.lift") else None),
    })


@staff_view
@requires("alert.acknowledge")
@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    try:
        alert = alerts.access_alert(request.actor, alert_id, open_only=True)
    except RowNotFound:
        raise Http404("no such alert") from None
    try:
        alerts.acknowledge(alert, by=request.actor,
                           comment=request.POST.get("comment", ""))
    except alerts.CommentRequired:
        messages.error(request, _("Un commentaire est obligatoire pour acquitter une alerte."))
    else:
        messages.success(request, _("Alerte acquittée."))
    return redirect("alerts")


@staff_view
@requires("lock.lift")
@require_POST
def account_unlock(request: HttpRequest, lock_id: int) -> HttpResponse:
    try:
        lock = detection.access_lock(request.actor, lock_id, open_only=True)
    except RowNotFound:
        raise Http404("no such lock") from None
    try:
        detection.unlock(lock.person, by=request.actor, lab_id=lock.lab_id)
    except detection.SelfUnlock:
        raise PermissionDenied("self-unlock") from None
    messages.success(request, _("Compte %(person)s déverrouillé.") % {"person": lock.person})
    return redirect("alerts")
