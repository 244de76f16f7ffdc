"""`coffre breach scan`: leaked files in many shapes, matched through the blind indexes,
counted exactly, and attributed to a canary's lab or an export's watermark."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import uuid
from pathlib import Path

import pytest
from openpyxl import Workbook

from coffre.audit import canaries
from coffre.audit.models import AccessEvent, AccountLock, Alert
from coffre.breach import columns as cols
from coffre.breach.attribution import NO_EVIDENCE
from coffre.breach.commands import render
from coffre.breach.readers import BreachScanError, open_file
from coffre.breach.report import CONTACT, NAME_BIRTH, NIR, ScanReport
from coffre.breach.scan import ACTION, scan_files
from coffre.exports import services as exports
from coffre.identity.access import create_patient
from coffre.identity.registry import clean_values, index_values
from coffre.identity.synthetic import generate_patients
from coffre.keyring import services as keyring
from coffre.labs.tenancy import Actor
from coffre.vault import decrypt_with, new_recipient_identity
from tests.conftest import member

# A leaked file's own names for the registry columns, in its own order.
RENAMED = {"tel_portable": "phone", "NOM": "birth_name", "Prénom(s)": "first_names",
           "DDN": "birth_date", "num_secu": "nir", "courriel": "email", "cp": "postal_code",
           "ville": "city", "Adresse": "address", "Observations": "notes",
           "Groupe": "blood_group", "Organisme": "insurer"}


def _national(phone: str) -> str:
    """+33199002034 -> 01 99 00 20 34, as people write it."""
    if not phone:
        return ""
    digits = "0" + phone[3:]
    return " ".join(digits[i:i + 2] for i in range(0, 10, 2))


def _french_date(iso: str) -> str:
    return dt.date.fromisoformat(iso).strftime("%d/%m/%Y")


@pytest.mark.parametrize("body", ["1850335238123", "290072A004015", "185012B033001"])
def test_the_scan_takes_no_nir_whose_key_is_wrong(body):
    """The scan's own NIR recogniser (cols.nir_value) against all 99 wrong keys."""
    from coffre.identity.french import nir_key

    right = nir_key(body)
    taken = [key for key in (f"{n:02d}" for n in range(100))
             if key != right and cols.nir_value(body + key) is not None]
    assert taken == [] and cols.nir_value(body + right) == body + right


def leaked(row: dict[str, str]) -> dict[str, str]:
    """A registry row as a leaked file has it: renamed columns, French dates, phones."""
    out = {name: row.get(source, "") for name, source in RENAMED.items()}
    out["tel_portable"] = _national(row.get("phone", ""))
    out["DDN"] = _french_date(row["birth_date"]) if row.get("birth_date") else ""
    return out


def expected_level(row: dict[str, str]) -> str:
    return NIR if row["nir"] else NAME_BIRTH


@pytest.fixture
def people(lab_a, lab_b):
    """20 generated patients in lab A, 10 in lab B, and 10 strangers (not patients)."""
    rows = list(generate_patients(30, seed=11))
    created = []
    for number, row in enumerate(rows):
        lab = lab_a if number < 20 else lab_b
        record = create_patient(Actor("sam", lab.id, "secretary", "web"), row)
        created.append((record.id, lab.id, row))
    strangers = list(generate_patients(10, seed=4242, start_index=500_000))
    return created, strangers


def write_csv(path: Path, rows: list[dict[str, str]], *, delimiter=",", encoding="utf-8",
              header=True) -> Path:
    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        if header:
            writer.writeheader()
        writer.writerows(rows)
    return path


def check_counts(report: ScanReport, people, lab_a, lab_b, rows_read: int) -> None:
    created, _ = people
    assert report.rows_read == rows_read
    assert report.rows_matched == len(created)
    assert report.matches == {pid: expected_level(row) for pid, _, row in created}
    by_lab = {impact.lab_id: impact for impact in report.labs}
    assert by_lab[lab_a.id].patients == 20 and by_lab[lab_b.id].patients == 10
    for lab, part in ((lab_a, created[:20]), (lab_b, created[20:])):
        want = {NIR: 0, NAME_BIRTH: 0, CONTACT: 0}
        for _, _, row in part:
            want[expected_level(row)] += 1
        assert by_lab[lab.id].by_confidence == want


def mixed(people) -> list[dict[str, str]]:
    created, strangers = people
    rows = [leaked(row) for _, _, row in created] + [leaked(row) for row in strangers]
    rows.reverse()
    return rows


def test_latin1_semicolon_csv_with_renamed_columns(tmp_path, people, lab_a, lab_b):
    path = write_csv(tmp_path / "fuite.csv", mixed(people), delimiter=";",
                     encoding="cp1252")
    report = scan_files([path])
    check_counts(report, people, lab_a, lab_b, rows_read=40)
    kinds = {c.column: c.kind for c in report.columns}
    assert kinds["num_secu"] == "nir" and kinds["DDN"] == "birth_date"
    assert kinds["tel_portable"] == "phone" and kinds["courriel"] == "email"
    assert kinds["NOM"] == "family_name" and kinds["Prénom(s)"] == "given_name"
    assert {"nir", "identity", "contact", "birth_date", "address"} <= set(report.categories)
    assert report.files[0]["format"] == "csv" and report.files[0]["rows"] == 40
    assert report.evidence == []


def test_columns_are_recognised_by_content_without_a_header(tmp_path, people, lab_a, lab_b):
    """Tab-separated, no header, columns reordered: content alone decides."""
    rows = mixed(people)
    order = ["courriel", "DDN", "Prénom(s)", "num_secu", "NOM", "tel_portable", "cp"]
    path = write_csv(tmp_path / "dump.tsv", [{k: r[k] for k in order} for r in rows],
                     delimiter="\t", header=False)
    report = scan_files([path])
    check_counts(report, people, lab_a, lab_b, rows_read=40)
    assert [c.kind for c in report.columns] == ["email", "birth_date", "given_name", "nir",
                                                "family_name", "phone", "postcode"]


def test_xlsx_every_sheet(tmp_path, people, lab_a, lab_b):
    rows = mixed(people)
    book = Workbook()
    first = book.active
    second = book.create_sheet("suite")
    for sheet, part in ((first, rows[:25]), (second, rows[25:])):
        sheet.append(list(part[0]))
        for row in part:
            values = dict(row)
            values["DDN"] = dt.datetime.strptime(row["DDN"], "%d/%m/%Y")  # a real date cell
            if sheet is second and row["tel_portable"]:  # a number: its leading 0 is lost
                values["tel_portable"] = int(row["tel_portable"].replace(" ", ""))
            sheet.append(list(values.values()))
    path = tmp_path / "export.xlsx"
    book.save(path)
    report = scan_files([path])
    check_counts(report, people, lab_a, lab_b, rows_read=40)
    assert report.files[0]["format"] == "xlsx"


def test_json_ndjson_and_wrapped_json(tmp_path, people, lab_a, lab_b):
    rows = mixed(people)
    (tmp_path / "a.json").write_text(json.dumps(rows, ensure_ascii=False))
    (tmp_path / "b.ndjson").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "c.json").write_text(json.dumps({"exported": "2020-10-31", "count": 40,
                                                 "patients": rows}, indent=2))
    for name, fmt in (("a.json", "json"), ("b.ndjson", "ndjson"), ("c.json", "json")):
        report = scan_files([tmp_path / name])
        check_counts(report, people, lab_a, lab_b, rows_read=40)
        assert report.files[0]["format"] == fmt


def _sql_literal(value: str, mysql: bool) -> str:
    if not value:
        return "NULL"
    if mysql:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return "'" + value.replace("'", "''") + "'"


def test_sql_dumps_mysql_and_postgresql(tmp_path, people, lab_a, lab_b):
    rows = mixed(people)
    names = list(rows[0])
    values = [f"({', '.join(_sql_literal(r[n], True) for n in names)})" for r in rows]
    mysql = ("-- MySQL dump\nCREATE TABLE `patients` (`id` int);\n"
             f"INSERT INTO `patients` (`{'`, `'.join(names)}`) VALUES "
             f"{','.join(values[:30])};\n"
             f"INSERT INTO `patients` (`{'`, `'.join(names)}`) VALUES "
             f"{','.join(values[30:])};\n")
    (tmp_path / "dump.sql").write_text(mysql)
    check_counts(scan_files([tmp_path / "dump.sql"]), people, lab_a, lab_b, rows_read=40)
    tuples = ["(" + ", ".join(_sql_literal(r[n], False) for n in names) + ")" for r in rows]
    insert = "INSERT INTO public.patients VALUES "  # a dump written as a file, not run
    pg = "SET client_encoding = 'UTF8';\n" + "".join(f"{insert}{t};\n" for t in tuples)
    (tmp_path / "pg.sql").write_text(pg)
    report = scan_files([tmp_path / "pg.sql"])
    check_counts(report, people, lab_a, lab_b, rows_read=40)
    assert report.files[0]["format"] == "sql"


def test_partial_rows_are_matched_at_the_level_their_columns_allow(tmp_path, people, lab_a):
    created, strangers = people
    full = [leaked(row) for _, _, row in created[:4]]
    only_contact = []
    for _pid, _, row in created[4:10]:
        cell = leaked(row)
        only_contact.append({k: (cell[k] if k in ("tel_portable", "courriel") else "")
                             for k in cell})
    name_birth = []
    for _, _, row in created[10:14]:
        cell = leaked(row)
        cell["num_secu"] = ""
        name_birth.append(cell)
    rows = full + only_contact + name_birth + [leaked(r) for r in strangers[:3]]
    report = scan_files([write_csv(tmp_path / "partiel.csv", rows)])
    assert report.rows_read == len(rows)
    want = {pid: expected_level(row) for pid, _, row in created[:4]}
    want.update({pid: CONTACT for pid, _, row in created[4:10]
                 if row["phone"] or row["email"]})
    want.update({pid: NAME_BIRTH for pid, _, _ in created[10:14]})
    assert report.matches == want
    assert report.rows_matched == len(want)


def test_lab_option_restricts_matching(tmp_path, people, lab_a, lab_b):
    path = write_csv(tmp_path / "fuite.csv", mixed(people))
    report = scan_files([path], lab_id=lab_b.id)
    assert {impact.lab_id for impact in report.labs} == {lab_b.id}
    assert report.patients_affected() == 10


def test_strangers_match_nobody_and_nothing_is_claimed(tmp_path, people):
    _, strangers = people
    report = scan_files([write_csv(tmp_path / "autres.csv",
                                   [leaked(r) for r in strangers])])
    assert (report.rows_read, report.rows_matched, report.matches) == (10, 0, {})
    assert report.labs == [] and report.evidence == []
    assert NO_EVIDENCE in render(report)
    entries = AccessEvent.objects.filter(action=ACTION)
    assert [(e.patient_id, e.outcome) for e in entries] == [(None, "no_match")]


def test_scan_is_audited_per_patient_without_locking_or_canary_alerts(tmp_path, people,
                                                                      lab_b):
    """The lab's hard threshold is 3 patients: the 10 matched would lock a reader in a
    read path; the scan logs them under its own action, and a canary found raises no
    alert. A later ordinary read by the DPO is not counted against those entries."""
    from coffre.audit.models import AuditSettings
    from coffre.identity.access import access_patient

    created, _ = people
    AuditSettings.objects.create(lab=lab_b, soft_per_10_minutes=2, hard_per_10_minutes=3,
                                 soft_per_hour=2, hard_per_hour=3)
    canaries.plant(lab_b.id, 2, Actor("os:admin", lab_b.id, "import", "cli"))
    planted = canaries.planted(lab_b.id)
    rows = mixed(people) + [leaked(r["values"]) for r in planted]
    dpo = Actor("dora", lab_b.id, "dpo", "web")
    for _ in range(3):
        report = scan_files([write_csv(tmp_path / "f.csv", rows)], actor=dpo)
    assert report.patients_affected() == 10  # the web actor sees its own lab only
    assert not AccountLock.objects.exists() and not Alert.objects.exists()
    entries = AccessEvent.objects.filter(action=ACTION)
    assert entries.count() == 30
    assert {e.patient_id for e in entries} == {pid for pid, lab, _ in created
                                               if lab == lab_b.id}
    assert all(e.person == "dora" and e.lab_id == lab_b.id for e in entries)
    assert [e.kind for e in report.evidence] == ["canary"]
    canary = report.evidence[0]
    assert canary.lab_id == lab_b.id and canary.rows == 2 and canary.strength == "conclusive"
    assert "does not show who" in canary.statement
    assert set(report.matches).isdisjoint(uuid.UUID(r["patient_id"]) for r in planted)
    access_patient(dpo, created[20][0])  # one ordinary read: still far from the limit
    assert not AccountLock.objects.exists()


def test_a_file_from_an_export_is_attributed_to_that_export(tmp_path, people, lab_a):
    _created, strangers = people
    member("maud", lab_a, "lab_manager")
    identity, recipient = new_recipient_identity()
    today = dt.date.today()
    export = exports.request_export(
        lab_a, purpose="migration vers le nouveau SIL", recipient="Éditeur X",
        recipient_key=recipient, fields="nir,birth_name,first_names,birth_date,phone",
        period_from=today - dt.timedelta(days=1), period_to=today + dt.timedelta(days=1),
        requested_by="sam")
    exports.approve(export.pk, "maud")
    export = exports.run(export.pk)
    text = decrypt_with(identity, exports.staged_file(export).read_bytes()).decode()
    lines = list(csv.reader(io.StringIO(text)))
    # The leaker renames the header and adds strangers: the watermark rows still tell.
    lines[0] = ["ssn", "lastname", "firstname", "dob", "mobile"]
    lines += [[r["nir"], r["birth_name"], r["first_names"], r["birth_date"], r["phone"]]
              for r in strangers]
    path = tmp_path / "leak.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(lines)
    report = scan_files([path])
    assert report.rows_read == 20 + export_marks(text) + 10
    assert report.patients_affected() == 20 and report.rows_matched == 20
    [evidence] = report.evidence
    assert evidence.kind == "watermark" and evidence.detail["export_id"] == export.pk
    assert evidence.rows == export_marks(text) and evidence.strength == "conclusive"
    assert evidence.detail["requested_by"] == "sam" and evidence.detail["approved_by"] == "maud"
    assert evidence.detail["recipient"] == "Éditeur X"
    assert "does not show who disclosed it" in evidence.statement


def export_marks(text: str) -> int:
    return len(text.strip().splitlines()) - 1 - 20


@pytest.mark.parametrize("content", [
    os.urandom(2048) + b"\x00\x01",
    b"nir,nom\n\"1850375056123 12,Dupont\n2850375056123,Durand\n",
])
def test_malformed_files_are_refused_and_nothing_is_written(tmp_path, people, content):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    before = AccessEvent.objects.count()
    with pytest.raises(BreachScanError) as error:
        scan_files([path])
    assert str(error.value).startswith("bad.csv: ")
    assert "Dupont" not in str(error.value)
    assert AccessEvent.objects.count() == before


def test_truncated_xlsx_and_sql_are_refused(tmp_path, people):
    book = Workbook()
    book.active.append(["a", "b"])
    for n in range(2000):
        book.active.append([f"x{n}", f"y{n}"])
    whole = tmp_path / "whole.xlsx"
    book.save(whole)
    cut = tmp_path / "cut.xlsx"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BreachScanError, match=r"cut\.xlsx: .*(damaged|truncated)"):
        scan_files([cut])
    sql = tmp_path / "cut.sql"
    sql.write_text("INSERT INTO t VALUES ('a', 'b'), ('c\n")
    with pytest.raises(BreachScanError, match=r"cut\.sql: line 1: "):
        scan_files([sql])
    before = AccessEvent.objects.count()
    assert AccessEvent.objects.filter(action=ACTION).count() == 0 and before > 0


def test_unterminated_quote_names_the_line(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("a,b\n1,2\n3,\"4\n5,6\n")
    with pytest.raises(BreachScanError, match=r"q\.csv: line \d+: unterminated quote"):
        list(open_file(path).rows)


def test_row_keys_equal_the_registry_blind_indexes(people):
    """The scan hashes what the registry indexes: same normaliser, same indexer."""
    from coffre.breach.scan import Plan

    _, _, row = people[0][0]
    values, _ = clean_values(row)
    stored = index_values(values)
    columns = cols.classify(list(leaked(row)), [list(leaked(r).values())
                                                for _, _, r in people[0]])
    keys = Plan.of("t", list(leaked(row)), columns).keys(list(leaked(row).values()))
    indexer = keyring.indexer()
    assert indexer.compute("phone", keys.phone) == stored["bi_phone"]
    assert indexer.compute("name_dob", f"{keys.names[0]}|{keys.birth_date}") == \
        stored["bi_birth_name_dob"]
    if row["nir"]:
        assert indexer.compute("nir", keys.nir) == stored["bi_nir"]
    if row["email"]:
        assert indexer.compute("email", keys.email) == stored["bi_email"]


@pytest.fixture
def colliding(db):
    """Two-bit blind indexes: every index value stands for a quarter of the patients,
    so nearly every candidate is a coincidence that decryption must rule out."""
    from coffre.labs.services import add_lab

    keyring.initialise(expected_patients=8)
    assert keyring.indexer().bits == 2
    lab = add_lab("750000010", "Laboratoire A")
    rows = list(generate_patients(25, seed=5))
    ids = [create_patient(Actor("sam", lab.id, "secretary", "web"), r).id for r in rows]
    return lab, list(zip(ids, rows, strict=True))


def test_colliding_indexes_are_confirmed_by_decryption(tmp_path, colliding):
    _lab, patients = colliding
    strangers = list(generate_patients(15, seed=77, start_index=900_000))
    rows = [leaked(r) for _, r in patients[:12]] + [leaked(r) for r in strangers]
    report = scan_files([write_csv(tmp_path / "c.csv", rows)])
    assert report.rows_read == 27
    assert report.matches == {pid: expected_level(r) for pid, r in patients[:12]}


def test_the_cli_prints_counts_and_never_a_value(tmp_path_factory):
    from tests.cli_helpers import drop_database, make_cli

    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    work = tmp_path_factory.mktemp("files")
    try:
        cli.run("init")
        cli.run("lab", "add", "--finess", "750000010", "--name", "Laboratoire A")
        patients = list(generate_patients(6, seed=3))
        write_csv(work / "registry.csv", patients)
        cli.run("import", "patients", str(work / "registry.csv"), "--lab", "750000010")
        strangers = list(generate_patients(4, seed=8, start_index=700_000))
        leak = write_csv(work / "leak.csv", [leaked(r) for r in patients + strangers],
                         delimiter=";")
        text = cli.run("breach", "scan", str(leak)).stdout
        assert "Rows read: 10" in text and "Rows matched: 6" in text
        assert "Patients affected: 6" in text and "lab 750000010" in text
        assert NO_EVIDENCE in text
        for row in patients + strangers:
            for value in (row["nir"], row["birth_name"], row["email"]):
                assert not value or value not in text
        data = json.loads(cli.run("breach", "scan", str(leak), "--json").stdout)
        assert (data["rows_read"], data["rows_matched"], data["patients_affected"]) == (10, 6, 6)
        assert "matches" not in data
        bad = cli.run("breach", "scan", str(work / "missing.csv"), check=False)
        assert bad.returncode == 2 and "missing.csv: no such file" in bad.stderr
        other = cli.run("breach", "scan", str(leak), "--lab", "690000013", check=False)
        assert other.returncode == 2 and "no lab with FINESS" in other.stderr
    finally:
        drop_database(database)


def test_a_data_row_is_not_taken_for_a_header_and_never_named_in_the_report(people):
    created, _ = people
    rows = [list(leaked(row).values()) for _, _, row in created]
    columns = cols.classify([], rows[1:])
    assert not cols.first_row_is_header(rows[0], columns)
    assert cols.first_row_is_header(list(RENAMED), columns)
    # Even if a value ended up as a column name, the report shows the position instead.
    family = next(c for c in cols.named(columns, rows[0], rows[1:])
                  if c.kind == "family_name")
    assert family.guess("f.csv").column == f"#{family.index + 1}"


def test_credentials_health_and_insurance_columns_give_their_categories(tmp_path, people):
    import hashlib

    created, _ = people
    rows = []
    for number, (_, _, row) in enumerate(created):
        cell = leaked(row)
        cell["x1"] = hashlib.sha256(f"secret{number}".encode()).hexdigest()  # a hash
        cell["mdp"] = f"Soleil{number}!"  # a clear password: only the header tells
        cell["x2"] = "Sérologie VIH positive" if number % 2 else "Suivi diabète de type 2"
        rows.append(cell)
    report = scan_files([write_csv(tmp_path / "portail.csv", rows)])
    kinds = {c.column: c.kind for c in report.columns}
    assert kinds["#13"] == "credentials" and kinds["mdp"] == "credentials"
    assert kinds["#15"] == "health" and kinds["Organisme"] == "insurance"
    assert kinds["Groupe"] == "blood_group"
    assert {"credentials", "health", "insurance"} <= set(report.categories)
    assert report.rows_matched == 30


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("helpers", [1, 2])
def test_a_forked_helper_confirms_the_same_matches(tmp_path, people, lab_a, lab_b,
                                                   monkeypatch, helpers):
    """The CLI's large-file mode: batches confirmed in forked processes (the CLI forks
    two), in order; on PostgreSQL each helper has a connection of its own."""
    from coffre.breach import scan as scan_module

    monkeypatch.setattr(scan_module, "BATCH_ROWS", 3)  # several batches in flight
    forked = []
    close = scan_module._Confirmer.close
    monkeypatch.setattr(scan_module._Confirmer, "close",
                        lambda self: (forked.append(self.pool is not None), close(self)))
    path = write_csv(tmp_path / "fuite.csv", mixed(people), delimiter=";")
    report = scan_files([path], helpers=helpers)
    assert forked == [True]
    check_counts(report, people, lab_a, lab_b, rows_read=40)
    assert AccessEvent.objects.filter(action=ACTION).count() == 30
