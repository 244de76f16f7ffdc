"""Reading lab data: scoped to the actor's lab (coffre.labwork.scope) and audited.

Two kinds of reads. Worklists show operational columns only (barcode, order number,
tests, states, times): no name and no value, nothing decrypted, nothing logged, so a
bench can list 500 specimens without "reading" 500 patients. Anything that opens a
value (an order page, the validation queue, a chart, a report) records the read of
each patient it shows, which feeds the mass-reading detection, and checks each result
it shows against its tag first (coffre.labwork.sealing.check_results): a test code, order,
state or stamp changed in the database raises TamperedRow instead of showing a value
under the wrong name or state.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db.models import Prefetch

from coffre.audit import detection, log
from coffre.identity.access import PatientNotFound, access_patient, patients_for
from coffre.identity.registry import PatientRecord
from coffre.labwork import catalogue
from coffre.labwork.models import CriticalValue, Order, Result, ResultState, Specimen
from coffre.labwork.orders import prescriber_filter
from coffre.labwork.scope import orders_for, results_for, specimens_for
from coffre.labwork.sealing import PatientKeys, check_result, check_results, unseal
from coffre.labwork.workflow import Demographics, SpecimenNotFound, demographics
from coffre.tenancy.access import RowNotFound, one_row
from coffre.tenancy.actors import LabActor
from coffre.tenancy.capabilities import require

S = ResultState
SHOWN_STATES = frozenset(set(S) - {S.INVALIDATED})
SETTLED = frozenset({S.BIO_VALIDATED, S.PUBLISHED, S.CANCELLED, S.REJECTED, S.INVALIDATED})


class OrderNotFound(RowNotFound):
    pass


@dataclass
class Previous:
    value: str
    at: dt.datetime | None


@dataclass
class ResultView:
    result: Result
    test: catalogue.TestDef
    value: str = ""
    flag: str = ""
    comment: str = ""
    previous: Previous | None = None
    delta: bool = False
    critical: CriticalValue | None = None
    reference: str = ""  # the range for this patient's sex and age, in French

    @property
    def display_previous(self) -> str:
        return catalogue.format_value(self.test, self.previous.value) if self.previous else ""

    @property
    def id(self) -> uuid.UUID:
        return self.result.id

    @property
    def state(self) -> str:
        return self.result.state

    @property
    def display_value(self) -> str:
        return catalogue.format_value(self.test, self.value) if self.value else ""

    @property
    def corrected(self) -> bool:
        return self.result.version > 1


@dataclass
class OrderView:
    order: Order
    patient: PatientRecord | None
    prescriber_rpps: str = ""
    prescriber_name: str = ""
    clinical_info: str = ""
    specimens: list[Specimen] = field(default_factory=list)
    results: list[ResultView] = field(default_factory=list)
    rejection_reasons: dict[uuid.UUID, str] = field(default_factory=dict)
    pending: bool = False  # some test is neither reported nor ended (partial report)


def reference_for(test: catalogue.TestDef, person: Demographics, on: dt.datetime
                  ) -> catalogue.Range | None:
    """The range for this patient's sex and age on that day."""
    return catalogue.reference_range(test, person.sex, person.age_days(on))


def _add_references(views: list[ResultView], people: dict[uuid.UUID, Demographics]) -> None:
    unknown = Demographics("", None)
    for view in views:
        taken = view.result.specimen.collected_at or view.result.order.created_at
        person = people.get(view.result.patient_id, unknown)
        view.reference = catalogue.format_range(view.test,
                                                reference_for(view.test, person, taken))


def parse_order_id(order_id: uuid.UUID | str) -> uuid.UUID:
    """An order id from a URL or a command; a malformed one is an order not found."""
    try:
        return order_id if isinstance(order_id, uuid.UUID) else uuid.UUID(str(order_id))
    except ValueError:
        raise OrderNotFound("no such order") from None


def access_order_row(actor: LabActor, order_id: uuid.UUID | str) -> Order:
    """The order row of the actor's lab (no value opened, nothing logged); OrderNotFound
    else. ``access_order`` opens it."""
    return one_row(orders_for(actor), order_id, "order", OrderNotFound)


def access_specimen(actor: LabActor, specimen_id: uuid.UUID | str | None, *,
                    order_id: uuid.UUID | None = None) -> Specimen:
    """A specimen of the actor's lab (of that order when given), no value opened, nothing
    logged; SpecimenNotFound else."""
    rows = specimens_for(actor)
    if order_id is not None:
        rows = rows.filter(order_id=order_id)
    return one_row(rows, specimen_id, "specimen", SpecimenNotFound)


def access_result(actor: LabActor, result_id: uuid.UUID | str | None, *,
                  order_id: uuid.UUID | None = None) -> Result:
    """A result row of the actor's lab (of that order when given), any version, nothing
    opened or logged; OrderNotFound else. ``result_view`` opens it."""
    rows = results_for(actor)
    if order_id is not None:
        rows = rows.filter(order_id=order_id)
    return one_row(rows, result_id, "result", OrderNotFound)


def order_by_number(actor: LabActor, number: str) -> Order:
    order = orders_for(actor).filter(number=number.strip()).first()
    if order is None:
        raise OrderNotFound("no such order")
    return order


def _open_results(keys: PatientKeys, results: Iterable[Result]) -> list[ResultView]:
    """Each result checked against its tag, then opened."""
    views = []
    for result in results:
        key = keys[result.patient_id]
        check_result(key, result)
        views.append(ResultView(
            result=result, test=catalogue.test(result.loinc),
            value=unseal(key, "result", "value", result.id, result.value),
            flag=unseal(key, "result", "flag", result.id, result.flag),
            comment=unseal(key, "result", "comment", result.id, result.comment)))
    return views


def _add_previous(keys: PatientKeys, views: list[ResultView], prescribed_by: str | None
                  ) -> None:
    """The patient's latest earlier published value of each test, and the delta check.
    One query for the whole page: previous results of these patients and tests. With
    ``prescribed_by`` (a prescriber's RPPS), only from orders that doctor prescribed."""
    if not views:
        return
    patients = {v.result.patient_id for v in views}
    loincs = {v.result.loinc for v in views}
    shown_orders = {v.result.order_id for v in views}
    candidates = (Result.unscoped.filter(patient_id__in=patients, loinc__in=loincs,
                                         state=S.PUBLISHED)
                  .exclude(order_id__in=shown_orders).select_related("order")
                  .order_by("-order__created_at"))
    allowed = None
    if prescribed_by is not None:
        candidates = candidates.filter(prescriber_filter([keys.lab_id], prescribed_by,
                                                         prefix="order__"))
        allowed = _PrescribedBy(keys, prescribed_by)
    history: dict[tuple[uuid.UUID, str], list[Result]] = defaultdict(list)
    for candidate in candidates:
        history[(candidate.patient_id, candidate.loinc)].append(candidate)
    for view in views:
        before = next((r for r in history[(view.result.patient_id, view.result.loinc)]
                       if r.order.created_at < view.result.order.created_at
                       and (allowed is None or allowed(r.order))), None)
        if before is None:
            continue
        check_result(keys[before.patient_id], before)
        value = unseal(keys[before.patient_id], "result", "value", before.id, before.value)
        view.previous = Previous(value, before.order.created_at)
        if view.value:
            view.delta = catalogue.delta_exceeded(view.test, view.value, value)


class _PrescribedBy:
    """Whether an order was prescribed by this RPPS: the truncated blind index gathers a
    few doctors' orders, the sealed RPPS tells (opened once per order)."""

    def __init__(self, keys: PatientKeys, rpps: str) -> None:
        self.keys, self.rpps = keys, rpps
        self.seen: dict[uuid.UUID, bool] = {}

    def __call__(self, order: Order) -> bool:
        if order.id not in self.seen:
            self.seen[order.id] = unseal(self.keys[order.patient_id], "order",
                                         "prescriber_rpps", order.id,
                                         order.prescriber_rpps) == self.rpps
        return self.seen[order.id]


def _attach_criticals(views: list[ResultView]) -> None:
    found = CriticalValue.objects.in_bulk([v.id for v in views], field_name="result_id")
    for view in views:
        view.critical = found.get(view.id)


def access_order(actor: LabActor, order_id: uuid.UUID | str, *, published_only: bool = False,
                 prescribed_by: str | None = None) -> OrderView:
    """An order with its patient, specimens and results, opened; the read is logged
    (the patient's identity read by coffre.identity.access, the results here).
    Portals pass ``published_only`` after checking the order is theirs to see; the
    prescriber portal passes ``prescribed_by`` (the doctor's RPPS) so that previous
    values come only from orders that doctor prescribed. Every result of the order,
    invalidated versions included, is checked against its tag."""
    require(actor, "order.read")
    order = access_order_row(actor, order_id)
    try:
        patient = access_patient(actor, order.patient_id)
    except PatientNotFound:
        raise OrderNotFound("no such order") from None
    keys = PatientKeys(actor.lab_id)
    key = keys[order.patient_id]
    every = list(order.results.select_related("specimen", "order")
                 .order_by("position", "version"))
    # All of them: a result hidden by setting it "invalidated" in the database fails too.
    check_results(keys, every)
    results = [r for r in every if r.state in SHOWN_STATES]
    pending = any(r.state not in SETTLED for r in results)
    if published_only:
        results = [r for r in results if r.state == S.PUBLISHED]
    views = _open_results(keys, results)
    _add_previous(keys, views, prescribed_by)
    _attach_criticals(views)
    _add_references(views, {patient.id: Demographics.of(patient)})
    specimens = list(order.specimens.order_by("barcode"))
    log.record(actor, "read", [order.patient_id], kind="results")
    return OrderView(
        order=order, patient=patient, specimens=specimens, results=views, pending=pending,
        prescriber_rpps=unseal(key, "order", "prescriber_rpps", order.id,
                               order.prescriber_rpps),
        prescriber_name=unseal(key, "order", "prescriber_name", order.id,
                               order.prescriber_name),
        clinical_info=unseal(key, "order", "clinical_info", order.id, order.clinical_info),
        rejection_reasons={s.id: unseal(key, "specimen", "rejection_reason", s.id,
                                        s.rejection_reason)
                           for s in specimens if s.state == "rejected"})


def patient_orders(actor: LabActor, patient_id: uuid.UUID) -> list[Order]:
    """A patient's orders, newest first: numbers, dates and states only. The caller has
    opened the patient through coffre.identity.access (which logged the read)."""
    return list(orders_for(actor).filter(patient_id=patient_id)
                .prefetch_related(Prefetch("results", queryset=Result.unscoped.only(
                    "id", "order_id", "state", "loinc")))
                .order_by("-created_at"))


@dataclass
class WorklistRow:
    specimen: Specimen
    tests: list[catalogue.TestDef]
    states: list[str]


def worklist(actor: LabActor, *, bench: str = "", state: str = "", limit: int = 500
             ) -> list[WorklistRow]:
    """Specimens to work on, urgent first then oldest: no name, no value, not logged."""
    require(actor, "result.read")
    specimens = specimens_for(actor).select_related("order").order_by(
        "-order__urgent", "received_at", "order__created_at", "barcode")
    open_states = [S.REGISTERED, S.COLLECTED, S.RECEIVED, S.IN_ANALYSIS, S.TECH_VALIDATED,
                   S.BIO_VALIDATED]
    results = results_for(actor).filter(state__in=[state] if state else open_states)
    if bench:
        results = results.filter(loinc__in=[t.loinc for t in catalogue.TESTS.values()
                                            if t.bench == bench])
    wanted = results.values_list("specimen_id", flat=True)
    rows = list(specimens.filter(id__in=wanted)[:limit])
    by_specimen: dict[uuid.UUID, list[tuple[str, str]]] = defaultdict(list)
    for specimen_id, loinc, result_state in (
            results.filter(specimen_id__in=[s.id for s in rows])
            .order_by("position").values_list("specimen_id", "loinc", "state")):
        by_specimen[specimen_id].append((loinc, result_state))
    return [WorklistRow(s, [catalogue.test(loinc) for loinc, _ in by_specimen[s.id]],
                        [st for _, st in by_specimen[s.id]]) for s in rows]


def results_to_enter(actor: LabActor, *, bench: str = "", limit: int = 200) -> list[Result]:
    """The entry grid's rows: received or in-analysis results, not calculated. Values
    already typed are opened by the grid through ``open_entered``."""
    require(actor, "result.read")
    rows = (results_for(actor).filter(state__in=[S.RECEIVED, S.IN_ANALYSIS])
            .exclude(source="calculated").select_related("specimen", "order")
            .order_by("-order__urgent", "specimen__received_at", "specimen__barcode",
                      "position"))
    if bench:
        rows = rows.filter(loinc__in=[t.loinc for t in catalogue.TESTS.values()
                                      if t.bench == bench])
    return list(rows[:limit])


def open_entered(actor: LabActor, results: list[Result]) -> dict[uuid.UUID, ResultView]:
    """Open the values already typed in these rows (to correct them), logging the read
    of each patient concerned."""
    entered = [r for r in results if r.entered_at is not None]
    if not entered:
        return {}
    views = _open_results(PatientKeys(actor.lab_id), entered)
    log.record(actor, "read", {r.patient_id for r in entered}, kind="results")
    return {v.id: v for v in views}


@dataclass
class QueueOrder:
    order: Order
    results: list[ResultView]


def validation_queue(actor: LabActor, *, limit: int = 50) -> list[QueueOrder]:
    """Orders waiting for the biologist, urgent and oldest first, with their technically
    validated results opened, flagged, compared with the previous value. Logged."""
    require(actor, "result.validate_biologically")
    waiting = (results_for(actor).filter(state=S.TECH_VALIDATED)
               .values_list("order_id", flat=True))
    orders = list(orders_for(actor).filter(id__in=waiting)
                  .order_by("-urgent", "created_at")[:limit])
    results = list(results_for(actor).filter(order_id__in=[o.id for o in orders],
                                             state=S.TECH_VALIDATED)
                   .select_related("specimen", "order").order_by("position"))
    keys = PatientKeys(actor.lab_id)
    keys.load({o.patient_id for o in orders})
    views = _open_results(keys, results)
    _add_previous(keys, views, None)
    _attach_criticals(views)
    # Sex and birth date for the ranges only: opened for the rule, not shown.
    _add_references(views, demographics({o.patient_id for o in orders}))
    grouped: dict[uuid.UUID, list[ResultView]] = defaultdict(list)
    for view in views:
        grouped[view.result.order_id].append(view)
    if orders:
        log.record(actor, "read", {o.patient_id for o in orders}, kind="results")
    return [QueueOrder(o, grouped[o.id]) for o in orders if grouped[o.id]]


@dataclass(frozen=True)
class Point:
    at: dt.datetime
    value: float
    text: str
    flag: str


def result_series(actor: LabActor, patient_id: uuid.UUID, loinc: str) -> list[Point]:
    """A patient's published values of one test over time, for a chart. Logged."""
    require(actor, "order.read")
    test = catalogue.test(loinc)
    rows = list(results_for(actor).filter(patient_id=patient_id, loinc=test.loinc,
                                          state=S.PUBLISHED)
                .select_related("order", "specimen").order_by("order__created_at"))
    if not rows:
        return []
    keys = PatientKeys(actor.lab_id)
    points = []
    for view in _open_results(keys, rows):
        number = catalogue.numeric(view.value)
        if number is not None:
            taken = view.result.specimen.collected_at or view.result.order.created_at
            points.append(Point(taken, number, view.display_value, view.flag))
    log.record(actor, "read", [patient_id], kind="results")
    return points


def tests_with_history(actor: LabActor, patient_id: uuid.UUID) -> list[catalogue.TestDef]:
    """The numeric tests this patient has published results for (no value read)."""
    loincs = set(results_for(actor).filter(patient_id=patient_id, state=S.PUBLISHED)
                 .values_list("loinc", flat=True))
    return [t for t in catalogue.TESTS.values() if t.loinc in loincs and t.kind == "numeric"]


def specimen_listing(actor: LabActor, *, state: str = "") -> Iterator[dict]:
    """Operational listing for integrations (``coffre specimens list``): barcode, state,
    order number, patient id and LOINC codes. No value, not logged as a read."""
    require(actor, "result.read")
    specimens = specimens_for(actor).select_related("order").order_by("order__created_at",
                                                                      "barcode")
    if state:
        specimens = specimens.filter(state=state)
    for chunk_start in range(0, 10**9, 2000):
        chunk = list(specimens[chunk_start:chunk_start + 2000])
        if not chunk:
            return
        codes: dict[uuid.UUID, list[str]] = defaultdict(list)
        for specimen_id, loinc in (Result.unscoped.filter(specimen_id__in=[s.id for s in chunk])
                                   .exclude(state=S.INVALIDATED).order_by("position")
                                   .values_list("specimen_id", "loinc")):
            codes[specimen_id].append(loinc)
        for specimen in chunk:
            yield {"barcode": specimen.barcode, "state": specimen.state,
                   "specimen_type": specimen.specimen_type, "order": specimen.order.number,
                   "patient": str(specimen.order.patient_id), "urgent": specimen.order.urgent,
                   "collected_at": _iso(specimen.collected_at),
                   "received_at": _iso(specimen.received_at), "tests": codes[specimen.id]}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- API searches (coffre.fhir): filtered, paged, the page's values opened and logged ---

@dataclass(frozen=True)
class ResultFilter:
    loincs: frozenset[str] = frozenset()
    states: frozenset[str] = frozenset()
    # [since, until) on the collection time (else the order's)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    corrected: bool | None = None  # only corrected (version > 1) or only first results


def _filtered_results(actor: LabActor, patient_id: uuid.UUID, wanted: ResultFilter):
    """A patient's results. The patient is checked to be of the actor's lab (and not
    erased) first; the results are then reached by the patient alone, since a filter
    on the lab makes SQLite (without ANALYZE statistics) walk the lab's index, every
    result of the lab, instead of the patient's (~200 ms at 200,000 results). A
    patient's results are all in the patient's lab (coffre.labwork.orders)."""
    from django.db.models.functions import Coalesce

    rows = (Result.unscoped.filter(patient_id=patient_id).exclude(state=S.INVALIDATED)
            .annotate(taken=Coalesce("specimen__collected_at", "order__created_at")))
    if not patients_for(actor).filter(id=patient_id).exists():
        return rows.none()
    if wanted.loincs:
        rows = rows.filter(loinc__in=wanted.loincs)
    if wanted.states:
        rows = rows.filter(state__in=wanted.states)
    if wanted.corrected is not None:
        rows = rows.filter(version__gt=1) if wanted.corrected else rows.filter(version=1)
    if wanted.since:
        rows = rows.filter(taken__gte=wanted.since)
    if wanted.until:
        rows = rows.filter(taken__lt=wanted.until)
    return rows


def patient_results(actor: LabActor, patient_id: uuid.UUID, wanted: ResultFilter, *,
                    offset: int = 0, limit: int = 50) -> tuple[int, list[ResultView]]:
    """(total, one page of results) of a patient, newest first; only the page is opened
    and its read logged. Values of results not biologically validated stay closed."""
    require(actor, "result.read")
    rows = _filtered_results(actor, patient_id, wanted)
    total = rows.count()
    page = list(rows.select_related("specimen", "order")
                .order_by("-taken", "order_id", "position", "id")[offset:offset + limit])
    keys = PatientKeys(actor.lab_id)
    check_results(keys, page)
    reported = [r for r in page if r.state in {S.BIO_VALIDATED, S.PUBLISHED}]
    opened = {v.id: v for v in _open_results(keys, reported)}
    views = [opened.get(r.id) or ResultView(result=r, test=catalogue.test(r.loinc))
             for r in page]
    _add_references(views, demographics({patient_id}) if views else {})
    if page:
        log.record(actor, "read", [patient_id], kind="results")
    return total, views


def result_view(actor: LabActor, result_id: uuid.UUID | str) -> ResultView:
    """One result, an invalidated version included (values closed until biologically
    validated, and for good once invalidated); the read is logged."""
    require(actor, "result.read")
    try:
        rid = result_id if isinstance(result_id, uuid.UUID) else uuid.UUID(str(result_id))
    except ValueError:
        raise OrderNotFound("no such result") from None
    # Invalidated versions too: a client holding the old id learns it was replaced.
    row = results_for(actor).filter(id=rid).select_related("specimen", "order").first()
    if row is None:
        raise OrderNotFound("no such result")
    keys = PatientKeys(actor.lab_id)
    check_result(keys[row.patient_id], row)
    if row.state in {S.BIO_VALIDATED, S.PUBLISHED}:
        view = _open_results(keys, [row])[0]
    else:
        view = ResultView(result=row, test=catalogue.test(row.loinc))
    _add_references([view], demographics({row.patient_id}))
    log.record(actor, "read", [row.patient_id], kind="results")
    return view


def order_statuses(actor: LabActor, order_ids: Iterable[uuid.UUID]
                   ) -> dict[uuid.UUID, tuple[frozenset[str], bool]]:
    """Each order's result states, and whether a reported result is a correction
    (version > 1): a report's status. No value, not logged."""
    require(actor, "result.read")
    states: dict[uuid.UUID, set[str]] = defaultdict(set)
    corrected: set[uuid.UUID] = set()
    # The orders are checked to be the lab's, then their results reached by order
    # alone (see _filtered_results: a lab filter would walk the lab's index).
    detection.ensure_not_locked(actor)
    mine = [order_id for order_id, lab_id in Order.unscoped.filter(
                id__in=list(order_ids), patient__data_key__isnull=False)
            .values_list("id", "lab_id") if lab_id == actor.lab_id]
    for order_id, state, version in (
            Result.unscoped.filter(order_id__in=mine).exclude(state=S.INVALIDATED)
            .values_list("order_id", "state", "version")):
        states[order_id].add(state)
        if version > 1 and state in {S.BIO_VALIDATED, S.PUBLISHED}:
            corrected.add(order_id)
    return {k: (frozenset(v), k in corrected) for k, v in states.items()}


def specimen_rows(actor: LabActor, *, specimen_id: uuid.UUID | None = None,
                  patient_id: uuid.UUID | None = None) -> list[Specimen]:
    """Specimens by id or by patient (operational columns only); the read is logged,
    since an API client learns whose specimen it is."""
    require(actor, "result.read")
    rows = specimens_for(actor).select_related("order")
    if specimen_id is not None:
        rows = rows.filter(id=specimen_id)
    if patient_id is not None:
        # By the patient alone once the patient is the lab's (see _filtered_results).
        rows = Specimen.unscoped.select_related("order").filter(order__patient_id=patient_id)
        if specimen_id is not None:
            rows = rows.filter(id=specimen_id)
        if not patients_for(actor).filter(id=patient_id).exists():
            rows = rows.none()
    found = list(rows.order_by("-order__created_at", "barcode"))
    if found:
        log.record(actor, "read", {s.order.patient_id for s in found}, kind="specimens")
    return found
