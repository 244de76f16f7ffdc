"""The audit walk (issue 14, item 20): every URL of the site, every route of the API and
every CLI command that shows a patient's data must write an access entry naming exactly
the patients it showed.

Like the isolation walk, it enumerates: every named URL pattern is requested (GET, then
a POST per search criterion) by every staff role of lab A, filled with lab A's own
objects (two patients with distinct traits, one with a published order, one with an
order on the bench); each response's text (a PDF's text too) is matched against both
patients' identifying values; the patients found must be exactly those named by the
read entries (``log.READ_ACTIONS``) written during that request. The API walk does the
same with a token of lab A, a patient counting as shown when the response names her
values or refers to her (``Patient/<id>``, the subject of a result). The CLI's commands
are listed from its parser: each is either run here or named in a table of commands
that show no patient data, so a new command cannot escape either.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import uuid

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from coffre.accounts.models import Role
from coffre.audit.log import READ_ACTIONS
from coffre.audit.models import AccessEvent, AuditSettings
from coffre.identity.access import create_patient
from tests.conftest import make_nir, member, patient_row
from tests.lab_helpers import order_for, published, receive_all, staff_of
from tests.test_isolation_walk import (
    Walker,
    api_patterns,
    body_text,
    csrf_failed,  # noqa: F401 - named by override_settings below
    found,
    identifying_values,
    parameters,
    payloads,
    search_queries,
    site_patterns,
    without_echo,
)

ONE = patient_row(nir=make_nir("F", 1958, 11, "29232", "614"), birth_name="Kerjean",
                  used_name="Bodénès", first_names="Annaïg Rozenn", birth_date="1958-11-02",
                  birth_place="29232", address="18 rue Amiral Ronarc'h",
                  postal_code="29000", city="Quimper", phone="06 71 82 93 04",
                  email="annaig.kerjean@example.org", notes="Traitement par lithium")
TWO = patient_row(nir=make_nir("M", 1947, 5, "56121", "233"), sex="M",
                  birth_name="Le Floc'h", used_name="", first_names="Herveig Tudual",
                  birth_date="1947-05-19", birth_place="56121", address="2 rue du Port",
                  postal_code="56100", city="Lorient", phone="06 35 46 57 68",
                  email="herveig.lefloch@example.net", notes="Insuffisance rénale")
ROLES = ("secretary", "technician", "biologist", "lab_manager", "dpo")


def pdf_text(response) -> str:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(response.content))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def shown_text(response) -> str:
    if response.get("Content-Type", "").startswith("application/pdf"):
        return pdf_text(response)
    return body_text(response)


def reads_since(last: int) -> set[uuid.UUID]:
    """Patients named by the read entries written since ``last`` (an entry of a missing
    or foreign id, outcome "not_found", names no patient shown)."""
    return set(AccessEvent.objects.filter(pk__gt=last, action__in=READ_ACTIONS,
                                          patient_id__isnull=False)
               .exclude(outcome="not_found").values_list("patient_id", flat=True))


def prints_since(last: int) -> set[uuid.UUID]:
    """Patients named by the "print" entries since ``last``: a document (report, labels,
    receipt) leaves the screen and is logged as such, not only as the read behind it."""
    return set(AccessEvent.objects.filter(pk__gt=last, action="print",
                                          patient_id__isnull=False)
               .values_list("patient_id", flat=True))


def last_entry() -> int:
    return AccessEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


@pytest.fixture
def world(lab_a, actor_a):
    """Lab A's two patients: ONE with a published order, TWO with one being analysed."""
    staff = staff_of(lab_a)
    one = create_patient(staff.secretary, ONE)
    two = create_patient(staff.secretary, TWO)
    done = published(staff, one.id, K="4.4", NA="140")
    bench = order_for(staff.secretary, two.id, "HB")
    receive_all(staff.secretary, bench)
    AuditSettings.objects.create(lab=lab_a, hard_per_10_minutes=100_000,
                                 soft_per_10_minutes=100_000, hard_per_hour=100_000,
                                 soft_per_hour=100_000)
    return staff, {one.id: identifying_values(ONE), two.id: identifying_values(TWO)}, \
        (done, bench)


def _shown(text: str, values: dict) -> set[uuid.UUID]:
    return {pid for pid, traits in values.items() if found(text, traits)}


@override_settings(CSRF_FAILURE_VIEW="tests.test_isolation_walk.csrf_failed")
def test_every_page_logs_exactly_the_patients_it_shows(lab_a, world, capsys):
    _staff, values, (done, bench) = world
    one, two = list(values)
    fill = {"patient_id": [one, two], "order_id": [done.id, bench.id], "loinc": ["2823-3"],
            "alert_id": [1], "lock_id": [1], "export_id": [1], "breach_id": [1],
            "membership_id": [1], "client_pk": [1], "resource_id": ["inconnu"],
            "rest": ["inconnu"]}
    posts = payloads(ONE, lab_a)
    walker = Walker()
    problems, showing = [], set()
    for role in ROLES:
        user = member(f"audit-{role}", lab_a, role)
        client = walker.client(user)
        for pattern in sorted(site_patterns(), key=lambda p: p.name == "logout"):
            names = parameters(pattern)
            unknown = set(names) - set(fill)
            assert not unknown, f"{pattern.name}: say how to fill {unknown}"
            for filled in itertools.product(*(fill[n] for n in names)):
                url = reverse(pattern.name, kwargs=dict(zip(names, filled, strict=True)))
                for method, data in [("get", None)] + [("post", d) for d in posts]:
                    before = last_entry()
                    response = walker.send(client, user, method, url, pattern.name, data)
                    shown = _shown(_without_posted(shown_text(response), data), values)
                    logged = reads_since(before)
                    if shown:
                        showing.add(pattern.name)
                    if shown != logged:
                        problems.append((role, method, url, response.status_code,
                                         {"shown": sorted(map(str, shown)),
                                          "logged": sorted(map(str, logged))}))
                    printed = response.get("Content-Type", "").startswith("application/pdf")
                    if printed and prints_since(before) != shown:
                        problems.append((role, method, url, response.status_code,
                                         {"printed": sorted(map(str, shown)),
                                          "logged as print": sorted(
                                              map(str, prints_since(before)))}))
    assert not problems, problems[:10]
    assert {"patient_detail", "patient_search"} <= showing, showing  # the walk sees data
    with capsys.disabled():
        print(f"\naudit walk: {walker.requests} requests over {len(site_patterns())} URL "
              f"patterns, {len(showing)} show patients, each read logged exactly")


def _without_posted(text: str, data: dict | None) -> str:
    """A search form that shows the typed criteria back shows nothing of a patient."""
    for value in (data or {}).values():
        text = text.replace(f'value="{value}"', 'value=""')
    return text


_PATIENT_REF = re.compile(r"Patient/([0-9a-f-]{36})")


def test_every_api_route_logs_exactly_the_patients_it_shows(client, lab_a, world,
                                                            monkeypatch):
    from tests.api_helpers import api_token, bearer

    monkeypatch.setenv("COFFRE_API_RATE_PER_MINUTE", "100000")
    _staff, values, (done, _bench) = world
    one, _two = list(values)
    result = done.results.first()
    fill = {"resource_id": [one, done.id, result.id, result.specimen_id, lab_a.finess,
                            "10003456786"],
            "rest": ["Patient", f"Patient/{one}/_history"]}
    headers = bearer(api_token(lab_a))
    problems, showing = [], set()
    for pattern in api_patterns():
        names = parameters(pattern)
        for filled in itertools.product(*(fill[n] for n in names)):
            url = reverse(pattern.name, kwargs=dict(zip(names, filled, strict=True)))
            for query in search_queries(ONE, one):
                before = last_entry()
                response = client.get(url + query, **headers)
                text = body_text(response)
                if b'"searchset"' in response.content:  # its self link echoes the query
                    text = without_echo(text, url + query)
                shown = _shown(text, values)
                if response.status_code == 200:
                    shown |= {uuid.UUID(pid) for pid in _PATIENT_REF.findall(text)
                              if uuid.UUID(pid) in values}
                    # A search about one patient tells about her even when empty ("no
                    # order of test Y"): her id is in the query, not echoed as shown.
                    if b'"searchset"' in response.content:
                        shown |= {pid for pid in values if f"patient={pid}" in query
                                  or f"subject=Patient/{pid}" in query}
                logged = reads_since(before)
                if shown:
                    showing.add(pattern.name)
                if shown != logged:
                    problems.append((url + query, response.status_code,
                                     {"shown": sorted(map(str, shown)),
                                      "logged": sorted(map(str, logged))}))
    assert not problems, problems[:10]
    assert {"fhir_Patient", "fhir_Patient_read", "fhir_Observation",
            "fhir_DiagnosticReport_read"} <= showing, showing


# --- the CLI ---------------------------------------------------------------------------

# Commands that show no patient data (counts, ids, keys, configuration, acknowledgments).
NO_PATIENT_DATA = {
    "init", "serve", "check", "lab add", "lab list", "generate", "demo", "leakcheck",
    "audit verify", "audit checkpoint", "audit alerts", "audit unlock", "audit auditor-key",
    "canary plant", "canary list", "keys status", "keys rotate", "keys retire",
    "keys reencrypt", "keys reindex", "ledger verify", "ledger reapply", "backup list",
    "restore", "purge", "hold add", "hold release", "hold list", "prescriber add",
    "api-client add", "api-client list", "api-client revoke", "api-client rotate",
    "api-client purge-tokens", "hl7 listen", "hl7 import", "hl7 analysers", "import patients",
    "orders create", "specimens receive", "patient erase", "export request",
    "export approve", "export refuse", "export list", "export purge-expired",
    "export fetch", "breach list", "breach record",
    # Pseudonymous ids, barcodes and test codes, no name and no value, like the bench's
    # worklist (docs/field classes: operational while no readable identity is linked).
    "specimens list",
}
# Commands that show patients' data under an audit action of their own, each proven by
# its own tests: the scan of a leaked file (tests/test_breach_scan.py), the letters to
# the patients of a breach (tests/test_breach_record.py), an export's file
# (tests/test_exports.py), a patient's copy of their data (tests/test_right_of_access.py).
OWN_ACTION = {"breach scan", "breach drafts", "export run", "patient access-export"}


def leaf_commands() -> set[str]:
    import argparse

    from coffre.cli import parser

    def walk(p: argparse.ArgumentParser, prefix: str) -> set[str]:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix.strip()}
        names = set()
        for action in subs:
            for name, child in action.choices.items():
                names |= walk(child, f"{prefix} {name}")
        return names

    return walk(parser(), "")


# Commands that show patient data: each run by the test below.
SHOWS_PATIENTS = {"patient find", "hl7 export", "report pdf"}


def test_every_cli_command_is_walked_or_shows_no_patient_data():
    commands = leaf_commands()
    unknown = commands - NO_PATIENT_DATA - SHOWS_PATIENTS - OWN_ACTION
    assert not unknown, f"say whether these commands show patient data: {sorted(unknown)}"
    assert not (NO_PATIENT_DATA | SHOWS_PATIENTS | OWN_ACTION) - commands  # no stale name


def test_cli_commands_that_show_patients_log_exactly_them(tmp_path_factory):
    from tests.cli_helpers import drop_database, make_cli

    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    work = tmp_path_factory.mktemp("files")
    try:
        cli.run("init")
        cli.run("lab", "add", "--finess", "750000010", "--name", "Laboratoire A")
        import csv

        from coffre.identity.registry import CSV_COLUMNS

        path = work / "p.csv"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows([ONE, TWO])
        cli.run("import", "patients", str(path), "--lab", "750000010")
        found_one = cli.json_lines("patient", "find", "--nir", ONE["nir"], "--lab",
                                   "750000010")
        one = found_one[0]["id"]
        order = json.loads(cli.run("orders", "create", "--lab", "750000010", "--patient",
                                   one, "--tests", "K").stdout)
        runs = {
            "patient find": ["patient", "find", "--name", ONE["birth_name"], "--birth-date",
                             ONE["birth_date"], "--lab", "750000010"],
            "report pdf": ["report", "pdf", "--order", order["order"], "--lab",
                           "750000010", "--out", str(work / "cr.pdf")],
            "hl7 export": ["hl7", "export", "--order", order["order"], "--lab",
                           "750000010", "--out", str(work / "oru.hl7")],
        }
        for name, args in runs.items():
            before = _cli_reads(cli)
            cli.run(*args)
            logged = _cli_reads(cli) - before
            assert {pid for _, pid in logged} == {one}, (name, logged)
    finally:
        drop_database(database)


def _cli_reads(cli) -> set[tuple[int, str]]:
    from coffre.audit.log import READ_ACTIONS

    rows = cli.sql_rows("SELECT id, patient_id, action FROM audit_accessevent "
                     "WHERE patient_id IS NOT NULL")
    return {(row[0], str(uuid.UUID(str(row[1])))) for row in rows if row[2] in READ_ACTIONS}


def test_the_walk_fails_on_a_page_that_does_not_log(lab_a, world, monkeypatch):
    """Control: with the record page's audit entry removed, the same comparison finds
    the patient shown and not logged."""
    from coffre.identity import access

    _staff, values, _ = world
    one = next(iter(values))
    monkeypatch.setattr(access.log, "record", lambda *a, **k: None)
    client = Client()
    user = member("audit-control", lab_a, Role.SECRETARY)
    Walker().log_in(client, user)
    before = last_entry()
    response = client.get(f"/patients/{one}/")
    assert _shown(shown_text(response), values) == {one}
    assert reads_since(before) == set()
