"""FHIR API benchmark: Observations of one patient among N patients' results, over real
HTTP (gunicorn), with GET /fhir/metadata as the baseline measured in the same run.

    .venv/bin/python bench/fhir_api.py --patients 20000          # ~a few minutes
    .venv/bin/python bench/fhir_api.py --patients 491840         # the seed profile's size
    .venv/bin/python bench/fhir_api.py --existing HOME    # after coffre generate --profile seed

A private COFFRE_HOME (temporary directory, SQLite in WAL mode) gets one lab, N
generated patients and their synthetic history (coffre.labwork.synthetic: ~1.6 published
orders per patient), an API client and a token. Gunicorn serves it on a free loopback
port (2 workers, 1 thread); one keep-alive client then alternates, for each round,

- baseline: GET /fhir/metadata (no token, no database: the HTTP + Django floor), and
- search: GET /fhir/Observation?patient=<id> (token check, rate limit, lab scope, the
  patient's results opened and the read audited), for a patient with results,

and prints the median and p95 of each, and their ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def prepare(home: str, patients: int) -> tuple[str, str, int]:
    """(token, patient id, results of that patient) in a new installation at ``home``."""
    from bench.lab import _lab, _patients, setup

    setup(home)
    from coffre.labwork.synthetic import Counts, generate_history

    lab = _lab(5, "Laboratoire FHIR")
    started = time.perf_counter()
    made = _patients(lab, patients, seed=2024)
    counts = Counts()
    generate_history(lab.id, made, seed=2024, counts=counts)
    print(f"data: {patients} patients, {counts} in {time.perf_counter() - started:.0f} s",
          flush=True)
    sample = [p[0] for p in made[len(made) // 2:len(made) // 2 + 500]]
    return _client_and_patient(lab, sample)


def prepare_existing(home: str) -> tuple[str, str, int]:
    """The same in an installation made beforehand (``coffre generate --profile seed``):
    its largest lab gets an API client; patients sampled from the middle of it."""
    os.environ["COFFRE_HOME"] = home
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    from django.db.models import Count

    from coffre.cli import open_vault

    open_vault()
    from coffre.identity.models import Patient
    from coffre.tenancy.models import Lab

    biggest = (Patient.unscoped.values("lab_id").annotate(n=Count("id")).order_by("-n")
               .first())
    if biggest is None:
        raise SystemExit(f"no patient in {home}: run `coffre generate --profile seed`")
    lab = Lab.objects.get(id=biggest["lab_id"])
    middle = biggest["n"] // 2
    sample = list(Patient.unscoped.filter(lab=lab).order_by("id")
                  .values_list("id", flat=True)[middle:middle + 500])
    print(f"data: existing installation, lab {lab.finess} with {biggest['n']} patients "
          f"({Patient.unscoped.count()} in all)", flush=True)
    return _client_and_patient(lab, sample)


def _client_and_patient(lab, sample: list) -> tuple[str, str, int]:
    """A read-only API client's token, and the patient with the most results among
    ``sample``: a patient with a history, as a doctor's software would ask for."""
    from django.db.models import Count

    from coffre.apiclients import services
    from coffre.labwork.models import Result
    from coffre.tenancy.actors import cli_actor

    client, secret = services.register_client(lab, "Banc FHIR", "system/*.read",
                                              cli_actor(lab.id))
    token = services.issue_token(services.authenticate_client(client.client_id, secret))
    busiest = (Result.unscoped.filter(patient_id__in=sample).values("patient_id")
               .annotate(n=Count("id")).order_by("-n").first())
    if busiest is None:
        raise SystemExit("no patient with results")
    return token.access_token, str(busiest["patient_id"]), busiest["n"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(home: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "COFFRE_HOME": home, "DJANGO_SETTINGS_MODULE": "coffre.settings",
           "COFFRE_ALLOWED_HOSTS": "127.0.0.1", "COFFRE_API_RATE_PER_MINUTE": "1000000"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "coffre.wsgi", "-b",
         f"127.0.0.1:{port}", "-w", "2", "--threads", "1", "--log-level", "warning"],
        cwd=ROOT, env=env)
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("gunicorn did not start")


def _get(connection: http.client.HTTPConnection, path: str, headers: dict) -> float:
    started = time.perf_counter()
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise SystemExit(f"{path}: HTTP {response.status}: {body[:300]!r}")
    return elapsed


def measure(port: int, token: str, patient_id: str, rounds: int) -> dict:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    auth = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    search = f"/fhir/Observation?patient={patient_id}"
    connection.request("GET", search, headers=auth)
    first = json.loads(connection.getresponse().read())
    for _ in range(5):  # warm both workers
        _get(connection, "/fhir/metadata", {})
        _get(connection, search, auth)
    baseline, searches = [], []
    for _ in range(rounds):
        baseline.append(_get(connection, "/fhir/metadata", {}))
        searches.append(_get(connection, search, auth))
    return {"total": first["total"], "page": len(first.get("entry", [])),
            "baseline": baseline, "search": searches}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--home", help="an existing directory to use (kept afterwards)")
    parser.add_argument("--existing", metavar="COFFRE_HOME",
                        help="an installation already generated (e.g. the seed profile); "
                             "--patients is then ignored")
    args = parser.parse_args()
    if args.existing:
        home = args.existing
        token, patient_id, results = prepare_existing(home)
    else:
        home = args.home or tempfile.mkdtemp(prefix="coffre-bench-fhir-")
        token, patient_id, results = prepare(home, args.patients)
    port = free_port()
    server = serve(home, port)
    try:
        figures = measure(port, token, patient_id, args.rounds)
    finally:
        server.terminate()
        server.wait(timeout=30)
    base, search = figures["baseline"], figures["search"]
    print(f"patient: {results} results, search total {figures['total']}, page of "
          f"{figures['page']}; {args.rounds} rounds over HTTP (gunicorn, 2 workers)")
    print(f"{'':38} {'median':>9} {'p95':>9}")
    print(f"{'GET /fhir/metadata (baseline)':38} {statistics.median(base):7.1f}ms "
          f"{p95(base):7.1f}ms")
    print(f"{'GET /fhir/Observation?patient=<id>':38} {statistics.median(search):7.1f}ms "
          f"{p95(search):7.1f}ms")
    print(f"ratio search / baseline (median): "
          f"{statistics.median(search) / statistics.median(base):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
