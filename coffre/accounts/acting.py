"""The acting lab of a web session, and the Actor every patient read needs."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache

from coffre.accounts import mfa
from coffre.accounts.models import Membership
from coffre.audit.detection import AccountLocked, ensure_not_locked
from coffre.serving.proxy import client_address
from coffre.tenancy import rls
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import may

SESSION_LAB = "acting_lab_id"


def memberships(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("lab"))


def request_memberships(request: HttpRequest) -> list[Membership]:
    """The logged-in user's memberships, read once per request (every staff page needs
    them twice: is this a staff account, and which lab is it acting for)."""
    if not hasattr(request, "_coffre_memberships"):
        request._coffre_memberships = memberships(request.user)
    return request._coffre_memberships


def acting_membership(request: HttpRequest) -> Membership | None:
    lab_id = request.session.get(SESSION_LAB)
    if lab_id is None:
        return None
    return next((m for m in request_memberships(request) if m.lab_id == lab_id), None)


def actor_for(request: HttpRequest, membership: Membership) -> LabActor:
    return LabActor(person=request.user.get_username(), lab_id=membership.lab_id,
                    role=membership.role, channel="web",
                    address=client_address(request))


def locked_out(request: HttpRequest) -> HttpResponse:
    """End the session of a locked account and say why, without any patient value."""
    logout(request)
    return render(request, "accounts/locked.html", status=403)


def second_factor_pending(request: HttpRequest) -> HttpResponse | None:
    """Where a logged-in session goes while its second factor is not done (the code page,
    or the enrollment page without a confirmed authenticator); None once it is done."""
    if mfa.is_verified(request.session):
        return None
    name = "mfa_verify" if mfa.is_enrolled(request.user) else "mfa_enroll"
    return redirect(f"{reverse(name)}?{urlencode({'next': request.get_full_path()})}")


def second_factor_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Login required and the second factor done in this session."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return second_factor_pending(request) or view(request, *args, **kwargs)

    return wrapper


def _staff_account(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """A logged-in account with no lab membership (a patient or prescriber portal
    account) is refused at once, not sent to the staff second-factor enrollment."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.user.is_authenticated and not request_memberships(request):
            raise PermissionDenied("not a staff account")
        return view(request, *args, **kwargs)

    return wrapper


def staff_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Login required, the second factor done in this session (``accounts.mfa``), a lab
    chosen, and ``request.actor`` set for the access layer.

    An account locked by the mass-reading detection, before or while the view runs, is
    logged out and shown the "account locked" page: the one place the web handles it.
    Staff pages are never cached: a shared workstation's disk cache or back button must
    not keep a record after logout.
    """

    @never_cache
    @_staff_account
    @second_factor_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        membership = acting_membership(request)
        if membership is None:
            mine = request_memberships(request)
            if not mine:
                raise PermissionDenied("no laboratory")
            if len(mine) > 1:
                return redirect("choose_lab")
            request.session[SESSION_LAB] = mine[0].lab_id
            membership = mine[0]
        request.actor = actor_for(request, membership)
        request.membership = membership
        rls.limit_to([membership.lab_id])  # the database's own check, on PostgreSQL
        try:
            ensure_not_locked(request.actor)
            return view(request, *args, **kwargs)
        except AccountLocked:
            return locked_out(request)

    return wrapper


def requires(capability: str) -> Callable[[Callable[..., HttpResponse]],
                                           Callable[..., HttpResponse]]:
    """Only the roles holding ``capability`` (coffre.tenancy.capabilities) in the acting lab;
    put it under ``@staff_view``. The service the view calls checks it again."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if not may(request.membership, capability):
                raise PermissionDenied("role not allowed")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
