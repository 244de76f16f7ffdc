"""kill -9 in the middle of work: the server while clients write, and long commands.

Each test runs real processes (gunicorn, ``coffre ...``) on an installation of its own
(tests/cli_helpers.make_cli: a private COFFRE_HOME, and on PostgreSQL a database of its
own), kills them with SIGKILL once progress shows, and then checks, from a fresh process
that opens the vault (``_child``): every write that was acknowledged is there and
complete, nothing is half-written (every patient and order opens, every order has its
specimens and results), and a rerun resumes or refuses cleanly.

Section 3 kills ``coffre restore``, ``coffre keys reencrypt`` and ``coffre export run``
at the moment each must survive (COFFRE_TEST_KILL_AT, coffre/faults.py: the process
SIGKILLs itself there): a restore after the swap and before the erasures are back, a
re-encryption inside a patient's transaction, an export while its file is written and
once it is in place but not yet recorded. tests/test_rotation.py also interrupts
``rotate`` and ``reencrypt`` in-process (an exception), and bench/rotation.py
--kill-after kills a long ``coffre keys reencrypt`` on a timer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

import pytest

from coffre.vault import otp_code, otp_counter, otp_secret_from_base32
from tests.cli_helpers import Cli, drop_database, free_port, make_cli, printed_auditor_key

ROOT = Path(__file__).resolve().parent.parent
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
IONO = {"NA": "140", "K": "4.2", "CL": "102", "BICAR": "26", "PROT": "70"}


@pytest.fixture
def cli(tmp_path):
    cli, database = make_cli(tmp_path / "home")
    printed = cli.run("init").stdout
    # The auditor keeps the key `init` printed once, off the machine (here: outside home).
    cli.auditor_key = tmp_path / "auditor.key"
    cli.auditor_key.write_text(printed_auditor_key(printed) + "\n")
    cli.run("generate", "--patients", "30", "--labs", "1", "--seed", "9")
    yield cli
    drop_database(database)


def inside(cli: Cli, name: str, *args) -> dict:
    """Run ``_child`` function ``name`` in a new process on the CLI's installation."""
    done = subprocess.run([sys.executable, "-c", "from tests.test_faults import _child; "
                           "_child()", name, json.dumps(args)], capture_output=True,
                          text=True, env=cli.env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def kill_when(process: subprocess.Popen, ready, timeout: float = 20) -> None:
    """SIGKILL ``process`` (its whole process group) as soon as ``ready()`` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "finished before it could be killed: make it longer"
        assert time.monotonic() < deadline, "no progress before the deadline"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


# -- 1. the server killed while clients write ------------------------------------------

def start_server(cli: Cli, port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "coffre.wsgi:application",
         "-b", f"127.0.0.1:{port}", "-w", "2"], env={**cli.env,
                                                    "COFFRE_ALLOWED_HOSTS": "127.0.0.1"},
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if fetch(urllib.request.build_opener(), f"http://127.0.0.1:{port}/connexion/"
                     ).status == 200:
                return server
        except OSError:  # not listening yet, or busy starting
            time.sleep(0.2)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError("the server did not start")


@dataclass
class Page:
    status: int
    url: str
    text: str


def fetch(opener, url: str, data: bytes | None = None, headers: dict | None = None
          ) -> Page:
    """GET or POST, redirects followed; an HTTP error status is a Page too. A server
    that is gone raises OSError (URLError, ConnectionError)."""
    request = urllib.request.Request(url, data=data, headers=headers or {})  # noqa: S310
    try:
        with opener.open(request, timeout=10) as response:
            return Page(response.status, response.geturl(), response.read().decode())
    except urllib.error.HTTPError as error:
        return Page(error.code, error.geturl(), error.read().decode(errors="replace"))
    except http.client.HTTPException as error:  # killed mid-answer: not acknowledged
        raise ConnectionError("the server went away during the answer") from error


class Client:
    """A staff member's browser: session cookie, CSRF token, second factor."""

    def __init__(self, base: str, account: dict) -> None:
        self.base, self.cookies = base, CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(
            self.cookies))
        self.get("/connexion/")
        self.post("/connexion/", {"username": account["username"],
                                  "password": account["password"]})
        secret = otp_secret_from_base32(account["totp"])
        page = self.post("/connexion/code/", {"code": otp_code(secret, otp_counter(
            time.time()))})
        assert "/connexion/" not in page.url, "login failed"

    def get(self, path: str) -> Page:
        return fetch(self.opener, self.base + path)

    def post(self, path: str, data: dict) -> Page:
        token = next((c.value for c in self.cookies if c.name == "csrftoken"), "")
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token, **data}, doseq=True)
        return fetch(self.opener, self.base + path, body.encode(),
                     {"Referer": self.base + path})

    def register(self, patient_id: str) -> dict | None:
        """An ionogram order; its id, number and barcode if the server said so."""
        page = self.post(f"/patients/{patient_id}/demandes/nouvelle/",
                         {"quick_codes": "IONO", "prescriber_rpps": "10003456786"})
        made = re.search(rf"/demandes/({UUID})/$", page.url)
        number = re.search(r"Demande (\S+) enregistr", page.text)
        barcode = re.search(r'name="barcode" value="([^"]+)"', page.text)
        if page.status == 200 and made and number and barcode:
            return {"id": made[1], "number": number[1], "barcode": barcode[1]}
        return None

    def receive_and_enter(self, barcode: str) -> bool:
        """Receipt, then the order's five values typed and validated technically."""
        page = self.post("/reception/", {"barcode": barcode})
        if page.status != 200 or f"{barcode} réceptionné" not in page.text:
            return False
        grid = self.get("/saisie/?paillasse=BIOCHIMIE").text
        block = re.search(rf'<span class="mono">{barcode}</span>(.*?)</tbody>', grid, re.S)
        rows = re.findall(rf'<span class="muted small">([^<]+)</span>.*?name="value-({UUID})"',
                          block[1] if block else "", re.S)
        data = {f"value-{rid}": IONO[code] for code, rid in rows}
        page = self.post("/saisie/?paillasse=BIOCHIMIE", {**data, "validate": [r for _, r in
                                                                               rows]})
        return page.status == 200 and f"{len(rows)} résultat(s) enregistré(s), " \
            f"{len(rows)} validé(s) techniquement" in page.text


def fhir_patient(row: dict[str, str]) -> dict:
    """A generated registry row as the FHIR Patient a lab's software would POST."""
    return {"resourceType": "Patient",
            "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": row["nir"]}],
            "name": [{"use": "official", "family": row["birth_name"],
                      "given": row["first_names"].split()}],
            "gender": {"M": "male", "F": "female"}[row["sex"]],
            "birthDate": row["birth_date"]}


def write_until_killed(base: str, setup: dict, acknowledged: dict,
                       clients: list[Client]) -> list[threading.Thread]:
    """Two secretaries registering orders, a technician entering their results and a
    lab's software registering patients over FHIR, each noting what the server
    acknowledged, until the server goes away."""
    from coffre.identity.synthetic import generate_patients

    queue: list[dict] = []

    def registrar() -> None:
        headers = {"Authorization": f"Bearer {setup['token']}",
                   "Content-Type": "application/fhir+json"}
        opener = urllib.request.build_opener()
        for row in generate_patients(5_000, seed=55, start_index=200_000):
            try:
                made = fetch(opener, f"{base}/fhir/Patient",
                             json.dumps(fhir_patient(row)).encode(), headers)
            except OSError:
                return
            if made.status == 201:
                acknowledged["patients"].append({"id": json.loads(made.text)["id"],
                                                 "nir": row["nir"]})

    def secretary(account: dict, offset: int) -> None:
        client = Client(base, account)
        clients.append(client)
        for i in range(10_000):
            try:
                order = client.register(setup["patients"][(offset + i) % 30])
            except OSError:  # the server is gone
                return
            if order:
                acknowledged["orders"].append(order)
                queue.append(order)

    def technician(account: dict) -> None:
        client = Client(base, account)
        while True:
            if not queue:
                time.sleep(0.02)
                continue
            order = queue.pop(0)
            try:
                if client.receive_and_enter(order["barcode"]):
                    acknowledged["entered"].append(order)
            except OSError:  # the server is gone
                return

    threads = [threading.Thread(target=secretary, args=(setup["secretaries"][n], n * 7),
                                daemon=True) for n in range(2)]
    threads.append(threading.Thread(target=technician, args=(setup["technician"],),
                                    daemon=True))
    threads.append(threading.Thread(target=registrar, daemon=True))
    for thread in threads:
        thread.start()
    return threads


def test_acknowledged_orders_and_results_survive_a_server_killed_mid_write(cli):
    setup = inside(cli, "staff")
    port = free_port()
    server = start_server(cli, port)
    acknowledged: dict[str, list] = {"orders": [], "entered": [], "patients": []}
    clients: list[Client] = []
    try:
        threads = write_until_killed(f"http://127.0.0.1:{port}", setup, acknowledged,
                                     clients)
        kill_when(server, lambda: len(acknowledged["entered"]) >= 3
                  and len(acknowledged["orders"]) >= 8 and len(acknowledged["patients"]) >= 3)
        for thread in threads:
            thread.join(15)
        assert not any(thread.is_alive() for thread in threads)
        server = start_server(cli, port)
        check = inside(cli, "check", acknowledged)
        assert check["problems"] == []
        assert check["patients"] >= 30 + len(acknowledged["patients"])
        assert check["orders"] >= len(acknowledged["orders"]) >= 8
        # The restarted server serves and writes again, in the sessions opened before.
        assert clients[0].register(setup["patients"][0]) is not None
    finally:
        with contextlib.suppress(ProcessLookupError):  # already killed if the restart failed
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


# -- 2. long commands killed mid-way ---------------------------------------------------

def count(cli: Cli, sql: str) -> int:
    """A count read straight from the database (no vault), for polling progress."""
    url = cli.env.get("COFFRE_DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            return conn.execute(sql).fetchone()[0]
    import sqlite3

    # closing(): sqlite3's own context manager commits but leaves the file open.
    with contextlib.closing(sqlite3.connect(f"file:{cli.home / 'coffre.sqlite3'}?mode=ro",
                                            uri=True, timeout=5)) as db:
        return db.execute(sql).fetchone()[0]


def popen(cli: Cli, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "coffre", *args], env=cli.env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def writing_patients(cli: Cli, wal_at_start: int) -> bool:
    """The import's single transaction has started inserting patients (not committed):
    PostgreSQL shows its INSERT; SQLite's write-ahead log grows as pages spill to it."""
    if cli.env.get("COFFRE_DATABASE_URL"):
        return count(cli, "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = "
                          "current_database() AND query ILIKE 'insert into%identity_patient%'"
                     ) > 0
    return wal_size(cli) > wal_at_start + 1_000_000


def wal_size(cli: Cli) -> int:
    wal = cli.home / "coffre.sqlite3-wal"
    return wal.stat().st_size if wal.exists() else 0


def test_a_killed_registry_import_writes_nothing_and_the_rerun_imports_all(cli, tmp_path):
    finess = cli.json_lines("lab", "list")[0]["finess"]
    path = tmp_path / "registry.csv"
    inside(cli, "registry_csv", str(path), 6000)
    before = count(cli, "SELECT COUNT(*) FROM identity_patient")
    wal = wal_size(cli)
    process = popen(cli, "import", "patients", str(path), "--lab", finess)
    # The import validates every row, then writes them all in one transaction: kill it
    # once that transaction is writing.
    kill_when(process, lambda: writing_patients(cli, wal))
    assert count(cli, "SELECT COUNT(*) FROM identity_patient") == before
    rerun = cli.run("import", "patients", str(path), "--lab", finess)
    assert "imported 6000 patients" in rerun.stdout
    check = inside(cli, "consistent")
    assert check["problems"] == [] and check["patients"] == before + 6000


def test_a_killed_generation_leaves_whole_rows_and_the_rerun_resumes(cli):
    arguments = ("generate", "--patients", "3000", "--labs", "3", "--seed", "5")
    process = popen(cli, *arguments)
    base = count(cli, "SELECT COUNT(*) FROM lab_order")
    # Killed while the labs' histories are being written (one transaction per batch).
    kill_when(process, lambda: count(cli, "SELECT COUNT(*) FROM lab_order") > base + 300)
    check = inside(cli, "consistent")
    assert check["problems"] == [], check["problems"][:5]
    rerun = cli.run(*arguments, check=False)
    assert rerun.returncode == 0, rerun.stderr[-500:]
    # Finished labs are kept, the unfinished one is emptied and made again.
    assert "already made by an earlier run" in rerun.stdout or "generated 3000" in rerun.stdout
    again = inside(cli, "consistent")
    assert again["problems"] == [] and again["patients"] == 30 + 3000


def test_a_killed_analyser_import_keeps_whole_messages_and_the_rerun_completes(cli,
                                                                              tmp_path):
    made = inside(cli, "received_orders", 150)
    path = tmp_path / "results.hl7"
    path.write_text("".join(oru(barcode, value, n) for n, (barcode, value) in
                            enumerate(made["values"].items())), encoding="latin-1")
    entered = ("SELECT COUNT(*) FROM lab_result WHERE source = 'analyser' "
               "AND state = 'in_analysis'")
    process = popen(cli, "hl7", "import", str(path), "--lab", made["finess"], "--summary")
    kill_when(process, lambda: count(cli, entered) >= 10)
    first = inside(cli, "analyser_values", made["values"])
    assert first["wrong"] == [] and 10 <= first["recorded"] < 150
    rerun = cli.run("hl7", "import", str(path), "--lab", made["finess"], "--summary")
    assert "150 accepted, 0 refused" in rerun.stderr
    again = inside(cli, "analyser_values", made["values"])
    assert again["wrong"] == [] and again["recorded"] == 150
    assert inside(cli, "consistent")["problems"] == []


def oru(barcode: str, value: str, n: int) -> str:
    return "\r".join([
        f"MSH|^~\\&|COBAS|LABO|COFFRE|LAB|20240312083000||ORU^R01|MSG{n:05d}|P|2.5",
        "PID|1||PAT^^^LABO^PI||X^Y||19850314|F",
        f"OBR|1|ORD{n}|{barcode}|IONO|||20240312080000",
        f"OBX|1|NM|2823-3^Potassium^LN||{value}|mmol/L|||N|||F"]) + "\r\n"


# -- 3. restore, re-encryption and export killed at their worst moment -----------------
# COFFRE_TEST_KILL_AT (coffre/faults.py) makes the process SIGKILL itself at one named
# point: the moment a timer would only hit by luck.

def killed_at(cli: Cli, point: str, *args: str) -> None:
    result = cli.run(*args, check=False, extra_env={"COFFRE_TEST_KILL_AT": point})
    assert result.returncode == -signal.SIGKILL, (result.stdout, result.stderr[-2000:])


def keys_left(cli: Cli, ids: list[str]) -> int:
    """How many of these patients have a data key, read straight from the database."""
    sqlite = not cli.env.get("COFFRE_DATABASE_URL")  # Django stores UUIDs there as hex
    listed = ", ".join(f"'{uuid.UUID(i).hex if sqlite else uuid.UUID(i)}'" for i in ids)
    return count(cli, f"SELECT COUNT(*) FROM identity_patient WHERE id IN ({listed}) "  # noqa: S608 - parsed UUIDs
                      "AND data_key IS NOT NULL")


@pytest.mark.parametrize(("point", "first_start"), [("restore-replaced", "server"),
                                                    ("restore-replaced", "command"),
                                                    ("restore-recorded", "command")])
def test_a_restore_killed_before_its_erasures_are_reapplied_shows_no_erased_patient(
        cli, point, first_start):
    """Killed once the backup's database is the live one (its erased patients' keys
    back), before the erasure ledger is re-applied: whatever starts next, a command or
    the server, finishes the re-application before it serves anything."""
    made = inside(cli, "patients", 3)
    finess, erased = made["finess"], made["patients"]
    (backup,) = cli.json_lines("backup")
    for patient in erased:
        cli.run("patient", "erase", "--id", patient["id"], "--lab", finess, "--reason",
                "demande du patient", "--yes")
    ids = [p["id"] for p in erased]
    assert keys_left(cli, ids) == 0
    killed_at(cli, point, "restore", backup["path"], "--yes")
    assert keys_left(cli, ids) == 3  # the window the kill left open
    assert (cli.home / "restore-pending.json").exists()
    if first_start == "server":
        server = start_server(cli, free_port())
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
    else:
        found = cli.run("patient", "find", "--nir", erased[0]["nir"], "--lab", finess)
        assert found.stdout == "" and "finished the restore" in found.stderr
    assert keys_left(cli, ids) == 0
    assert not (cli.home / "restore-pending.json").exists()
    verified = cli.run("audit", "verify", "--auditor-key", str(cli.auditor_key))
    assert "1 database restore(s)" in verified.stdout  # recorded once, not per attempt
    assert inside(cli, "consistent")["problems"] == []


def test_a_restore_whose_ledger_cannot_be_reapplied_keeps_everything_stopped(cli):
    """The kill left the backup's database, and the ledger does not verify (altered):
    no command and no server starts until it is repaired; `coffre ledger reapply`
    then finishes the restore."""
    made = inside(cli, "patients", 1)
    (backup,) = cli.json_lines("backup")
    cli.run("patient", "erase", "--id", made["patients"][0]["id"], "--lab", made["finess"],
            "--reason", "demande du patient", "--yes")
    killed_at(cli, "restore-replaced", "restore", backup["path"], "--yes")
    ledger = cli.home / "ledger" / "erasures.jsonl"
    good = ledger.read_bytes()
    ledger.write_bytes(good.replace(b'"cause":"request"', b'"cause":"purge"'))
    refused = cli.run("lab", "list", check=False)
    assert refused.returncode == 2 and "is not finished" in refused.stderr
    assert "MAC does not verify" in refused.stderr and refused.stdout == ""
    server = subprocess.run([sys.executable, "-c", "import coffre.wsgi"], env=cli.env,
                            capture_output=True, text=True, timeout=120)
    assert server.returncode == 3 and "refusing to start" in server.stderr
    assert keys_left(cli, [made["patients"][0]["id"]]) == 1  # nothing served it meanwhile
    ledger.write_bytes(good)  # the off-site copy of the ledger put back
    cli.run("ledger", "reapply")
    assert keys_left(cli, [made["patients"][0]["id"]]) == 0
    assert cli.run("lab", "list").returncode == 0


def test_a_reencryption_killed_inside_a_patient_keeps_every_row_readable_and_resumes(cli):
    """Killed inside the 10th patient's transaction, every row of that patient re-sealed
    but not committed: nine patients are done, the tenth is as before (all its rows
    under its old key), all open; the rerun resumes after the ninth."""
    before = inside(cli, "data_keys")
    killed_at(cli, "reencrypt-patient:10", "keys", "reencrypt")
    (run,) = [row for row in cli.json_lines("keys", "status") if row["kind"] == "reencrypt"]
    assert run["patients_done"] == 9 and not run["finished"]
    middle = inside(cli, "data_keys")
    assert sum(middle[p] != before[p] for p in before) == 9
    assert inside(cli, "every_row")["problems"] == []
    (done,) = cli.json_lines("keys", "reencrypt")
    assert done["resumed"] and done["finished"] and done["reencrypted"] == len(before) - 9
    after = inside(cli, "data_keys")
    assert all(after[p] != before[p] for p in before)
    assert all(after[p] == middle[p] for p in before if middle[p] != before[p])  # not twice
    assert inside(cli, "every_row")["problems"] == []


@pytest.mark.parametrize("point", ["export-row:10", "export-written"])
def test_an_export_killed_mid_run_leaves_no_clear_file_nor_a_produced_request(cli, point,
                                                                               tmp_path):
    """Killed while the file is being written, or once it is in place but before the
    request is marked produced: nothing in clear anywhere, the request still approved
    (no watermark, no patient audited as exported, nothing to fetch); the staged
    leftover is swept once idle, and a rerun produces the export."""
    from coffre.vault import decrypt_with, new_recipient_identity

    identity, recipient = new_recipient_identity()
    export = inside(cli, "approved_export", recipient)
    killed_at(cli, point, "export", "run", str(export["id"]))
    staging = cli.home / "exports"
    leftovers = list(staging.iterdir())
    # Encrypted as produced: the leftover is age ciphertext (or still empty, the first
    # 64 KiB not yet written), never clear text.
    assert leftovers and all(p.read_bytes()[:21] in (b"", b"age-encryption.org/v1")
                             for p in leftovers)
    leak = cli.run("leakcheck", check=False)
    assert leak.returncode == 0 and "no patient value found" in leak.stdout, leak.stdout
    assert inside(cli, "export_state", export["id"]) == {
        "state": "approved", "watermarks": 0, "exported_patients": 0}
    fetched = cli.run("export", "fetch", str(export["id"]), "--out", str(tmp_path / "x"),
                      check=False)
    assert fetched.returncode != 0 and not (tmp_path / "x").exists()
    cli.run("export", "purge-expired")
    assert list(staging.iterdir()) == leftovers  # a run may still be writing it
    for path in leftovers:  # idle for 20 minutes: a dead run's
        os.utime(path, (time.time() - 1200, time.time() - 1200))
    cli.run("export", "purge-expired")
    assert list(staging.iterdir()) == []
    (done,) = cli.json_lines("export", "run", str(export["id"]))
    assert done["state"] == "produced"
    assert [p.name for p in staging.iterdir()] == [f"{export['id']}.csv.age"]
    rows = decrypt_with(identity, (staging / f"{export['id']}.csv.age").read_bytes())
    assert rows.decode().count("\n") >= 1 + export["patients"]
    assert inside(cli, "export_state", export["id"])["exported_patients"] == export["patients"]


# -- what the child processes run (a fresh process, the vault opened) ------------------

def _child() -> None:
    from coffre.cli import open_vault

    open_vault()
    name, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(CHILD[name](*args)))


def _lab():
    from coffre.tenancy.models import Lab

    return Lab.objects.order_by("id").first()


def _raise_thresholds() -> None:
    from coffre.audit.models import AuditSettings
    from coffre.tenancy.models import Lab

    high = 10**6
    for lab in Lab.objects.all():
        AuditSettings.objects.update_or_create(lab=lab, defaults={
            "soft_per_10_minutes": high, "hard_per_10_minutes": high,
            "soft_per_hour": high, "hard_per_hour": high})


def _staff() -> dict:
    """Two secretaries and a technician with their TOTP secrets; detection thresholds
    raised (the clients read a patient per request, as fast as they can)."""
    import secrets

    from django.contrib.auth import get_user_model

    from coffre.accounts import mfa
    from coffre.accounts.models import Membership
    from coffre.apiclients import services
    from coffre.identity.models import Patient
    from coffre.tenancy.actors import cli_actor

    lab = _lab()
    _raise_thresholds()
    accounts = []
    for name, role in (("sec1", "secretary"), ("sec2", "secretary"), ("tech", "technician")):
        password = secrets.token_urlsafe(16)
        user = get_user_model().objects.create_user(f"fault-{name}", password=password)
        Membership.objects.create(user=user, lab=lab, role=role)
        accounts.append({"username": user.username, "password": password,
                         "totp": mfa.enroll_confirmed(user)})
    patients = [str(p) for p in Patient.unscoped.filter(lab=lab).values_list("id", flat=True)]
    client, secret = services.register_client(lab, "Logiciel de test", "system/*.write",
                                              cli_actor(lab.id))
    token = services.issue_token(services.authenticate_client(client.client_id, secret))
    return {"secretaries": accounts[:2], "technician": accounts[2], "patients": patients,
            "token": token.access_token}


def _check(acknowledged: dict) -> dict:
    """Every acknowledged patient with its NIR; every acknowledged order with its
    specimen and five results; every acknowledged entry with its five values,
    technically validated; then the whole database."""
    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient
    from coffre.labwork import access
    from coffre.labwork.models import Order, ResultState
    from coffre.tenancy.actors import cli_actor

    actor = cli_actor(_lab().id)
    problems = []
    for patient in acknowledged["patients"]:
        row = Patient.unscoped.filter(id=patient["id"]).first()
        if row is None or open_patient(row, ["nir"]).nir != patient["nir"]:
            problems.append(f"patient {patient['id']} lost or not the one registered")
    for order in acknowledged["orders"]:
        row = Order.unscoped.filter(id=order["id"], number=order["number"]).first()
        if row is None or row.results.count() != 5 or not row.specimens.filter(
                barcode=order["barcode"]).exists():
            problems.append(f"order {order['number']} lost or incomplete")
    for order in acknowledged["entered"]:
        view = access.access_order(actor, order["id"])
        values = {r.test.code: (r.value, r.state) for r in view.results}
        if values != {code: (value, ResultState.TECH_VALIDATED)
                      for code, value in IONO.items()}:
            problems.append(f"order {order['number']}: entered results lost")
    whole = _consistent()
    return {"problems": problems + whole["problems"], "orders": whole["orders"],
            "patients": whole["patients"]}


def _consistent() -> dict:
    """Nothing half-written: every patient opens (but the erased), every order opens and
    has specimens and results, every result belongs to its order's patient and lab."""
    from django.db.models import Count, F

    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient
    from coffre.labwork import access
    from coffre.labwork.models import Order, Result
    from coffre.tenancy.actors import cli_actor

    _raise_thresholds()  # this check reads hundreds of orders in a second
    problems = []
    for patient in Patient.unscoped.filter(data_key__isnull=False):  # erased: unreadable
        try:
            open_patient(patient)
        except Exception as exc:  # any failure to open is the finding
            problems.append(f"patient {patient.id}: {type(exc).__name__}")
    orders = Order.unscoped.annotate(s=Count("specimens", distinct=True),
                                     r=Count("results", distinct=True))
    problems += [f"order {o.number}: no specimen or result" for o in orders
                 if not o.s or not o.r]
    problems += [f"result {r}: not its order's patient or lab" for r in Result.unscoped
                 .exclude(patient_id=F("order__patient_id"), lab_id=F("order__lab_id"))
                 .values_list("id", flat=True)]
    recent = Order.unscoped.filter(patient__data_key__isnull=False).order_by("-created_at")[:200]
    for order in recent:  # the newest are the ones a kill could have cut
        try:
            access.access_order(cli_actor(order.lab_id), order.id)
        except Exception as exc:  # any failure to open is the finding
            problems.append(f"order {order.number}: {type(exc).__name__}")
    return {"problems": problems, "patients": Patient.unscoped.count(),
            "orders": Order.unscoped.count()}


def _registry_csv(path: str, rows: int) -> dict:
    import csv

    from coffre.identity.registry import CSV_COLUMNS
    from coffre.identity.synthetic import generate_patients

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(generate_patients(rows, seed=77, start_index=100_000))
    return {}


def _patients(count: int) -> dict:
    """The lab's FINESS and ``count`` of its patients that have a NIR (id, NIR)."""
    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient

    lab = _lab()
    rows = Patient.unscoped.filter(lab=lab, data_key__isnull=False).order_by("id")
    with_nir = ({"id": str(p.id), "nir": open_patient(p, ["nir"]).nir} for p in rows)
    return {"finess": lab.finess,
            "patients": [p for p in with_nir if p["nir"]][:count]}


def _data_keys() -> dict:
    """Each patient's wrapped data key (hex): it changes when the patient is
    re-encrypted."""
    from coffre.identity.models import Patient

    return {str(pk): bytes(key).hex() for pk, key in
            Patient.unscoped.filter(data_key__isnull=False).values_list("id", "data_key")}


def _every_row() -> dict:
    """Every patient and every one of their orders (specimens, results) opens."""
    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient
    from coffre.labwork import access
    from coffre.labwork.models import Order
    from coffre.tenancy.actors import cli_actor

    _raise_thresholds()
    problems = []
    for patient in Patient.unscoped.filter(data_key__isnull=False):
        try:
            open_patient(patient)
        except Exception as exc:  # any failure to open is the finding
            problems.append(f"patient {patient.id}: {type(exc).__name__}")
    for order in Order.unscoped.all():
        try:
            view = access.access_order(cli_actor(order.lab_id), order.id)
            [result.value for result in view.results]
        except Exception as exc:  # any failure to open is the finding
            problems.append(f"order {order.number}: {type(exc).__name__}")
    return {"problems": problems}


def _approved_export(recipient: str) -> dict:
    """A CSV export of the lab's patients (all of them), requested and approved."""
    import datetime as dt

    from django.contrib.auth import get_user_model

    from coffre.accounts.models import Membership
    from coffre.exports import services

    lab = _lab()
    from tests.conftest import STAFF_PASSWORD, sign

    for name, role in (("fault-req", "secretary"), ("fault-resp", "lab_manager")):
        Membership.objects.create(user=get_user_model().objects.create_user(
            name, password=STAFF_PASSWORD), lab=lab, role=role)
    export = services.request_export(
        lab, purpose="migration", recipient="Éditeur", recipient_key=recipient,
        fields="nir,birth_name,first_names,phone", period_from=dt.date(2000, 1, 1),
        period_to=dt.date.today() + dt.timedelta(days=1), requested_by="fault-req")
    services.approve(export.pk, sign("fault-resp"), channel="cli", os_user="os:fault-resp")
    return {"id": export.pk, "patients": export.size_estimate}


def _export_state(export_id: int) -> dict:
    from coffre.audit.models import AccessEvent
    from coffre.exports.models import ExportRequest, ExportWatermark

    return {"state": ExportRequest.objects.get(pk=export_id).state,
            "watermarks": ExportWatermark.objects.filter(export_id=export_id).count(),
            "exported_patients": AccessEvent.objects.filter(action="export").count()}


def _received_orders(count: int) -> dict:
    """``count`` orders of one potassium each, received; the value each will get."""
    from coffre.identity.models import Patient
    from coffre.labwork import workflow
    from coffre.labwork.orders import OrderRequest, create_order
    from coffre.tenancy.actors import cli_actor

    lab = _lab()
    actor = cli_actor(lab.id)
    patients = list(Patient.unscoped.filter(lab=lab).values_list("id", flat=True))
    values = {}
    for i in range(count):
        order = create_order(actor, OrderRequest(patient_id=patients[i % len(patients)],
                                                 tests=("K",)))
        specimen = order.specimens.get()
        workflow.receive(actor, specimen.barcode)
        values[specimen.barcode] = f"{3.5 + (i % 15) / 10:.1f}"
    return {"finess": lab.finess, "values": values}


def _analyser_values(expected: dict) -> dict:
    """How many of the expected potassium values are recorded; any recorded one that
    differs from what the message said (a half-written result)."""
    from coffre.labwork import access
    from coffre.labwork.models import Result
    from coffre.tenancy.actors import cli_actor

    actor = cli_actor(_lab().id)
    recorded, wrong = 0, []
    rows = Result.unscoped.filter(specimen__barcode__in=list(expected), loinc="2823-3")
    for result in rows.select_related("specimen"):
        if result.source != "analyser":
            if result.state != "received":
                wrong.append(result.specimen.barcode)
            continue
        view = access.access_order(actor, result.order_id)
        value = next(r.value for r in view.results if r.id == result.id)
        recorded += 1
        if value != expected[result.specimen.barcode] or result.state != "in_analysis":
            wrong.append(result.specimen.barcode)
    return {"recorded": recorded, "wrong": wrong}


CHILD = {"staff": _staff, "patients": _patients, "data_keys": _data_keys,
         "every_row": _every_row, "approved_export": _approved_export,
         "export_state": _export_state, "check": _check, "consistent": _consistent,
         "registry_csv": _registry_csv, "received_orders": _received_orders,
         "analyser_values": _analyser_values}
