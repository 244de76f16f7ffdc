"""Export benchmark: request, approve and run a controlled export of 4 fields of every
patient of a 10,000-patient lab, against a plain decryption of the same fields.

    .venv/bin/python bench/export.py                    # 10,000 patients, one lab
    .venv/bin/python bench/export.py --patients 2000    # quicker

In a private COFFRE_HOME (temporary directory, SQLite in WAL mode): the keyring, one lab
and N generated patients imported through the registry's import path (not timed), a
lab manager who requests and a DPO who approves with her password and authenticator code
(N is above the DPO threshold; the approval's time includes that password's Argon2id
check), then
``services.run``: the covered patients' 4 fields decrypted, the CSV built in memory with
its watermark rows, encrypted to the recipient's age key, staged (0600), and one audit
entry per patient appended to the chain. Baseline, in the same run: ``open_patient`` of
the same 4 fields of the same patients (the decryption alone). Figures: seconds,
patients/s, MB staged, and the run's ratio to the baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIELDS = "nir,birth_name,first_names,birth_date"


def setup(home: str) -> None:
    os.environ["COFFRE_HOME"] = home
    os.environ.pop("COFFRE_KEY_FILE", None)
    os.environ.pop("COFFRE_MASTER_KEY", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "coffre.settings")
    os.environ["COFFRE_AUDIT_CHECKPOINT_SECONDS"] = "60"
    import django

    django.setup()
    from django.core.management import call_command

    from coffre.keyring import services as keyring
    from coffre.vault import create_key_file

    create_key_file(Path(home) / "keys" / "master.key")
    call_command("migrate", verbosity=0)
    keyring.initialise()


DPO_PASSWORD = secrets.token_urlsafe(16)  # the bench DPO's, for her signed approval


def populate(count: int, seed: int):
    """One lab, ``count`` generated patients, a requesting manager and an approving DPO
    (returns the lab and the DPO's TOTP secret)."""
    from django.contrib.auth import get_user_model

    from coffre.accounts import mfa
    from coffre.accounts.models import Membership, Role
    from coffre.identity.importer import dict_rows, import_rows
    from coffre.identity.synthetic import generate_finess, generate_patients
    from coffre.tenancy.actors import cli_actor
    from coffre.tenancy.services import add_lab

    lab = add_lab(generate_finess(0, seed), "Laboratoire du banc d'essai")
    report = import_rows(cli_actor(lab.id, role="generate"),
                         lambda: dict_rows(generate_patients(count, seed)))
    assert not report.errors, report.errors[:3]
    for name, role in (("bench.manager", Role.LAB_MANAGER), ("bench.dpo", Role.DPO)):
        user = get_user_model().objects.create_user(
            name, password=DPO_PASSWORD if role == Role.DPO else None)
        Membership.objects.create(user=user, lab=lab, role=role)
    return lab, mfa.enroll_confirmed(get_user_model().objects.get(username="bench.dpo"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="coffre-bench-export-")
    try:
        setup(home)
        from coffre.accounts import mfa, stepup
        from coffre.exports import services
        from coffre.identity.registry import open_patient
        from coffre.vault import decrypt_with, new_recipient_identity

        started = time.perf_counter()
        lab, dpo_secret = populate(args.patients, args.seed)
        print(f"setup: {args.patients:,} patients imported in one lab "
              f"({time.perf_counter() - started:.1f} s, not timed below)")
        today = dt.date.today()
        identity, recipient = new_recipient_identity()

        started = time.perf_counter()
        export = services.request_export(
            lab, purpose="banc d'essai : export de toute la file active",
            recipient="Banc d'essai", recipient_key=recipient, fields=FIELDS,
            period_from=today - dt.timedelta(days=1), period_to=today + dt.timedelta(days=1),
            requested_by="bench.manager")
        requested = time.perf_counter() - started
        started = time.perf_counter()
        services.approve(export.pk, stepup.Credentials(
            "bench.dpo", DPO_PASSWORD, mfa.current_code(dpo_secret)), channel="cli")
        approved = time.perf_counter() - started
        assert export.size_estimate == args.patients, export.size_estimate

        started = time.perf_counter()
        export = services.run(export.pk)
        ran = time.perf_counter() - started
        staged = services.staged_file(export).stat().st_size
        assert export.rows_exported == args.patients
        lines = decrypt_with(identity, services.staged_file(export).read_bytes()).count(b"\n")
        assert lines - 1 - args.patients in range(2, 4), lines  # header, watermark rows

        # Baseline: the same fields of the same patients, decrypted and nothing else.
        names = FIELDS.split(",")
        scope = services.covered(export, services._runner(lab))
        started = time.perf_counter()
        opened = 0
        for patient in scope.order_by("id").iterator(chunk_size=500):
            opened += len(open_patient(patient, names).values)
        baseline = time.perf_counter() - started
        assert opened == args.patients * len(names)

        n = args.patients
        print(f"request (counting {n:,} covered patients): {requested * 1000:.0f} ms; "
              f"approve: {approved * 1000:.0f} ms")
        print(f"run: {ran:.2f} s for {n:,} patients x {len(names)} fields "
              f"({n / ran:,.0f} patients/s), {staged / 1e6:.2f} MB staged (age)")
        print(f"baseline open_patient of the same fields: {baseline:.2f} s "
              f"({n / baseline:,.0f} patients/s)")
        print(f"ratio run / baseline: {ran / baseline:.2f}x "
              f"(the rest: CSV, watermark, age encryption, fsync, {n:,} audit entries)")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
