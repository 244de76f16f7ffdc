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
from coffre.breach import planting
from coffre.breach.attribution import NO_EVIDENCE
from coffre.breach.commands import render
from coffre.breach.readers import BreachScanError, open_file
from coffre.breach.report import CONTACT, NAME_BIRTH, NIR, ScanReport
from coffre.breach.scan import ACTION, scan_files
from coffre.exports import services as exports
from coffre.identity.access import create_patient
from coffre.identity.synthetic import generate_patients
from coffre.keyring import services as keyring
from coffre.tenancy.actors import Actor
from coffre.vault import decrypt_with, new_recipient_identity
from tests.conftest import member, sign

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
    planting.plant(lab_b.id, 2, Actor("os:admin", lab_b.id, "cli", "cli"))
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
    exports.approve(export.pk, sign("maud"), channel="cli")
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
    # The export's sealed purpose and recipient are not copied in clear into the report
    # (a breach record keeps it in clear); the DPO's text opens the recipient when shown.
    assert not {"recipient", "purpose"} & set(evidence.detail)
    assert "Éditeur X" not in json.dumps(report.to_dict(), ensure_ascii=False)
    from coffre.breach.notifications import evidence_text

    assert "destinataire : Éditeur X" in evidence_text(evidence)
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


# --- hostile files: every bound is a clear error, never a crash -----------------------

DEEP = 100_000  # far past Python's recursion limit


@pytest.mark.parametrize(("name", "content"), [
    ("deep.ndjson", '{"nir": "1"}\n' + '{"a":' * DEEP + "1" + "}" * DEEP + "\n"),
    ("deep.json", "[" + '{"a":' * DEEP + "1" + "}" * DEEP + "]"),
    ("wrapped.json", '{"meta": ' + "[" * DEEP + "]" * DEEP + ', "rows": []}'),
    ("first.ndjson", '{"a":' * DEEP + "1" + "}" * DEEP + "\n"),
])
def test_json_nested_past_the_bound_is_refused_without_recursing(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BreachScanError, match=rf"{name}: .*JSON nested deeper than 64 "
                                              "levels") as error:
        list(open_file(path).rows)
    assert error.value.code == "json_depth" and error.value.params["limit"] == 64


def test_json_at_the_bound_or_with_brackets_in_strings_is_read(tmp_path):
    path = tmp_path / "fine.json"
    nested = "[" * 62 + '"x"' + "]" * 62  # 64 levels with the array and its object
    path.write_text('[{"nom": "[[[[" , "n": ' + nested + ', "s": "' + "{" * 500 + '"}]')
    assert len(list(open_file(path).rows)) == 1


def test_a_row_past_the_column_bound_is_refused(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text("a,b\n" + ",".join(["x"] * 3000) + "\n")
    with pytest.raises(BreachScanError, match=r"wide\.csv: line 2: more than 2,000 "
                                              "columns") as error:
        list(open_file(wide).rows)
    assert error.value.code == "columns"
    keys = tmp_path / "keys.ndjson"
    keys.write_text("\n".join(json.dumps({f"k{n}": "v"}) for n in range(2500)))
    with pytest.raises(BreachScanError, match="more than 2,000 columns"):
        list(open_file(keys).rows)
    book = Workbook()
    book.active.append(["nir", "nom"])
    book.active.cell(row=2, column=3000, value="x")
    far = tmp_path / "far.xlsx"
    book.save(far)
    with pytest.raises(BreachScanError, match=r"far\.xlsx: row 2: more than 2,000"):
        list(open_file(far).rows)


def _rewritten(source: Path, target: Path, members: dict[str, bytes]) -> Path:
    """A copy of an XLSX archive with some members replaced or added."""
    import zipfile

    replaced = dict(members)
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            new.writestr(item.filename, replaced.pop(item.filename, None)
                         or old.read(item.filename))
        for name, data in replaced.items():
            new.writestr(name, data)
    return target


def _book(tmp_path: Path) -> Path:
    book = Workbook()
    book.active.append(["nir", "nom"])
    for n in range(3):
        book.active.append([f"texte {n}", "Dupont"])
    path = tmp_path / "book.xlsx"
    book.save(path)
    return path


SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _with_shared_strings(tmp_path: Path, name: str, table: bytes) -> Path:
    """A workbook declaring ``table`` as its shared strings (openpyxl writes inline
    strings, Excel a shared-strings part, which openpyxl loads whole)."""
    import zipfile

    source = _book(tmp_path)
    with zipfile.ZipFile(source) as archive:
        types = archive.read("[Content_Types].xml").decode()
    types = types.replace("</Types>", '<Override PartName="/xl/sharedStrings.xml" ContentType='
                          '"application/vnd.openxmlformats-officedocument.spreadsheetml.'
                          'sharedStrings+xml" /></Types>')
    return _rewritten(source, tmp_path / name, {"[Content_Types].xml": types.encode(),
                                                "xl/sharedStrings.xml": table})


def _strings(count: int, element: str = "<si><t>texte {n}</t></si>", prefix: str = ""
             ) -> bytes:
    tag = f"{prefix}:sst" if prefix else "sst"
    xmlns = f"xmlns:{prefix}" if prefix else "xmlns"
    return (f'<{tag} {xmlns}="{SHEET_NS}" count="{count}" uniqueCount="{count}">'
            + "".join(element.format(n=n) for n in range(count)) + f"</{tag}>").encode()


def test_a_declared_uncompressed_size_past_the_bound_is_refused_before_inflating(
        tmp_path, monkeypatch):
    from coffre.breach import readers

    # A compression bomb: 64 MiB of zeros in a member a few hundred kB long.
    bomb = _rewritten(_book(tmp_path), tmp_path / "bomb.xlsx",
                      {"xl/media/zeros.bin": bytes(64 * 1024 * 1024)})
    assert bomb.stat().st_size < 1024 * 1024
    monkeypatch.setattr(readers, "MAX_XLSX_MEMBER_BYTES", 16 * 1024 * 1024)
    with pytest.raises(BreachScanError, match=r"bomb\.xlsx: the XLSX archive unpacks to "
                                              r"67,108,864 bytes") as error:
        list(open_file(bomb).rows)
    assert error.value.code == "xlsx_size" and error.value.params["size_mb"] == 64
    monkeypatch.setattr(readers, "MAX_XLSX_MEMBER_BYTES", 1024**3)
    monkeypatch.setattr(readers, "MAX_XLSX_BYTES", 32 * 1024 * 1024)  # the whole archive
    with pytest.raises(BreachScanError, match="unpacks to"):
        list(open_file(bomb).rows)


def test_a_shared_strings_table_past_the_bound_is_refused_before_it_is_loaded(
        tmp_path, monkeypatch):
    from coffre.breach import readers

    many = _with_shared_strings(tmp_path, "many.xlsx", _strings(1500))
    assert len(list(open_file(many).rows)) == 4  # a valid workbook, read under the bounds
    monkeypatch.setattr(readers, "MAX_SHARED_STRINGS", 1000)
    with pytest.raises(BreachScanError, match=r"many\.xlsx: the workbook's shared-strings "
                                              r"table is too large") as error:
        list(open_file(many).rows)
    assert error.value.code == "xlsx_strings"
    # Empty strings cost openpyxl memory too, and a namespace prefix does not hide them.
    sneaky = _with_shared_strings(tmp_path, "sneaky.xlsx",
                                  _strings(5000, "<x:si/>", prefix="x"))
    with pytest.raises(BreachScanError, match="shared-strings table is too large"):
        list(open_file(sneaky).rows)
    monkeypatch.setattr(readers, "MAX_SHARED_STRINGS", 4_000_000)
    monkeypatch.setattr(readers, "MAX_SHARED_STRINGS_BYTES", 10_000)
    with pytest.raises(BreachScanError, match="shared-strings table is too large"):
        list(open_file(sneaky).rows)


def test_xml_entities_in_a_workbook_are_refused(tmp_path):
    laughs = ('<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY a "hahahahahahahahahaha">'
              + "".join(f'<!ENTITY {chr(98 + n)} "' + f"&{chr(97 + n)};" * 10 + '">'
                        for n in range(8))
              + f']><sst xmlns="{SHEET_NS}"><si><t>&i;</t></si></sst>').encode()
    bomb = _with_shared_strings(tmp_path, "laughs.xlsx", laughs)
    with pytest.raises(BreachScanError, match=r"laughs\.xlsx: the workbook's XML declares "
                                              "entities") as error:
        list(open_file(bomb).rows)
    assert error.value.code == "xlsx_xml"


def test_a_declared_dimension_does_not_pad_a_million_rows(tmp_path, monkeypatch):
    import zipfile

    from coffre.breach import readers

    source = _book(tmp_path)
    with zipfile.ZipFile(source) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml").decode()
    padded = sheet.replace('<dimension ref="A1:B4" />', '<dimension ref="A1:XFD1048576" />')
    assert padded != sheet
    path = _rewritten(source, tmp_path / "dims.xlsx",
                      {"xl/worksheets/sheet1.xml": padded.encode()})
    cells = []  # the work per cell: trusting the dimension costs 17 billion of them
    real = readers.cell_text

    def counted(value):
        cells.append(1)
        if len(cells) > 100_000:
            raise AssertionError("the declared dimension was trusted")
        return real(value)

    monkeypatch.setattr(readers, "cell_text", counted)
    assert len(list(open_file(path).rows)) == 4 and len(cells) == 8


def test_unterminated_quote_names_the_line(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("a,b\n1,2\n3,\"4\n5,6\n")
    with pytest.raises(BreachScanError, match=r"q\.csv: line \d+: unterminated quote"):
        list(open_file(path).rows)


def test_row_keys_digest_like_the_patients_values(people):
    """The scan normalises a leaked row as the registry normalises what it stores: each
    of the row's NIR, name + birth date, phone and e-mail finds the patient."""
    from coffre.breach.scan import Plan
    from coffre.identity.digests import (
        PatientDigests,
        email_text,
        name_text,
        nir_text,
        phone_text,
    )

    created, _ = people
    patients = PatientDigests()
    for pid, _lab, row in created[:5]:
        columns = cols.classify(list(leaked(row)), [list(leaked(r).values())
                                                    for _, _, r in created])
        keys = Plan.of("t", list(leaked(row)), columns).keys(list(leaked(row).values()))
        where = patients.ids.index(pid)
        assert where in patients.get("phone", phone_text(keys.phone))
        assert where in patients.get("name", name_text(keys.birth_date, keys.names[0]))
        if row["nir"]:
            assert patients.get("nir", nir_text(keys.nir)) == [where]
        if row["email"]:
            assert where in patients.get("email", email_text(keys.email))
    assert patients.get("nir", nir_text("185057800608436")) == []


@pytest.fixture
def colliding(db):
    """A lab planned for 8 patients holds 25: its blind indexes have 2 bits for the
    whole row, so nearly every candidate of a search is a coincidence that decryption
    must rule out."""
    from coffre.keyring import indexes
    from coffre.tenancy.services import add_lab

    keyring.initialise(expected_patients=8)
    lab = add_lab("750000010", "Laboratoire A", planned_patients=8)
    assert sum(indexes.current(lab.id).bits_of(i) for i in ("nir", "phone", "email")) \
        + 2 * indexes.current(lab.id).bits_of("name_dob") <= 2
    rows = list(generate_patients(25, seed=5))
    actor = Actor("sam", lab.id, "secretary", "web")
    ids = [create_patient(actor, r).id for r in rows]
    return lab, list(zip(ids, rows, strict=True))


def test_colliding_indexes_are_confirmed_by_decryption(tmp_path, colliding):
    from coffre.audit.models import AuditSettings
    from coffre.identity.access import find_patients

    lab, patients = colliding
    AuditSettings.objects.create(lab=lab, hard_per_10_minutes=1000, hard_per_hour=1000,
                                 soft_per_10_minutes=1000, soft_per_hour=1000)
    actor = Actor("sam", lab.id, "secretary", "web")
    for pid, row in patients[:6]:
        assert [r.id for r in find_patients(actor, nir=row["nir"])] == [pid]
        found = find_patients(actor, name=row["birth_name"], birth_date=row["birth_date"])
        assert pid in [r.id for r in found]
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
        deep = work / "deep.json"
        deep.write_text("[" * DEEP + "]" * DEEP)
        bad = cli.run("breach", "scan", str(deep), check=False)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert "deep.json: JSON nested deeper than 64 levels" in bad.stderr
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
    """The CLI's large-file mode: the patients decrypted in forked processes (the CLI
    forks two), a share of the labs each; on PostgreSQL each helper has a connection of
    its own."""
    import multiprocessing

    from coffre.identity import digests as scan_module

    forked = []
    real = multiprocessing.get_context

    def get_context(method):
        forked.append(method)
        return real(method)

    monkeypatch.setattr(scan_module.multiprocessing, "get_context", get_context)
    path = write_csv(tmp_path / "fuite.csv", mixed(people), delimiter=";")
    report = scan_files([path], helpers=helpers)
    assert forked == ["fork"]
    check_counts(report, people, lab_a, lab_b, rows_read=40)
    assert AccessEvent.objects.filter(action=ACTION).count() == 30
