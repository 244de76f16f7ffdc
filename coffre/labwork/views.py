"""Staff pages of the lab workflow: parse the request, call coffre.labwork's services, render.

Every patient value stays out of URLs: filters in query strings are operational only
(bench, state); barcodes, values and reasons are POSTed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from coffre.accounts.acting import requires, staff_view
from coffre.identity.access import PatientNotFound, access_patient
from coffre.labwork import access, catalogue, reports, workflow
from coffre.labwork.forms import BarcodeForm, OrderForm, SettingsForm, WorklistFilter
from coffre.labwork.models import ResultState
from coffre.labwork.orders import InvalidOrder, OrderRequest, create_order
from coffre.labwork.scope import orders_for, results_for
from coffre.tenancy.actors import Actor
from coffre.tenancy.capabilities import NotAllowed, may

S = ResultState
RECEIVED_KEY = "lab_received_barcodes"


def lab_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The services' refusals as HTTP answers: a role that may not -> 403, a row of
    another lab or none -> the same 404 for both."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except NotAllowed:
            raise PermissionDenied("role not allowed") from None
        except (access.OrderNotFound, PatientNotFound, workflow.SpecimenNotFound,
                catalogue.UnknownTest):
            raise Http404("not found") from None

    return wrapper


def problems_of(error: workflow.WorkflowError) -> list[tuple[str, str]]:
    """(row label, reason in the page's language) of a refused step; one row without
    label if single."""
    if error.problems:
        return [(row, str(reason)) for row, reason in error.problems]
    return [("", str(error))]


def report_refusal(request: HttpRequest, error: workflow.WorkflowError) -> None:
    for row, reason in problems_of(error):
        messages.error(request, f"{row} : {reason}" if row else reason)


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(text))
    except ValueError:
        return None


def _uuids(values: list[str]) -> list[uuid.UUID]:
    return [u for u in map(_uuid, values) if u is not None]


# -- 1. order entry ---------------------------------------------------------------------

def _bench_tests() -> list[tuple[str, list[catalogue.TestDef]]]:
    return [(label, [t for t in catalogue.TESTS.values() if t.bench == code])
            for code, label in catalogue.BENCHES.items()]


@staff_view
@requires("order.create")
@lab_errors
@require_http_methods(["GET", "POST"])
def order_new(request: HttpRequest, patient_id: uuid.UUID) -> HttpResponse:
    patient = access_patient(request.actor, patient_id)
    form = OrderForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            order = create_order(request.actor, OrderRequest(
                patient_id=patient.id, tests=form.codes(),
                prescriber_rpps=data["prescriber_rpps"],
                prescriber_name=data["prescriber_name"],
                clinical_info=data["clinical_info"], urgent=data["urgent"]))
        except InvalidOrder as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("Demande %(number)s enregistrée.")
                             % {"number": order.number})
            return redirect("order_detail", order_id=order.id)
    selected = set(form.data.getlist("tests")) if form.is_bound else set()
    return render(request, "lab/order_new.html", {
        "patient": patient, "form": form, "benches": _bench_tests(), "selected": selected,
        "patient_name": reports.patient_name(patient)})


# -- 2. order page, its actions and documents -------------------------------------------

@dataclass
class ResultRow:
    view: access.ResultView
    reference: str
    previous: str
    steps: frozenset[str]  # the buttons offered: workflow.allowed says yes


def _steps(actor: Actor, row, steps: tuple[str, ...]) -> frozenset[str]:
    return frozenset(step for step in steps if workflow.allowed(actor, row, step))


def _result_rows(actor: Actor, view: access.OrderView) -> list[ResultRow]:
    return [ResultRow(r, r.reference, r.display_previous,
                      _steps(actor, r, workflow.RESULT_STEPS)) for r in view.results]


def order_page_context(actor: Actor, view: access.OrderView) -> dict:
    """What the order page shows and offers: each button where ``workflow.allowed``
    says yes, and only there (tests/test_workflow_table.py renders every case)."""
    return {
        "view": view, "order": view.order, "patient": view.patient,
        "patient_name": reports.patient_name(view.patient),
        "rows": _result_rows(actor, view),
        "specimens": [(s, _steps(actor, s, workflow.SPECIMEN_STEPS))
                      for s in view.specimens],
        "reasons": workflow.REJECTION_REASONS,
        "can_publish": any(workflow.allowed(actor, r, "publish") for r in view.results),
        "reportable": reports.has_reportable_results(view)}


@staff_view
@lab_errors
@require_GET
def order_detail(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    view = access.access_order(request.actor, order_id)
    return render(request, "lab/order_detail.html",
                  order_page_context(request.actor, view))


def _specimen_of(request: HttpRequest, order_id: uuid.UUID) -> uuid.UUID:
    """The posted specimen id, if it belongs to this order of the actor's lab."""
    return access.access_specimen(request.actor, _uuid(request.POST.get("specimen")),
                                  order_id=order_id).id


def _reject(request: HttpRequest, order_id: uuid.UUID) -> str:
    reason = " — ".join(p for p in (request.POST.get("reason", "").strip(),
                                    request.POST.get("detail", "").strip()) if p)
    specimen = workflow.reject(request.actor, _specimen_of(request, order_id), reason)
    return _("Échantillon %(barcode)s refusé.") % {"barcode": specimen.barcode}


def _collect(request: HttpRequest, order_id: uuid.UUID) -> str:
    specimen = workflow.collect(request.actor, _specimen_of(request, order_id))
    return _("Échantillon %(barcode)s prélevé.") % {"barcode": specimen.barcode}


def _receive(request: HttpRequest, order_id: uuid.UUID) -> str:
    specimen = workflow.receive(request.actor, request.POST.get("barcode", ""))
    return _("Échantillon %(barcode)s réceptionné") % {"barcode": specimen.barcode}


def _publish(request: HttpRequest, order_id: uuid.UUID) -> str:
    count = workflow.publish(request.actor, access.access_order_row(request.actor, order_id))
    return _("%(count)d résultat(s) diffusé(s).") % {"count": count}


def _correct(request: HttpRequest, order_id: uuid.UUID) -> str:
    workflow.invalidate(request.actor, _result_of(request, order_id),
                        request.POST.get("value", ""), request.POST.get("reason", ""))
    return _("Résultat corrigé : la nouvelle valeur attend la validation biologique.")


def _cancel(request: HttpRequest, order_id: uuid.UUID) -> str:
    workflow.cancel(request.actor, _result_of(request, order_id),
                    request.POST.get("reason", ""))
    return _("Analyse annulée.")


def _acknowledge(request: HttpRequest, order_id: uuid.UUID | None) -> str:
    result_id = (_result_of(request, order_id) if order_id
                 else _uuid(request.POST.get("result")))
    workflow.acknowledge_critical(request.actor, result_id, request.POST.get("note", ""))
    return _("Valeur critique acquittée.")


def _result_of(request: HttpRequest, order_id: uuid.UUID) -> uuid.UUID:
    """The posted result id, if it belongs to this order of the actor's lab."""
    return access.access_result(request.actor, _uuid(request.POST.get("result")),
                                order_id=order_id).id


ORDER_ACTIONS = {"collect": _collect, "receive": _receive, "reject": _reject,
                 "publish": _publish, "correct": _correct, "cancel": _cancel,
                 "acknowledge": _acknowledge}


@staff_view
@lab_errors
@require_POST
def order_action(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    access.access_order_row(request.actor, order_id)
    action = ORDER_ACTIONS.get(request.POST.get("action", ""))
    if action is None:
        raise Http404("no such action")
    try:
        messages.success(request, action(request, order_id))
    except workflow.WorkflowError as exc:
        report_refusal(request, exc)
    return redirect("order_detail", order_id=order_id)


def pdf_response(filename: str, content: bytes) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store, private"
    return response


@staff_view
@lab_errors
@require_GET
def order_labels(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    return pdf_response(*reports.labels_pdf(request.actor, order_id))


@staff_view
@lab_errors
@require_GET
def order_report(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    return pdf_response(*reports.report_pdf(request.actor, order_id))


@staff_view
@lab_errors
@require_GET
def order_preview(request: HttpRequest, order_id: uuid.UUID) -> HttpResponse:
    view = access.access_order(request.actor, order_id)
    return render(request, "lab/report_preview.html", {
        "order": view.order, "report": reports.report_data(view)})


# -- 3. reception -----------------------------------------------------------------------

@staff_view
@requires("specimen.receive")
@lab_errors
@require_http_methods(["GET", "POST"])
def reception(request: HttpRequest) -> HttpResponse:
    form = BarcodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            specimen = workflow.receive(request.actor, form.cleaned_data["barcode"])
        except workflow.SpecimenNotFound:
            messages.error(request, _("Aucun échantillon de ce laboratoire ne porte ce "
                                      "code-barres."))
        except workflow.WorkflowError as exc:
            report_refusal(request, exc)
        else:
            done = [specimen.barcode, *request.session.get(RECEIVED_KEY, [])][:30]
            request.session[RECEIVED_KEY] = done
            messages.success(request, _("Échantillon %(barcode)s réceptionné")
                             % {"barcode": specimen.barcode})
        return redirect("reception")
    return render(request, "lab/reception.html", {
        "form": form, "received": request.session.get(RECEIVED_KEY, [])})


# -- 4. worklists -----------------------------------------------------------------------

@staff_view
@requires("result.read")
@lab_errors
@require_GET
def worklist(request: HttpRequest) -> HttpResponse:
    form = WorklistFilter(request.GET or None)
    bench = state = ""
    if form.is_valid():
        bench, state = form.cleaned_data["paillasse"], form.cleaned_data["etat"]
    rows = access.worklist(request.actor, bench=bench, state=state)
    return render(request, "lab/worklist.html", {"form": form, "rows": rows})


# -- 5. result entry grid ---------------------------------------------------------------

@dataclass
class GridRow:
    result: object
    test: catalogue.TestDef
    value: str = ""
    hint: str = ""
    checked: bool = False
    errors: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The row as the workflow's refusals name it."""
        return f"{self.test.label} ({self.result.specimen.barcode})"


def _grid_rows(request: HttpRequest, bench: str) -> list[GridRow]:
    results = access.results_to_enter(request.actor, bench=bench)
    entered = access.open_entered(request.actor, results)
    rows = []
    for result in results:
        test = catalogue.test(result.loinc)
        # A hint only: the patient's own range (sex, age) is on the order page.
        typed = entered[result.id].display_value if result.id in entered else ""
        rows.append(GridRow(result, test, typed, catalogue.format_range(
            test, catalogue.reference_range(test, "", catalogue.ADULT_DAYS))))
    return rows


def _attach(request: HttpRequest, rows: list[GridRow], error: workflow.WorkflowError
            ) -> None:
    """A refusal's reasons next to their rows (or in the messages)."""
    by_label = {row.label: row for row in rows}
    for label, reason in problems_of(error):
        if label in by_label:
            by_label[label].errors += (reason,)
        else:
            messages.error(request, f"{label} : {reason}" if label else reason)


@staff_view
@requires("result.enter")
@lab_errors
@require_http_methods(["GET", "POST"])
def result_entry(request: HttpRequest) -> HttpResponse:
    """Every typed value is entered at once (all or nothing); then the ticked rows are
    validated technically, as a second step with its own refusal."""
    bench = request.GET.get("paillasse", "")
    bench = bench if bench in catalogue.BENCHES else ""
    rows = _grid_rows(request, bench)
    if request.method == "POST":
        ids = {str(row.result.id) for row in rows}
        ticked = [rid for rid in request.POST.getlist("validate") if rid in ids]
        for row in rows:
            row.value = request.POST.get(f"value-{row.result.id}", row.value).strip()
            row.checked = str(row.result.id) in ticked
        typed = [workflow.Entry(row.result.id, row.value) for row in rows
                 if request.POST.get(f"value-{row.result.id}", "").strip()]
        try:
            entered = len(workflow.enter_results(request.actor, typed)) if typed else 0
        except workflow.WorkflowError as exc:
            _attach(request, rows, exc)
            messages.error(request, _("Rien n'a été enregistré : corrigez les lignes "
                                      "signalées."))
        else:
            validated = 0
            try:
                validated = (workflow.validate_technically(request.actor, _uuids(ticked))
                             if ticked else 0)
            except workflow.WorkflowError as exc:
                report_refusal(request, exc)
                messages.error(request, _("Validation technique refusée : aucune ligne "
                                          "cochée n'a été validée."))
            messages.success(request, _("%(entered)d résultat(s) enregistré(s), "
                                        "%(validated)d validé(s) techniquement.")
                             % {"entered": entered, "validated": validated})
            return redirect(request.get_full_path())
    return render(request, "lab/result_entry.html", {
        "rows": rows, "bench": bench, "benches": catalogue.BENCHES.items(),
        "can_validate": may(request.actor, "result.validate_technically")})


# -- 6. biologist validation ------------------------------------------------------------

@dataclass
class QueueRow:
    view: access.ResultView
    reference: str
    previous: str
    blocked: bool  # a critical value not acknowledged yet


def _queue(request: HttpRequest) -> list[tuple[access.QueueOrder, list[QueueRow]]]:
    return [(item, [QueueRow(r, r.reference, r.display_previous,
                             bool(r.critical and r.critical.acknowledged_at is None))
                    for r in item.results])
            for item in access.validation_queue(request.actor)]


def _publish_complete(request: HttpRequest, order_ids: set[uuid.UUID]) -> int:
    """Publish the orders that have no test left before biological validation."""
    pending = set(results_for(request.actor).filter(
        order_id__in=order_ids,
        state__in=list(workflow.BEFORE_VALIDATION))
        .values_list("order_id", flat=True))
    published = 0
    for order in orders_for(request.actor).filter(id__in=order_ids - pending):
        workflow.publish(request.actor, order)
        published += 1
    return published


@staff_view
@requires("result.validate_biologically")
@lab_errors
@require_http_methods(["GET", "POST"])
def validation(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        try:
            if request.POST.get("action") == "acknowledge":
                messages.success(request, _acknowledge(request, None))
            else:
                _validate(request)
        except workflow.WorkflowError as exc:
            report_refusal(request, exc)
        return redirect("validation")
    return render(request, "lab/validation.html", {"queue": _queue(request)})


def _validate(request: HttpRequest) -> None:
    ids = _uuids(request.POST.getlist("result"))
    if not ids:
        messages.error(request, _("Aucun résultat sélectionné."))
        return
    count = workflow.validate_biologically(request.actor, ids)
    messages.success(request, _("%(count)d résultat(s) validé(s) biologiquement.")
                     % {"count": count})
    if request.POST.get("action") == "publish":
        orders = set(results_for(request.actor).filter(id__in=ids)
                     .values_list("order_id", flat=True))
        published = _publish_complete(request, orders)
        messages.success(request, _("%(count)d demande(s) diffusée(s).")
                         % {"count": published})


# -- 7. results chart -------------------------------------------------------------------

@staff_view
@requires("result.read")
@lab_errors
@require_GET
def result_chart(request: HttpRequest, patient_id: uuid.UUID, loinc: str) -> HttpResponse:
    test = catalogue.test(loinc)
    patient = access_patient(request.actor, patient_id)
    points = access.result_series(request.actor, patient.id, test.loinc)
    rng = access.reference_for(test, workflow.Demographics.of(patient), timezone.now())
    return render(request, "lab/result_chart.html", {
        "patient": patient, "patient_name": reports.patient_name(patient), "test": test,
        "points": points, "range": rng, "reference": catalogue.format_range(test, rng)})


# -- 8. lab settings --------------------------------------------------------------------

@staff_view
@requires("lab.settings")
@lab_errors
@require_http_methods(["GET", "POST"])
def lab_settings(request: HttpRequest) -> HttpResponse:
    form = SettingsForm(request.POST if request.method == "POST" else None, initial={
        "allow_self_validation": workflow.self_validation_allowed(request.actor.lab_id)})
    if request.method == "POST" and form.is_valid():
        workflow.set_self_validation(request.actor,
                                     form.cleaned_data["allow_self_validation"])
        messages.success(request, _("Réglages enregistrés."))
        return redirect("lab_settings")
    return render(request, "lab/settings.html", {"form": form})
