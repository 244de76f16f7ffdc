"""Read and search: plain functions taking an Actor, returning FHIR resources (dicts).

Every value comes through the access layers (coffre.identity.access, coffre.labwork.access,
coffre.labwork.reports), which scope the query to the actor's lab and log each read. A
search about one patient is itself a read of that patient, whatever its page holds (a
total, an empty answer): ``search`` records it. An id of another lab is answered
exactly as an unknown id: 404, nothing confirmed. ``readable`` is the set of types the
token may read: elements showing another type's content follow routes.CONTENT_SCOPES.
Messages name the parameter and the rule, never the submitted value.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

from django.utils import timezone

from coffre.audit import log
from coffre.fhir import resources as fr
from coffre.fhir.outcome import FhirError
from coffre.fhir.routes import (
    DEFAULT_COUNT,
    MAX_COUNT,
    MAX_OFFSET,
    content_allowed,
    search_params,
)
from coffre.identity import french
from coffre.identity.access import (
    PatientNotFound,
    SearchError,
    access_patient,
    find_patients,
    patients_for,
)
from coffre.labwork import catalogue
from coffre.labwork.access import (
    OrderNotFound,
    ResultFilter,
    access_order,
    order_statuses,
    patient_orders,
    patient_results,
    result_view,
    specimen_rows,
)
from coffre.labwork.models import ResultState
from coffre.labwork.orders import prescriber_filter
from coffre.labwork.reports import has_reportable_results, report_pdf
from coffre.labwork.scope import orders_for
from coffre.refusals import english
from coffre.tenancy.actors import LabActor
from coffre.tenancy.models import Lab

S = ResultState
Query = Mapping[str, Sequence[str]]  # a QueryDict's lists: name -> values
Readable = frozenset[str]  # the FHIR types the token may read


def not_found(resource_type: str) -> FhirError:
    return FhirError(404, "not-found", f"no {resource_type} with this id")


def invalid(message: str) -> FhirError:
    return FhirError(400, "invalid", message)


def _uuid(text: str, resource_type: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError):
        raise not_found(resource_type) from None


# --- read -------------------------------------------------------------------------------

def read_patient(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    try:
        return fr.patient_resource(access_patient(actor, _uuid(resource_id, "Patient")))
    except PatientNotFound:
        raise not_found("Patient") from None


def read_practitioner(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    """A prescriber known to the lab's orders (by the prescriber blind index; the
    name is sealed under each patient's key, so it is not given here)."""
    try:
        rpps = french.clean_rpps(resource_id)
    except french.InvalidValue:
        raise not_found("Practitioner") from None
    if not orders_for(actor).filter(prescriber_filter([actor.lab_id], rpps)).exists():
        raise not_found("Practitioner")
    return fr.practitioner_resource(rpps)


def read_organization(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    lab = Lab.objects.filter(pk=actor.lab_id, finess=resource_id).first()
    if lab is None:
        raise not_found("Organization")
    return fr.organization_resource(lab)


def _order_view(actor: LabActor, resource_id: str, resource_type: str):
    try:
        return access_order(actor, _uuid(resource_id, resource_type))
    except OrderNotFound:
        raise not_found(resource_type) from None


def read_service_request(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    return fr.service_request_resource(_order_view(actor, resource_id, "ServiceRequest"))


def read_specimen(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    rows = specimen_rows(actor, specimen_id=_uuid(resource_id, "Specimen"))
    if not rows:
        raise not_found("Specimen")
    return fr.specimen_resource(rows[0], rows[0].order)


def read_observation(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    try:
        view = result_view(actor, _uuid(resource_id, "Observation"))
    except OrderNotFound:
        raise not_found("Observation") from None
    return fr.observation_resource(view, view.result.patient_id)


def _report(actor: LabActor, view, readable: Readable) -> dict:
    """The report; its PDF (identity, results, prescriber) only for a token that may read
    all of those: otherwise it is neither built nor printed."""
    reported = [v for v in view.results if v.state in fr.REPORTED]
    pdf = (report_pdf(actor, view.order.id) if has_reportable_results(view)
           and content_allowed("DiagnosticReport", "presentedForm", readable) else None)
    return fr.diagnostic_report_resource(view, [str(v.id) for v in reported], pdf)


def read_diagnostic_report(actor: LabActor, resource_id: str, readable: Readable) -> dict:
    return _report(actor, _order_view(actor, resource_id, "DiagnosticReport"), readable)


READERS: dict[str, Callable[[LabActor, str, Readable], dict]] = {
    "Patient": read_patient, "Practitioner": read_practitioner,
    "Organization": read_organization, "ServiceRequest": read_service_request,
    "Specimen": read_specimen, "Observation": read_observation,
    "DiagnosticReport": read_diagnostic_report,
}


def read(actor: LabActor, resource_type: str, resource_id: str, *, readable: Readable) -> dict:
    if resource_type not in READERS:
        raise FhirError(404, "not-found", "unknown resource type")
    if len(resource_id) > 64:
        raise not_found(resource_type)
    return fr.validate(READERS[resource_type](actor, resource_id, readable))


# --- search parameters -----------------------------------------------------------------

_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.-]{0,39}$")
REPEATABLE = frozenset({"date"})


def _name_of(key: str) -> str:
    """A parameter name fit to quote back (a key is client text too)."""
    return f"'{key}'" if _PARAM_NAME.match(key) else "(unprintable name)"


def check_params(resource_type: str, query: Query) -> dict[str, list[str]]:
    """Strict: an unknown or repeated parameter is an error naming it."""
    known = {p.name for p in search_params(resource_type)}
    found: dict[str, list[str]] = {}
    for key, values in query.items():
        if key not in known:
            raise invalid(f"unknown search parameter {_name_of(key)} for {resource_type}; "
                          f"supported: {', '.join(sorted(known))}")
        if len(values) > 1 and key not in REPEATABLE:
            raise invalid(f"search parameter {_name_of(key)} is given more than once")
        if any(not v.strip() for v in values):
            raise invalid(f"search parameter {_name_of(key)} is empty")
        if any(len(v) > 256 for v in values):
            raise invalid(f"search parameter {_name_of(key)} is longer than 256 characters")
        found[key] = list(values)
    return found


def _int_param(params: dict[str, list[str]], name: str, default: int, high: int) -> int:
    if name not in params:
        return default
    text = params[name][0].strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 9:  # not '²', which int() refuses
        raise invalid(f"{name} must be a non-negative integer")
    return min(int(text), high)


def _patient_param(params: dict[str, list[str]]) -> uuid.UUID:
    given = [params[name][0] for name in ("patient", "subject") if name in params]
    if not given:
        raise invalid("this search needs the patient (or subject) parameter: searching "
                      "every patient's data at once is not offered")
    if len(given) == 2 and given[0] != given[1]:
        raise invalid("patient and subject name different patients")
    text = given[0].strip()
    if "/" in text:
        kind, _, text = text.rstrip("/").rpartition("/")
        if not kind.endswith("Patient"):
            raise invalid("patient must reference a Patient")
    try:
        return uuid.UUID(text)
    except ValueError:
        raise invalid("patient must be a Patient id (UUID)") from None


MIN_YEAR, MAX_YEAR = 1900, 2999
_DATE = re.compile(r"^(eq|ne|ge|gt|le|lt|sa|eb|ap)?(\d{4}(-\d{2}(-\d{2}(T[0-9:.+\-Z]+)?)?)?)$")


def _interval(text: str) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) a FHIR date of any precision stands for, in the lab's time zone."""
    parts = text.split("-", 2)
    try:
        if "T" in text:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if timezone.is_naive(moment):
                raise ValueError
            start, end = moment, moment + dt.timedelta(seconds=1)
        else:
            start, end = _calendar_interval(parts)
    except (ValueError, OverflowError):
        raise invalid("date must be a valid FHIR date or dateTime with a time zone") from None
    if not MIN_YEAR <= start.year <= MAX_YEAR:
        # Year 1 in Paris is before year 1 in UTC: the database cannot take it.
        raise invalid(f"date must fall between the years {MIN_YEAR} and {MAX_YEAR}")
    return (start if timezone.is_aware(start) else timezone.make_aware(start),
            end if timezone.is_aware(end) else timezone.make_aware(end))


def _calendar_interval(parts: list[str]) -> tuple[dt.datetime, dt.datetime]:
    """YYYY, YYYY-MM or YYYY-MM-DD as naive [start, end); ValueError when invalid."""
    year = int(parts[0])
    if len(parts) == 1:
        return dt.datetime(year, 1, 1), dt.datetime(year + 1, 1, 1)
    month = int(parts[1])
    if len(parts) == 2:
        return (dt.datetime(year, month, 1),
                dt.datetime(year + month // 12, month % 12 + 1, 1))
    start = dt.datetime(year, month, int(parts[2]))
    return start, start + dt.timedelta(days=1)


def date_range(values: list[str]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """(since inclusive, until exclusive) from date parameters, intersected."""
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    for value in values:
        match = _DATE.match(value.strip())
        if not match:
            raise invalid("date must be [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm:ss+zz:zz]]]")
        prefix = match.group(1) or "eq"
        if prefix not in {"eq", "ge", "gt", "le", "lt"}:
            raise invalid("date supports the eq, ge, gt, le and lt prefixes only")
        start, end = _interval(match.group(2))
        low = {"eq": start, "ge": start, "gt": end}.get(prefix)
        high = {"eq": end, "le": end, "lt": start}.get(prefix)
        if low is not None:
            since = max(since, low) if since else low
        if high is not None:
            until = min(until, high) if until else high
    return since, until


def _tokens(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def loinc_codes(value: str) -> set[str]:
    """LOINC codes asked for: system|code, or a code (LOINC, local or panel); a code
    the catalogue does not know matches nothing."""
    codes: set[str] = set()
    for token in _tokens(value):
        system, bar, code = token.rpartition("|")
        if bar and system not in ("", fr.LOINC, fr.LOCAL_TESTS):
            raise invalid("code: the system must be http://loinc.org or urn:coffre:test")
        if system == fr.LOINC and code == fr.LAB_REPORT["code"]:
            codes.add(code)
            continue
        test = catalogue.find(code)
        if test is not None:
            codes.add(test.loinc)
        elif system in ("", fr.LOCAL_TESTS):
            with contextlib.suppress(catalogue.UnknownTest):
                codes.update(catalogue.expand([code]))  # a panel
    return codes


OBSERVATION_STATUSES = {
    "registered": {S.REGISTERED, S.COLLECTED, S.RECEIVED, S.IN_ANALYSIS, S.TECH_VALIDATED},
    "final": set(fr.REPORTED), "amended": set(fr.REPORTED),
    "cancelled": {S.CANCELLED, S.REJECTED},
    "preliminary": set(), "corrected": set(), "entered-in-error": set(), "unknown": set(),
}
REPORT_STATUSES = {"registered", "partial", "preliminary", "final", "amended", "corrected",
                   "appended", "cancelled", "entered-in-error", "unknown"}


def _statuses(value: str, allowed: set[str] | dict, resource_type: str) -> set[str]:
    wanted = set(_tokens(value))
    if not wanted or wanted - set(allowed):
        raise invalid(f"status must be one of the {resource_type} statuses: "
                      f"{', '.join(sorted(allowed))}")
    return wanted


# --- search -----------------------------------------------------------------------------

def _page(params: dict[str, list[str]]) -> tuple[int, int]:
    """(offset, count); _summary=count asks for the total alone, as _count=0 does."""
    summary = params.get("_summary", [""])[0].strip()
    if summary and summary != "count":
        raise invalid("_summary: only count is supported (the total, without entries)")
    count = 0 if summary else _int_param(params, "_count", DEFAULT_COUNT, MAX_COUNT)
    return _int_param(params, "_offset", 0, MAX_OFFSET), count


def bundle(base: str, resource_type: str, params: dict[str, list[str]], total: int,
           resources: list[dict], offset: int, count: int) -> dict:
    """A searchset Bundle with its total and self / next links (validated whole by the
    caller: the Bundle model validates each entry's resource by its type)."""
    def link(relation: str, at: int) -> dict:
        query = {k: v for k, v in params.items() if k not in ("_offset", "_count")}
        query.update(_offset=[str(at)], _count=[str(count)])
        return {"relation": relation,
                "url": f"{base}{resource_type}?{urlencode(query, doseq=True)}"}

    links = [link("self", offset)]
    if count and offset + count < total:  # a count-only answer has no page to follow
        links.append(link("next", offset + count))
    return {"resourceType": "Bundle", "type": "searchset", "total": total, "link": links,
            "entry": [{"fullUrl": f"{base}{r['resourceType']}/{r['id']}",
                       "resource": r, "search": {"mode": "match"}}
                      for r in resources]}


def _telecom(value: str) -> dict[str, str]:
    system, bar, number = value.partition("|")
    if not bar:
        return {"email" if "@" in value else "phone": value}
    if system not in ("phone", "email"):
        raise invalid("telecom: the system must be phone or email")
    return {system: number}


def search_patient(actor: LabActor, params: dict[str, list[str]], readable: Readable
                   ) -> tuple[int, list[dict]]:
    one = {k: v[0] for k, v in params.items() if not k.startswith("_")}
    telecoms = [k for k in ("telecom", "phone", "email") if k in one]
    kinds = [kind for kind, given in (
        ("identifier", "identifier" in one),
        ("name", bool({"family", "name", "birthdate"} & set(one))),
        ("telecom", bool(telecoms))) if given]
    if not kinds:
        raise invalid("a Patient search needs identifier, family (or name) with birthdate, "
                      "or telecom / phone / email")
    if len(kinds) > 1 or len(telecoms) > 1:
        raise invalid("search Patients by one kind of criterion at a time: identifier, "
                      "name with birthdate, or one telecom")
    criteria: dict[str, str] = {}
    if "identifier" in one:
        system, bar, value = one["identifier"].rpartition("|")
        if bar and system != fr.INS_NIR_SYSTEM:
            raise invalid(f"identifier: only the INS-NIR system ({fr.INS_NIR_SYSTEM}) is "
                          "searchable")
        criteria["nir"] = value
    elif kinds == ["name"]:
        birth = one.get("birthdate", "")
        criteria.update(name=one.get("family") or one.get("name") or "",
                        birth_date=birth[2:] if birth.startswith("eq") else birth)
    else:
        kind = telecoms[0]
        criteria.update(_telecom(one[kind]) if kind == "telecom" else {kind: one[kind]})
    try:
        matches = find_patients(actor, **criteria)
    except SearchError as exc:
        raise invalid(f"Patient search: {english(exc)}") from None
    offset, count = _page(params)
    return len(matches), [fr.patient_resource(p) for p in matches[offset:offset + count]]


def observation_filter(params: dict[str, list[str]]) -> ResultFilter:
    since, until = date_range(params.get("date", []))
    loincs = loinc_codes(params["code"][0]) if "code" in params else None
    states: set[str] = set()
    corrected: bool | None = None
    if "status" in params:
        wanted = _statuses(params["status"][0], OBSERVATION_STATUSES, "Observation")
        for status in wanted:
            states |= OBSERVATION_STATUSES[status]
        # final and amended differ by the version only: exact when asked alone.
        corrected = {frozenset({"final"}): False,
                     frozenset({"amended"}): True}.get(frozenset(wanted))
        if not states:
            states = {"none"}  # statuses this lab never gives: nothing matches
    if loincs is not None and not loincs:
        loincs = {"none"}
    return ResultFilter(loincs=frozenset(loincs or ()), states=frozenset(states),
                        since=since, until=until, corrected=corrected)


def search_observation(actor: LabActor, params: dict[str, list[str]], readable: Readable
                       ) -> tuple[int, list[dict]]:
    patient_id = _patient_param(params)
    wanted = observation_filter(params)
    offset, count = _page(params)
    total, views = patient_results(actor, patient_id, wanted, offset=offset, limit=count)
    return total, [fr.observation_resource(v, patient_id) for v in views]


def _report_matches(order, states: tuple[frozenset[str], bool], since, until,
                    codes: set[str] | None, statuses: set[str] | None) -> bool:
    if (since and order.created_at < since) or (until and order.created_at >= until):
        return False
    if codes is not None:
        loincs = {r.loinc for r in order.results.all()}
        if not (fr.LAB_REPORT["code"] in codes or codes & loincs):
            return False
    if statuses is not None:
        return fr.report_status(states[0], order.report_count, states[1]) in statuses
    return True


def search_diagnostic_report(actor: LabActor, params: dict[str, list[str]], readable: Readable
                             ) -> tuple[int, list[dict]]:
    patient_id = _patient_param(params)
    since, until = date_range(params.get("date", []))
    codes = loinc_codes(params["code"][0]) if "code" in params else None
    statuses = (_statuses(params["status"][0], REPORT_STATUSES, "DiagnosticReport")
                if "status" in params else None)
    orders = patient_orders(actor, patient_id)
    states = order_statuses(actor, [o.id for o in orders])
    matching = [o for o in orders if _report_matches(o, states.get(o.id, (frozenset(), False)),
                                                     since, until, codes, statuses)]
    offset, count = _page(params)
    return len(matching), [_report(actor, access_order(actor, o.id), readable)
                           for o in matching[offset:offset + count]]


def search_service_request(actor: LabActor, params: dict[str, list[str]], readable: Readable
                           ) -> tuple[int, list[dict]]:
    orders = patient_orders(actor, _patient_param(params))
    offset, count = _page(params)
    return len(orders), [fr.service_request_resource(access_order(actor, o.id))
                         for o in orders[offset:offset + count]]


def search_specimen(actor: LabActor, params: dict[str, list[str]], readable: Readable
                    ) -> tuple[int, list[dict]]:
    rows = specimen_rows(actor, patient_id=_patient_param(params))
    offset, count = _page(params)
    return len(rows), [fr.specimen_resource(s, s.order) for s in rows[offset:offset + count]]


Searcher = Callable[[LabActor, dict[str, list[str]], Readable], tuple[int, list[dict]]]
SEARCHERS: dict[str, Searcher] = {
    "Patient": search_patient, "Observation": search_observation,
    "DiagnosticReport": search_diagnostic_report,
    "ServiceRequest": search_service_request, "Specimen": search_specimen,
}
# Searches within one patient, and the kind of data their access entry names. (Patient
# searches are recorded by identity.access.find_patients: every match, whatever the
# page.)
PATIENT_SEARCH_KINDS = {"Observation": "results", "DiagnosticReport": "report",
                        "ServiceRequest": "order", "Specimen": "specimen"}


def record_search(actor: LabActor, resource_type: str, params: dict[str, list[str]]) -> None:
    """A search about one patient reads that patient whatever its page holds: its total
    (``_count=0``, ``_summary=count``) and even an empty answer ("no such test") tell
    something. One entry naming the patient, counted by the mass-reading detection; a
    patient the lab does not have is recorded as not found, as identity.access does."""
    patient_id = _patient_param(params)
    known = patients_for(actor).filter(id=patient_id).exists()
    log.record(actor, "search", [patient_id], kind=PATIENT_SEARCH_KINDS[resource_type],
               outcome="ok" if known else "not_found")


def search(actor: LabActor, resource_type: str, query: Query, base: str, *,
           readable: Readable) -> dict:
    if resource_type not in SEARCHERS:
        raise FhirError(404, "not-found", "unknown resource type or no search for it")
    params = check_params(resource_type, query)
    offset, count = _page(params)
    total, resources = SEARCHERS[resource_type](actor, params, readable)
    if resource_type in PATIENT_SEARCH_KINDS:
        record_search(actor, resource_type, params)  # even when the page is empty
    return fr.validate(bundle(base, resource_type, params, total, resources, offset, count))
