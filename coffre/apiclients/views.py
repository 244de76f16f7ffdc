"""The lab manager's page of API clients: list, register (secret shown once), rotate a
secret (shown once), revoke. Logic in coffre.apiclients.services."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from coffre.accounts.acting import requires, staff_view
from coffre.apiclients import services
from coffre.apiclients.models import ApiClient
from coffre.apiclients.scopes import ALL_SCOPES, RESOURCE_TYPES, ScopeError
from coffre.audit import detection
from coffre.tenancy.access import RowNotFound


def _page(request: HttpRequest, *, shown: tuple[ApiClient, str] | None = None,
          form: dict[str, str] | None = None, status: int = 200) -> HttpResponse:
    """The page; ``shown`` is a client and its secret, on this response only (never in a
    message, a redirect or a log)."""
    clients = services.clients_of(request.actor.lab_id)
    shared = {c.pk: services.budget_name(c) for c in clients}
    locks = detection.open_locks_of(request.actor.lab_id,
                                    [c.person for c in clients] + list(shared.values()))
    # A client is locked on its own, or with every client its registrant registered.
    rows = [{"client": c, "lock": locks.get(c.person) or locks.get(shared[c.pk])}
            for c in clients]
    return render(request, "apiclients/clients.html", {
        "rows": rows, "shown": shown, "form": form or {"scopes": ALL_SCOPES},
        "types": sorted(RESOURCE_TYPES), "token_minutes": services.token_minutes()},
        status=status)


@staff_view
@requires("apiclients.manage")
@require_http_methods(["GET", "POST"])
def api_clients(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _page(request)
    form = {"name": request.POST.get("name", ""), "scopes": request.POST.get("scopes", "")}
    try:
        shown = services.register_client(request.membership.lab, form["name"],
                                          form["scopes"], request.actor)
    except (services.ApiClientError, ScopeError) as error:
        messages.error(request, str(error))
        return _page(request, form=form, status=400)
    return _page(request, shown=shown)


@staff_view
@requires("apiclients.manage")
@require_POST
def api_client_action(request: HttpRequest, client_pk: int) -> HttpResponse:
    try:
        client = services.access_client(request.actor, client_pk)
    except RowNotFound:
        raise Http404("no such API client") from None
    action = request.POST.get("action", "")
    if action == "revoke":
        services.revoke_client(client, request.actor)
        messages.success(request, _("Client API révoqué : ses jetons ne fonctionnent plus."))
        return redirect("api_clients")
    if action == "rotate":
        try:
            secret = services.rotate_secret(client, request.actor)
        except services.ApiClientError as error:
            messages.error(request, str(error))
            return redirect("api_clients")
        return _page(request, shown=(client, secret))
    return HttpResponseBadRequest("unknown action")
