"""The load test's simulated people (run by bench/load.py, which prepares the accounts).

Each simulated person has an account of its own (the second factor refuses a TOTP code
already used, so two people cannot share one), logs in once at start (password, then
the TOTP code computed from the secret bench/load.py wrote), then loops:

- secretary: searches a patient by name and birth date (POST /patients/), opens the
  record, and one time in two registers an ionogram order for them (order form, POST);
- technician: takes an order of its lab registered by a secretary, receives its
  specimen (POST /reception/), opens the BIOCHIMIE entry grid and enters and technically
  validates the order's five values (POST /saisie/); with nothing to take, opens the
  worklist (GET /paillasses/);
- biologist: opens the validation queue and validates and publishes what it shows;
- patient: opens the portal, one of their published orders, and one time in four its
  PDF report;
- FHIR client (a lab's software, bearer token): searches a patient by name and birth
  date, reads the Patient and their DiagnosticReports.

Logins (Argon2id, then the TOTP code) are the start of the day, not its load: the
statistics are reset once every simulated person has logged in, and the logins are
summed up apart (H6_LOAD_LOGINS, a JSON file bench/load.py prints).

Every write the server acknowledged (its success message is on the page it redirected
to) is appended to H6_LOAD_WRITES as one JSON line; bench/load.py checks afterwards that
each of them is in the database. No patient value is written there: ids, numbers,
barcodes and the typed result values only.
"""

from __future__ import annotations

import collections
import json
import os
import random
import re
import sys
import time
import urllib.parse
from pathlib import Path

import gevent
from locust import HttpUser, between, events, task

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coffre.labwork import catalogue  # noqa: E402 - plain Python, no Django
from coffre.vault import otp_code, otp_counter, otp_secret_from_base32  # noqa: E402

ACCOUNTS = json.loads(Path(os.environ.get("H6_LOAD_ACCOUNTS", "accounts.json")).read_text())
WRITES = open(os.environ.get("H6_LOAD_WRITES", "writes.jsonl"), "a")  # noqa: SIM115
WAIT = tuple(float(x) for x in os.environ.get("H6_LOAD_WAIT", "0.5,1.5").split(","))
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
PRESCRIBER = {"prescriber_rpps": "10003456786", "prescriber_name": "Paul Bernard"}

# Orders registered by the secretaries of a lab, waiting for one of its technicians.
to_receive: dict[str, collections.deque] = collections.defaultdict(collections.deque)
_taken: set[tuple[str, int]] = set()
logins = {"ok": 0, "failed": 0, "seconds": []}
cpu: dict[str, dict[str, float]] = {}  # CPU seconds at the start of the measure


def record(kind: str, **fields) -> None:
    WRITES.write(json.dumps({"kind": kind, **fields}) + "\n")
    WRITES.flush()


def typical_value(code: str) -> str:
    """A value inside the adult reference range (no flag, no critical value)."""
    test = catalogue.find(code)
    rng = catalogue.reference_range(test, "", catalogue.ADULT_DAYS)
    low = rng.low if rng.low is not None else rng.high * 0.5
    high = rng.high if rng.high is not None else low * 2
    return f"{(low + high) / 2:.{test.decimals}f}"


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system) used so far by the server (its master and workers), by
    PostgreSQL (every postgres process) and by this load generator: over the measured
    window, their CPU per request shows what bounds the throughput of this machine."""
    import psutil

    def used(processes) -> float:
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    server = psutil.Process(int(os.environ["H6_SERVER_PID"]))
    return {"server": used([server, *server.children(recursive=True)]),
            "database": used(p for p in psutil.process_iter(["name"])
                             if p.info["name"] == "postgres"),
            "generator": used([psutil.Process()])}


class Person(HttpUser):
    abstract = True
    role = ""
    wait_time = between(*WAIT)

    def on_start(self) -> None:
        # One account per simulated person, never shared (see the module docstring).
        free = [i for i in range(len(ACCOUNTS[self.role])) if (self.role, i) not in _taken]
        if not free:
            raise RuntimeError(f"more simulated {self.role}s than accounts")
        _taken.add((self.role, free[0]))
        self.account = ACCOUNTS[self.role][free[0]]
        self.lab = self.account.get("lab", "")
        started = time.perf_counter()
        try:
            self.login()
        except Exception:
            logins["failed"] += 1
            self.day_starts()
            raise
        logins["ok"] += 1
        logins["seconds"].append(time.perf_counter() - started)
        self.day_starts()

    def day_starts(self) -> None:
        """Reset the statistics once every simulated person has tried to log in."""
        runner = self.environment.runner
        if logins["ok"] + logins["failed"] >= runner.target_user_count and not logins.get(
                "reset"):
            logins["reset"] = True
            runner.stats.reset_all()
            cpu["start"] = cpu_seconds()

    def post(self, url: str, data: dict, name: str, expect: str = ""):
        """POST a form (CSRF token from the page's cookie), follow the redirect, and mark
        the request failed unless the final page is 200 and shows ``expect``."""
        data = {"csrfmiddlewaretoken": self.client.cookies.get("csrftoken", ""), **data}
        with self.client.post(url, data=data, name=name, catch_response=True,
                              headers={"Referer": self.host + url}) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif expect and not re.search(expect, response.text):
                response.failure(f"no {expect!r} on the page")
            else:
                response.success()
            return response

    def get(self, url: str, name: str):
        with self.client.get(url, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            return response

    def login(self) -> None:
        self.get("/connexion/", "login: page")
        response = self.post("/connexion/", {"username": self.account["username"],
                                             "password": self.account["password"]},
                             "login: password (Argon2id)")
        if "totp" in self.account:
            secret = otp_secret_from_base32(self.account["totp"])
            used = -1
            for _attempt in range(3):  # a code that aged in the queue: type the next one
                step = otp_counter(time.time())
                if step == used:
                    gevent.sleep(30 - time.time() % 30 + 0.5)
                    step = otp_counter(time.time())
                used = step
                response = self.post("/connexion/code/", {"code": otp_code(secret, step)},
                                     "login: TOTP code")
                if "/connexion/code/" not in response.url:
                    break
        if "/connexion/" in response.url:
            raise RuntimeError(f"{self.account['username']} could not log in")


class Secretary(Person):
    role = "secretary"
    weight = 4

    @task
    def find_and_register(self) -> None:
        birth_name, birth_date = random.choice(self.account["patients"])
        page = self.post("/patients/", {"name": birth_name, "birth_date": birth_date},
                         "secretary: search patient")
        found = re.findall(rf'href="/patients/({UUID})/"', page.text)
        if not found:
            return
        patient = f"/patients/{found[0]}/"
        self.get(patient, "secretary: patient record")
        if random.random() < 0.5:
            return
        form = f"{patient}demandes/nouvelle/"
        self.get(form, "secretary: order form")
        response = self.post(form, {"quick_codes": "IONO", **PRESCRIBER},
                             "secretary: register order", expect=r"Demande \S+ enregistr")
        made = re.search(rf"/demandes/({UUID})/$", response.url or "")
        number = re.search(r"Demande (\S+) enregistr", response.text)
        if made and number:
            barcodes = re.findall(r'name="barcode" value="([^"]+)"', response.text)
            record("order", id=made[1], number=number[1], lab=self.lab, patient=found[0],
                   barcodes=barcodes)
            to_receive[self.lab].append((made[1], barcodes))


class Technician(Person):
    role = "technician"
    weight = 3

    @task
    def receive_and_enter(self) -> None:
        queue = to_receive[self.lab]
        if not queue:
            self.get("/paillasses/", "technician: worklist")
            return
        order_id, barcodes = queue.popleft()
        for barcode in barcodes:
            response = self.post("/reception/", {"barcode": barcode},
                                 "technician: receive specimen",
                                 expect=rf"chantillon {barcode} r\S+ceptionn")
            if response.ok and re.search(rf"chantillon {barcode} r", response.text):
                record("received", barcode=barcode, order=order_id, lab=self.lab)
        grid = self.get("/saisie/?paillasse=BIOCHIMIE", "technician: entry grid")
        values = {}
        for barcode in barcodes:
            block = re.search(rf'<span class="mono">{barcode}</span>(.*?)</tbody>',
                              grid.text, re.S)
            for code, result in re.findall(
                    rf'<span class="muted small">([^<]+)</span>.*?name="value-({UUID})"',
                    block[1] if block else "", re.S):
                values[result] = typical_value(code)
        if not values:
            return
        data = {f"value-{rid}": value for rid, value in values.items()}
        data["validate"] = list(values)
        response = self.post("/saisie/?paillasse=BIOCHIMIE", data,
                             "technician: enter and validate results",
                             expect=rf"{len(values)} r\S+sultat\(s\) enregistr\S+, "
                                    rf"{len(values)} valid")
        if response.ok and "validé(s) techniquement" in response.text:
            for rid, value in values.items():
                record("entered", result=rid, value=value, order=order_id, lab=self.lab)


class Biologist(Person):
    role = "biologist"
    weight = 1

    @task
    def validate_and_publish(self) -> None:
        queue = self.get("/validation/", "biologist: validation queue")
        ids = re.findall(rf'<input type="checkbox" name="result" value="({UUID})"[^>]*checked',
                         queue.text)
        if not ids:
            return
        response = self.post("/validation/", {"result": ids, "action": "publish"},
                             "biologist: validate and publish",
                             expect=rf"{len(ids)} r\S+sultat\(s\) valid")
        if response.ok and re.search(rf"{len(ids)} r\S+sultat\(s\) valid", response.text):
            for rid in ids:
                record("validated", result=rid, lab=self.lab)


class Patient(Person):
    role = "patient"
    weight = 2

    @task
    def open_report(self) -> None:
        home = self.get("/portail/", "patient: portal home")
        orders = re.findall(rf'href="/portail/demandes/({UUID})/"', home.text)
        if not orders:
            return
        order = random.choice(orders)
        self.get(f"/portail/demandes/{order}/", "patient: order results")
        if random.random() < 0.25:
            self.get(f"/portail/demandes/{order}/compte-rendu.pdf", "patient: report PDF")


class FhirClient(Person):
    """A lab's software over the FHIR API (one bearer token per lab, made by load.py)."""

    role = "fhir"
    weight = 1

    def login(self) -> None:
        self.client.headers["Authorization"] = f"Bearer {self.account['token']}"

    @task
    def read_patient(self) -> None:
        birth_name, birth_date = random.choice(self.account["patients"])
        query = urllib.parse.urlencode({"family": birth_name, "birthdate": birth_date})
        found = self.get(f"/fhir/Patient?{query}", "fhir: search Patient")
        ids = re.findall(rf'"resourceType": ?"Patient", ?"id": ?"({UUID})"', found.text)
        ids = ids or re.findall(rf'Patient/({UUID})', found.text)
        if not ids:
            return
        self.get(f"/fhir/Patient/{ids[0]}", "fhir: read Patient")
        self.get(f"/fhir/DiagnosticReport?patient={ids[0]}", "fhir: search DiagnosticReport")


@events.quitting.add_listener
def _close(environment, **kwargs) -> None:
    WRITES.close()
    seconds = sorted(logins["seconds"]) or [0.0]
    end = cpu_seconds() if "start" in cpu else {}
    Path(os.environ.get("H6_LOAD_LOGINS", "logins.json")).write_text(json.dumps({
        "ok": logins["ok"], "failed": logins["failed"],
        "median_s": seconds[len(seconds) // 2], "max_s": seconds[-1],
        "cpu_seconds": {name: end[name] - cpu["start"][name] for name in end}}))
