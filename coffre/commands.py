"""Handlers of the ``coffre`` subcommands (registered in coffre.cli)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from coffre import config
from coffre.cli import BadInput, CommandError, command, print_json_lines
from coffre.lifecycle import commands as lifecycle_commands
from coffre.progress import bars

log = logging.getLogger("coffre.cli")

# Capabilities that keep their commands beside their code: each module has
# add_arguments(sub) and registers its handlers with @command on import.
CAPABILITY_COMMANDS: tuple[str, ...] = (
    "coffre.lifecycle.commands", "coffre.backups.commands", "coffre.keyring.commands",
    "coffre.exports.commands", "coffre.apiclients.commands", "coffre.breach.commands",
)


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create the key file and database (idempotent)")
    p.add_argument("--expected-patients", type=int, default=None,
                   help="planned number of patients of the installation: sizes the legacy "
                        "installation-wide index key only (each lab's indexes are sized by "
                        "`lab add --planned-patients`)")
    p.add_argument("--auditor-key-out", type=Path, metavar="FILE",
                   help="write the auditor's private key there (0600, outside COFFRE_HOME)"
                        " instead of printing it once")

    p = sub.add_parser("serve", help="serve the web interface (development server, or "
                                     "gunicorn with --production: docs/deploy.md)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--production", action="store_true",
                   help="gunicorn workers; refuses to start unless `coffre check "
                        "--production` passes")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes (default 2 x cores + 1, at most 9)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default 4)")
    p.add_argument("--skip-checks", action="store_true",
                   help="start even if checks fail (they are still printed); for tests and "
                        "load runs on loopback, never for real patients")

    p = sub.add_parser("check", help="report what a production server still lacks")
    p.add_argument("--production", action="store_true",
                   help="HTTPS, keys, database role, cache, mail, disk (docs/deploy.md)")

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
    p.add_argument("--planned-patients", type=int, default=None, metavar="N",
                   help="patients the lab plans to hold: sizes its blind indexes "
                        "(default COFFRE_PLANNED_PATIENTS_PER_LAB, 20,000)")
    lab.add_parser("list")

    imp = sub.add_parser("import", help="import data").add_subparsers(dest="what",
                                                                       required=True)
    p = imp.add_parser("patients", help="registry CSV or FHIR NDJSON of Patients "
                                        "(docs/import-format.md)")
    p.add_argument("file", type=Path)
    p.add_argument("--format", choices=("csv", "ndjson"), default=None,
                   help="the file's format (default: ndjson for a .ndjson file, else csv)")
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
    lifecycle_commands.add_erase_arguments(pat)
    p = pat.add_parser("access-export", help="the patient's right of access: a zip of a FHIR "
                                             "Bundle and the PDF reports (mode 0600)")
    p.add_argument("--id", required=True, metavar="UUID", help="internal patient id")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    p = sub.add_parser("leakcheck", help="search every file under COFFRE_HOME for patient values")
    p.add_argument("--max-unsearched", type=int, metavar="PERCENT",
                   help="fail as inconclusive when more of the values are too short to "
                        "search (default 40, or COFFRE_LEAKCHECK_MAX_UNSEARCHED)")

    audit = sub.add_parser("audit", help="the access log").add_subparsers(dest="audit_command",
                                                                         required=True)
    p = audit.add_parser("verify", help="check the whole chain against the signed checkpoints")
    p.add_argument("--auditor-key", type=Path, metavar="FILE",
                   help="the auditor's private key, as `coffre init` printed it (- reads it "
                        "from standard input)")
    p = audit.add_parser("auditor-key", help="make the auditor's key pair (before any entry)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="write the private key there (0600, refused inside COFFRE_HOME) "
                        "instead of printing it once")
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

    _lab_arguments(sub)
    for module in CAPABILITY_COMMANDS:
        importlib.import_module(module).add_arguments(sub)
    prescriber = sub.add_parser("prescriber", help="prescriber portal accounts").add_subparsers(
        dest="prescriber_command", required=True)
    p = prescriber.add_parser("add", help="an account for a doctor; prints a temporary "
                                          "password (second factor enrolled at first login)")
    p.add_argument("--rpps", required=True, metavar="RPPS")
    p.add_argument("--username", required=True)


def _lab_arguments(sub: argparse._SubParsersAction) -> None:
    """Orders, specimens, reports and analyser messages (docs: README, `coffre hl7`)."""
    orders = sub.add_parser("orders", help="lab orders").add_subparsers(
        dest="orders_command", required=True)
    p = orders.add_parser("create", help="register an order; prints its number and barcodes")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--patient", required=True, metavar="UUID", help="internal patient id")
    p.add_argument("--tests", required=True, metavar="CODES",
                   help='panel, local or LOINC codes, e.g. "NFS IONO" or "718-7,K"')
    p.add_argument("--prescriber-rpps", default="", metavar="RPPS")
    p.add_argument("--prescriber-name", default="", metavar="NAME")
    p.add_argument("--clinical-info", default="", metavar="TEXT")
    p.add_argument("--urgent", action="store_true")

    specimens = sub.add_parser("specimens", help="specimens").add_subparsers(
        dest="specimens_command", required=True)
    p = specimens.add_parser("list", help="one JSON object per line (no name, no value)")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--state", default="", metavar="STATE",
                   help="registered, collected, received or rejected")
    p = specimens.add_parser("receive", help="record the receipt of specimens at the lab")
    p.add_argument("barcodes", nargs="+", metavar="BARCODE")
    p.add_argument("--lab", required=True, metavar="FINESS")

    report = sub.add_parser("report", help="reports (comptes rendus)").add_subparsers(
        dest="report_command", required=True)
    p = report.add_parser("pdf", help="write an order's report as PDF (mode 0600)")
    p.add_argument("--order", required=True, metavar="ID",
                   help="order number (with --lab) or order UUID")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--lab", metavar="FINESS")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    hl7 = sub.add_parser("hl7", help="analyser messages (HL7 v2.5 ORU^R01)").add_subparsers(
        dest="hl7_command", required=True)
    p = hl7.add_parser("import", help="record the results of a file of ORU^R01 messages")
    p.add_argument("file", metavar="FILE", help="a file of one or more messages, - for stdin")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--summary", action="store_true",
                   help="one line per message (code, control id, text) instead of the ACKs")
    p = hl7.add_parser("listen", help="MLLP listener for analysers (localhost by default)")
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--allow", metavar="ADDRESSES",
                   help="analyser IPs or networks whose connections are read, e.g. "
                        "127.0.0.1,10.0.0.0/28 (default: the lab's stored list)")
    p.add_argument("--allow-remote", action="store_true",
                   help="listen on a non-loopback address without TLS (behind a VPN)")
    p.add_argument("--tls-cert", type=Path, metavar="FILE",
                   help="the listener's certificate (PEM); with --tls-key and "
                        "--tls-client-ca, analysers need a client certificate")
    p.add_argument("--tls-key", type=Path, metavar="FILE")
    p.add_argument("--tls-client-ca", type=Path, metavar="FILE",
                   help="CA certificate(s) (PEM) that sign the analysers' certificates")
    p = hl7.add_parser("analysers", help="the lab's allow-list of analyser addresses")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--set", metavar="ADDRESSES",
                   help='replace the list (IPs or networks, comma-separated; "" empties it)')
    p = hl7.add_parser("export", help="an order's validated results as ORU^R01")
    p.add_argument("--order", required=True, metavar="NUMBER")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--out", type=Path, metavar="FILE", help="write here (mode 0600)")
    p.add_argument("--force", action="store_true", help="replace an existing file")


@command("init")
def init(args: argparse.Namespace) -> int:
    from coffre.setup import initialise

    out = args.auditor_key_out
    if out is not None and config.inside_home(out):
        raise BadInput(f"--auditor-key-out: {out} is inside COFFRE_HOME ({config.home()}): "
                       "the auditor's private key must not stay with the data; give a path "
                       "outside it, or leave the option out to have the key printed once")
    if out is not None and out.exists():
        raise BadInput(f"--auditor-key-out: {out} already exists; not overwriting")
    for line in initialise(args.expected_patients, out):
        print(line)
    return 0


@command("serve")
def serve(args: argparse.Namespace) -> int:
    from django.core.management import call_command

    if args.production:
        return _serve_production(args)
    print(f"Coffre is serving on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
    call_command("runserver", f"{args.host}:{args.port}", use_reloader=False,
                 use_threading=True, skip_checks=True)
    return 0


def _serve_production(args: argparse.Namespace) -> int:
    from django.conf import settings

    from coffre.serving import checks, server

    if settings.DEBUG:
        raise CommandError("refusing to serve in production with COFFRE_DEBUG on: a "
                           "traceback page would show data; unset COFFRE_DEBUG")
    failed = _print_checks(checks.run(), only_failures=True)
    if failed and not args.skip_checks:
        raise CommandError(f"refusing to start: {failed} check(s) failed (above); fix them, "
                           "or pass --skip-checks for a test on loopback")
    if failed:
        print(f"coffre: WARNING: starting with {failed} failed check(s) (--skip-checks): "
              "not for real patients", file=sys.stderr, flush=True)
    if settings.STATIC_ROOT:
        _collect_static()
    print(f"Coffre (production) is serving on http://{args.host}:{args.port}/ "
          "(SIGTERM to stop)", file=sys.stderr, flush=True)
    server.run(args.host, args.port, args.workers, args.threads or server.THREADS)
    return 0


def _collect_static() -> None:
    from django.conf import settings
    from django.core.management import call_command

    try:
        call_command("collectstatic", interactive=False, verbosity=0)
    except OSError as exc:
        raise CommandError(config.disk_problem(exc, settings.STATIC_ROOT)) from None


def _print_checks(items: list, only_failures: bool = False) -> int:
    for item in items:
        if only_failures and item.ok:
            continue
        for line in item.lines():
            print(line, file=sys.stderr if only_failures else sys.stdout, flush=True)
    return sum(not item.ok for item in items)


@command("check")
def check(args: argparse.Namespace) -> int:
    """Exit 0 only when every check passes; each failure says how to fix it."""
    from django.core.management import call_command

    if not args.production:
        call_command("check")
        return 0
    from coffre.serving import checks

    failed = _print_checks(checks.run())
    print(f"{failed} problem(s)" if failed else "ready for production")
    return 1 if failed else 0


@command("demo")
def demo(args: argparse.Namespace) -> int:
    from coffre.setup import load_demo

    for line in load_demo(args.patients):
        print(line)
    return 0


@command("generate")
def generate(args: argparse.Namespace) -> int:
    from coffre.bulk import refresh_statistics
    from coffre.setup import SEED_LABS, SEED_PATIENTS, generate_patients

    patients, labs = (SEED_PATIENTS, SEED_LABS) if args.profile == "seed" \
        else (args.patients, args.labs)
    if patients < 1 or labs < 1:
        raise CommandError("--patients and --labs must be at least 1")
    with bars() as add:
        done = generate_patients(patients, labs, args.seed, add)
    refresh_statistics()
    kept = f"; {patients - done} already made by an earlier run" if done < patients else ""
    print(f"generated {done} patients in {labs} laboratories (seed {args.seed}){kept}")
    return 0


@command("lab")
def lab(args: argparse.Namespace) -> int:
    from coffre.labs.models import Lab
    from coffre.labs.services import LabError, add_lab

    if args.lab_command == "add":
        try:
            created = add_lab(args.finess, args.name, args.address, args.planned_patients)
        except LabError as exc:
            raise CommandError(str(exc)) from None
        log.info("lab added: %s", created.finess)
        print_json_lines([{"finess": created.finess, "name": created.name}])
        return 0
    print_json_lines([{"finess": lab.finess, "name": lab.name, "address": lab.address}
                      for lab in Lab.objects.order_by("finess")])
    return 0


def _lab(finess: str, code: int = 1):
    from coffre.labs.services import LabError, lab_by_finess

    try:
        return lab_by_finess(finess)
    except LabError as exc:
        raise CommandError(str(exc), code) from None


@command("import")
def import_patients(args: argparse.Namespace) -> int:
    from coffre.bulk import refresh_statistics
    from coffre.identity.importer import ImportFileError, csv_rows, import_rows
    from coffre.labs.tenancy import cli_actor

    target = _lab(args.lab)
    actor = cli_actor(target.id, role="import")
    rows = lambda: csv_rows(args.file)  # noqa: E731
    if (args.format or ("ndjson" if args.file.suffix.lower() == ".ndjson" else "csv")
            ) == "ndjson":
        from coffre.fhir.bulk import ndjson_rows

        rows = lambda: ndjson_rows(args.file)  # noqa: E731
    try:
        with bars() as add:
            report = import_rows(actor, rows,
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
    refresh_statistics()
    print(f"imported {report.imported} patients into {target.name} ({target.finess}); "
          f"{report.rows_read - report.imported} rows skipped")
    return 0


@command("patient")
def patient_find(args: argparse.Namespace) -> int:
    from coffre.identity.access import SearchError, find_patients
    from coffre.labs.tenancy import cli_actor

    if args.patient_command == "erase":
        return lifecycle_commands.patient_erase(args)
    if args.patient_command == "access-export":
        return _access_export(args)
    target = _lab(args.lab)
    try:
        records = find_patients(cli_actor(target.id), nir=args.nir, name=args.name,
                                birth_date=args.birth_date, phone=args.phone,
                                email=args.email)
    except SearchError as exc:
        raise CommandError(exc.render("en")) from None
    print_json_lines([{**r.as_row(), "lab": target.finess} for r in records])
    return 0


@command("leakcheck")
def leakcheck(args: argparse.Namespace) -> int:
    from coffre.leakcheck.run import run_leakcheck

    bound = None
    if args.max_unsearched is not None:
        if not 0 <= args.max_unsearched <= 100:
            raise BadInput("--max-unsearched is a percentage, 0 to 100")
        bound = args.max_unsearched / 100
    with bars() as add:
        lines, passed = run_leakcheck(config.home(), add, bound)
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
        from coffre.setup import auditor_key_lines

        try:
            private = chain.create_auditor_key(args.out)
        except chain.VerifyError as exc:
            raise CommandError(str(exc)) from None
        if args.out is None:
            print("\n".join(auditor_key_lines(private)))
        else:
            print(f"auditor private key written to {args.out} (0600): keep it off this "
                  "machine")
        return 0
    if args.audit_command == "verify":
        private = _auditor_private(args.auditor_key)
        try:
            with bars() as add:
                report = chain.verify(add("verifying", AccessEvent.objects.count()), private)
        except (chain.VerifyError, VaultError) as exc:
            raise CommandError(f"cannot verify: {exc}") from None
        restores = f", {report.restores} database restore(s)" if report.restores else ""
        print(f"{report.entries} entries read, {report.checkpoints} signed checkpoints"
              f"{restores}")
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
    from coffre.audit import chain

    if path is None:
        legacy = chain.default_auditor_private_file()
        if not legacy.exists():
            return None
        # Installations made before `init` printed the key: still read, but said.
        print(f"warning: the auditor's private key lies in {legacy}, under COFFRE_HOME: "
              "move it off this machine (`coffre check --production` fails while it is "
              "there)", file=sys.stderr)
        path = legacy
    stdin = str(path) == "-"
    try:
        return chain.read_auditor_private(sys.stdin.read() if stdin else path.read_text())
    except (OSError, ValueError):
        raise CommandError(f"{'standard input' if stdin else path} is not a readable "
                           "auditor key") from None


@command("canary")
def canary(args: argparse.Namespace) -> int:
    from coffre.audit import canaries
    from coffre.breach import planting
    from coffre.identity.decoys import NoUnusedIdentity
    from coffre.labs.models import Lab
    from coffre.labs.tenancy import cli_actor

    labs = [_lab(args.lab)] if getattr(args, "lab", None) else list(Lab.objects.all())
    if args.canary_command == "plant":
        if args.per_lab < 1:
            raise CommandError("--per-lab must be at least 1")
        for target in labs:
            try:
                planting.plant(target.id, args.per_lab, cli_actor(target.id))
            except NoUnusedIdentity as exc:
                raise CommandError(f"{target.finess}: {exc}") from None
            print(f"planted {args.per_lab} canaries in {target.name} ({target.finess})")
        return 0
    counts = {}
    for record in canaries.planted():
        counts[record["lab_id"]] = counts.get(record["lab_id"], 0) + 1
    print_json_lines([{"finess": t.finess, "canaries": counts.get(t.id, 0)} for t in labs])
    return 0


# -- lab workflow: orders, specimens, reports, analyser messages ---------------------------

def _lab_actor(finess: str):
    from coffre.labs.tenancy import cli_actor

    return cli_actor(_lab(finess, code=2).id)


def _access_export(args: argparse.Namespace) -> int:
    import uuid

    from coffre.identity.access import PatientNotFound
    from coffre.lifecycle.right_of_access import right_of_access

    try:
        patient_id = uuid.UUID(args.id)
    except ValueError:
        raise BadInput("--id must be a patient id (UUID)") from None
    try:
        _name, content = right_of_access(_lab_actor(args.lab), patient_id)
    except PatientNotFound:
        raise BadInput(f"no patient {patient_id} in lab {args.lab}") from None
    _write_private(args.out, content, args.force)
    print(args.out)
    return 0


def _write_private(path: Path, content: bytes, force: bool) -> None:
    """Write a file readable by its owner only (0600); never replace one unless told."""
    import os

    if path.is_dir():
        raise BadInput(f"{path} is a directory")
    if not path.parent.is_dir():
        raise BadInput(f"{path.parent} is not a directory")
    if path.exists() or path.is_symlink():
        if not force:
            raise BadInput(f"{path} exists: use --force to replace it")
        path.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


@command("orders")
def orders(args: argparse.Namespace) -> int:
    import re
    import uuid

    from coffre.identity.access import PatientNotFound
    from coffre.lab.orders import InvalidOrder, OrderRequest, create_order

    actor = _lab_actor(args.lab)
    try:
        patient_id = uuid.UUID(args.patient)
    except ValueError:
        raise BadInput("--patient must be a patient id (UUID)") from None
    tests = tuple(code for code in re.split(r"[\s,;]+", args.tests) if code)
    try:
        order = create_order(actor, OrderRequest(
            patient_id=patient_id, tests=tests, prescriber_rpps=args.prescriber_rpps,
            prescriber_name=args.prescriber_name, clinical_info=args.clinical_info,
            urgent=args.urgent))
    except InvalidOrder as exc:
        raise BadInput(f"order refused, nothing recorded: {exc.render('en')}") from None
    except PatientNotFound:
        raise BadInput(f"no patient {patient_id} in lab {args.lab}") from None
    specimens = [{"barcode": s.barcode, "specimen_type": s.specimen_type,
                  "tests": list(s.results.order_by("position").values_list("loinc", flat=True))}
                 for s in order.specimens.order_by("barcode")]
    print_json_lines([{"order": order.number, "id": str(order.id), "lab": args.lab,
                       "patient": str(patient_id), "urgent": order.urgent,
                       "barcodes": [s["barcode"] for s in specimens],
                       "specimens": specimens}])
    return 0


@command("prescriber")
def prescriber(args: argparse.Namespace) -> int:
    from coffre.portal.prescriber import InvalidPrescriber, add_prescriber

    try:
        account, password = add_prescriber(args.rpps, args.username)
    except InvalidPrescriber as exc:
        raise BadInput(f"account refused: {exc}") from None
    print_json_lines([{"username": account.user.username, "rpps": account.rpps,
                       "temporary_password": password}])
    print("give the temporary password to the doctor in person; at first login they "
          "choose their own password, then enroll an authenticator", file=sys.stderr)
    return 0


@command("specimens")
def specimens(args: argparse.Namespace) -> int:
    import json

    from coffre.lab import access, workflow
    from coffre.lab.models import SpecimenState

    actor = _lab_actor(args.lab)
    if args.specimens_command == "receive":
        received = []
        with _refusals():
            from django.db import transaction

            with transaction.atomic():  # all the barcodes or none
                for barcode in args.barcodes:
                    try:
                        received.append(workflow.receive(actor, barcode))
                    except workflow.SpecimenNotFound:
                        raise BadInput(f"no specimen {barcode!r} in lab {args.lab}; "
                                       "nothing was received") from None
        print_json_lines([{"barcode": s.barcode, "state": s.state,
                           "received_at": s.received_at.isoformat()} for s in received])
        return 0
    if args.state and args.state not in SpecimenState.values:
        raise BadInput(f"unknown state {args.state!r}: use one of "
                       f"{', '.join(SpecimenState.values)}")
    for row in access.specimen_listing(actor, state=args.state):
        print(json.dumps(row, ensure_ascii=False))
    return 0


class _refusals:
    """Turn a refused workflow step into a clear one-line error (exit 2)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        from coffre.lab.workflow import WorkflowError

        if isinstance(exc, WorkflowError):
            raise BadInput(f"{exc.render('en')}; nothing was changed") from None
        return False


@command("report")
def report(args: argparse.Namespace) -> int:
    import uuid

    from coffre.lab import reports
    from coffre.lab.access import OrderNotFound, order_by_number
    from coffre.lab.models import Order
    from coffre.labs.tenancy import cli_actor

    try:
        order_id: uuid.UUID | None = uuid.UUID(args.order)
    except ValueError:
        order_id = None
    if order_id is None and not args.lab:
        raise BadInput("--order is not an order id (UUID): an order number needs --lab")
    if args.out.exists() and not args.force:
        raise BadInput(f"{args.out} exists: use --force to replace it")
    if args.lab:
        actor = _lab_actor(args.lab)
    else:
        # An administrator on the server may name an order by its id alone; the read
        # is then scoped and logged in the order's own lab.
        lab_id = Order.unscoped.filter(id=order_id).values_list("lab_id", flat=True).first()
        if lab_id is None:
            raise BadInput(f"no order {args.order}")
        actor = cli_actor(lab_id)
    try:
        if order_id is None:
            order_id = order_by_number(actor, args.order).id
        _, content = reports.report_pdf(actor, order_id)
    except OrderNotFound:
        where = f" in lab {args.lab}" if args.lab else ""
        raise BadInput(f"no order {args.order}{where}") from None
    _write_private(args.out, content, args.force)
    print(args.out)
    return 0


@command("hl7")
def hl7(args: argparse.Namespace) -> int:
    return {"import": _hl7_import, "listen": _hl7_listen, "analysers": _hl7_analysers,
            "export": _hl7_export}[args.hl7_command](args)


def _printable(message: str) -> str:
    """An HL7 message with one segment per line (segments end with \\r on the wire)."""
    return "\n".join(segment for segment in message.split("\r") if segment)


def _hl7_import(args: argparse.Namespace) -> int:
    from coffre.lab import analyser, hl7v2

    target = _lab(args.lab, code=2)
    if args.file == "-":
        data = sys.stdin.buffer.read()
        name = "standard input"
    else:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise BadInput(f"cannot read {args.file}: {exc.strerror}") from None
        name = args.file
    if not hl7v2.split_messages(data):
        raise BadInput(f"no HL7 message in {name}")
    outcomes = analyser.import_stream(target.id, data, channel="cli")
    for outcome in outcomes:
        if args.summary:
            print(f"{outcome.code} {outcome.control_id or '-'} {outcome.text}")
        else:
            print(_printable(outcome.ack) + "\n")
    refused = sum(1 for o in outcomes if o.code != "AA")
    recorded = sum(o.recorded for o in outcomes)
    log.info("hl7 import into lab %s: %d message(s), %d refused, %d result(s)",
             target.finess, len(outcomes), refused, recorded)
    print(f"{len(outcomes)} message(s): {len(outcomes) - refused} accepted, {refused} "
          f"refused; {recorded} result(s) recorded", file=sys.stderr)
    return 2 if refused else 0


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hl7_listen(args: argparse.Namespace) -> int:
    import signal
    import threading

    from django.db import connection

    from coffre.lab import analyser, hl7v2, mllp

    if not 0 <= args.port <= 65535:
        raise BadInput("--port must be between 0 and 65535")
    tls = _listener_tls(args)
    if not _is_loopback(args.host) and not args.allow_remote and tls is None:
        raise BadInput(f"{args.host} is not a loopback address: HL7 over MLLP is not "
                       "encrypted; give --tls-cert, --tls-key and --tls-client-ca, or "
                       "--allow-remote only behind a VPN")
    target = _lab(args.lab, code=2)
    allowed = _listener_allow_list(args, target)
    lock = threading.Lock()

    def handle(text: str) -> str:
        try:
            outcome = analyser.import_message(target.id, text, channel="hl7")
        except Exception as exc:  # answer AE rather than leave the analyser waiting
            log.error("hl7 listen: message failed: %s", type(exc).__name__)
            return hl7v2.build_ack("", "AE", "internal error: message not recorded")
        finally:
            connection.close()  # each handler thread has its own connection
        with lock:
            print(f"{outcome.code} {outcome.control_id or '-'} {outcome.text}", flush=True)
        return outcome.ack

    try:
        server = mllp.MllpServer(handle, args.host, args.port, allowed=allowed, tls=tls)
    except OSError as exc:
        raise BadInput(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    stop = threading.Event()

    def terminate(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, terminate)
    server.start_background()
    log.info("hl7 listen: lab %s on %s:%d, analysers %s%s", target.finess, args.host,
             server.port, allowed, ", TLS with client certificates" if tls else "")
    print(f"listening on {args.host}:{server.port} for lab {target.finess}, analysers "
          f"{allowed}{' over TLS' if tls else ''} (Ctrl-C to stop)", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    server.shutdown()
    print("stopped", flush=True)
    return 0


def _listener_tls(args: argparse.Namespace):
    """The listener's TLS context, or None; all three files or none of them."""
    import ssl

    from coffre.lab import mllp

    files = {"--tls-cert": args.tls_cert, "--tls-key": args.tls_key,
             "--tls-client-ca": args.tls_client_ca}
    missing = [name for name, path in files.items() if path is None]
    if len(missing) == len(files):
        return None
    if missing:
        raise BadInput(f"TLS needs {', '.join(missing)} too: analysers are known by "
                       "their client certificates")
    for name, path in files.items():
        if not path.is_file():
            raise BadInput(f"cannot read {name} {path}: no such file")
    try:
        return mllp.server_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
    except ssl.SSLError as exc:
        raise BadInput(f"TLS files not usable: {exc.reason or exc}") from None
    except OSError as exc:
        raise BadInput(f"cannot read a TLS file: {exc.strerror}") from None


def _listener_allow_list(args: argparse.Namespace, target):
    from coffre.lab import analyser, mllp

    if args.allow is not None:
        try:
            allowed = mllp.AllowList.parse(args.allow)
        except ValueError as exc:
            raise BadInput(f"--allow: {exc}") from None
    else:
        allowed = analyser.analyser_addresses(target.id)
    if not allowed:
        raise BadInput(f"no analyser address is allowed for lab {target.finess}: give "
                       f"--allow ADDRESSES or store them with `coffre hl7 analysers --lab "
                       f"{target.finess} --set ADDRESSES`")
    return allowed


def _hl7_analysers(args: argparse.Namespace) -> int:
    from coffre.lab import analyser

    target = _lab(args.lab, code=2)
    if args.set is None:
        print(analyser.analyser_addresses(target.id))
        return 0
    try:
        allowed = analyser.set_analyser_addresses(target.id, args.set)
    except ValueError as exc:
        raise BadInput(f"--set: {exc}; nothing was changed") from None
    log.info("hl7 analysers of lab %s set to %s", target.finess, allowed or "(none)")
    print(allowed)
    return 0


def _hl7_export(args: argparse.Namespace) -> int:
    from coffre.lab import analyser
    from coffre.lab.access import OrderNotFound, order_by_number

    actor = _lab_actor(args.lab)
    if args.out and args.out.exists() and not args.force:
        raise BadInput(f"{args.out} exists: use --force to replace it")
    try:
        message = analyser.export_oru(actor, order_by_number(actor, args.order).id)
    except OrderNotFound:
        raise BadInput(f"no order {args.order} in lab {args.lab}") from None
    if args.out:
        _write_private(args.out, message.encode("utf-8"), args.force)
        print(args.out)
    else:
        print(_printable(message))
    return 0
