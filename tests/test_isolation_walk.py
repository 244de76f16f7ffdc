"""The isolation walk: every URL pattern of the site, filled with objects of another lab
(a patient, an alert, an account lock of lab B, and a missing patient), requested with
GET and POST by every role of lab A and by an anonymous visitor. No response may carry
an identifying value of lab B's patient or lab B's alert and lock. The walk covers every
named pattern, so a new page cannot escape it; a positive control proves the matcher
finds the values on a lab's own record."""

from __future__ import annotations

import html
import io
import itertools
import re
import unicodedata
import uuid
import zipfile
from collections.abc import Iterator

import pytest
from django.http import HttpResponse
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from coffre.accounts.models import Membership, Role
from coffre.audit import alerts
from coffre.audit.models import AccountLock, AlertKind, AuditSettings
from coffre.identity.access import create_patient
from coffre.identity.templatetags.patient_display import nir_display
from coffre.tenancy.actors import Actor
from tests.conftest import (
    STAFF_PASSWORD,
    make_nir,
    member,
    own_password,
    patient_row,
    second_factor_done,
)

REASON = "Patiente transférée aux urgences, résultats antérieurs nécessaires"
SKIPPED = {"set_language"}  # Django's language switch: no lab data behind it
CSRF_REJECTED = 419

B_NIR = make_nir("F", 1990, 7, "29019", "456")
B_ROW = patient_row(
    nir=B_NIR, birth_name="Quéméneur", used_name="Kerbrat", first_names="Maëlys Gwenaëlle",
    birth_date="1990-07-21", birth_place="29019", address="7 impasse des Goélands",
    postal_code="29200", city="Brest", phone="06 98 76 54 32",
    email="maelys.quemeneur@example.org", notes="Allergie pénicilline, suivi hématologie")
B_ALERT_PERSON = "bertrand.kerherve"
B_ALERT_SUMMARY = "83 patients distincts lus en 10 minutes (Kerhervé)"
B_LOCK_PERSON = "yannick.guivarch"
B_LOCK_REASON = "151 patients distincts lus en 10 minutes (Guivarc'h)"
B_STAFF_PERSON = "gwenola.le-bihan"  # a lab B account: lab A's manager pages never show it
B_EXPORT_PURPOSE = "Cohorte drépanocytose Morlaix-Landerneau 2026"
B_EXPORT_RECIPIENT = "Registre Penn-ar-Bed des hémoglobinopathies"
B_API_CLIENT = "Passerelle Ti-Glaz"  # lab B's API client: lab A's pages never show it
B_RESULT = "6.13"  # lab B's haemoglobin (g/dL): lab A's pages never show it


def csrf_failed(request, reason: str = "") -> HttpResponse:
    return HttpResponse("csrf", status=CSRF_REJECTED)


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text)
                   if not unicodedata.combining(c)).lower()


def identifying_values(row: dict[str, str]) -> set[str]:
    """What must never reach a page of another lab, in the forms a page may show it."""
    phone = "".join(row["phone"].split())
    values = {row["birth_name"], row["used_name"], row["first_names"], row["nir"],
              nir_display(row["nir"]), phone, "+33" + phone[1:], row["phone"],
              row["email"], row["address"], row["notes"]}
    values |= set(row["first_names"].split())
    return {value for value in values if value}


def found(body: str, values: set[str], posted: dict[str, str] | None = None) -> set[str]:
    """The values present in a page, in any case and with or without accents. What the
    request itself posted and the page echoes back in a form field does not count."""
    for value in (posted or {}).values():
        body = body.replace(f'value="{html.escape(str(value))}"', 'value=""')
    text = _plain(html.unescape(body))
    return {value for value in values if _whole(_plain(value)).search(text)}


def _whole(value: str) -> re.Pattern:
    """The value as a whole word: a short first name such as "Loïc" is otherwise found by
    chance inside a page's random CSRF token (seen once in CI)."""
    return re.compile(rf"(?<![a-z0-9]){re.escape(value)}(?![a-z0-9])")


def body_text(response) -> str:
    """What a response shows: its text, or the JSON inside a zip (the right-of-access
    copy), where a compressed value could not be matched otherwise."""
    if response.get("Content-Type", "").startswith("application/zip"):
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        return "\n".join(archive.read(name).decode() for name in archive.namelist()
                         if name.endswith(".json"))
    return response.content.decode("utf-8", "replace")


def walk_patterns(patterns=None, prefix: str = "") -> Iterator[URLPattern]:
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from walk_patterns(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield entry


def site_patterns() -> list[URLPattern]:
    patterns = [p for p in walk_patterns()
                if p.name not in SKIPPED and not p.lookup_str.startswith("django.views.static")]
    unnamed = [str(p.pattern) for p in patterns if not p.name]
    assert not unnamed, f"every page needs a name for the walk: {unnamed}"
    return patterns


def parameters(pattern: URLPattern) -> list[str]:
    return sorted(pattern.pattern.regex.groupindex)


def api_fill(patient_id, api_client_pk: int = 999_999) -> dict[str, list]:
    """The API's URL parameters for the web walks: web users get no data there (the API
    walk below fills them with each of lab B's objects)."""
    return {"client_pk": [api_client_pk], "resource_id": [patient_id, "inconnu"],
            "rest": ["Patient/inconnu/_history"]}



@pytest.fixture
def lab_b_objects(lab_b, actor_b):
    patient = create_patient(actor_b, B_ROW)
    alert = alerts.raise_alert(lab_b.id, AlertKind.MASS_READING, B_ALERT_PERSON,
                               B_ALERT_SUMMARY, patient_id=patient.id)
    member(B_LOCK_PERSON, lab_b, Role.SECRETARY)
    lock = AccountLock.objects.create(person=B_LOCK_PERSON, lab_id=lab_b.id,
                                      reason=B_LOCK_REASON)
    return patient, alert, lock


@pytest.fixture
def lab_b_order(lab_b_objects, actor_b):
    """An order of lab B's patient, received, with a value typed and validated."""
    import datetime as dt

    from django.utils import timezone

    from coffre.labwork import workflow
    from coffre.labwork.orders import OrderRequest, create_order

    patient = lab_b_objects[0]
    # Registered on a day of its own: its number cannot be one of lab A's (numbers count
    # per lab and per day), so the walk can look for it on lab A's pages.
    order = create_order(actor_b, OrderRequest(patient_id=patient.id, tests=("HB", "K"),
                                               prescriber_name=B_ROW["first_names"],
                                               clinical_info=B_ROW["notes"]),
                         now=timezone.now() - dt.timedelta(days=400))
    technician = Actor("b-technician", actor_b.lab_id, Role.TECHNICIAN, "cli")
    for specimen in order.specimens.all():
        workflow.receive(actor_b, specimen.barcode)
    hb = order.results.get(loinc="718-7")
    workflow.enter_results(technician, [workflow.Entry(hb.id, B_RESULT)])  # a critical value
    workflow.validate_technically(technician, [hb.id])
    return order


@pytest.fixture
def lab_b_export(lab_b, lab_b_objects):
    """An export request of lab B (made through the services), awaiting approval."""
    import datetime as dt

    from coffre.exports import services
    from coffre.vault import new_recipient_identity

    today = dt.date.today()
    return services.request_export(
        lab_b, purpose=B_EXPORT_PURPOSE, recipient=B_EXPORT_RECIPIENT,
        recipient_key=new_recipient_identity()[1], fields="nir,birth_name",
        period_from=today - dt.timedelta(days=1), period_to=today + dt.timedelta(days=1),
        requested_by=B_STAFF_PERSON)


@pytest.fixture
def lab_b_breach(lab_b, lab_b_objects):
    """A breach record of lab B whose file matched lab B's patient; its sealed text
    names her."""
    from coffre.breach import notifications
    from coffre.breach.report import LabImpact, ScanReport

    patient = lab_b_objects[0]
    member("b-dpo", lab_b, Role.DPO)
    report = ScanReport(files=[{"name": "b.csv", "sha256": "0" * 64, "bytes": 1,
                                "format": "csv", "rows": 1}], rows_read=1, rows_matched=1,
                        columns=[], categories=["identity"], evidence=[],
                        labs=[LabImpact(lab_b.id, lab_b.finess, lab_b.name, 1, {"nir": 1})],
                        matches={patient.id: "nir"})
    return notifications.record_breach(
        Actor("b-dpo", lab_b.id, Role.DPO, "web"), lab_b, report,
        values={"nature": B_ROW["notes"], "dpo_contact": B_ROW["email"]})


@pytest.fixture
def lab_b_api_client(lab_b):
    from tests.api_helpers import api_client

    return api_client(lab_b, name=B_API_CLIENT)[0]


def _lab_paths(model) -> list[str]:
    """How a model's rows reach their lab: ``lab_id`` on the row, or through one foreign
    key (a critical value's result, a token's client, a membership's user...)."""
    names = {f.name for f in model._meta.concrete_fields}
    if "lab" in names or "lab_id" in names:
        return ["lab_id"]
    paths = []
    for field in model._meta.concrete_fields:
        target = field.related_model if field.is_relation else None
        if target is not None and {"lab", "lab_id"} & {f.name for f in
                                                      target._meta.concrete_fields}:
            paths.append(f"{field.name}__lab_id")
    return paths


def lab_state(lab, users=()) -> dict[tuple[str, object], tuple]:
    """Every row of the lab, in every table that reaches it (and the rows of its staff
    accounts): what a POST of another lab must never change, add or remove."""
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    from coffre.tenancy import rls

    # Every row of the lab, whatever scope the last page left on the connection (on
    # PostgreSQL a lab A page limits the suite's connection to lab A; each request
    # starts by opening it again, so this changes nothing the walk sees).
    rls.open_all()
    state = {}
    user_ids = [user.pk for user in users]
    for model in apps.get_models():
        where = Q(pk__in=[])
        for path in _lab_paths(model):
            where |= Q(**{path: lab.id})
        if model is get_user_model():
            where |= Q(pk__in=user_ids)
        elif any(f.is_relation and f.related_model is get_user_model()
                 for f in model._meta.concrete_fields):
            user_field = next(f.name for f in model._meta.concrete_fields
                              if f.is_relation and f.related_model is get_user_model())
            where |= Q(**{f"{user_field}__in": user_ids})
        fields = [f.attname for f in model._meta.concrete_fields]
        for row in model._base_manager.filter(where).values_list(*fields):
            state[(model._meta.label, row[0])] = tuple(
                bytes(v) if isinstance(v, memoryview) else v for v in row)
    return state


class Walker:
    def __init__(self, pending: frozenset[int] = frozenset(),
                 guarded: tuple | None = None) -> None:
        self.requests = 0
        self.visited: set[str] = set()
        self.pending = pending  # user ids that walk with the second factor not done
        # (lab, staff accounts) whose rows no POST may change, and what changed.
        self.guarded = guarded
        self.baseline = lab_state(*guarded) if guarded else {}
        self.writes: list[tuple] = []

    def log_in(self, client: Client, user) -> None:
        client.force_login(user)
        if user.pk not in self.pending:
            second_factor_done(client)

    def client(self, user) -> Client:
        client = Client(enforce_csrf_checks=True)
        if user is not None:
            self.log_in(client, user)
        return client

    def send(self, client: Client, user, method: str, url: str, name: str,
             data: dict[str, str] | None = None):
        if user is not None and "_auth_user_id" not in client.session:
            self.log_in(client, user)  # a logout page ended the session: walk on
        self.requests += 1
        self.visited.add(name)
        if method == "get":
            return client.get(url, follow=True)
        token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
        if not token:
            token = _get_new_csrf_string()
            client.cookies["csrftoken"] = token
        response = client.post(url, {**(data or {}), "csrfmiddlewaretoken": token},
                               follow=True)
        assert response.redirect_chain or response.status_code != CSRF_REJECTED, url
        if self.guarded:
            after = lab_state(*self.guarded)
            if after != self.baseline:
                changed = sorted(str(k) for k in after.keys() ^ self.baseline.keys()) + \
                    sorted(str(k) for k in after.keys() & self.baseline.keys()
                           if after[k] != self.baseline[k])
                self.writes.append((url, response.status_code, changed[:5]))
                self.baseline = after
        return response


def payloads(row: dict[str, str], lab) -> list[dict[str, str]]:
    """Plausible form fields for every POST page, one set per search criterion: the
    staff search, the break-the-glass search, an acknowledgement, a lab choice, a login,
    a second-factor code."""
    criteria = [{"nir": row["nir"]},
                {"name": row["birth_name"], "birth_date": row["birth_date"]},
                {"phone": row["phone"]}, {"email": row["email"]}]
    common = {"bg-reason": REASON, "comment": "Vu, campagne validée", "lab": str(lab.id),
              "username": "walker-nobody", "password": "not the password", "language": "fr",
              "code": "123456"}
    return [{**common, **c, **{f"bg-{k}": v for k, v in c.items()}} for c in criteria]


def walk(users: dict, fill: dict[str, list], forbidden: set[str],
         posts: list[dict[str, str]], pending: frozenset[str] = frozenset(),
         guarded: tuple | None = None) -> tuple[Walker, list[tuple]]:
    """Request every pattern, with every filling of its parameters, as every user: GET,
    then a POST per payload. The users named in ``pending`` walk after the password
    only (second factor not done). Returns the walker and what each response showed."""
    patterns = site_patterns()
    # Logging out last keeps the rest of the walk in one session per person (a lab
    # choice or a break-the-glass grant made on one page stays for the next ones).
    patterns.sort(key=lambda p: p.name == "logout")
    walker = Walker(frozenset(users[who].pk for who in pending), guarded)
    leaks = []
    for who, user in users.items():
        client = walker.client(user)
        for pattern in patterns:
            names = parameters(pattern)
            unknown = set(names) - set(fill)
            assert not unknown, f"{pattern.name}: say how to fill {unknown}"
            for values in itertools.product(*(fill[n] for n in names)):
                url = reverse(pattern.name, kwargs=dict(zip(names, values, strict=True)))
                for method, data in [("get", None)] + [("post", d) for d in posts]:
                    response = walker.send(client, user, method, url, pattern.name, data)
                    assert response.status_code < 500, (who, method, url)
                    shown = found(body_text(response), forbidden, data)
                    if shown:
                        leaks.append((who, method, url, response.status_code, sorted(shown)))
    return walker, leaks


@override_settings(CSRF_FAILURE_VIEW="tests.test_isolation_walk.csrf_failed")
def test_no_page_shows_another_labs_patient_alert_or_lock_to_anyone(
        lab_a, lab_b, sister_lab, actor_a, lab_b_objects, lab_b_order, lab_b_export,
        lab_b_api_client, lab_b_breach, capsys):
    patient_b, alert_b, lock_b = lab_b_objects
    create_patient(actor_a, patient_row())  # lab A has a patient of its own
    # The walk must not lock the accounts it walks with (it would only see the lock page).
    AuditSettings.objects.create(lab=lab_a, hard_per_10_minutes=100_000,
                                 soft_per_10_minutes=100_000, hard_per_hour=100_000,
                                 soft_per_hour=100_000)
    b_staff = member(B_STAFF_PERSON, lab_b, Role.LAB_MANAGER)
    forbidden = identifying_values(B_ROW) | {B_ALERT_PERSON, B_ALERT_SUMMARY,
                                             B_LOCK_PERSON, B_LOCK_REASON, B_STAFF_PERSON,
                                             B_EXPORT_PURPOSE, B_EXPORT_RECIPIENT,
                                             B_API_CLIENT, lab_b_api_client.client_id,
                                             lab_b_order.number, B_RESULT}
    forbidden |= set(lab_b_order.specimens.values_list("barcode", flat=True))
    fill = {"patient_id": [patient_b.id, uuid.uuid4()], "alert_id": [alert_b.pk],
            "lock_id": [lock_b.pk], "order_id": [lab_b_order.id, uuid.uuid4()],
            "loinc": ["718-7"], "export_id": [lab_b_export.pk, 999_999],
            "membership_id": [b_staff.memberships.get().pk,
                              Membership.objects.get(user__username=B_LOCK_PERSON).pk],
            "breach_id": [lab_b_breach.pk, 999_999],
            **api_fill(patient_b.id, api_client_pk=lab_b_api_client.pk)}
    users = {role: member(f"walker-{role}", lab_a, role) for role in Role.values}
    users["anonymous"] = None
    assert set(users) - {"anonymous"} == {"secretary", "technician", "biologist",
                                           "lab_manager", "dpo", "platform_admin"}
    # Password given, second factor not done: every page must send it to the code pages.
    users["secretary-2fa-pending"] = member("walker-2fa-pending", lab_a, Role.SECRETARY)

    # The lab pages' fields, filled with lab B's rows: a scanned barcode, a result to
    # validate, correct or acknowledge, a specimen to collect or reject.
    b_result = lab_b_order.results.get(loinc="718-7")
    lab_fields = {"barcode": lab_b_order.specimens.first().barcode, "result": str(b_result.id),
                  "specimen": str(b_result.specimen_id), "action": "acknowledge",
                  "note": "Prescripteur appelé", "reason": "hémolysé", "value": "7",
                  f"value-{b_result.id}": "7", "validate": str(b_result.id)}
    posts = [{**payload, **lab_fields} for payload in payloads(B_ROW, lab_b)]
    b_staff_accounts = [m.user for m in Membership.objects.filter(lab=lab_b)
                        .select_related("user")]
    walker, leaks = walk(users, fill, forbidden, posts,
                         pending=frozenset({"secretary-2fa-pending"}),
                         guarded=(lab_b, b_staff_accounts))

    expected = {p.name for p in site_patterns()}
    assert walker.visited == expected, expected ^ walker.visited
    assert not leaks, leaks
    assert not walker.writes, walker.writes  # no POST of lab A changed a row of lab B
    assert not AccountLock.objects.filter(person__startswith="walker-").exists()
    assert walker.requests > 0
    with capsys.disabled():
        print(f"\nisolation walk: {walker.requests} requests over {len(expected)} URL "
              f"patterns, {len(users)} identities, no value of lab B shown, "
              f"{len(walker.baseline)} rows of lab B unchanged after every POST")


@override_settings(CSRF_FAILURE_VIEW="tests.test_isolation_walk.csrf_failed")
def test_the_same_walk_finds_a_labs_own_patient_on_its_own_pages(lab_a, actor_a):
    """Positive control: the same walk and matcher, by a secretary of lab A over lab A's
    own patient, find the values on the record page and in the search results."""
    row = patient_row()
    mine = create_patient(actor_a, row)
    users = {"secretary": member("walker-own", lab_a, Role.SECRETARY)}
    values = identifying_values(row)
    _, leaks = walk(users, {"patient_id": [mine.id], "alert_id": [1], "lock_id": [1],
                            "order_id": [uuid.uuid4()], "loinc": ["718-7"],
                            "membership_id": [1], "export_id": [1], "breach_id": [1],
                            **api_fill(mine.id)},
                    values, payloads(row, lab_a))

    record = f"/patients/{mine.id}/"
    on_record = [shown for _, method, url, status, shown in leaks
                 if (method, url, status) == ("get", record, 200)]
    assert on_record, leaks
    for value in (row["birth_name"], row["first_names"], nir_display(row["nir"]),
                  row["phone"], row["email"], row["address"], row["notes"]):
        assert value in on_record[0], value
    searched = [shown for _, method, url, _, shown in leaks
                if (method, url) == ("post", "/patients/")]
    assert len(searched) == 4  # each criterion finds her, and the results show her name
    assert all(row["birth_name"] in shown and row["first_names"] in shown
               for shown in searched)


def test_the_matcher_ignores_case_and_accents():
    values = identifying_values(B_ROW)
    assert found("<td>QUEMENEUR</td>", values) == {"Quéméneur"}
    assert found(f"<td>2 90 07 29 019 456 {B_NIR[-2:]}</td>", values) == {
        nir_display(B_NIR)}
    assert found('<input name="email" value="maelys.quemeneur@example.org">', values,
                 {"email": B_ROW["email"]}) == set()
    assert "+33698765432" in values and "0698765432" in values
    token = '<input name="csrfmiddlewaretoken" value="x9QueMeneuRb7">'
    assert found(token, values) == set()  # a random token is not a name


@override_settings(CSRF_FAILURE_VIEW="tests.test_isolation_walk.csrf_failed")
def test_a_patient_account_sees_nothing_of_another_patient_or_lab(
        lab_a, lab_b, actor_a, lab_b_objects, lab_b_order, lab_b_export, capsys):
    """The same walk as a patient portal account of lab A: another patient of the same
    lab (with a published order) and lab B's patient are both out of reach."""
    from coffre.portal import activation
    from coffre.portal.activation import Activation
    from tests.lab_helpers import published, staff_of

    staff = staff_of(lab_a)
    own = create_patient(staff.secretary, patient_row())
    other_row = patient_row(nir=make_nir("M", 1971, 4), sex="M", birth_name="Tanguy",
                            used_name="", first_names="Erwan Loïc", birth_date="1971-04-09",
                            phone="06 55 44 33 22", email="erwan.tanguy@example.org",
                            address="3 quai Duguay-Trouin", notes="Suivi VIH")
    other = create_patient(staff.secretary, other_row)
    orders = [published(staff, person.id, K="4.4") for person in (own, other)]
    user = activation.activate(Activation(activation.issue_code(staff.secretary, own.id),
                                          "14/03/1985", "walker-patient",
                                          STAFF_PASSWORD))
    patient_b = lab_b_objects[0]
    forbidden = identifying_values(other_row) | identifying_values(B_ROW)
    fill = {"patient_id": [other.id, patient_b.id], "alert_id": [1], "lock_id": [1],
            "order_id": [orders[1].id, lab_b_order.id], "loinc": ["2823-3"],
            "export_id": [lab_b_export.pk], "breach_id": [1],
            "membership_id": [Membership.objects.get(user__username=B_LOCK_PERSON).pk],
            **api_fill(other.id)}
    walker, leaks = walk({"patient": user}, fill, forbidden, payloads(other_row, lab_a))
    assert not leaks, leaks
    with capsys.disabled():
        print(f"\nportal walk: {walker.requests} requests, nothing of another patient shown")


@override_settings(CSRF_FAILURE_VIEW="tests.test_isolation_walk.csrf_failed")
def test_a_prescriber_sees_nothing_of_another_doctors_patient(
        lab_a, lab_b, lab_b_objects, lab_b_order, lab_b_export, capsys):
    """The walk as a prescriber account: a patient of lab A whose published order another
    doctor prescribed, and lab B's patient, stay out of reach."""
    from coffre.portal import prescriber
    from tests.lab_helpers import PRESCRIBER_RPPS, published, staff_of

    staff = staff_of(lab_a)
    mine = create_patient(staff.secretary, patient_row())
    other_row = patient_row(nir=make_nir("M", 1966, 9), sex="M", birth_name="Le Goff",
                            used_name="", first_names="Yann Corentin",
                            birth_date="1966-09-30", phone="06 11 22 33 44",
                            email="yann.legoff@example.org", address="9 rue de Siam",
                            notes="Chimiothérapie en cours")
    other = create_patient(staff.secretary, other_row)
    published(staff, mine.id, K="4.4")
    theirs = published(staff, other.id, rpps="10009999995", K="4.9")
    account, _ = prescriber.add_prescriber(PRESCRIBER_RPPS, "walker-doctor")
    own_password(account.user)  # past the first login's change: the walk reaches the pages
    forbidden = identifying_values(other_row) | identifying_values(B_ROW)
    fill = {"patient_id": [other.id, lab_b_objects[0].id], "alert_id": [1], "lock_id": [1],
            "order_id": [theirs.id, lab_b_order.id], "loinc": ["2823-3"],
            "export_id": [lab_b_export.pk], "breach_id": [1],
            "membership_id": [Membership.objects.get(user__username=B_LOCK_PERSON).pk],
            **api_fill(other.id)}
    walker, leaks = walk({"doctor": account.user}, fill, forbidden,
                         payloads(other_row, lab_a))
    assert not leaks, leaks
    with capsys.disabled():
        print(f"\nprescriber walk: {walker.requests} requests, nothing of another "
              "doctor's patient shown")


# --- the FHIR API -----------------------------------------------------------------------

PUBLIC_API = {"fhir_metadata", "fhir_openapi"}  # the server's description: no data


def routed(patterns=None, prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    """Every pattern with its full route."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from routed(entry.url_patterns, prefix + str(entry.pattern))
        else:
            yield prefix + str(entry.pattern), entry


def api_patterns() -> list[URLPattern]:
    return [pattern for route, pattern in routed() if route.lstrip("^").startswith("fhir/")]


def fhir_bodies(patient_id, order_id) -> list[dict]:
    """POST bodies aimed at lab B's objects: an order, a transaction and a report for
    lab B's patient, and a Patient that is nobody of lab B (it may be created in lab A)."""
    subject = {"reference": f"Patient/{patient_id}"}
    order = {"resourceType": "ServiceRequest", "status": "active", "intent": "order",
             "subject": subject, "code": {"coding": [{"system": "http://loinc.org",
                                                      "code": "718-7"}]}}
    patient = {"resourceType": "Patient", "name": [{"family": "Walker", "given": ["Api"]}],
               "gender": "female", "birthDate": "1980-01-01"}
    return [order, patient,
            {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": order, "request": {"method": "POST", "url": "ServiceRequest"}}]},
            {"resourceType": "DiagnosticReport", "status": "final", "subject": subject,
             "basedOn": [{"reference": f"ServiceRequest/{order_id}"}],
             "code": {"coding": [{"system": "http://loinc.org", "code": "11502-2"}]}}]


def search_queries(row: dict[str, str], patient_id) -> list[str]:
    return ["", f"?identifier={row['nir']}", f"?identifier=urn:oid:1.2.250.1.213.1.4.8|"
            f"{row['nir']}", f"?family={row['birth_name']}&birthdate={row['birth_date']}",
            f"?telecom={row['phone']}", f"?email={row['email']}", f"?patient={patient_id}",
            f"?subject=Patient/{patient_id}", f"?patient={patient_id}&code=718-7"]


def api_walk(client: Client, headers: dict[str, str], fill: dict[str, list],
             forbidden: set[str], queries: list[str], bodies: list[dict]
             ) -> tuple[int, set[str], list[tuple], dict[str, set[int]]]:
    """Every API pattern with every filling: GETs with each query, POSTs with each body.
    Returns the request count, the patterns visited, the leaks and the statuses seen."""
    import json

    requests, visited, leaks, statuses = 0, set(), [], {}
    for pattern in api_patterns():
        names = parameters(pattern)
        unknown = set(names) - set(fill)
        assert not unknown, f"{pattern.name}: say how to fill {unknown}"
        for values in itertools.product(*(fill[n] for n in names)):
            url = reverse(pattern.name, kwargs=dict(zip(names, values, strict=True)))
            sent = [("get", url + query, None) for query in queries]
            sent += [("post", url, json.dumps(body)) for body in bodies]
            for method, target, body in sent:
                if method == "get":
                    response = client.get(target, **headers)
                else:
                    response = client.post(target, body, content_type="application/fhir+json",
                                           **headers)
                requests += 1
                visited.add(pattern.name)
                statuses.setdefault(pattern.name, set()).add(response.status_code)
                assert response.status_code < 500, (method, target, response.content[:300])
                shown = found(without_echo(body_text(response), target), forbidden)
                if shown:
                    leaks.append((method, target, response.status_code, sorted(shown)))
    return requests, visited, leaks, statuses


def without_echo(body: str, target: str) -> str:
    """The body less the request's own query values (a search Bundle's self link echoes
    them): what the client sent is not a value the server revealed."""
    from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

    for _, value in parse_qsl(urlsplit(target).query):
        for form in (quote_plus(value), quote(value, safe=""), quote(value), value):
            body = body.replace(form, "")
    return body


def lab_b_fill(lab_b, patient_b, order_b) -> dict[str, list]:
    """Each of lab B's objects by its FHIR id, for every resource type's URL."""
    result = order_b.results.get(loinc="718-7")
    return {"resource_id": [patient_b.id, order_b.id, result.id, result.specimen_id,
                            lab_b.finess, "10003456786", uuid.uuid4()],
            "rest": ["Patient", f"Patient/{patient_b.id}/_history", "Medication/1"]}


def test_a_lab_a_token_reaches_nothing_of_lab_b_through_the_api(
        client, lab_a, lab_b, actor_a, lab_b_objects, lab_b_order, monkeypatch, capsys):
    """A lab A client with every scope asks every API URL for each of lab B's objects
    (GET with searches on lab B's patient's traits, POST of bodies pointing at them): no
    value of lab B comes back, nothing is written in lab B, no server error."""
    from coffre.identity.models import Patient
    from coffre.labwork.models import Order
    from tests.api_helpers import api_token, bearer

    monkeypatch.setenv("COFFRE_API_RATE_PER_MINUTE", "100000")  # the walk is one burst
    AuditSettings.objects.create(lab=lab_a, hard_per_10_minutes=100_000,
                                 soft_per_10_minutes=100_000, hard_per_hour=100_000,
                                 soft_per_hour=100_000)
    create_patient(actor_a, patient_row())  # lab A has a patient of its own
    patient_b = lab_b_objects[0]
    forbidden = identifying_values(B_ROW) | {lab_b.name}
    before = (Patient.unscoped.filter(lab=lab_b).count(),
              Order.unscoped.filter(lab=lab_b).count())
    fill = lab_b_fill(lab_b, patient_b, lab_b_order)
    requests, visited, leaks, statuses = api_walk(
        client, bearer(api_token(lab_a)), fill, forbidden,
        search_queries(B_ROW, patient_b.id), fhir_bodies(patient_b.id, lab_b_order.id))
    assert visited == {p.name for p in api_patterns()}
    assert not leaks, leaks
    assert (Patient.unscoped.filter(lab=lab_b).count(),
            Order.unscoped.filter(lab=lab_b).count()) == before
    assert all(statuses[name] != {401} for name in visited - {"fhir_token"}), statuses
    with capsys.disabled():
        print(f"\nAPI walk: {requests} requests over {len(visited)} API patterns with a "
              "lab A token, no value of lab B shown")


def test_a_web_session_is_no_api_credential(client, lab_a, actor_a, monkeypatch):
    """A staff member logged in on the web (second factor done) gets 401 on every API
    URL that serves data, never a value of their own lab's patient."""
    from tests.api_helpers import api_token, bearer

    row = patient_row(nir=make_nir("M", 1977, 2, "22278", "318"), sex="M",
                      birth_name="Guillou", used_name="", first_names="Tristan Goulven",
                      birth_date="1977-02-11", birth_place="22278",
                      address="4 venelle du Moulin", phone="06 41 52 63 74",
                      email="tristan.guillou@example.net", notes="Diabète de type 1")
    mine = create_patient(actor_a, row)
    client.force_login(member("walker-web", lab_a, Role.BIOLOGIST))
    second_factor_done(client)
    fill = {"resource_id": [mine.id], "rest": ["Patient"]}
    _, _, leaks, statuses = api_walk(client, {}, fill, identifying_values(row),
                                     search_queries(row, mine.id)[:4],
                                     fhir_bodies(mine.id, uuid.uuid4())[:2])
    assert not leaks, leaks
    for name, seen in statuses.items():
        if name in PUBLIC_API:
            continue
        assert seen <= {400, 401, 404, 405}, (name, seen)
        assert name in {"fhir_token", "fhir_unknown"} or 401 in seen, (name, seen)
    # Positive control: the same matcher finds her with a token of her own lab.
    record = client.get(f"/fhir/Patient/{mine.id}", **bearer(api_token(lab_a)))
    assert record.status_code == 200
    assert row["birth_name"] in found(body_text(record), identifying_values(row))
