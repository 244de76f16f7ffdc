"""Audit benchmark: the cost of logging a read, and `audit verify` throughput.

    .venv/bin/python bench/audit.py                    # 1,000 reads, 1,000,000 entries
    .venv/bin/python bench/audit.py --entries 100000   # quicker

Reads go through access.access_patient and through the staff patient page, in three
modes measured in the same run: "no log" (log.record replaced by a no-op: the
baseline), "chain only" (the chained append; detection and canary checks off) and
"full" (what production does: chained entry, mass-reading counts, canary check). The
reads are shared by --accounts staff accounts (default 100: 10 distinct patients each
per 1,000 reads), with the default detection thresholds. Then N chained entries are appended in
batches and `chain.verify` is timed over all of them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup(home: str) -> None:
    os.environ["COFFRE_HOME"] = home
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    os.environ["COFFRE_AUDIT_CHECKPOINT_SECONDS"] = "60"
    os.environ["COFFRE_ALLOWED_HOSTS"] = "testserver"
    import django

    django.setup()
    from django.core.management import call_command

    from coffre.keyring import services as keyring
    from coffre.vault import create_key_file

    create_key_file(Path(home) / "keys" / "master.key")
    call_command("migrate", verbosity=0)
    keyring.initialise()


def time_pass(actors: list, clients: list, ids: list) -> tuple[float, float]:
    """Mean time per read in milliseconds, through the access layer and as the staff
    patient page (view, session, template, audit)."""
    from coffre.identity.access import access_patient

    started = time.perf_counter()
    for number, patient_id in enumerate(ids):
        access_patient(actors[number % len(actors)], patient_id)
    layer = (time.perf_counter() - started) / len(ids) * 1000
    started = time.perf_counter()
    for number, patient_id in enumerate(ids):
        response = clients[number % len(clients)].get(f"/patients/{patient_id}/")
        assert response.status_code == 200, response.status_code
    return layer, (time.perf_counter() - started) / len(ids) * 1000


def _staff_user(actor):
    from django.contrib.auth import get_user_model

    from coffre.accounts.models import Membership

    user, created = get_user_model().objects.get_or_create(username=actor.person)
    if created:
        Membership.objects.create(user=user, lab_id=actor.lab_id, role=actor.role)
    return user


def reads(count: int, rounds: int, accounts: int) -> dict[str, tuple[float, float]]:
    """Median per mode over rounds; the modes alternate within each round, so the
    growth of the log during the run weighs on all of them alike."""
    from django.test import Client
    from django.utils import timezone

    from coffre.audit import chain, log
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.identity.models import Patient
    from coffre.identity.synthetic import generate_patients
    from coffre.tenancy.actors import Actor
    from coffre.tenancy.services import add_lab

    lab = add_lab("750000010", "Laboratoire Bench")
    actors = [Actor(f"staff{i}", lab.id, "secretary", "web", "127.0.0.1")
              for i in range(accounts)]
    import_rows(Actor("import", lab.id, "import", "cli"),
                lambda: dict_rows(generate_patients(count, seed=4)))
    ids = list(Patient.unscoped.values_list("id", flat=True))
    from coffre.accounts import mfa

    clients = []
    for actor in actors:
        clients.append(Client())
        clients[-1].force_login(_staff_user(actor))
        session = clients[-1].session
        mfa.mark_verified(session)  # as after the code page: staff pages need both factors
        session.save()

    def chain_only(actor, action, patient_ids, *, kind="identity", outcome="ok", purpose=""):
        chain.append([{"at": timezone.now(), "person": actor.person, "role": actor.role,
                       "channel": actor.channel, "lab_id": actor.lab_id, "action": action,
                       "kind": kind, "address": actor.address, "outcome": outcome,
                       "patient_id": pid} for pid in patient_ids])

    modes = {"no log": lambda *args, **kwargs: None, "chain only": chain_only,
             "full": log.record}
    times: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    try:
        for _ in range(rounds):
            for mode, record in modes.items():
                log.record = record
                times[mode].append(time_pass(actors, clients, ids))
    finally:
        log.record = modes["full"]
    return {mode: (statistics.median(t[0] for t in values),
                   statistics.median(t[1] for t in values)) for mode, values in times.items()}


def verify(entries: int) -> tuple[float, float, int]:
    from django.utils import timezone

    from coffre.audit import chain

    batch = 10_000
    started = time.perf_counter()
    for start in range(0, entries, batch):
        now = timezone.now()
        chain.append([{"at": now, "person": f"user{i % 50}", "role": "secretary",
                       "channel": "web", "lab_id": 1, "patient_id": None, "action": "read",
                       "kind": "identity", "address": "10.0.0.1", "outcome": "ok"}
                      for i in range(start, min(entries, start + batch))])
    appended = time.perf_counter() - started
    started = time.perf_counter()
    report = chain.verify()
    assert report.ok, report.problems
    return appended, time.perf_counter() - started, report.entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--accounts", type=int, default=100,
                        help="staff accounts sharing the reads (100: 10 patients each per "
                             "1,000 reads, a normal pace; 20: a busy one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="coffre-bench-audit-") as home:
        setup(home)
        results = reads(args.reads, args.rounds, args.accounts)
        print(f"== reading one patient, {args.reads} distinct patients shared by "
              f"{args.accounts} accounts, SQLite, median of {args.rounds} interleaved rounds")
        for level, name in ((0, "access layer (access_patient)"),
                            (1, "staff patient page (GET /patients/<id>/)")):
            base = results["no log"][level]
            print(name)
            for mode, times in results.items():
                print(f"  {mode:>11}: {times[level]:.3f} ms per read  "
                      f"(overhead {100 * (times[level] / base - 1):+.0f}%)")
        appended, verified, count = verify(args.entries)
        print(f"== audit chain of {count:,} entries (plus the reads above)")
        print(f"append: {appended:.1f} s ({args.entries / appended:,.0f} entries/s, "
              f"batches of 10,000)")
        print(f"verify: {verified:.1f} s ({count / verified:,.0f} entries/s)")


if __name__ == "__main__":
    main()
