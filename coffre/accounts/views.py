from django.contrib import messages
from django.contrib.auth import logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from coffre.accounts import locks, managing, mfa, sessions, temporary
from coffre.accounts.acting import (
    SESSION_LAB,
    acting_membership,
    actor_for,
    request_memberships,
    requires,
    second_factor_pending,
    second_factor_required,
    staff_view,
)
from coffre.accounts.forms import NewPasswordForm
from coffre.audit import log


@second_factor_required
@require_http_methods(["GET", "POST"])
def choose_lab(request: HttpRequest) -> HttpResponse:
    mine = request_memberships(request)
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
    """Count a wrong code at enrollment; after too many, end the session (None: show the
    page again). The secret is on that page, so these codes guess nothing: they count in
    the session only, not against the account."""
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


def _locked_out_of_login(request: HttpRequest) -> HttpResponse:
    """The account or the address is locked for failed authentications (passwords or
    codes): this session ends, with the lockout page a password would get."""
    logout(request)
    return locks.lockout_response(request)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mfa_verify(request: HttpRequest) -> HttpResponse:
    """Each login: the authenticator's code, or one of the recovery codes. A wrong one is
    a failed authentication of the account (``accounts.locks``): the limits of failed
    logins hold across sessions, and a locked account gets no more tries."""
    if mfa.is_verified(request.session):
        return redirect(_next(request))
    if not mfa.is_enrolled(request.user):
        return redirect("mfa_enroll")
    if locks.is_locked_out(request, request.user.get_username()):
        return _locked_out_of_login(request)
    error = False
    if request.method == "POST":
        outcome = locks.try_second_factor(request, request.POST.get("code", ""))
        if outcome == "passed":
            mfa.complete(request)
            return redirect(_next(request))
        if outcome == "locked":
            return _locked_out_of_login(request)
        error = True
    return render(request, "accounts/mfa_verify.html",
                  {"error": error, "next": _next(request)})


# --- the lab manager's accounts page -----------------------------------------------------

ACCOUNT_ACTIONS = {
    "deactivate": (managing.do_deactivate, gettext_lazy("Compte désactivé ; ses sessions sont "
                                                 "fermées.")),
    "reactivate": (managing.do_reactivate, gettext_lazy("Compte réactivé.")),
    "remove": (managing.do_remove_membership, gettext_lazy("Personne retirée du laboratoire.")),
    "reset_mfa": (managing.do_reset_second_factor,
                  gettext_lazy("Double authentification réinitialisée : la personne en "
                        "activera une nouvelle à sa prochaine connexion.")),
    "clear_login_lock": (managing.do_clear_login_lock, gettext_lazy("Blocage de connexion levé.")),
}


AWAITING_OTHER_LABS = gettext_lazy(
    "Demande enregistrée. Cette personne travaille aussi pour un autre laboratoire : "
    "l'opération change aussi son accès là-bas, elle sera faite quand le responsable de "
    "chacun de ses laboratoires l'aura demandée à son tour.")


def _accounts_page(request: HttpRequest, created: managing.Created | None = None,
                   form: dict[str, str] | None = None, status: int = 200) -> HttpResponse:
    return render(request, "accounts/lab_accounts.html", {
        "members": managing.lab_members(request.actor), "roles": managing.ROLE_CHOICES,
        "created": created, "form": form or {}}, status=status)


@staff_view
@requires("accounts.manage")
@require_http_methods(["GET", "POST"])
def lab_accounts(request: HttpRequest) -> HttpResponse:
    """The lab's members and their state; the form creating an account. The temporary
    password is shown once, on this response only (never in a message or a redirect)."""
    if request.method == "GET":
        return _accounts_page(request)
    form = {name: request.POST.get(name, "") for name in
            ("username", "first_name", "last_name", "role")}
    try:
        created = managing.do_create_account(request.actor, **form)
    except (managing.AccountError, ValidationError) as error:
        for text in _error_texts(error):
            messages.error(request, text)
        return _accounts_page(request, form=form, status=400)
    return _accounts_page(request, created=created)


@staff_view
@requires("accounts.manage")
@require_POST
def lab_account_action(request: HttpRequest, membership_id: int) -> HttpResponse:
    action = request.POST.get("action", "")
    try:
        managing.access_membership(request.actor, membership_id)
        if action == "role":
            managing.do_change_role(request.actor, membership_id, request.POST.get("role", ""))
            done = _("Rôle modifié.")
        elif action in ACCOUNT_ACTIONS:
            change, said = ACCOUNT_ACTIONS[action]
            if change(request.actor, membership_id) is False:  # a person-wide change
                messages.info(request, AWAITING_OTHER_LABS)
                return redirect("lab_accounts")
            done = str(said)
        else:
            return HttpResponseBadRequest("unknown action")
    except managing.NoSuchMembership:
        raise Http404("no such membership") from None
    except managing.AccountError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, done)
    return redirect("lab_accounts")


def _error_texts(error: Exception) -> list[str]:
    if isinstance(error, ValidationError):
        return list(error.messages)
    return [str(error)]


# --- logging out everywhere --------------------------------------------------------------

@never_cache
@login_required
@require_POST
def logout_everywhere(request: HttpRequest) -> HttpResponse:
    """End every session of the person, this one included. A staff account must have
    passed its second factor: a password alone cannot end the owner's sessions."""
    user = request.user
    mine = request_memberships(request)
    if mine:
        pending = second_factor_pending(request)
        if pending:
            return pending
    sessions.end_all_sessions(user)
    if mine:
        membership = acting_membership(request) or mine[0]
        log.record(actor_for(request, membership), "logout_everywhere", [], kind="account")
    logout(request)
    messages.success(request, _("Toutes vos sessions sont fermées, sur tous vos appareils. "
                                "Reconnectez-vous."))
    return redirect("login")


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Change one's password. A person with an authenticator passes the second factor
    first; so does any staff account, except one replacing a temporary password before
    enrolling (``accounts.temporary``). Django ends the person's other sessions (their
    session hash changes) and keeps this one."""
    replacing = temporary.is_pending(request)
    if mfa.is_enrolled(request.user) or (request_memberships(request) and not replacing):
        pending = second_factor_pending(request)
        if pending:
            return pending
    form = NewPasswordForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            user = form.save()
            temporary.changed(request, user)
        update_session_auth_hash(request, user)
        messages.success(request, _("Mot de passe changé. Vos autres sessions sont fermées."))
        return redirect("home")
    return render(request, "accounts/password_change.html",
                  {"form": form, "temporary": replacing})
