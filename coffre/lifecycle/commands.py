"""Commands of the data lifecycle: erasure, purge, legal holds, the erasure ledger.

``coffre patient erase`` and ``coffre patient access-export`` (the right of access) are
sub-commands of coffre.identity's ``patient`` group (coffre.cmdkit.subcommand).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

from coffre import cmdkit
from coffre.cmdkit import BadInput, CommandError, command, print_json_lines, subcommand


def add_patient_arguments(sub: argparse._SubParsersAction) -> None:
    """``coffre patient erase`` and ``coffre patient access-export``."""
    pat = cmdkit.group_parsers(sub, "patient", dest="patient_command", help="patients")
    p = pat.add_parser("erase", help="erase a patient for good (destroys their data key)")
    p.add_argument("--id", required=True, metavar="UUID", help="internal patient id")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--reason", required=True, metavar="TEXT",
                   help="why (kept sealed in the audit log, never in the ledger)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p = pat.add_parser("access-export", help="the patient's right of access: a zip of a FHIR "
                                             "Bundle and the PDF reports (mode 0600)")
    p.add_argument("--id", required=True, metavar="UUID", help="internal patient id")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--out", required=True, type=Path, metavar="FILE")
    p.add_argument("--force", action="store_true", help="replace an existing file")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    add_patient_arguments(sub)
    p = sub.add_parser("purge", help="apply the retention rules (cron); one JSON line")
    p.add_argument("--lab", metavar="FINESS", help="one lab (default: every lab)")
    p.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")

    hold = sub.add_parser("hold", help="legal holds").add_subparsers(
        dest="hold_command", required=True)
    p = hold.add_parser("add", help="keep a patient's data whatever the retention rules")
    p.add_argument("--patient", required=True, metavar="UUID")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--reason", required=True, metavar="TEXT")
    p = hold.add_parser("release", help="release a patient's legal hold")
    p.add_argument("--patient", required=True, metavar="UUID")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p = hold.add_parser("list", help="active holds, one JSON object per line")
    p.add_argument("--lab", required=True, metavar="FINESS")
    p.add_argument("--all", action="store_true", help="released holds too")

    led = sub.add_parser("ledger", help="the erasure ledger").add_subparsers(
        dest="ledger_command", required=True)
    led.add_parser("verify", help="check the MAC chain (exit 1 on tampering)")
    led.add_parser("reapply", help="erase again the ledger's patients (after a restore)")


def _actor(finess: str):
    return cmdkit.lab_actor(finess)


def _uuid(text: str, option: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise BadInput(f"{option} must be a patient id (UUID)") from None


@subcommand("patient", "erase")
def patient_erase(args: argparse.Namespace) -> int:
    from coffre.identity.access import PatientNotFound
    from coffre.lifecycle.erasure import ErasureRefused, erase_patient

    actor = _actor(args.lab)
    patient_id = _uuid(args.id, "--id")
    if not args.yes:
        print(f"Erase patient {patient_id} of lab {args.lab} for good? Their identity and "
              "results become unreadable, in this database and in every backup once "
              "restored. Type 'yes' to confirm: ", end="", file=sys.stderr, flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer != "yes":
            raise CommandError("not confirmed: nothing was erased")
    try:
        erase_patient(actor, patient_id, args.reason)
    except PatientNotFound:
        raise BadInput(f"no patient {patient_id} in lab {args.lab} (or already erased)") \
            from None
    except ErasureRefused as exc:
        raise CommandError(f"erasure refused, nothing changed: {exc}") from None
    print_json_lines([{"erased": str(patient_id), "lab": args.lab}])
    return 0


@subcommand("patient", "access-export")
def access_export(args: argparse.Namespace) -> int:
    from coffre.identity.access import PatientNotFound
    from coffre.lifecycle.right_of_access import right_of_access

    try:
        patient_id = uuid.UUID(args.id)
    except ValueError:
        raise BadInput("--id must be a patient id (UUID)") from None
    try:
        _name, content = right_of_access(cmdkit.lab_actor(args.lab), patient_id)
    except PatientNotFound:
        raise BadInput(f"no patient {patient_id} in lab {args.lab}") from None
    cmdkit.write_output(args.out, content, args.force)
    print(args.out)
    return 0


@command("purge")
def purge(args: argparse.Namespace) -> int:
    from coffre.lifecycle.retention import purge as run_purge

    lab_id = _actor(args.lab).lab_id if args.lab else None
    report = run_purge(lab_id, dry_run=args.dry_run).as_dict()
    if not args.dry_run and lab_id is None:
        # The daily run also ends what else expires: staged export files and unused
        # requests, and API tokens past their lifetime.
        from coffre.apiclients.services import purge_expired as purge_tokens
        from coffre.exports.services import purge_expired as purge_exports

        report["expired_exports"] = purge_exports()
        report["expired_api_tokens"] = purge_tokens()
    print_json_lines([report])
    return 0


@command("hold")
def hold(args: argparse.Namespace) -> int:
    from coffre.identity.access import PatientNotFound
    from coffre.lifecycle import retention

    actor = _actor(args.lab)
    if args.hold_command == "list":
        print_json_lines(retention.list_holds(actor, include_released=args.all))
        return 0
    patient_id = _uuid(args.patient, "--patient")
    if args.hold_command == "add":
        try:
            created = retention.add_hold(actor, patient_id, args.reason)
        except PatientNotFound:
            raise BadInput(f"no patient {patient_id} in lab {args.lab}") from None
        except retention.HoldError as exc:
            raise CommandError(str(exc)) from None
        print_json_lines([{"hold": str(created.id), "patient": str(patient_id),
                           "lab": args.lab}])
        return 0
    released = retention.release_hold(actor, patient_id)
    if not released:
        raise CommandError(f"patient {patient_id} has no active legal hold in lab {args.lab}")
    print_json_lines([{"released": str(patient_id), "lab": args.lab}])
    return 0


@command("ledger")
def ledger_command(args: argparse.Namespace) -> int:
    from coffre.backups import service
    from coffre.lifecycle import ledger
    from coffre.lifecycle.erasure import reapply_ledger

    try:
        if args.ledger_command == "verify":
            entries = ledger.entries()
            print_json_lines([{"ok": True, "entries": len(entries),
                               "torn_tail_bytes": ledger.torn_tail(),
                               "file": str(ledger.ledger_path())}])
            return 0
        if service.pending_file().exists():  # finishes the restore it belongs to
            print_json_lines([{"restore_finished": service.finish_restore()}])
            return 0
        print_json_lines([{"reerased": reapply_ledger()}])
        return 0
    except service.RestoreUnfinished as exc:
        raise CommandError(str(exc)) from None
    except ledger.LedgerError as exc:
        raise CommandError(f"erasure ledger {ledger.ledger_path()}: {exc} "
                           f"(first bad line: {exc.line})") from None
