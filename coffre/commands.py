"""Handlers of the ``coffre`` subcommands (registered in coffre.cli)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from coffre import config
from coffre.cli import CommandError, command, print_json_lines
from coffre.progress import bars

log = logging.getLogger("coffre.cli")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the key file and database (idempotent)")
    p.add_argument("--expected-patients", type=int, default=None,
                   help="planned number of patients, sizes the blind indexes")

    p = sub.add_parser("serve", help="serve the web interface (development server)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)

    p = sub.add_parser("demo", help="load a small demo data set and print the demo logins")
    p.add_argument("--patients", type=int, default=300, help="patients per demo lab")

    p = sub.add_parser("generate", help="generate synthetic patients (Faker fr_FR)")
    p.add_argument("--patients", type=int, default=1000)
    p.add_argument("--labs", type=int, default=1)
    p.add_argument("--seed", type=int, default=2021)
    p.add_argument("--profile", choices=["seed"], help="seed = 491,840 patients in 28 labs")

    lab = sub.add_parser("lab", help="laboratories").add_subparsers(dest="lab_command",
                                                                    required=True)
    p = lab.add_parser("add")
    p.add_argument("--finess", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--address", default="")
    lab.add_parser("list")

    imp = sub.add_parser("import", help="import data").add_subparsers(dest="what",
                                                                       required=True)
    p = imp.add_parser("patients", help="registry CSV (docs/import-format.md)")
    p.add_argument("file", type=Path)
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--skip-invalid", action="store_true",
                   help="import the valid rows and report the others")

    pat = sub.add_parser("patient", help="patients").add_subparsers(dest="patient_command",
                                                                    required=True)
    p = pat.add_parser("find")
    p.add_argument("--lab", required=True, metavar="FINESS")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--nir")
    group.add_argument("--name")
    group.add_argument("--phone")
    group.add_argument("--email")
    p.add_argument("--birth-date", metavar="YYYY-MM-DD")

    sub.add_parser("leakcheck", help="search every file under COFFRE_HOME for patient values")

    audit = sub.add_parser("audit", help="the access log").add_subparsers(dest="audit_command",
                                                                         required=True)
    p = audit.add_parser("verify", help="check the whole chain against the signed checkpoints")
    p.add_argument("--auditor-key", type=Path, metavar="FILE",
                   help="the auditor's private key (default: COFFRE_HOME/audit/"
                        "auditor-private.key if it is still there)")
    p = audit.add_parser("auditor-key", help="make the auditor's key pair (before any entry)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="where to write the private key (0600); keep it off this machine")
    audit.add_parser("checkpoint", help="write a signed checkpoint of the chain head now")
    p = audit.add_parser("unlock", help="unlock an account locked for mass reading")
    p.add_argument("person", help="user name, os:<user> or api:<client>")
    p = audit.add_parser("alerts", help="alerts, one JSON object per line")
    p.add_argument("--open", action="store_true", help="only those not acknowledged")

    canary = sub.add_parser("canary", help="canary patients").add_subparsers(
        dest="canary_command", required=True)
    p = canary.add_parser("plant", help="add canary patients to every lab (or one)")
    p.add_argument("--per-lab", type=int, default=3)
    p.add_argument("--lab", metavar="FINESS")
    canary.add_parser("list", help="how many canaries each lab has (never their values)")


@command("init")
def init(args: argparse.Namespace) -> int:
    from coffre.setup import initialise

    for line in initialise(args.expected_patients):
        print(line)
    return 0


@command("serve")
def serve(args: argparse.Namespace) -> int:
    from django.core.management import call_command

    print(f"Coffre is serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    call_command("runserver", f"{args.host}:{args.port}", use_reloader=False,
                 use_threading=True, skip_checks=True)
    return 0


@command("demo")
def demo(args: argparse.Namespace) -> int:
    from coffre.setup import load_demo

    for line in load_demo(args.patients):
        print(line)
    return 0


@command("generate")
def generate(args: argparse.Namespace) -> int:
    from coffre.setup import SEED_LABS, SEED_PATIENTS, generate_patients

    patients, labs = (SEED_PATIENTS, SEED_LABS) if args.profile == "seed" \
        else (args.patients, args.labs)
    if patients < 1 or labs < 1:
        raise CommandError("--patients and --labs must be at least 1")
    with bars() as add:
        done = generate_patients(patients, labs, args.seed, add)
    print(f"generated {done} patients in {labs} laboratories (seed {args.seed})")
    return 0


@command("lab")
def lab(args: argparse.Namespace) -> int:
    from coffre.labs.models import Lab
    from coffre.labs.services import LabError, add_lab

    if args.lab_command == "add":
        try:
            created = add_lab(args.finess, args.name, args.address)
        except LabError as exc:
            raise CommandError(str(exc)) from None
        log.info("lab added: %s", created.finess)
        print_json_lines([{"finess": created.finess, "name": created.name}])
        return 0
    print_json_lines([{"finess": lab.finess, "name": lab.name, "address": lab.address}
                      for lab in Lab.objects.order_by("finess")])
    return 0


def _lab(finess: str):
    from coffre.labs.services import LabError, lab_by_finess

    try:
        return lab_by_finess(finess)
    except LabError as exc:
        raise CommandError(str(exc)) from None


@command("import")
def import_patients(args: argparse.Namespace) -> int:
    from coffre.identity.importer import ImportFileError, csv_rows, import_rows
    from coffre.labs.tenancy import cli_actor

    target = _lab(args.lab)
    actor = cli_actor(target.id, role="import")
    try:
        with bars() as add:
            report = import_rows(actor, lambda: csv_rows(args.file),
                                 skip_invalid=args.skip_invalid,
                                 advance_check=add("checking", None),
                                 advance_write=add("encrypting and writing", None))
    except ImportFileError as exc:
        raise CommandError(f"{args.file}: {exc}; nothing was imported") from None
    for error in report.errors:
        print(f"{args.file}: {error}", file=sys.stderr)
    if report.errors and not args.skip_invalid:
        print(f"{len(report.errors)} problems in {len({e.line for e in report.errors})} rows "
              f"of {report.rows_read}: nothing was imported (fix them, or use --skip-invalid)",
              file=sys.stderr)
        return 1
    log.info("import: %d patients into lab %s, %d rows skipped", report.imported,
             target.finess, report.rows_read - report.imported)
    print(f"imported {report.imported} patients into {target.name} ({target.finess}); "
          f"{report.rows_read - report.imported} rows skipped")
    return 0


@command("patient")
def patient_find(args: argparse.Namespace) -> int:
    from coffre.identity.access import SearchError, find_patients
    from coffre.labs.tenancy import cli_actor

    target = _lab(args.lab)
    try:
        records = find_patients(cli_actor(target.id), nir=args.nir, name=args.name,
                                birth_date=args.birth_date, phone=args.phone,
                                email=args.email)
    except SearchError as exc:
        raise CommandError(str(exc)) from None
    print_json_lines([{**r.as_row(), "lab": target.finess} for r in records])
    return 0


@command("leakcheck")
def leakcheck(args: argparse.Namespace) -> int:
    from coffre.leakcheck.run import run_leakcheck

    with bars() as add:
        lines, passed = run_leakcheck(config.home(), add)
    for line in lines:
        print(line)
    log.info("leakcheck: %s", "passed" if passed else "FAILED")
    return 0 if passed else 1


@command("audit")
def audit(args: argparse.Namespace) -> int:
    from coffre.audit import chain, detection
    from coffre.audit.models import AccessEvent, Alert
    from coffre.vault import VaultError

    if args.audit_command == "auditor-key":
        try:
            chain.create_auditor_key(args.out)
        except chain.VerifyError as exc:
            raise CommandError(str(exc)) from None
        print(f"auditor private key written to {args.out}: move it off this machine")
        return 0
    if args.audit_command == "verify":
        private = _auditor_private(args.auditor_key)
        try:
            with bars() as add:
                report = chain.verify(add("verifying", AccessEvent.objects.count()), private)
        except (chain.VerifyError, VaultError) as exc:
            raise CommandError(f"cannot verify: {exc}") from None
        print(f"{report.entries} entries read, {report.checkpoints} signed checkpoints")
        for problem in report.problems:
            print(f"PROBLEM: {problem}")
        print("the access log is intact" if report.ok else "the access log has been altered")
        log.info("audit verify: %s", "intact" if report.ok else "ALTERED")
        return 0 if report.ok else 1
    if args.audit_command == "checkpoint":
        chain.checkpoint_now()
        print(f"checkpoint written to {chain.checkpoint_file()}")
        return 0
    if args.audit_command == "unlock":
        from coffre.labs.tenancy import cli_actor

        try:
            lifted = detection.unlock(args.person, by=cli_actor(None, role="cli"))
        except detection.SelfUnlock as exc:
            raise CommandError(str(exc)) from None
        print(f"{lifted} lock(s) lifted for {args.person}")
        return 0 if lifted else 1
    alerts = Alert.objects.all()
    if args.open:
        alerts = alerts.filter(acknowledged_at__isnull=True)
    print_json_lines([{"id": a.pk, "at": a.at.isoformat(), "lab_id": a.lab_id, "kind": a.kind,
                       "person": a.person, "summary": a.summary,
                       "patient_id": str(a.patient_id) if a.patient_id else None,
                       "acknowledged_by": a.acknowledged_by or None} for a in alerts])
    return 0


def _auditor_private(path: Path | None) -> bytes | None:
    import base64

    from coffre.audit import chain

    path = path or chain.default_auditor_private_file()
    if not path.exists():
        return None
    try:
        return base64.b64decode(path.read_text().strip(), validate=True)
    except (OSError, ValueError):
        raise CommandError(f"{path} is not a readable auditor key") from None


@command("canary")
def canary(args: argparse.Namespace) -> int:
    from coffre.audit import canaries
    from coffre.labs.models import Lab
    from coffre.labs.tenancy import cli_actor

    labs = [_lab(args.lab)] if getattr(args, "lab", None) else list(Lab.objects.all())
    if args.canary_command == "plant":
        if args.per_lab < 1:
            raise CommandError("--per-lab must be at least 1")
        for target in labs:
            # Logged as an import: the log must not tell a copy which rows are canaries.
            canaries.plant(target.id, args.per_lab, cli_actor(target.id, role="import"))
            print(f"planted {args.per_lab} canaries in {target.name} ({target.finess})")
        return 0
    counts = {}
    for record in canaries.planted():
        counts[record["lab_id"]] = counts.get(record["lab_id"], 0) + 1
    print_json_lines([{"finess": t.finess, "canaries": counts.get(t.id, 0)} for t in labs])
    return 0
