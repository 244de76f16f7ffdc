from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from coffre.accounts import mfa
from coffre.accounts.acting import SESSION_LAB, memberships, second_factor_required


@second_factor_required
@require_http_methods(["GET", "POST"])
def choose_lab(request: HttpRequest) -> HttpResponse:
    mine = memberships(request.user)
    if request.method == "POST":
        chosen = request.POST.get("lab")
        if any(str(m.lab_id) == chosen for m in mine):
            request.session[SESSION_LAB] = int(chosen)
            return redirect("home")
    return render(request, "accounts/choose_lab.html", {"memberships": mine})


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return "/"


def _wrong_code(request: HttpRequest) -> HttpResponse | None:
    """Count a wrong code; after too many, end the session (None: show the page again)."""
    if mfa.count_failure(request):
        logout(request)
        messages.error(request, _("Trop de codes erronés : la session a été fermée. "
                                  "Reconnectez-vous."))
        return redirect("login")
    return None


def _grouped(secret: str) -> str:
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_enroll(request: HttpRequest) -> HttpResponse:
    """First login: register an authenticator app, confirm it with a code, receive the
    recovery codes (shown once)."""
    if mfa.is_verified(request.session):
        return redirect(_next(request))
    if mfa.is_enrolled(request.user):
        return redirect("mfa_verify")
    error = False
    if request.method == "POST":
        try:
            codes = mfa.confirm(request.user, request.POST.get("code", ""))
        except mfa.WrongCode:
            ended = _wrong_code(request)
            if ended:
                return ended
            error = True
        else:
            mfa.complete(request)
            return render(request, "accounts/mfa_recovery_codes.html",
                          {"codes": codes, "next": _next(request)})
    secret, uri = mfa.enroll(request.user)
    return render(request, "accounts/mfa_enroll.html",
                  {"secret_groups": _grouped(secret), "uri": uri, "error": error,
                   "next": _next(request)})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_verify(request: HttpRequest) -> HttpResponse:
    """Each login: the authenticator's code, or one of the recovery codes."""
    if mfa.is_verified(request.session):
        return redirect(_next(request))
    if not mfa.is_enrolled(request.user):
        return redirect("mfa_enroll")
    error = False
    if request.method == "POST":
        code = request.POST.get("code", "")
        if mfa.verify(request.user, code) or mfa.use_recovery_code(request.user, code):
            mfa.complete(request)
            return redirect(_next(request))
        ended = _wrong_code(request)
        if ended:
            return ended
        error = True
    return render(request, "accounts/mfa_verify.html",
                  {"error": error, "next": _next(request)})
