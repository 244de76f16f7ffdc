"""Load test: a lab group's day over PostgreSQL, through a real application server.

    .venv/bin/python bench/load.py                          # 100 users, 5 minutes
    .venv/bin/python bench/load.py --users 50 --duration 60 # a short run while developing

One command: (1) prepares an installation in a temporary COFFRE_HOME over the
PostgreSQL database ``coffre_h6load`` (dropped and created again; never ``coffre`` or
``test_coffre``): ``coffre init``, ``coffre generate`` (labs, patients and their
2015-2020 history), and one account per simulated person (staff with a confirmed TOTP
authenticator, as ``coffre demo`` makes them; patients with a portal account); (2)
starts the server (``coffre serve --production`` if this tree has it, else gunicorn);
(3) runs locust headless with bench/locustfile.py's mix; (4) prints requests per second,
median and p99 per kind and the error count; (5) checks that every write the server
acknowledged to the load generator is in the database, complete and decryptable.

The mass-reading detection would lock simulated staff reading hundreds of patients in a
few minutes (that is its job): the bench raises every lab's thresholds (AuditSettings)
to 1,000,000, and says so. Nothing else differs from a real installation.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = "postgresql://postgres@127.0.0.1:5432/"
FORBIDDEN_DATABASES = {"coffre", "test_coffre", "postgres"}
# As the locustfile's weights.
ROLES = {"secretary": 4, "technician": 3, "biologist": 1, "patient": 2, "fhir": 1}
SEED = 2021


def ensure_locust() -> None:
    """locust is in the ``bench`` extra of pyproject.toml; install it when missing."""
    if importlib.util.find_spec("locust") is None:
        print("locust is missing: installing locust==2.47.0 (the bench extra)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "locust==2.47.0"], check=True)


def coffre(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "coffre", *args], check=True,
                   stdout=subprocess.DEVNULL)


def fresh_database(name: str) -> None:
    if name in FORBIDDEN_DATABASES:
        raise SystemExit(f"refusing to use the database {name!r}: it is not the bench's")
    import psycopg

    with psycopg.connect(PG + "postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def per_role(users: int) -> dict[str, int]:
    """How many of each simulated person locust starts (its weights), with one spare."""
    total = sum(ROLES.values())
    return {role: math.ceil(users * weight / total) + 1 for role, weight in ROLES.items()}


def prepare(home: Path, patients: int, labs: int, users: int) -> Path:
    """The installation, its population and the load test's accounts (a JSON file)."""
    coffre("init")
    started = time.perf_counter()
    coffre("generate", "--patients", str(patients), "--labs", str(labs), "--seed", str(SEED))
    print(f"generated {patients} patients in {labs} labs with their history in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    import django

    django.setup()
    accounts = make_accounts(per_role(users), patients, labs)
    path = home / "load-accounts.json"
    from coffre.files import write_private

    write_private(path, json.dumps(accounts))
    return path


def _search_keys(patients: int, labs: int) -> list[list[tuple[str, str]]]:
    """Per lab, (birth name, birth date) of its generated patients, regenerated from the
    seed exactly as ``coffre generate`` made them (synthetic data only)."""
    from coffre.identity import synthetic
    from coffre.setup import _split

    keys, start = [], 0
    for size in _split(patients, labs, SEED):
        keys.append([(row["birth_name"], row["birth_date"]) for row in
                     synthetic.generate_patients(min(size, 200), SEED, start_index=start)])
        start += size
    return keys


def make_accounts(counts: dict[str, int], patients: int, labs: int) -> dict[str, list]:
    from django.contrib.auth import get_user_model

    from coffre.accounts import mfa
    from coffre.accounts.models import Membership
    from coffre.audit.models import AuditSettings
    from coffre.tenancy.models import Lab

    keys = _search_keys(patients, labs)
    every_lab = list(Lab.objects.order_by("id"))
    high = 1_000_000
    for lab in every_lab:
        AuditSettings.objects.update_or_create(lab=lab, defaults={
            "soft_per_10_minutes": high, "hard_per_10_minutes": high,
            "soft_per_hour": high, "hard_per_hour": high})
    print(f"mass-reading thresholds raised to {high:,} in every lab (AuditSettings): "
          "simulated staff read far more patients than a person", flush=True)
    accounts: dict[str, list] = {role: [] for role in counts}
    user_model = get_user_model()
    for role in ("secretary", "technician", "biologist"):  # staff; patient, fhir below
        for i in range(counts[role]):
            index = i % len(every_lab)
            lab, password = every_lab[index], acceptable_password()
            user = user_model.objects.create_user(f"load-{role}-{i}", password=password)
            Membership.objects.create(user=user, lab=lab, role=role)
            accounts[role].append({"username": user.username, "password": password,
                                   "totp": mfa.enroll_confirmed(user), "lab": lab.finess,
                                   "patients": keys[index]})
    accounts["patient"] = portal_accounts(counts["patient"])
    accounts["fhir"] = fhir_clients(counts["fhir"], every_lab, keys)
    return accounts


def fhir_clients(count: int, labs: list, keys: list) -> list[dict]:
    """One API client per simulated FHIR client, with a bearer token for the whole run
    (COFFRE_API_TOKEN_MINUTES is raised for the bench in main)."""
    from coffre.apiclients import services
    from coffre.tenancy.actors import cli_actor

    made = []
    for i in range(count):
        index = i % len(labs)
        client, secret = services.register_client(labs[index], f"Charge {i}",
                                                  "system/*.read", cli_actor(labs[index].id))
        token = services.issue_token(services.authenticate_client(client.client_id, secret))
        made.append({"token": token.access_token, "lab": labs[index].finess,
                     "patients": keys[index]})
    return made


def acceptable_password() -> str:
    """A random password the password policy takes (a random one may hold "abcd")."""
    from coffre.accounts.passwords import password_problems

    while True:
        password = secrets.token_urlsafe(16)
        if not password_problems(password):
            return password


def portal_accounts(count: int) -> list[dict]:
    """Portal accounts of patients with published orders, through the activation code a
    secretary would print (coffre.portal.activation)."""
    from coffre.identity.models import Patient
    from coffre.identity.registry import open_patient
    from coffre.labwork.models import Order, ResultState
    from coffre.portal.activation import Activation, activate, issue_code
    from coffre.tenancy.actors import cli_actor

    chosen = (Order.unscoped.filter(results__state=ResultState.PUBLISHED)
              .values_list("patient_id", "lab_id").distinct()[:count])
    made = []
    for i, (patient_id, lab_id) in enumerate(chosen):
        code = issue_code(cli_actor(lab_id), patient_id)
        born = str(open_patient(Patient.unscoped.get(pk=patient_id), ["birth_date"])
                   .birth_date)  # ISO; the activation form takes it as typed, JJ/MM/AAAA
        password = acceptable_password()
        activate(Activation(code, "/".join(reversed(born.split("-"))), f"load-patient-{i}",
                            password))
        made.append({"username": f"load-patient-{i}", "password": password})
    if len(made) < count:
        raise SystemExit(f"only {len(made)} patients have published orders; "
                         "generate more patients")
    return made


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, workers: int, log: Path) -> subprocess.Popen:
    """h5's ``coffre serve --production`` when this tree has it, else gunicorn alone."""
    helps = subprocess.run([sys.executable, "-m", "coffre", "serve", "--help"],
                           capture_output=True, text=True).stdout
    if "--production" in helps:
        command = [sys.executable, "-m", "coffre", "serve", "--production", "--host",
                   "127.0.0.1", "--port", str(port)]
        if "--skip-checks" in helps:  # loopback, synthetic patients: no TLS to check
            command.append("--skip-checks")
        if "--workers" in helps:
            command += ["--workers", str(workers)]
    else:
        command = [str(Path(sys.executable).parent / "gunicorn"), "coffre.wsgi:application",
                   "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    print("server: " + " ".join(command[1:] if command[0] == sys.executable else command),
          flush=True)
    server = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT,
                              cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/connexion/", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped: see {log}") from None
            time.sleep(0.3)
    raise SystemExit(f"the server did not answer within 60 s: see {log}")


def run_locust(port: int, users: int, spawn_rate: int, duration: int, accounts: Path,
               writes: Path, prefix: Path, wait: str, server_pid: int) -> None:
    env = {**os.environ, "H6_LOAD_ACCOUNTS": str(accounts), "H6_LOAD_WRITES": str(writes),
           "H6_LOAD_WAIT": wait, "H6_LOAD_LOGINS": f"{prefix}_logins.json",
           "H6_SERVER_PID": str(server_pid)}
    # Logging in is not the measured load (the locustfile resets the statistics once
    # everyone has): give the ramp its time on top of the measured duration.
    duration += math.ceil(users / spawn_rate) + 30
    subprocess.run([sys.executable, "-m", "locust", "-f", str(ROOT / "bench" /
                    "locustfile.py"), "--headless", "-u", str(users), "-r", str(spawn_rate),
                    "-t", f"{duration}s", "--host", f"http://127.0.0.1:{port}", "--csv",
                    str(prefix), "--only-summary", "--loglevel", "WARNING",
                    ], env=env, check=False, cwd=ROOT)


def report(prefix: Path) -> dict:
    logins = json.loads(Path(f"{prefix}_logins.json").read_text())
    print(f"\nlogins (before the measure): {logins['ok']} ok, {logins['failed']} failed, "
          f"median {logins['median_s']:.1f} s, slowest {logins['max_s']:.1f} s")
    with Path(f"{prefix}_stats.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    print(f"\n{'kind':45} {'requests':>9} {'req/s':>7} {'median':>7} {'p99':>7} "
          f"{'errors':>6}")
    total = {}
    for row in rows:
        name = row["Name"] if row["Name"] != "Aggregated" else "ALL"
        print(f"{name:45} {row['Request Count']:>9} {float(row['Requests/s']):7.1f} "
              f"{row['50%']:>5}ms {row['99%']:>5}ms {row['Failure Count']:>6}")
        if row["Name"] == "Aggregated":
            total = row
    failures = Path(f"{prefix}_failures.csv")
    if failures.exists():
        with failures.open() as handle:
            for row in list(csv.DictReader(handle))[:10]:
                print(f"  error: {row['Name']}: {row['Error']} x{row['Occurrences']}")
    cpu_report(logins.get("cpu_seconds", {}), int(total.get("Request Count", 0)))
    return total


def cpu_report(seconds: dict[str, float], requests: int) -> None:
    """CPU per request over the measured window, and the throughput the machine's cores
    allow at that cost: the ceiling no tuning of workers or threads can pass."""
    if not seconds or not requests:
        return
    per = {name: 1000 * value / requests for name, value in seconds.items()}
    cores = os.cpu_count() or 1
    print(f"\nCPU per request: server {per['server']:.1f} ms, PostgreSQL "
          f"{per['database']:.1f} ms, load generator {per['generator']:.1f} ms")
    served = per["server"] + per["database"]
    print(f"ceiling on {cores} cores: {1000 * cores / (served + per['generator']):.0f} req/s "
          f"with the load generator here, {1000 * cores / served:.0f} req/s without it")


def verify(writes: Path) -> list[str]:
    """Every acknowledged write, read back from the database (decrypted through the
    access layer as the CLI would: those reads are in the access log as os:<user>)."""
    from coffre.labwork import access
    from coffre.labwork.models import Order, Result, ResultState, Specimen
    from coffre.tenancy.actors import cli_actor

    lines = [json.loads(line) for line in writes.read_text().splitlines() if line]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for line in lines:
        by_kind[line["kind"]].append(line)
    problems = []
    for order in by_kind["order"]:
        row = Order.unscoped.filter(id=order["id"], number=order["number"]).first()
        if row is None or Result.unscoped.filter(order=row).count() != 5:
            problems.append(f"order {order['number']}: missing or incomplete")
    received = [w["barcode"] for w in by_kind["received"]]
    present = set(Specimen.unscoped.filter(barcode__in=received, received_at__isnull=False)
                  .values_list("barcode", flat=True))
    problems += [f"specimen {b}: receipt lost" for b in received if b not in present]
    entered: dict[str, dict[str, str]] = defaultdict(dict)
    for w in by_kind["entered"]:
        entered[w["order"]][w["result"]] = w["value"]
    for order_id, values in entered.items():
        lab_id = Order.unscoped.get(id=order_id).lab_id
        seen = {str(r.id): r for r in access.access_order(cli_actor(lab_id), order_id).results}
        for result_id, value in values.items():
            view = seen.get(result_id)
            if view is None or view.value != value or view.state not in (
                    ResultState.TECH_VALIDATED, ResultState.BIO_VALIDATED,
                    ResultState.PUBLISHED):
                problems.append(f"result {result_id}: value or state lost")
    validated = [w["result"] for w in by_kind["validated"]]
    done = set(str(i) for i in Result.unscoped.filter(
        id__in=validated, state__in=[ResultState.BIO_VALIDATED, ResultState.PUBLISHED])
        .values_list("id", flat=True))
    problems += [f"result {r}: validation lost" for r in validated if r not in done]
    print(f"\nacknowledged writes checked: {len(by_kind['order'])} orders, {len(received)} "
          f"receipts, {len(by_kind['entered'])} results entered, {len(validated)} "
          f"results validated; {len(problems)} lost", flush=True)
    return problems


def profile(accounts_path: Path, rounds: int) -> None:
    """Each kind of request alone, in this process (Django test client, same database):
    median service time and queries, then cProfile of the slowest. One request at a time,
    so this is the server's cost without queueing: capacity ~ cores / service time."""
    import cProfile
    import pstats
    import statistics

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    accounts = json.loads(accounts_path.read_text())
    sec, tech, bio = (_client(accounts[r][0]["username"])
                      for r in ("secretary", "technician", "biologist"))
    patient = _client(accounts["patient"][0]["username"])
    name, born = accounts["secretary"][0]["patients"][0]
    found = sec.post("/patients/", {"name": name, "birth_date": born})
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    record = re.search(rf'href="(/patients/{uuid}/)"', found.content.decode())[1]
    order = re.search(rf'href="/portail/demandes/({uuid})/"',
                      patient.get("/portail/").content.decode())[1]
    kinds = {
        "secretary: search patient": lambda: sec.post("/patients/", {"name": name,
                                                                     "birth_date": born}),
        "secretary: patient record": lambda: sec.get(record),
        "secretary: order form": lambda: sec.get(record + "demandes/nouvelle/"),
        "secretary: register order": lambda: sec.post(
            record + "demandes/nouvelle/", {"quick_codes": "IONO", "prescriber_rpps":
                                            "10003456786"}),
        "technician: worklist": lambda: tech.get("/paillasses/"),
        "technician: entry grid": lambda: tech.get("/saisie/?paillasse=BIOCHIMIE"),
        "biologist: validation queue": lambda: bio.get("/validation/"),
        "patient: portal home": lambda: patient.get("/portail/"),
        "patient: order results": lambda: patient.get(f"/portail/demandes/{order}/"),
        "patient: report PDF": lambda: patient.get(f"/portail/demandes/{order}/"
                                                   "compte-rendu.pdf"),
    }
    print(f"\n{'kind (one at a time, in process)':40} {'median':>8} {'queries':>8}")
    slowest, worst = "", 0.0
    for kind, call in kinds.items():
        times = []
        for _ in range(rounds):
            with CaptureQueriesContext(connection) as queries:
                started = time.perf_counter()
                response = call()
                times.append((time.perf_counter() - started) * 1000)
            assert response.status_code in (200, 302), (kind, response.status_code)
        median = statistics.median(times)
        print(f"{kind:40} {median:6.1f}ms {len(queries):8}")
        if median > worst and kind != "patient: report PDF":
            slowest, worst = kind, median
    for kind in (slowest, "patient: report PDF"):
        print(f"\ncProfile of one '{kind}' (cumulative, top 15):")
        profiler = cProfile.Profile()
        profiler.runcall(kinds[kind])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(r"coffre|django/(db|temp)",
                                                                     15)


def _client(username: str):
    """A logged-in browser for ``username`` (second factor marked done, as bench/lab.py)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from coffre.accounts import mfa

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    session = client.session
    mfa.mark_verified(session)
    session.save()
    return client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--spawn-rate", type=float, default=2,
                        help="users started (logging in) per second")
    parser.add_argument("--duration", type=int, default=300, help="seconds of load")
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--labs", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1)
    parser.add_argument("--wait", default="0.5,1.5",
                        help="think time between two tasks of a person, min,max seconds")
    parser.add_argument("--database", default="coffre_h6load")
    parser.add_argument("--keep", action="store_true", help="keep COFFRE_HOME and the CSVs")
    parser.add_argument("--profile", type=int, default=0, metavar="ROUNDS",
                        help="then time each kind alone ROUNDS times and cProfile the slowest")
    args = parser.parse_args()
    ensure_locust()
    home = Path(tempfile.mkdtemp(prefix="coffre-load-"))
    os.environ.update({"COFFRE_HOME": str(home), "COFFRE_DATABASE_URL": PG + args.database,
                       "COFFRE_ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
                       "COFFRE_API_TOKEN_MINUTES": "600"})
    server = None
    try:
        fresh_database(args.database)
        accounts = prepare(home, args.patients, args.labs, args.users)
        port = free_port()
        server = start_server(port, args.workers, home / "server.log")
        writes, prefix = home / "writes.jsonl", home / "locust"
        print(f"load: {args.users} users for {args.duration} s; load average before: "
              f"{os.getloadavg()}", flush=True)
        run_locust(port, args.users, args.spawn_rate, args.duration, accounts, writes,
                   prefix, args.wait, server.pid)
        print(f"load average after: {os.getloadavg()} ({os.cpu_count()} CPUs)")
        total = report(prefix)
        problems = verify(writes) if writes.exists() else ["no write was recorded"]
        for problem in problems[:20]:
            print(f"LOST: {problem}")
        errors = int(total.get("Failure Count", 1)) + json.loads(
            Path(f"{prefix}_logins.json").read_text())["failed"]
        if args.profile:
            profile(accounts, args.profile)
        return 0 if not problems and not errors else 1
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
        if args.keep:
            print(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
