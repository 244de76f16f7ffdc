"""Patient portal pages. The patient is the account's, never a URL parameter; an order
that is not theirs is a 404."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from coffre.accounts.acting import locked_out, second_factor_required, staff_view
from coffre.audit.detection import AccountLocked, ensure_not_locked
from coffre.labwork import catalogue
from coffre.labwork.access import OrderNotFound
from coffre.labwork.reports import patient_name
from coffre.labwork.views import lab_errors, pdf_response
from coffre.lifecycle.right_of_access import right_of_access
from coffre.portal import prescriber, services
from coffre.portal.activation import Activation, ActivationRefused, TooManyAttempts, activate
from coffre.portal.forms import ActivationForm
from coffre.portal.receipt import receipt_pdf
from coffre.serving.proxy import client_address
from coffre.tenancy import rls


def patient_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Login required and a patient account; ``request.patient_account`` set. Never
    cached (a shared family computer)."""

    @never_cache
    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        account = services.patient_account_of(request.user)
        if account is None:
            raise PermissionDenied("not a patient account")
        request.patient_account = account
        rls.limit_to([account.lab_id])
        try:
            ensure_not_locked(services.actor_for(account))
            return view(request, *args, **kwargs)
        except AccountLocked:
            return locked_out(request)

    return wrapper


@never_cache
@require_http_methods(["GET", "POST"])
def activation(request: HttpRequest) -> HttpResponse:
    form = ActivationForm(request.POST or None)
    problems: list[str] = []
    status = 200
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = activate(Activation(data["code"], data["birth_date"], data["username"],
                                       data["password"]), address=client_address(request))
        except ActivationRefused as refused:
            problems = form.explain(refused)
            status = 429 if isinstance(refused, TooManyAttempts) else 200
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            return redirect("portal_home")
    return render(request, "portal/activation.html", {"form": form, "problems": problems},
                  status=status)


@patient_view
@require_http_methods(["GET"])
def portal_home(request: HttpRequest) -> HttpResponse:
    account = request.patient_account
    return render(request, "portal/home.html", {
        "orders": services.published_orders(account),
        "tests": services.patient_tests(account)})


@patient_view
@require_http_methods(["GET"])
def portal_order(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        view = services.patient_order(request.patient_account, order_id)
    except OrderNotFound:
        raise Http404("no such order") from None
    return render(request, "portal/order.html", {"view": view})


@patient_view
@require_http_methods(["GET"])
def portal_report(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        name, content = services.patient_report(request.patient_account, order_id)
    except OrderNotFound:
        raise Http404("no such order") from None
    return pdf_response(name, content)


@patient_view
@require_http_methods(["GET"])
def portal_chart(request: HttpRequest, loinc: str) -> HttpResponse:
    test = catalogue.find(loinc)
    if test is None:
        raise Http404("no such test")
    account = request.patient_account
    points = services.patient_series(account, test.loinc)
    rng = services.reference_today(account, test)
    return render(request, "portal/chart.html", {
        "test": test, "points": points, "range": rng,
        "reference": catalogue.format_range(test, rng)})


@patient_view
@require_http_methods(["POST"])
def portal_my_data(request: HttpRequest) -> HttpResponse:
    """Everything the lab holds on the patient (right of access): a zip of a FHIR Bundle
    and the PDF reports. A POST: it is logged as an export."""
    account = request.patient_account
    name, content = right_of_access(services.actor_for(account), account.patient_id)
    response = HttpResponse(content, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store, private"
    return response


@patient_view
@require_http_methods(["GET"])
def portal_access_log(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/access_log.html",
                  {"entries": services.access_log(request.patient_account)})


@require_http_methods(["GET"])
def home(request: HttpRequest) -> HttpResponse:
    """Where a login lands: a patient's or a prescriber's portal, else the staff pages."""
    user = request.user
    if user.is_authenticated and services.patient_account_of(user):
        return redirect("portal_home")
    if user.is_authenticated and prescriber.prescriber_account_of(user):
        return redirect("prescriber_home")
    return redirect("patient_search")


@staff_view
@lab_errors
@require_http_methods(["POST"])
def order_receipt(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    """The patient's receipt, with a fresh activation code if they have no account yet
    (a POST: printing it issues a code and voids any earlier one)."""
    portal = request.build_absolute_uri(reverse("portal_activation"))
    return pdf_response(*receipt_pdf(request.actor, order_id, portal))


def prescriber_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Login, the second factor (a doctor reads many patients' results) and a prescriber
    account; ``request.prescriber_account`` set."""

    @never_cache
    @second_factor_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        account = prescriber.prescriber_account_of(request.user)
        if account is None:
            raise PermissionDenied("not a prescriber account")
        request.prescriber_account = account
        try:
            return view(request, *args, **kwargs)
        except AccountLocked:
            return locked_out(request)

    return wrapper


@prescriber_view
@require_http_methods(["GET"])
def prescriber_home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/prescriber_home.html", {
        "orders": prescriber.prescribed_orders(request.prescriber_account),
        "limit": prescriber.LIST_LIMIT})


@prescriber_view
@require_http_methods(["GET"])
def prescriber_order(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        view = prescriber.prescribed_order(request.prescriber_account, order_id)
    except OrderNotFound:
        raise Http404("no such order") from None
    return render(request, "portal/order.html", {
        "view": view, "prescriber": True, "patient_name": patient_name(view.patient)})


@prescriber_view
@require_http_methods(["GET"])
def prescriber_report(request: HttpRequest, order_id: str) -> HttpResponse:
    try:
        return pdf_response(*prescriber.prescribed_report(request.prescriber_account,
                                                          order_id))
    except OrderNotFound:
        raise Http404("no such order") from None
