"""The lab commands end to end: orders, specimens, analyser files, the MLLP listener,
reports and exports, through the real ``coffre`` command."""

from __future__ import annotations

import json
import re
import signal
import stat
import subprocess
import sys
import uuid

import pytest

from coffre.labwork import hl7v2, mllp
from tests.cli_helpers import drop_database, make_cli


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    cli, database = make_cli(tmp_path_factory.mktemp("home"))
    cli.run("init")
    cli.demo_output = cli.run("demo", "--patients", "4").stdout
    yield cli
    drop_database(database)


@pytest.fixture(scope="module")
def finess(cli):
    return re.search(r"demo1 / .*FINESS (\d{9})", cli.demo_output).group(1)


@pytest.fixture(scope="module")
def patient_id(cli, finess):
    return cli.json_lines("specimens", "list", "--lab", finess)[0]["patient"]


def query(cli, sql: str, *params) -> list[tuple]:
    """Read this CLI's database directly (clear operational columns only)."""
    url = cli.env.get("COFFRE_DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()
    import sqlite3

    with sqlite3.connect(cli.home / "coffre.sqlite3") as db:
        return db.execute(sql, params).fetchall()


def result_states(cli, barcode: str) -> dict[str, str]:
    return dict(query(cli, "SELECT r.loinc, r.state FROM lab_result r JOIN lab_specimen s "
                           "ON r.specimen_id = s.id WHERE s.barcode = ?", barcode))


def new_order(cli, finess, patient_id, tests="HB PLQ K", receive=True) -> dict:
    (order,) = cli.json_lines("orders", "create", "--lab", finess, "--patient", patient_id,
                              "--tests", tests, "--prescriber-rpps", "10003456786",
                              "--prescriber-name", "Paul Bernard")
    if receive:
        cli.run("specimens", "receive", *order["barcodes"], "--lab", finess)
    return order


def edta(order: dict) -> str:
    return next(s["barcode"] for s in order["specimens"] if s["specimen_type"] == "EDTA")


def oru(barcode: str, observations: list[str], control_id: str = "MSG00001") -> str:
    return "\r".join([
        f"MSH|^~\\&|SYSMEX|LABO|COFFRE||20240312083000||ORU^R01|{control_id}|P|2.5",
        "PID|1||X1||DUPONTEL^JEANNE||19700101|F",
        f"OBR|1||{barcode}|CBC",
        *[f"OBX|{n}|{obs}" for n, obs in enumerate(observations, start=1)]]) + "\r"


def one_line_error(result, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coffre: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_an_order_prints_its_number_and_barcodes(cli, finess, patient_id):
    order = new_order(cli, finess, patient_id, "NFS IONO", receive=False)
    assert re.fullmatch(r"\d{10}", order["order"]) and uuid.UUID(order["id"])
    assert order["barcodes"] == [s["barcode"] for s in order["specimens"]]
    assert {s["specimen_type"] for s in order["specimens"]} == {"EDTA", "SERUM"}
    assert set(result_states(cli, edta(order)).values()) == {"registered"}


@pytest.mark.parametrize(("args", "words"), [
    (["--tests", "NFS ZZZ9"], ["Unknown test code", "ZZZ9"]),
    (["--tests", ""], ["at least one test"]),
    (["--patient", str(uuid.UUID(int=7))], ["no patient", str(uuid.UUID(int=7))]),
    (["--patient", "Dupont"], ["--patient", "UUID"]),
    (["--prescriber-rpps", "123"], ["prescriber"]),
])
def test_a_bad_order_is_refused_clearly_and_records_nothing(cli, finess, patient_id, args,
                                                           words):
    before = query(cli, "SELECT COUNT(*) FROM lab_order")
    base = {"--lab": finess, "--patient": patient_id, "--tests": "K"}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    result = cli.run("orders", "create", *[x for kv in base.items() for x in kv],
                     check=False)
    one_line_error(result, *words)
    assert query(cli, "SELECT COUNT(*) FROM lab_order") == before


def test_an_unknown_lab_is_bad_input(cli, patient_id):
    result = cli.run("orders", "create", "--lab", "750000010", "--patient", patient_id,
                     "--tests", "K", check=False)
    one_line_error(result, "750000010")


def test_specimens_list_prints_json_lines_with_loinc_codes(cli, finess, patient_id):
    order = new_order(cli, finess, patient_id, "HB K")
    rows = {r["barcode"]: r for r in cli.json_lines("specimens", "list", "--lab", finess)}
    for barcode in order["barcodes"]:
        row = rows[barcode]
        assert set(row) >= {"barcode", "state", "order", "patient", "tests", "specimen_type"}
        assert row["state"] == "received" and row["order"] == order["order"]
        assert row["patient"] == patient_id
    assert rows[edta(order)]["tests"] == ["718-7"]
    registered = cli.json_lines("specimens", "list", "--lab", finess, "--state", "registered")
    assert registered and {r["state"] for r in registered} == {"registered"}
    one_line_error(cli.run("specimens", "list", "--lab", finess, "--state", "lost",
                           check=False), "unknown state", "received")


def test_hl7_import_prints_acks_then_refuses_a_bad_message_and_changes_nothing(
        cli, finess, patient_id, tmp_path):
    order = new_order(cli, finess, patient_id)
    good = tmp_path / "good.hl7"
    good.write_text(oru(edta(order), ["NM|718-7^Hb^LN||13.7|g/dL", "NM|PLQ^Plq^L||251|G/L"]))
    result = cli.run("hl7", "import", str(good), "--lab", finess)
    assert "MSA|AA|MSG00001|2 result(s) recorded" in result.stdout.splitlines()
    assert "\r" not in result.stdout and "1 accepted, 0 refused" in result.stderr
    assert set(result_states(cli, edta(order)).values()) == {"in_analysis"}

    other = new_order(cli, finess, patient_id)
    bad = tmp_path / "bad.hl7"
    bad.write_text(oru(edta(other), ["NM|718-7^Hb^LN||13.9|g/dL"], "MSG1") + "\n"
                   + oru(edta(other), ["NM|718-7^Hb^LN||14.1|g/dL", "NM|ZZZ9^X^L||9|x"],
                         "MSG2"))
    result = cli.run("hl7", "import", str(bad), "--lab", finess, "--summary", check=False)
    assert result.returncode == 2
    lines = result.stdout.splitlines()
    assert lines[0] == "AA MSG1 1 result(s) recorded"
    assert lines[1].startswith("AE MSG2 OBX 2: test code 'ZZZ9'")
    assert "1 accepted, 1 refused" in result.stderr
    states = result_states(cli, edta(other))
    assert states["718-7"] == "in_analysis" and states["777-3"] == "received"
    for secret in ("DUPONTEL", "JEANNE", "13.9", "14.1"):
        assert secret not in result.stdout + result.stderr


def test_hl7_import_reads_stdin_and_refuses_what_is_not_hl7(cli, finess, patient_id):
    order = new_order(cli, finess, patient_id, "K")
    (serum,) = order["barcodes"]
    result = cli.run("hl7", "import", "-", "--lab", finess,
                     stdin=oru(serum, ["NM|K^K^L||4.4|mmol/L"]).replace("\r", "\n"))
    assert "MSA|AA|MSG00001" in result.stdout
    assert result_states(cli, serum) == {"2823-3": "in_analysis"}
    one_line_error(cli.run("hl7", "import", "-", "--lab", finess, stdin="", check=False),
                   "no HL7 message")
    one_line_error(cli.run("hl7", "import", "/nonexistent.hl7", "--lab", finess,
                           check=False), "cannot read")
    wrong = cli.run("hl7", "import", "-", "--lab", finess, check=False,
                    stdin=oru(serum, ["NM|K^K^L||4.4|mmol/L"]).replace("ORU^R01", "ADT^A01"))
    assert wrong.returncode == 2 and "MSA|AR|" in wrong.stdout


def test_hl7_listen_refuses_a_remote_address_without_allow_remote(cli, finess):
    one_line_error(cli.run("hl7", "listen", "--port", "0", "--lab", finess, "--host",
                           "192.0.2.10", check=False), "192.0.2.10", "--allow-remote")


def test_hl7_listen_answers_an_analyser_and_stops_on_ctrl_c(cli, finess, patient_id):
    order = new_order(cli, finess, patient_id, "K")
    (serum,) = order["barcodes"]
    # Ctrl-C's default action even when the suite itself runs in the background (`cmd &`
    # ignores SIGINT, the children inherit that, and Python then never raises
    # KeyboardInterrupt).
    process = subprocess.Popen(
        [sys.executable, "-m", "coffre", "hl7", "listen", "--port", "0", "--lab", finess,
         "--allow", "127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = process.stdout.readline()
        match = re.match(r"listening on 127\.0\.0\.1:(\d+)", first)
        assert match, first + process.stderr.read() if process.poll() is not None else first
        port = int(match.group(1))
        ack = mllp.send("127.0.0.1", port, oru(serum, ["NM|2823-3^K^LN||3.9|mmol/L"]))
        assert hl7v2.ack_code(ack) == "AA"
        again = mllp.send("127.0.0.1", port, oru(serum, ["NM|ZZZ9^X^L||1|x"], "MSG2"))
        assert hl7v2.ack_code(again) == "AE"
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "AA MSG00001 1 result(s) recorded" in out and "stopped" in out
    assert "Traceback" not in err and "3.9" not in out + err
    assert result_states(cli, serum) == {"2823-3": "in_analysis"}


@pytest.mark.parametrize(("args", "words"), [
    (["--allow", "127.0.0.1,10.0.0.300"], ["--allow", "10.0.0.300"]),
    (["--allow", ""], ["no analyser address", "--allow", "hl7 analysers"]),
    (["--allow", "127.0.0.1", "--tls-cert", "cert.pem"], ["--tls-key", "--tls-client-ca"]),
    (["--allow", "127.0.0.1", "--tls-cert", "/nowhere/c.pem", "--tls-key", "/nowhere/k.pem",
      "--tls-client-ca", "/nowhere/ca.pem"], ["cannot read", "/nowhere/c.pem"]),
])
def test_hl7_listen_refuses_a_missing_allow_list_or_incomplete_tls(cli, finess, args,
                                                                   words):
    one_line_error(cli.run("hl7", "listen", "--port", "0", "--lab", finess, *args,
                           check=False), *words)


def test_hl7_analysers_stores_the_labs_allow_list_which_listen_uses(cli, finess,
                                                                    patient_id):
    assert cli.run("hl7", "analysers", "--lab", finess).stdout.strip() == ""
    one_line_error(cli.run("hl7", "listen", "--port", "0", "--lab", finess, check=False),
                   "no analyser address", finess)
    one_line_error(cli.run("hl7", "analysers", "--lab", finess, "--set", "10.0.0.5,x",
                           check=False), "'x'", "nothing was changed")
    stored = cli.run("hl7", "analysers", "--lab", finess, "--set", "10.0.0.0/28, 127.0.0.1")
    assert stored.stdout.strip() == "10.0.0.0/28,127.0.0.1"
    assert cli.run("hl7", "analysers", "--lab", finess).stdout.strip() == stored.stdout.strip()
    order = new_order(cli, finess, patient_id, "K")
    process = subprocess.Popen(
        [sys.executable, "-m", "coffre", "hl7", "listen", "--port", "0", "--lab", finess],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli.env)
    try:
        first = process.stdout.readline()
        port = int(re.match(r"listening on 127\.0\.0\.1:(\d+)", first).group(1))
        assert "10.0.0.0/28,127.0.0.1" in first
        ack = mllp.send("127.0.0.1", port, oru(order["barcodes"][0],
                                                ["NM|2823-3^K^LN||4.0|mmol/L"]))
        assert hl7v2.ack_code(ack) == "AA"
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    cli.run("hl7", "analysers", "--lab", finess, "--set", "")
    assert cli.run("hl7", "analysers", "--lab", finess).stdout.strip() == ""


def test_a_result_edited_in_the_database_stops_the_report_and_alerts(cli, finess):
    """An intruder relabels a published result (a haemoglobin becomes a CRP) with SQL:
    the report command refuses it, names the row and not the value, and the DPO's
    alerts list it."""
    (number, row_id, loinc) = query(
        cli, "SELECT o.number, r.id, r.loinc FROM lab_order o JOIN lab_result r ON "
             "r.order_id = o.id JOIN labs_lab l ON o.lab_id = l.id WHERE r.state = "
             "'published' AND l.finess = ? AND r.loinc = '718-7' ORDER BY o.number DESC",
        finess)[0]
    row = str(uuid.UUID(str(row_id)))
    cli.sql(f"UPDATE lab_result SET loinc = '1988-5' WHERE id = '{row_id}'")  # noqa: S608 - an id read back from the test database
    try:
        refused = cli.run("report", "pdf", "--order", number, "--lab", finess, "--out",
                          str(cli.home / "tampered.pdf"), check=False)
        assert refused.returncode == 1 and not (cli.home / "tampered.pdf").exists()
        assert row in refused.stderr and "integrity" in refused.stderr
        assert "Traceback" not in refused.stderr
        exported = cli.run("hl7", "export", "--order", number, "--lab", finess, check=False)
        assert exported.returncode == 1 and row in exported.stderr
        alerts = [a for a in cli.json_lines("audit", "alerts") if a["kind"] == "tampering"]
        assert len(alerts) == 2 and row in alerts[0]["summary"]
        assert alerts[0]["person"].startswith("os:")
    finally:
        cli.sql(f"UPDATE lab_result SET loinc = '{loinc}' WHERE id = '{row_id}'")  # noqa: S608
    cli.run("report", "pdf", "--order", number, "--lab", finess, "--out",
            str(cli.home / "restored.pdf"))


def test_report_pdf_is_private_and_never_overwritten(cli, finess, patient_id, tmp_path):
    order = new_order(cli, finess, patient_id, "K")
    out = tmp_path / "cr.pdf"
    result = cli.run("report", "pdf", "--order", order["order"], "--lab", finess,
                     "--out", str(out))
    assert result.stdout.strip() == str(out)
    assert out.read_bytes().startswith(b"%PDF")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.write_bytes(b"mine")
    one_line_error(cli.run("report", "pdf", "--order", order["id"], "--out", str(out),
                           check=False), "exists", "--force")
    assert out.read_bytes() == b"mine"
    cli.run("report", "pdf", "--order", order["id"], "--out", str(out), "--force")
    assert out.read_bytes().startswith(b"%PDF")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


@pytest.mark.parametrize(("args", "words"), [
    (["--order", "2401010001"], ["--lab"]),
    (["--order", "0000000000", "--lab", "{finess}"], ["no order", "0000000000"]),
    (["--order", str(uuid.UUID(int=3))], ["no order"]),
])
def test_a_report_of_an_unknown_order_writes_nothing(cli, finess, tmp_path, args, words):
    out = tmp_path / "cr.pdf"
    args = [a.format(finess=finess) for a in args]
    one_line_error(cli.run("report", "pdf", *args, "--out", str(out), check=False), *words)
    assert not out.exists()


def test_hl7_export_of_a_published_demo_order_has_values_and_no_name(cli, finess, tmp_path):
    numbers = [r[0] for r in query(
        cli, "SELECT DISTINCT o.number FROM lab_order o JOIN lab_result r ON r.order_id = o.id "
             "JOIN labs_lab l ON o.lab_id = l.id WHERE r.state = 'published' AND l.finess = ? "
             "ORDER BY o.number", finess)]
    assert numbers, "the demo publishes orders"
    text = cli.run("hl7", "export", "--order", numbers[-1], "--lab", finess).stdout
    message = hl7v2.parse_oru(text)
    assert message.groups and all(o.value for g in message.groups for o in g.observations)
    pid = next(line for line in text.splitlines() if line.startswith("PID|"))
    uuid.UUID(pid.split("|")[3])
    out = tmp_path / "export.hl7"
    cli.run("hl7", "export", "--order", numbers[-1], "--lab", finess, "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert hl7v2.parse_oru(out.read_text()).groups
    one_line_error(cli.run("hl7", "export", "--order", "0000000000", "--lab", finess,
                           check=False), "no order")


def test_the_demo_fills_every_state(cli, finess):
    states = dict(query(
        cli, "SELECT r.state, COUNT(*) FROM lab_result r JOIN lab_order o ON r.order_id = o.id "
             "JOIN auth_user u ON o.created_by_id = u.id WHERE u.username = 'demo1' "
             "GROUP BY r.state"))
    assert set(states) >= {"registered", "received", "in_analysis", "tech_validated",
                           "published", "invalidated"}
    assert json.loads(json.dumps(states))  # counts only, no value


def test_prescriber_add_prints_a_temporary_password_once(cli):
    (account,) = cli.json_lines("prescriber", "add", "--rpps", "10009999995",
                                "--username", "dr.kervella")
    assert account["rpps"] == "10009999995" and len(account["temporary_password"]) >= 20
    stored = query(cli, "SELECT password FROM auth_user WHERE username = ?", "dr.kervella")
    assert stored[0][0].startswith("argon2") and account["temporary_password"] not in stored[0][0]
    refused = cli.run("prescriber", "add", "--rpps", "10009999995", "--username", "dr.bis",
                      check=False)
    assert refused.returncode == 2 and "already" in refused.stderr
