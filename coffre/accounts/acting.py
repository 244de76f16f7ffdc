"""The acting lab of a web session, and the Actor every patient read needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from coffre.accounts.models import Membership
from coffre.labs.tenancy import Actor

SESSION_LAB = "acting_lab_id"


def memberships(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("lab"))


def acting_membership(request: HttpRequest) -> Membership | None:
    lab_id = request.session.get(SESSION_LAB)
    if lab_id is None:
        return None
    return Membership.objects.filter(user=request.user, lab_id=lab_id).select_related(
        "lab").first()


def actor_for(request: HttpRequest, membership: Membership) -> Actor:
    return Actor(person=request.user.get_username(), lab_id=membership.lab_id,
                 role=membership.role, channel="web",
                 address=request.META.get("REMOTE_ADDR", ""))


def staff_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Login required, a lab chosen, and ``request.actor`` set for the access layer."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        membership = acting_membership(request)
        if membership is None:
            mine = memberships(request.user)
            if not mine:
                raise PermissionDenied("no laboratory")
            if len(mine) > 1:
                return redirect("choose_lab")
            request.session[SESSION_LAB] = mine[0].lab_id
            membership = mine[0]
        request.actor = actor_for(request, membership)
        request.membership = membership
        return view(request, *args, **kwargs)

    return wrapper
